"""What a run is asked to do, before anything is checked or started.

`RunRequest` is the whole of a request (from the CLI, a resumed run, or a library user);
`check_request` refuses what can be refused without reading any file; `Plan` is a request
the coordinator has checked and turned into tasks; `RunEvent` is what a run tells its
caller as it goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiswitch.coordinator.results import AgentResult, RunMode
from aiswitch.coordinator.specs import AgentSpec
from aiswitch.coordinator.tasks import DEFAULT_RETRIES, Task
from aiswitch.errors import UsageError

DEFAULT_HANDOFF_TEMPLATE = (
    "{task}\n\n--- Output of the previous agent ({previous_agent}) ---\n{previous_output}\n"
)

Permissions = Literal["read-only", "edit", "full"]


@dataclass
class BatchItem:
    """One task of a batch file."""

    prompt: str
    id: str | None = None
    priority: int = 0
    timeout_s: float | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRequest:
    mode: RunMode
    specs: list[AgentSpec]
    prompt: str
    timeout_s: float | None = None
    cwd: str | None = None
    handoff_template: str = DEFAULT_HANDOFF_TEMPLATE
    task_options: dict[str, Any] = field(default_factory=dict)
    budget_usd: float | None = None
    budget_tokens: int | None = None
    permissions: Permissions | None = None
    session_id: str | None = None
    batch: list[BatchItem] | None = None
    concurrency: int | None = None
    retries: int = DEFAULT_RETRIES
    retry_failed: bool = False


@dataclass(frozen=True)
class RunEvent:
    kind: Literal["status", "progress", "usage"]
    result: AgentResult
    text: str | None = None


@dataclass
class Plan:
    """A request checked and turned into tasks, ready to run."""

    request: RunRequest
    tasks: list[Task]

    @property
    def results(self) -> list[AgentResult]:
        return [t.result for t in self.tasks]


def check_request(request: RunRequest) -> None:
    if request.batch is None and not request.prompt.strip():
        raise UsageError("the task is empty", hint="pass the task as an argument, or - for stdin")
    if request.batch is not None and not request.batch:
        raise UsageError("the tasks file has no tasks")
    if not request.specs:
        raise UsageError("no agents given", hint="use --agent, --parallel or --sequential")
    if request.timeout_s is not None and request.timeout_s <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    if request.budget_usd is not None and request.budget_usd <= 0:
        raise UsageError("--budget-usd must be a positive amount")
    if request.budget_tokens is not None and request.budget_tokens <= 0:
        raise UsageError("--budget-tokens must be a positive number")
    if request.concurrency is not None and request.concurrency <= 0:
        raise UsageError("--concurrency must be a positive number")
    if request.retries < 0:
        raise UsageError("--retries must be 0 or more")
    if request.session_id is not None and len(request.specs) != 1:
        raise UsageError("--resume continues one agent's session; use it with --agent")
    if request.cwd is not None and not Path(request.cwd).is_dir():
        raise UsageError(f"--cwd {request.cwd!r} is not a directory")
