"""Which workspace each task of a run works in (the run's hook into aiswitch.workspace).

Contract:
- `choose_mode(request, tasks)`: with `workspace="auto"` (what `aiswitch run` asks for
  unless told) the default rule: `worktree` when more than one agent may write at once in
  a git repository (a parallel run, a batch of more than one task, a plan with branches,
  whose agents may edit), `shared` otherwise (one agent; sequential steps, each seeing the
  previous step's changes). An explicit mode wins; None (a library caller that asked for
  nothing) is `shared`.
- A run that is `shared` only because nothing asked otherwise makes no records (its
  snapshots would cost a `git add` of the whole tree per task): `--workspace shared`,
  `--check` or a plan task's own `workspace:` make them.
- `plan_source(request, tasks)` checks the mode's source before anything starts (see
  `aiswitch.workspace.make.check_source`); None means every task runs in `cwd` as before.
- `RunWorkspaces.prepare(task)` is the directory the task's attempts run in: made on its
  first attempt (with setup, include, symlink), reused by its retries and by the tasks
  that depend on it (a chain shares one workspace); a resumed run finds the workspaces it
  made before. A setup failure raises `WorkspaceError` with the command's output: it
  fails that task only.
- `RunWorkspaces.finish(task, ok)` runs the `--check` command (when the attempt ended
  ok) and records the task's changes in its result.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiswitch.coordinator.tasks import End
from aiswitch.errors import UsageError, WorkspaceError
from aiswitch.workspace import changes as ws_changes
from aiswitch.workspace import make as ws_make
from aiswitch.workspace import records
from aiswitch.workspace.model import MODES, Mode, Workspace, WorkspaceSettings

if TYPE_CHECKING:
    from aiswitch.coordinator.request import RunRequest
    from aiswitch.coordinator.tasks import Attempt, Task
    from aiswitch.home import Home
    from aiswitch.state.store import StateStore

log = logging.getLogger("aiswitch.coordinator")
# `RunRequest.workspace` for the default rule (what `aiswitch run` asks for unless told).
AUTO = "auto"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def choose_mode(request: RunRequest, tasks: list[Task]) -> Mode:
    if request.workspace is None:
        return "shared"  # a library caller that asked for nothing: the run's cwd, as ever
    if request.workspace != AUTO:
        if request.workspace not in MODES:
            raise UsageError(
                f"unknown --workspace {request.workspace!r}", hint="use worktree, copy or shared"
            )
        return request.workspace
    many_writers = (
        (request.mode in ("parallel", "batch") or (request.mode == "plan" and _branches(tasks)))
        and len(tasks) > 1
        and request.concurrency != 1
        and request.permissions != "read-only"
    )
    if many_writers:
        from aiswitch.workspace.git import inspect

        repo = inspect(Path(request.cwd or ".").resolve())
        if repo is not None:
            return "worktree"
    return "shared"


def _branches(tasks: list[Task]) -> bool:
    """Whether two tasks of a plan may run at once (neither waits for the other): some
    depth of its graph holds more than one task."""
    depth: dict[int, int] = {}

    def of(task: Task) -> int:
        known = depth.get(task.index)
        if known is None:
            depth[task.index] = 0  # a cycle is the plan check's to refuse
            known = 1 + max((of(tasks[i - 1]) for i in task.depends_on), default=0)
            depth[task.index] = known
        return known

    levels = [of(task) for task in tasks]
    return len(set(levels)) < len(levels)


@dataclass(frozen=True)
class WorkspacePlan:
    """Where each task of a run works: its mode, the source checked for each mode used,
    and what each new workspace gets."""

    modes: dict[int, Mode]  # task index -> mode
    sources: dict[Mode, ws_make.Source]
    settings: WorkspaceSettings

    def source(self, task: Task) -> ws_make.Source:
        return self.sources[self.modes[task.index]]


def plan_source(request: RunRequest, tasks: list[Task], config: Path) -> WorkspacePlan | None:
    """Check what each task's mode needs, before anything starts; None: all in `cwd`."""
    run_mode = choose_mode(request, tasks)
    modes: dict[int, Mode] = {}
    for task in tasks:
        mode = task.workspace or run_mode
        if mode not in MODES:
            raise UsageError(
                f"unknown workspace mode {mode!r}", hint="use worktree, copy or shared"
            )
        modes[task.index] = mode
    used = set(modes.values())
    if request.with_changes and "worktree" not in used:
        raise UsageError("--with-changes carries uncommitted changes into worktrees only")
    asked = request.workspace not in (None, AUTO) or any(t.workspace for t in tasks)
    if used == {"shared"} and not asked and request.check is None:
        # In the user's tree by default: nothing to make, and no snapshots taken (they
        # cost a `git add` of the whole tree per task); `--workspace shared` records them.
        return None
    from aiswitch.workspace.model import load_settings

    sources = {
        mode: ws_make.check_source(mode, request.cwd, request.with_changes and mode == "worktree")
        for mode in sorted(used)
    }
    settings = load_settings(config)
    own = request.plan.plan.workspace if request.plan is not None else None
    if own is not None:
        # The plan's own setup, include and symlink replace the config's, key by key.
        settings = settings.model_copy(update=own.model_dump(exclude_unset=True))
    return WorkspacePlan(modes, sources, settings)


def task_names(tasks: list[Task]) -> dict[int, str]:
    """A path segment per task: its agent id (`claude#1` -> `claude-1`), numbered when a
    lane has several tasks (a batch)."""
    per_lane: dict[str, int] = {}
    for task in tasks:
        per_lane[task.result.agent_id] = per_lane.get(task.result.agent_id, 0) + 1
    names = {}
    for task in tasks:
        slug = _UNSAFE.sub("-", task.result.agent_id).strip("-.") or "agent"
        names[task.index] = slug if per_lane[task.result.agent_id] == 1 else f"{slug}-{task.index}"
    return names


@dataclass
class RunWorkspaces:
    home: Home
    store: StateStore
    run_id: str
    plan: WorkspacePlan
    check_command: str | None
    names: dict[int, str]
    dependents: dict[int, int] | None = None

    def check_names(self, tasks: list[Task]) -> None:
        """Refuse a name clash before the run starts (a resumed run's own are reused)."""
        for mode, source in self.plan.sources.items():
            fresh = [
                self.names[t.index]
                for t in tasks
                if self.plan.modes[t.index] == mode
                and not t.final
                and not self._record(self.names[t.index]).exists()
            ]
            ws_make.check_names(source, self.home, self.run_id, fresh)

    def _record(self, name: str) -> Path:
        return records.record_path(self.home, self.run_id, name)

    async def enter(self, task: Task, attempt: Attempt, tasks: list[Task]) -> bool:
        """Give `attempt` its workspace's directory; False when it could not be made (the
        attempt then ended failed, with why)."""
        try:
            attempt.cwd = await self.prepare(task, tasks)
        except WorkspaceError as exc:
            attempt.end, attempt.error = End.FAILED, exc.message
            return False
        return True

    async def leave(self, task: Task, attempt: Attempt) -> None:
        """Record what the attempt changed (and check it, when it ended ok)."""
        try:
            await self.finish(task, attempt.end is End.OK)
        except WorkspaceError as exc:
            log.warning("%s: its changes could not be recorded: %s", task.id, exc.message)

    async def prepare(self, task: Task, tasks: list[Task]) -> str:
        if task.result.workspace is not None:
            return self._cwd(task, task.result.workspace)
        start = None
        for index in task.depends_on:
            previous = tasks[index - 1].result.workspace
            if previous is None:
                continue
            if self._dependents(tasks).get(index, 0) == 1 or previous.mode == "shared":
                # A chain: the next step works on in the same workspace.
                task.result.workspace = previous
                return self._cwd(task, previous)
            # Branches of a plan each start from the step they wait for, apart.
            start = previous.tip if previous.mode == "worktree" else None
            break
        ws = await asyncio.to_thread(self._make, task, start)
        task.result.workspace = ws
        setup = self.plan.settings.setup
        if ws.mode != "shared" and setup:
            try:
                await ws_changes.setup(ws, setup, task.timeout_s)
            except WorkspaceError:
                task.result.workspace = None
                await asyncio.to_thread(self._drop, ws)
                raise
        return self._cwd(task, ws)

    def _cwd(self, task: Task, ws: Workspace) -> str:
        """A plan task's own directory, at the same place in the workspace."""
        if task.cwd is None or ws.mode == "shared":
            return task.cwd or ws.cwd
        try:
            inside = Path(task.cwd).resolve().relative_to(self.plan.source(task).top)
        except ValueError:
            return ws.cwd
        return str(Path(ws.root) / inside)

    def _dependents(self, tasks: list[Task]) -> dict[int, int]:
        if self.dependents is None:
            self.dependents = {}
            for each in tasks:
                for index in each.depends_on:
                    self.dependents[index] = self.dependents.get(index, 0) + 1
        return self.dependents

    def _make(self, task: Task, start: str | None = None) -> Workspace:
        name = self.names[task.index]
        existing = self.store.read_json(self._record(name), None)
        if existing is not None:
            ws = Workspace.model_validate(existing)
            if Path(ws.root).is_dir():
                return ws
        ws = ws_make.make(
            self.plan.source(task),
            self.home,
            self.run_id,
            name,
            self.plan.settings,
            agent_id=task.result.agent_id,
            task_id=task.result.task_id,
            start=start,
        )
        try:
            records.save(self.store, ws)
        except BaseException:
            ws_make.remove(ws)
            raise
        return ws

    def _drop(self, ws: Workspace) -> None:
        ws_make.remove(ws)
        records.forget(self.store, ws)

    async def finish(self, task: Task, ok: bool) -> None:
        ws = task.result.workspace
        if ws is None:
            return
        if ok and self.check_command is not None:
            ws.check = await ws_changes.check(ws, self.check_command, task.timeout_s)
        await asyncio.to_thread(self._settle, ws)

    def _settle(self, ws: Workspace) -> None:
        ws_changes.settle(ws)
        records.save(self.store, ws)
