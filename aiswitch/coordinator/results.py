"""What a run produces: per-task results and the run as a whole.

These models are the `aiswitch run --json` document (docs/run-json.md) and the content
of `state/runs/<run_id>.json`: one shape for both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from aiswitch.factories import new_dict, new_list
from aiswitch.tokens.usage import Usage
from aiswitch.workspace.model import Workspace

RunMode = Literal["single", "parallel", "sequential", "batch", "plan"]


class RunStatus(StrEnum):
    RUNNING = "running"
    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BUDGET_EXCEEDED = "budget_exceeded"
    # Its coordinator died (kill -9, power loss); `aiswitch runs resume` finishes it.
    INTERRUPTED = "interrupted"


class TaskStatus(StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    RETRYING = "retrying"
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    # Never started: a task it depends on did not end ok (`error` says which).
    SKIPPED = "skipped"


FINAL_TASK_STATUSES = frozenset(
    {
        TaskStatus.OK,
        TaskStatus.FAILED,
        TaskStatus.TIMEOUT,
        TaskStatus.CANCELLED,
        TaskStatus.SKIPPED,
    }
)
# The index shows the start of a run's prompt, not all of it.
PROMPT_PREVIEW_CHARS = 120


def utc_now() -> datetime:
    return datetime.now(UTC)


class AgentResult(BaseModel):
    """One task of a run: an agent lane given one prompt."""

    model_config = ConfigDict(extra="ignore", use_enum_values=True)

    agent: str = Field(description="The bare agent name, e.g. `claude`.")
    agent_id: str = Field(description="`NAME#N`, unique within the run: the agent lane.")
    preset: str | None = None
    task_id: str = Field(description="`RUN_ID/N`, unique: the task.")
    id: str | None = Field(None, description="The task's own id in a batch or a plan.")
    prompt: str | None = Field(None, description="The task's prompt, when not the run's.")
    status: TaskStatus = TaskStatus.PENDING
    output: str = ""
    error: str | None = None
    usage: Usage = Usage()
    cost_usd: float | None = None
    model: str | None = None
    duration_s: float = 0.0
    session_id: str | None = None
    attempts: int = Field(0, description="Attempts made (retries after crashes add to it).")
    priority: int = 0
    options: dict[str, Any] = Field(default_factory=new_dict, description="Task options sent.")
    depends_on: list[str] = Field(
        default_factory=new_list, description="A plan task's dependencies (their ids)."
    )
    workspace: Workspace | None = Field(
        None, description="Where it worked and what it changed (docs/workspaces.md)."
    )
    # While an attempt runs and its agent's running totals (`task.progress` usage) are
    # ahead of what the ledger holds for it: the usage to show, provisional. Never written
    # (a private attribute): `usage` is the ledger's figure, in every file and document.
    _provisional: Usage | None = PrivateAttr(None)

    @property
    def final(self) -> bool:
        return self.status in FINAL_TASK_STATUSES

    @property
    def shown_usage(self) -> Usage:
        """What live views show: the provisional usage while there is one, else `usage`."""
        return self._provisional if self._provisional is not None else self.usage

    @property
    def provisional(self) -> bool:
        return self._provisional is not None

    def take_ids(self, model: str | None, session_id: str | None) -> None:
        """The model and session the agent named, if it named them (each a model field
        assignment only when it changes something)."""
        if model and model != self.model:
            self.model = model
        if session_id and session_id != self.session_id:
            self.session_id = session_id

    def show_provisional(self, usage: Usage | None) -> None:
        self._provisional = usage


class RunFigures(BaseModel):
    """How the run went, as numbers (the seeds' figures)."""

    operations: int = 0
    succeeded: int = 0
    success_rate: float = 0.0
    retried: int = 0
    avg_response_s: float | None = None
    p95_response_s: float | None = None
    peak_concurrency: int = 0
    operations_per_s: float | None = None
    peak_processes: int = 0


class RunSettings(BaseModel):
    """What the run was asked for beyond its tasks (kept so that it can be resumed)."""

    model_config = ConfigDict(extra="ignore")

    timeout_s: float | None = None
    permissions: Literal["read-only", "edit", "full"] | None = None
    session_id: str | None = None
    handoff_template: str | None = None
    concurrency: int | None = None
    retries: int = 0
    retry_failed: bool = False
    budget_usd: float | None = None
    budget_tokens: int | None = None
    workspace: str | None = None
    with_changes: bool = False
    check: str | None = None
    # Which executor ran it (docs/ray.md): None is local.
    backend: Literal["local", "ray"] | None = None
    address: str | None = None
    best_of: int | None = Field(None, description="`--best-of N`: its results are ranked.")


class PlanRecord(BaseModel):
    """The plan file a run was made from: a resume reads it again, unchanged."""

    path: str
    sha256: str = Field(description="Of the file's bytes (and its prompt files').")
    name: str


class RunResult(BaseModel):
    model_config = ConfigDict(extra="ignore", use_enum_values=True)

    run_id: str
    mode: RunMode
    status: RunStatus = RunStatus.RUNNING
    prompt: str
    cwd: str | None = None
    started_at: datetime = Field(default_factory=utc_now)
    ended_at: datetime | None = None
    results: list[AgentResult] = []
    usage: Usage = Usage()
    cost_usd: float | None = None
    figures: RunFigures = RunFigures()
    settings: RunSettings = RunSettings()
    pid: int | None = Field(None, description="The coordinator's process while it runs.")
    pid_create_time: float | None = None
    resumed_from: str | None = None
    plan: PlanRecord | None = Field(None, description="`--plan`: the plan file.")
    caller: str | None = Field(
        None,
        description="The MCP client that started the run through `aiswitch mcp` "
        "(its clientInfo, `name/version`); null from the CLI.",
    )

    def totals(self, extra: Usage | None = None, extra_cost: float | None = None) -> None:
        """Recompute the run's usage and cost from its results (plus usage no task owns)."""
        usages = [result.usage for result in self.results]
        if extra is not None:
            usages.append(extra)
        self.usage = Usage.total(usages)
        costs = [r.cost_usd for r in self.results if r.cost_usd is not None]
        if extra_cost is not None:
            costs.append(extra_cost)
        self.cost_usd = round(sum(costs), 6) if costs else None

    def settle(self) -> None:
        """Set the run's status from its results (unless cancelled or over budget)."""
        self.ended_at = utc_now()
        if self.status in (RunStatus.CANCELLED, RunStatus.BUDGET_EXCEEDED):
            return
        ok = sum(1 for r in self.results if r.status == TaskStatus.OK)
        if ok == len(self.results) and ok:
            self.status = RunStatus.OK
        elif ok:
            self.status = RunStatus.PARTIAL
        else:
            self.status = RunStatus.FAILED

    def json_document(self) -> dict[str, object]:
        return self.model_dump(mode="json")

    def index_entry(self) -> dict[str, object]:
        """The run's short entry in `state/tasks.json`."""
        agents = list(dict.fromkeys(r.agent_id for r in self.results))
        return {
            "mode": self.mode,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "agents": agents,
            "tasks": len(self.results),
            "prompt": self.prompt[:PROMPT_PREVIEW_CHARS],
            "total_tokens": self.usage.total_tokens,
            "cost_usd": self.cost_usd,
            "pid": self.pid,
            "pid_create_time": self.pid_create_time,
        }
