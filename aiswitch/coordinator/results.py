"""What a run produces: per-agent results and the run as a whole.

These models are the `aiswitch run --json` document (docs/run-json.md) and the content
of `state/runs/<run_id>.json`: one shape for both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aiswitch.tokens.usage import Usage

RunMode = Literal["parallel", "sequential"]
RunStatus = Literal["running", "ok", "partial", "failed", "cancelled", "budget_exceeded"]
AgentStatus = Literal["pending", "starting", "running", "ok", "failed", "timeout", "cancelled"]
FINAL_AGENT_STATUSES = ("ok", "failed", "timeout", "cancelled")
# The index shows the start of a run's prompt, not all of it.
PROMPT_PREVIEW_CHARS = 120


def utc_now() -> datetime:
    return datetime.now(UTC)


class AgentResult(BaseModel):
    model_config = ConfigDict(extra="ignore")

    agent: str = Field(description="The bare agent name, e.g. `claude`.")
    agent_id: str = Field(description="`NAME#N`, unique within the run.")
    preset: str | None = None
    task_id: str
    status: AgentStatus = "pending"
    output: str = ""
    error: str | None = None
    usage: Usage = Usage()
    cost_usd: float | None = None
    model: str | None = None
    duration_s: float = 0.0
    session_id: str | None = None


class RunResult(BaseModel):
    model_config = ConfigDict(extra="ignore")

    run_id: str
    mode: RunMode
    status: RunStatus = "running"
    prompt: str
    cwd: str | None = None
    started_at: datetime = Field(default_factory=utc_now)
    ended_at: datetime | None = None
    results: list[AgentResult] = []
    usage: Usage = Usage()
    cost_usd: float | None = None

    def totals(self) -> None:
        """Recompute the run's usage and cost from its results."""
        usage = Usage()
        for result in self.results:
            usage = usage + result.usage
        self.usage = usage
        costs = [r.cost_usd for r in self.results if r.cost_usd is not None]
        self.cost_usd = round(sum(costs), 6) if costs else None

    def settle(self) -> None:
        """Set the run's status from its results (unless cancelled or over budget)."""
        self.totals()
        self.ended_at = utc_now()
        if self.status in ("cancelled", "budget_exceeded"):
            return
        ok = sum(1 for r in self.results if r.status == "ok")
        if ok == len(self.results) and ok:
            self.status = "ok"
        elif ok:
            self.status = "partial"
        else:
            self.status = "failed"

    def json_document(self) -> dict[str, object]:
        return self.model_dump(mode="json")

    def index_entry(self) -> dict[str, object]:
        """The run's short entry in `state/tasks.json`."""
        return {
            "mode": self.mode,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "agents": [r.agent_id for r in self.results],
            "prompt": self.prompt[:PROMPT_PREVIEW_CHARS],
            "total_tokens": self.usage.total_tokens,
        }
