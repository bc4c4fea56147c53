"""The aiswitch protocol: every method's params and result, and every notification.

`METHODS` and `NOTIFICATIONS` are the registry; docs/protocol.md is generated from them
(`python -m aiswitch.protocol.docgen`), and a test fails when the two drift apart.
Unknown fields are ignored on input so that newer peers can add fields; the protocol
version is checked at `agent.initialize`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt

from aiswitch.factories import new_dict, new_list
from aiswitch.protocol import names
from aiswitch.tokens.usage import Usage

PROTOCOL_VERSION = 1


class _Model(BaseModel):
    # Each model's validator is built on its first use: a run uses about half of them.
    model_config = ConfigDict(extra="ignore", defer_build=True)


# A cost is a finite amount of dollars, never negative: `1e309` reads as infinity, which a run
# file (JSON) cannot hold and no total survives; such a message is refused as invalid usage.
Cost = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Empty(_Model):
    """No fields."""


# -- agent.* ------------------------------------------------------------------------


class ClientInfo(_Model):
    name: str = "aiswitch"
    version: str = ""


class InitializeParams(_Model):
    """Sent once, first, by the parent."""

    protocol_version: int = PROTOCOL_VERSION
    agent_id: str = Field(description="Unique within the run, `NAME#N`.")
    parent_pid: int = Field(description="The adapter exits when this process is gone.")
    client: ClientInfo = ClientInfo()
    config: dict[str, Any] = Field(
        default_factory=new_dict,
        description="Agent options from agents.yaml (model, permissions…).",
    )


class AgentInfo(_Model):
    name: str
    version: str = ""


class Capabilities(_Model):
    max_concurrent_tasks: int = Field(1, ge=1, description="Tasks it runs at once.")
    env_switch: bool = Field(True, description="Supports env.switch/snapshot/rollback.")
    resume: bool = Field(False, description="Can continue an earlier session (`session_id`).")
    cli: str | None = Field(None, description="The underlying CLI and its version, if any.")
    provides: list[str] = Field(
        default_factory=new_list,
        description="Capabilities it offers for a plan's `capability:` routing (with those "
        "of config/agents.yaml).",
    )


class InitializeResult(_Model):
    protocol_version: int = PROTOCOL_VERSION
    agent: AgentInfo
    capabilities: Capabilities = Capabilities()
    pid: int


class StatusResult(_Model):
    state: Literal["ready", "busy", "stopping"]
    running_tasks: list[str] = []
    completed_tasks: NonNegativeInt = 0
    uptime_s: NonNegativeFloat = 0.0
    preset: str | None = None


class ShutdownParams(_Model):
    reason: str = ""


class ShutdownResult(_Model):
    ok: bool = True


# -- task.* -------------------------------------------------------------------------


class TaskState(StrEnum):
    """How a task ended, as the agent reports it."""

    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The task ran past its `timeout_s` (the adapter's own deadline).
    TIMEOUT = "timeout"


class AssignParams(_Model):
    """A task; the reply is its `TaskResult`, sent when the task ends."""

    task_id: str
    prompt: str = Field(min_length=1)
    cwd: str | None = Field(None, description="Working directory for the task.")
    timeout_s: float | None = Field(None, gt=0, description="The adapter's own deadline.")
    session_id: str | None = Field(None, description="Continue this earlier session.")
    permissions: Literal["read-only", "edit", "full"] | None = None
    options: dict[str, Any] = Field(default_factory=new_dict, description="Adapter-specific.")


class TaskResult(_Model):
    task_id: str
    status: TaskState
    output: str = ""
    error: str | None = None
    usage: Usage = Usage()
    cost_usd: Cost | None = Field(None, description="The CLI's own figure, if it reports one.")
    model: str | None = None
    session_id: str | None = None
    duration_s: NonNegativeFloat = 0.0
    provider_status: int | None = Field(
        None,
        description="A failed task: the HTTP status its provider refused it with (429, "
        "5xx, 402 over quota); the parent may move the task to another agent.",
    )


class TaskRef(_Model):
    task_id: str


class CancelParams(_Model):
    task_id: str
    reason: str = ""


class CancelResult(_Model):
    task_id: str
    cancelled: bool = Field(description="False when the task had already ended.")


class TaskStatusResult(_Model):
    task_id: str
    state: Literal["running", "ok", "failed", "cancelled", "timeout"]
    elapsed_s: NonNegativeFloat = 0.0
    last_progress: str | None = None


# -- env.* --------------------------------------------------------------------------


class EnvSwitchParams(_Model):
    """Applies from the next task on; validated whole first, refused (-32005) with nothing
    changed when invalid. Order: `replace`, then `unset`, then `set`."""

    preset: str | None = Field(None, description="Becomes `AISWITCH_PRESET` (null removes it).")
    set: dict[str, str] = Field(default_factory=new_dict, description="Variables to set.")
    unset: list[str] = Field(default_factory=new_list, description="Variables to remove.")
    replace: bool = Field(
        False,
        description="First remove the variables named in `AISWITCH_PRESET_VARS` (the "
        "previous preset's), and afterwards record `set`'s names there.",
    )


class EnvState(_Model):
    preset: str | None = None
    names: list[str] = Field(default_factory=new_list, description="Variable names set; no values.")


class SnapshotResult(_Model):
    snapshot_id: str
    state: EnvState


class RollbackParams(_Model):
    snapshot_id: str


# -- metrics ------------------------------------------------------------------------


class Metrics(_Model):
    tasks_started: NonNegativeInt = 0
    tasks_ok: NonNegativeInt = 0
    tasks_failed: NonNegativeInt = 0
    tasks_cancelled: NonNegativeInt = 0
    running: NonNegativeInt = 0
    usage: Usage = Usage()
    uptime_s: NonNegativeFloat = 0.0


# -- notifications (child → parent) -------------------------------------------------


class ProgressParams(_Model):
    task_id: str
    # `waiting`: the agent needs the user (a permission its headless CLI could not ask).
    kind: Literal["text", "tool", "status", "thinking", "waiting"] = "text"
    text: str = Field(description="A line of progress; empty when only `usage` is new.")
    usage: Usage | None = Field(
        None,
        description="Provisional: the task's usage so far, as its CLI shows it while it runs "
        "(running totals, each replacing the last), for live views only. Never recorded: "
        "`tokens.usage` alone reaches the ledger, and once the task has ended, or its "
        "`tokens.usage` add up to more, these figures are no longer shown.",
    )


class UsageParams(_Model):
    """One usage event; every one is appended to the ledger."""

    task_id: str
    usage: Usage
    model: str | None = None
    provider: str | None = None
    cost_usd: Cost | None = Field(None, description="The CLI's own figure, if reported.")
    session_id: str | None = None
    message_id: str | None = None
    request_id: str | None = None
    requests: int = Field(
        1,
        ge=1,
        description="How many API requests this usage covers: 1 for one request (with its "
        "ids); more when a CLI's usage for several requests is reported as one sum.",
    )


class LogParams(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    message: str


P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class MethodSpec(Generic[P, R]):
    """One request method: its name, params model and result model."""

    name: str
    params: type[P]
    result: type[R]
    summary: str


@dataclass(frozen=True)
class NotificationSpec(Generic[P]):
    name: str
    params: type[P]
    summary: str


INITIALIZE = MethodSpec(
    names.INITIALIZE,
    InitializeParams,
    InitializeResult,
    "Handshake; the first message. The reply says what the agent can do.",
)
STATUS = MethodSpec(names.STATUS, Empty, StatusResult, "Current state and running tasks.")
SHUTDOWN = MethodSpec(
    names.SHUTDOWN,
    ShutdownParams,
    ShutdownResult,
    "Cancel running tasks, reply, then exit. Closing stdin has the same effect.",
)
ASSIGN = MethodSpec(
    names.ASSIGN,
    AssignParams,
    TaskResult,
    "Run a task. The reply comes when the task ends; a failed task is a result with "
    "`status: failed`, not an error.",
)
CANCEL = MethodSpec(
    names.CANCEL,
    CancelParams,
    CancelResult,
    "Cancel a running task; its `task.assign` then replies with `status: cancelled`.",
)
TASK_STATUS = MethodSpec(names.TASK_STATUS, TaskRef, TaskStatusResult, "The state of one task.")
TASK_RESULT = MethodSpec(
    names.TASK_RESULT, TaskRef, TaskResult, "The result of a finished task (kept in memory)."
)
ENV_SWITCH = MethodSpec(
    names.ENV_SWITCH,
    EnvSwitchParams,
    EnvState,
    "Change the environment given to the CLI from the next task on.",
)
ENV_SNAPSHOT = MethodSpec(
    names.ENV_SNAPSHOT, Empty, SnapshotResult, "Remember the current environment."
)
ENV_ROLLBACK = MethodSpec(
    names.ENV_ROLLBACK, RollbackParams, EnvState, "Restore a snapshot exactly (-32006 if unknown)."
)
METRICS_QUERY = MethodSpec(names.METRICS_QUERY, Empty, Metrics, "Counters since the agent started.")

PROGRESS = NotificationSpec(
    names.PROGRESS,
    ProgressParams,
    "A line of progress from a running task, and (optionally) its provisional usage so far: "
    "running totals a live view shows until the task's `tokens.usage` are in the ledger.",
)
USAGE = NotificationSpec(names.USAGE, UsageParams, "Tokens spent; sent as soon as known.")
METRICS_REPORT = NotificationSpec(
    names.METRICS_REPORT,
    Metrics,
    "The `metrics.query` figures, unasked (optional; the SDK sends it as each task ends when "
    "`Adapter.report_metrics` is set). The parent merges each process's latest into "
    "`state/metrics.json` (`reported`).",
)
LOG = NotificationSpec(names.LOG, LogParams, "A log line for the parent's log of this agent.")

METHODS: tuple[MethodSpec[Any, Any], ...] = (
    INITIALIZE,
    STATUS,
    SHUTDOWN,
    ASSIGN,
    CANCEL,
    TASK_STATUS,
    TASK_RESULT,
    ENV_SWITCH,
    ENV_SNAPSHOT,
    ENV_ROLLBACK,
    METRICS_QUERY,
)
NOTIFICATIONS: tuple[NotificationSpec[Any], ...] = (PROGRESS, USAGE, METRICS_REPORT, LOG)
