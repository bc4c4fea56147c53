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
  `--check` or a plan task's own `workspace:` make them; a `shared` batch makes none
  without `--check` (its thousands of tasks share one tree).
- `plan_source(request, tasks)` checks the mode's source before anything starts (see
  `aiswitch.workspace.make.check_source`); None means every task runs in `cwd` as before.
- `task_names(tasks)`: each task's workspace name. The run's workspaces themselves are
  `aiswitch.coordinator.run_workspaces`' (imported only by a run that has any: this module
  is on every run's path and stays light).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiswitch.errors import UsageError
from aiswitch.workspace.model import MODES, Mode, WorkspaceSettings

if TYPE_CHECKING:
    from aiswitch.coordinator.request import RunRequest
    from aiswitch.coordinator.tasks import Task
    from aiswitch.workspace import make as ws_make

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
    if used == {"shared"} and request.check is None and (not asked or request.mode == "batch"):
        # In the user's tree by default: nothing to make, and no snapshots taken (they
        # cost a `git add` of the whole tree per task); `--workspace shared` records them,
        # except for a batch, whose many tasks share the tree (its own figures, not theirs).
        return None
    from aiswitch.workspace import make as ws_make
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
