"""What a run is asked to do, before anything is checked or started.

`RunRequest` is the whole of a request (from the CLI, a resumed run, or a library user);
`check_request` refuses what can be refused without reading any file; `Plan` is a request
the coordinator has checked and turned into tasks; `RunEvent` is what a run tells its
caller as it goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aiswitch.coordinator.executors import Backend
from aiswitch.coordinator.results import AgentResult, RunMode
from aiswitch.coordinator.specs import AgentSpec
from aiswitch.coordinator.tasks import DEFAULT_RETRIES, Task
from aiswitch.errors import UsageError

if TYPE_CHECKING:
    from aiswitch.coordinator.plan_check import PlanSource
    from aiswitch.coordinator.workspaces import WorkspacePlan

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
class TaskSpec:
    """One task as every kind of run describes it (a plan's task, a batch line, an agent
    of --parallel, a step of --sequential): `Coordinator.plan` builds tasks from these
    alone. `agent` or `capability` says where it runs; `prompt` None is a sequential
    step (the hand-off fills it in); `depends_on` names other specs' ids."""

    id: str | None
    prompt: str | None
    agent: AgentSpec | None = None
    capability: str | None = None
    priority: int = 0
    depends_on: tuple[str, ...] = ()
    timeout_s: float | None = None
    retries: int | None = None
    budget_usd: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    continue_on_failure: bool = False
    cwd: str | None = None
    # A plan task's own workspace mode (worktree, copy, shared); None: the run's.
    workspace: str | None = None
    fallback: tuple[AgentSpec, ...] = ()
    # A copy of a `for_each` task: the task's own id, and the value it was given.
    group: str | None = None
    item: str | None = None
    # The lane's id in results (`NAME#N`); None: one per distinct `agent`.
    agent_id: str | None = None

    def copy(self, **changes: Any) -> TaskSpec:
        return replace(self, **changes)


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
    # `--plan FILE`, read and checked (its tasks are the run's; `specs` are unused).
    plan: PlanSource | None = None
    # Where each task works (aiswitch.coordinator.workspaces): None is the default rule.
    workspace: str | None = None
    with_changes: bool = False
    check: str | None = None
    # The executor (`--backend`, `--address`); None: config/coordination.yaml's, else local.
    backend: str | None = None
    address: str | None = None
    # Who asked through `aiswitch mcp` (`name/version`): on the run and its ledger records.
    caller: str | None = None
    # `--best-of N`: the same task N times per agent, its results ranked.
    best_of: int | None = None


@dataclass(frozen=True)
class RunEvent:
    # `waiting`: a progress line of kind `waiting` (the agent needs the user).
    kind: Literal["status", "progress", "usage", "waiting"]
    result: AgentResult
    text: str | None = None


@dataclass
class Plan:
    """A request checked and turned into tasks, ready to run."""

    request: RunRequest
    tasks: list[Task]
    # A plan's lanes' ids (`NAME#N`) by lane key: a task moved to another lane takes its id.
    agent_ids: dict[str, str] = field(default_factory=dict)
    # Where each task works (aiswitch.coordinator.workspaces); None: all in `cwd`.
    workspace: WorkspacePlan | None = None
    # Which executor runs it (aiswitch.coordinator.executors).
    backend: Backend = field(default_factory=Backend)

    @property
    def results(self) -> list[AgentResult]:
        return [t.result for t in self.tasks]


def check_request(request: RunRequest) -> None:
    if request.plan is not None:
        _check_limits(request)
        return
    if request.batch is None and not request.prompt.strip():
        raise UsageError("the task is empty", hint="pass the task as an argument, or - for stdin")
    if request.batch is not None and not request.batch:
        raise UsageError("the tasks file has no tasks")
    if not request.specs:
        raise UsageError("no agents given", hint="use --agent, --parallel or --sequential")
    _check_limits(request)
    if request.session_id is not None and len(request.specs) != 1:
        raise UsageError("--resume continues one agent's session; use it with --agent")


def _check_limits(request: RunRequest) -> None:
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
    if request.check is not None and not request.check.strip():
        raise UsageError("--check is empty", hint="give the command to run, e.g. 'pytest -q'")
    if request.cwd is not None and not Path(request.cwd).is_dir():
        raise UsageError(f"--cwd {request.cwd!r} is not a directory")


def request_specs(request: RunRequest) -> list[TaskSpec]:
    """A request's tasks as specs: every run is a graph of tasks, of one shape per mode.

    --parallel / --agent: one task per agent; a batch: every task on every agent;
    --sequential: a chain (each step depends on the one before, `prompt` None: the
    hand-off fills it in when it is ready); a plan: its own tasks."""
    if request.plan is not None:
        return request.plan.tasks
    from aiswitch.coordinator.specs import agent_ids

    ids = agent_ids(request.specs)
    items = request.batch or [BatchItem(prompt=request.prompt)]
    sequential = request.mode == "sequential"
    specs: list[TaskSpec] = []
    for item in items:
        for spec, agent_id in zip(request.specs, ids, strict=True):
            specs.append(
                TaskSpec(
                    id=item.id,
                    prompt=None if sequential else item.prompt,
                    agent=spec,
                    agent_id=agent_id,
                    priority=item.priority,
                    # A step follows the one before, whatever became of it.
                    depends_on=(f"#{len(specs)}",) if sequential and specs else (),
                    continue_on_failure=sequential,
                    timeout_s=item.timeout_s or request.timeout_s,
                    options={**request.task_options, **item.options},
                )
            )
    return specs
