"""The workspaces of one run's tasks (made by `Run` when its plan gives tasks workspaces).

Contract:
- `RunWorkspaces.enter(task, attempt)` gives the attempt the directory its task works in:
  made on the task's first attempt (with setup, include, symlink), reused by its retries
  and by the one task that waits for it (a chain shares one workspace); tasks that wait for
  the same one (branches of a plan) each get a worktree started from its recorded work; a
  resumed run finds the workspaces it made before. A setup failure ends that attempt failed
  with the command's output, and removes what was made: it fails that task only.
- `RunWorkspaces.leave(task, attempt)` runs the `--check` command (when the attempt ended
  ok) and records the task's changes in its result and its record; a failure to record is
  logged, never the task's.
- `check_names` refuses, before the run starts, a branch or folder already there.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiswitch.coordinator.tasks import End
from aiswitch.errors import WorkspaceError
from aiswitch.workspace import changes as ws_changes
from aiswitch.workspace import make as ws_make
from aiswitch.workspace import records
from aiswitch.workspace.model import Workspace

if TYPE_CHECKING:
    from aiswitch.coordinator.tasks import Attempt, Task
    from aiswitch.coordinator.workspaces import WorkspacePlan
    from aiswitch.home import Home
    from aiswitch.state.store import StateStore

log = logging.getLogger("aiswitch.coordinator")


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
