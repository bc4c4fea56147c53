"""Tasks and attempts: what the scheduler runs, and the pure rules it runs them by.

A task is one prompt for one agent lane (`NAME[@PRESET]`). It has attempts; an attempt
runs on one process of the lane's pool, and the usage it spends is its own. How an
attempt ended is typed (`End`), never read from error text, and `retry_after` decides
from that type alone whether the task gets another attempt:

- the child died, hung (missed heartbeats) or failed to start: retried on a fresh process
  while attempts remain (`retries`), after a capped backoff;
- the agent itself reported the task failed: retried only with `retry_failed`;
- the provider refused it (`PROVIDER`: 429, 5xx, over quota): final, unless the task has
  somewhere else to go (the run moves it: a failover);
- ok, timeout, cancelled, an invalid reply: final.

`pick_lane` is the ready queue's ordering: the best head task across lanes that are not
held back by a limit, by priority (higher first) then submission order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from aiswitch.tokens.usage import Usage

if TYPE_CHECKING:
    from aiswitch.agents import AgentDef
    from aiswitch.coordinator.results import AgentResult
    from aiswitch.presets.resolve import ResolvedPreset
    from aiswitch.protocol.models import TaskResult

# A retried task waits a little first (a crash is often a passing condition), doubling
# per attempt, never long.
RETRY_BACKOFF_BASE_S: Final = 0.1
RETRY_BACKOFF_CAP_S: Final = 5.0
# Without --retries: a task survives two crashes of its process.
DEFAULT_RETRIES: Final = 2


# No tokens: the one instance every attempt and task starts with (`Usage` is frozen, so
# it is shared: no model built per attempt).
NO_USAGE: Final = Usage()


class End(StrEnum):
    """How one attempt ended."""

    OK = "ok"
    FAILED = "failed"  # the agent reported failure
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    CRASHED = "crashed"  # the child died during the attempt
    HUNG = "hung"  # the child stopped answering and was killed
    START_FAILED = "start_failed"  # no process could be started for it
    INVALID = "invalid"  # the agent's reply broke the protocol
    # The agent's provider refused it (429, 5xx, over quota): another may not.
    PROVIDER = "provider"


# Ends of the process, not of the task: another process may well succeed.
PROCESS_ENDS: Final = frozenset({End.CRASHED, End.HUNG, End.START_FAILED})
# Ends after which a task with somewhere else to go (a capability's other agents, a
# fallback) moves there for its next attempt.
FAILOVER_ENDS: Final = PROCESS_ENDS | {End.PROVIDER}


class StopSignal(asyncio.Event):
    """Set when a run starts nothing more; `reason` says why (for the tasks it stops)."""

    reason: str = ""


def retry_after(end: End, attempts: int, retries: int, retry_failed: bool) -> float | None:
    """Seconds to wait before the next attempt, or None when `end` is final."""
    if attempts > retries:
        return None
    if end in PROCESS_ENDS or (end is End.FAILED and retry_failed):
        return float(min(RETRY_BACKOFF_CAP_S, RETRY_BACKOFF_BASE_S * 2 ** (attempts - 1)))
    return None


# The provider statuses that say "not now, not here": rate limited (429), over quota or
# unpaid (402), the provider's own failure (5xx; Anthropic's 529 overloaded among them).
RATE_LIMITED: Final = 429
OVER_QUOTA: Final = 402


def provider_refused(status: int | None) -> bool:
    return status is not None and (status in (RATE_LIMITED, OVER_QUOTA) or 500 <= status <= 599)


@dataclass(frozen=True)
class Lane:
    """One agent with one preset, as a run names it; a pool serves each lane's key."""

    agent: AgentDef
    preset: ResolvedPreset

    @property
    def key(self) -> str:
        return f"{self.agent.name}@{self.preset.name}" if self.preset.name else self.agent.name


@dataclass
class Attempt:
    number: int
    id: str
    end: End | None = None
    error: str | None = None
    process: str | None = None
    # Its workspace's directory, when the run gives each task one (else the run's cwd).
    cwd: str | None = None
    usage: Usage = NO_USAGE
    cost_usd: float | None = None
    started: float = 0.0
    ended: float = 0.0
    # The lane (`Lane.key`) it ran on.
    lane: str = ""
    # The agent's own result, when it sent one.
    reply: TaskResult | None = None
    # The running totals its agent last reported while it ran (`task.progress` usage):
    # provisional, shown live, never recorded.
    provisional: Usage | None = None

    def add_usage(self, usage: Usage, cost: float | None) -> None:
        self.usage = self.usage + usage
        if cost is not None:
            self.cost_usd = round((self.cost_usd or 0.0) + cost, 8)


@dataclass
class Task:
    """One task of a run; `result` is what the user sees of it."""

    index: int
    lane: Lane
    result: AgentResult
    prompt: str | None
    priority: int = 0
    timeout_s: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    depends_on: tuple[int, ...] = ()
    # None: the run's `retries`.
    retries: int | None = None
    # Runs even when a task it depends on did not end ok (a sequential step does).
    continue_on_failure: bool = False
    cwd: str | None = None
    # A plan task's own workspace mode; None: the run's (aiswitch.coordinator.workspaces).
    workspace: str | None = None
    budget_usd: float | None = None
    # Where else it may run: a capability's agents (the least loaded is chosen when it
    # is ready) and, after them, the fallback lanes in order (on a process death or a
    # provider's refusal, the next untried one gets the next attempt).
    capability: str | None = None
    candidates: tuple[Lane, ...] = ()
    fallback: tuple[Lane, ...] = ()
    # Its prompt names dependencies' outputs (`{ID.output}`): filled in when ready.
    template: bool = False
    # Why no further attempt may start (its own budget reached), if so.
    halted: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    final: bool = False
    # A resumed task: attempts made, and usage spent, before its run was interrupted.
    attempt_base: int = 0
    prior_usage: Usage = NO_USAGE
    prior_cost: float | None = None

    @property
    def id(self) -> str:
        return self.result.task_id

    def new_attempt(self) -> Attempt:
        number = self.attempt_base + len(self.attempts) + 1
        attempt = Attempt(number=number, id=f"{self.id}.{number}", lane=self.lane.key)
        self.attempts.append(attempt)
        return attempt


def pick_lane(heads: Iterable[tuple[str, int, int]], blocked: AbstractSet[str]) -> str | None:
    """The lane whose head task goes next: `heads` are (lane, priority, submission
    number) of each lane's best ready task; lanes in `blocked` are held by a limit."""
    best: tuple[int, int] | None = None
    chosen: str | None = None
    for lane, priority, serial in heads:
        if lane in blocked:
            continue
        rank = (-priority, serial)
        if best is None or rank < best:
            best, chosen = rank, lane
    return chosen
