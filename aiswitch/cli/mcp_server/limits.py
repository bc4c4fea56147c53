"""What `aiswitch mcp` lets a client do: the limits it was started with.

Contract:
- `--agents A,B@P,C@*`: the allow-list. `NAME` allows that agent with its default preset,
  `NAME@PRESET` that pair, `NAME@*` the agent with any preset. None: every agent.
- `--max-permissions read-only|edit|full` (default `edit`): a run asks for at most this;
  a run that asks for nothing gets it.
- `--budget-usd`: what the session's runs may cost together. A run's own budget is what
  is left when it starts (or less, when the call asks for less): the ended runs' cost and
  what the running ones have spent so far (`live_usd`) taken off. The session checks the
  sum as each run's usage arrives (`over`); once it reaches the budget every running run
  stops (`budget_exceeded`), so runs started side by side cannot pass it together (only
  by what their tasks in flight spend before they stop, as a single run's budget).
- Depth: `AISWITCH_MCP_DEPTH` counts how many `aiswitch mcp` servers stand above this
  one (agents started through a server get its depth + 1; the supervisor passes the
  variable on). A server at `--max-depth` (default 2) or deeper starts no run, so an
  agent that delegates to aiswitch that delegates again stops there: never a fork bomb.
- Every refusal is an `McpToolError`: one sentence of what to do, shown to the model as a
  tool result with `isError: true`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiswitch.errors import UsageError

if TYPE_CHECKING:
    from aiswitch.coordinator.specs import AgentSpec

DEPTH_VAR = "AISWITCH_MCP_DEPTH"
# Two levels of delegation (a client's agent delegates, that agent delegates once more):
# enough for review-of-a-review, far from a fork bomb.
DEFAULT_MAX_DEPTH = 2
PERMISSIONS = ("read-only", "edit", "full")
DEFAULT_MAX_PERMISSIONS = "edit"


class McpToolError(UsageError):
    """A tool call that cannot be done: a tool result with `isError: true`."""


def current_depth(env: dict[str, str] | None = None) -> int:
    raw = (os.environ if env is None else env).get(DEPTH_VAR, "0")
    try:
        return max(0, int(raw))
    except ValueError:
        return 0


@dataclass
class Limits:
    agents: tuple[str, ...] | None = None
    max_permissions: str = DEFAULT_MAX_PERMISSIONS
    budget_usd: float | None = None
    max_depth: int = DEFAULT_MAX_DEPTH
    depth: int = 0
    spent_usd: float = field(default=0.0)

    def __post_init__(self) -> None:
        if self.max_permissions not in PERMISSIONS:
            raise UsageError(
                f"unknown --max-permissions {self.max_permissions!r}",
                hint="use read-only, edit or full",
            )
        if self.budget_usd is not None and self.budget_usd <= 0:
            raise UsageError("--budget-usd must be a positive amount")
        if self.max_depth < 0:
            raise UsageError("--max-depth must be 0 or more")
        if self.agents is not None and not self.agents:
            raise UsageError("--agents is empty", hint="name the agents, e.g. codex,gemini@kimi")

    def check_depth(self) -> None:
        if self.depth >= self.max_depth:
            raise McpToolError(
                f"this aiswitch server is nested {self.depth} deep (the limit is "
                f"{self.max_depth}): do the task yourself instead of delegating it again"
            )

    def check_agents(self, specs: list[AgentSpec]) -> None:
        if self.agents is None:
            return
        for spec in specs:
            name = spec.name if spec.preset is None else f"{spec.name}@{spec.preset}"
            if name in self.agents or f"{spec.name}@*" in self.agents:
                continue
            raise McpToolError(
                f"agent {name!r} is not allowed by this server; use one of: "
                + ", ".join(self.agents)
            )

    def permissions(self, asked: str | None) -> str:
        if asked is None:
            return self.max_permissions
        if PERMISSIONS.index(asked) > PERMISSIONS.index(self.max_permissions):
            raise McpToolError(
                f"permissions {asked!r} are above this server's cap "
                f"({self.max_permissions!r}); ask for {self.max_permissions!r} or less"
            )
        return asked

    def budget(self, asked: float | None, live_usd: float = 0.0) -> float | None:
        """The run's budget: what it asks for, within what the session has left (the
        running runs' `live_usd` taken off too)."""
        if self.budget_usd is None:
            return asked
        left = self.left(live_usd)
        if left <= 0:
            raise McpToolError(
                f"this session's budget of ${self.budget_usd:g} is spent; "
                "no more runs can start in it"
            )
        return left if asked is None else min(asked, left)

    def left(self, live_usd: float = 0.0) -> float:
        """What the session may still spend (the budget must be set)."""
        assert self.budget_usd is not None
        return round(self.budget_usd - self.spent_usd - live_usd, 6)

    def over(self, live_usd: float) -> bool:
        """Whether the ended runs and the running ones together reached the budget."""
        return self.budget_usd is not None and self.left(live_usd) <= 0

    def spend(self, cost_usd: float | None) -> None:
        if cost_usd:
            self.spent_usd += cost_usd

    def child_env(self) -> dict[str, str]:
        """What the agents this server starts get: one level deeper."""
        return {DEPTH_VAR: str(self.depth + 1)}
