"""The executor seam: how a run's attempts reach agent processes, and which backend does it.

Contract:
- `Executor` is all the run (and its live views) know of an executor: `start` reaches
  its backend (an `ExecutorError` when it cannot, before any task starts), `execute` runs one
  attempt and sets its end (as `LocalExecutor.execute` documents), `cancel_attempt` asks
  the process running an attempt to cancel it, `handles` are the processes on this
  machine that `agents stop|restart|switch` may control (none for a remote backend),
  `process_count`/`peak_processes` are the figures of the status line and the run's
  figures, `close` stops everything the executor started.
- `ExecutorHooks` is what an executor tells the run: progress and usage of an attempt
  (the run alone writes the ledger and the state files, whatever runs the attempt), usage
  no attempt owns, the moment an attempt is assigned, capabilities an adapter advertised.
- `Backend` is which executor runs a run: `local` (pools of child processes on this
  machine, the default) or `ray` (actors on a Ray cluster, docs/ray.md), from
  `--backend`/`--address` over `executor:` in config/coordination.yaml. `new_executor`
  makes it; the Ray one is imported only when chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from aiswitch.errors import UsageError

if TYPE_CHECKING:
    from aiswitch.agents import AgentDef
    from aiswitch.coordinator.executor import TaskSettings
    from aiswitch.coordinator.tasks import Attempt, StopSignal, Task
    from aiswitch.home import Home
    from aiswitch.protocol.models import ProgressParams, UsageParams
    from aiswitch.state.processes import ProcessTable
    from aiswitch.supervisor.handle import AgentHandle

BackendName = Literal["local", "ray"]
BACKENDS: tuple[BackendName, ...] = ("local", "ray")


class ProcessRef(Protocol):
    """The process a notification came from, as the ledger names it."""

    @property
    def agent(self) -> AgentDef: ...
    @property
    def agent_id(self) -> str: ...
    @property
    def preset(self) -> str | None: ...
    @property
    def env(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class ExecutorHooks:
    on_progress: Callable[[Task, Attempt, ProgressParams], None] | None = None
    on_usage: Callable[[Task, Attempt, UsageParams], None] | None = None
    on_stray_usage: Callable[[ProcessRef, UsageParams], None] | None = None
    on_assigned: Callable[[Task, Attempt], None] | None = None
    on_provides: Callable[[str, tuple[str, ...]], None] | None = None


class Executor(Protocol):
    async def start(self) -> None: ...
    async def execute(self, task: Task, attempt: Attempt, stop: StopSignal) -> None: ...
    def cancel_attempt(self, attempt: Attempt, why: str) -> None: ...
    def handles(self) -> list[AgentHandle]: ...
    def process_count(self) -> int: ...
    def peak_processes(self) -> int: ...
    async def close(self, reason: str = "run finished") -> None: ...


class Backend(BaseModel):
    """`executor:` in config/coordination.yaml, and `--backend`/`--address` over it."""

    model_config = ConfigDict(extra="forbid")

    backend: BackendName = "local"
    # Ray's own forms: `auto`, `ray://host:port`, `host:port`; None: a local Ray instance.
    address: str | None = None


def load_backend(config_dir: Path) -> Backend:
    """The `executor:` section of `config_dir/coordination.yaml` (local when absent)."""
    from aiswitch.agents import coordination_section

    return coordination_section(config_dir, "executor", Backend)


def choose_backend(config_dir: Path, backend: str | None, address: str | None) -> Backend:
    """The command line's choice over the config's."""
    if backend is not None and backend not in BACKENDS:
        raise UsageError(f"unknown --backend {backend!r}", hint="use local or ray")
    chosen = load_backend(config_dir)
    if backend is not None:
        chosen = Backend(backend=backend, address=chosen.address if backend == "ray" else None)
    if address is not None:
        if chosen.backend != "ray":
            raise UsageError("--address names a Ray cluster", hint="use it with --backend ray")
        chosen = Backend(backend="ray", address=address)
    return chosen


def check_available(backend: Backend) -> None:
    """Refuse, before anything starts, a backend whose package is not installed."""
    if backend.backend == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UsageError(
                "--backend ray needs Ray, which is not installed",
                hint="pip install 'aiswitch[ray]'",
            )


def new_executor(
    backend: Backend,
    *,
    home: Home,
    run_id: str,
    parent_env: Mapping[str, str],
    settings: TaskSettings,
    table: ProcessTable | None,
    hooks: ExecutorHooks,
) -> Executor:
    if backend.backend == "ray":
        from aiswitch.coordinator.ray_executor import RayExecutor

        return RayExecutor(
            address=backend.address,
            home=home,
            run_id=run_id,
            parent_env=parent_env,
            settings=settings,
            hooks=hooks,
        )
    from aiswitch.coordinator.executor import LocalExecutor

    return LocalExecutor(
        home=home,
        run_id=run_id,
        parent_env=parent_env,
        settings=settings,
        table=table,
        on_progress=hooks.on_progress,
        on_usage=hooks.on_usage,
        on_stray_usage=hooks.on_stray_usage,
        on_assigned=hooks.on_assigned,
        on_provides=hooks.on_provides,
    )
