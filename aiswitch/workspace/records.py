"""The record of each workspace: `workspaces/<run>/<name>.json`, beside its folder.

Contract:
- `save` writes a record through the state store (atomic, 0600); `load` reads a run's
  records, `load_all` every run's; a record that does not parse is moved aside and warned
  about, never a crash.
- `find(home, run, key)` is the one workspace a user names: by agent id (`claude#1`), by
  name (`claude-1`), by task id (`RUN/2`) or task number (`2`); an unknown run or key is a
  `WorkspaceError` saying what there is.
- `drift(ws)` says what changed outside aiswitch since the record was written: the folder
  deleted by hand, the repository moved or deleted, the branch moved or deleted.
- `disk_usage(path)` is the bytes a workspace takes (links counted as links).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pydantic import ValidationError

from aiswitch.errors import WorkspaceError
from aiswitch.home import Home
from aiswitch.state.store import StateStore
from aiswitch.workspace.git import git, git_ok
from aiswitch.workspace.model import Workspace

UNKNOWN_RUN_HINT = "`aiswitch runs list` lists runs"


def record_path(home: Home, run_id: str, name: str) -> Path:
    return home.workspaces / run_id / f"{name}.json"


def save(store: StateStore, ws: Workspace) -> None:
    if ws.mode == "shared":
        return  # nothing of its own to find, list or clean: the run file has it
    store.write_json(record_path(store.home, ws.run_id, ws.name), ws.model_dump(mode="json"))


def forget(store: StateStore, ws: Workspace) -> None:
    path = record_path(store.home, ws.run_id, ws.name)
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()


def load(store: StateStore, run_id: str) -> list[Workspace]:
    folder = store.home.workspaces / run_id
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        data = store.read_json(path, None)
        if data is None:
            continue
        try:
            found.append(Workspace.model_validate(data))
        except ValidationError:
            aside = store.move_aside(path)
            store.warn(f"{path} is not a workspace record; moved it to {aside.name}")
    return found


def load_all(store: StateStore) -> list[Workspace]:
    root = store.home.workspaces
    if not root.is_dir():
        return []
    runs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [ws for run_id in runs for ws in load(store, run_id)]


def run_exists(store: StateStore, run_id: str) -> bool:
    return (store.home.runs / f"{run_id}.json").exists()


def for_run(store: StateStore, run_id: str) -> list[Workspace]:
    """A run's workspaces; an unknown run, or one that made none, is a `WorkspaceError`."""
    found = load(store, run_id)
    if found:
        return found
    if not run_exists(store, run_id):
        raise WorkspaceError(
            f"unknown run {run_id!r}", hint="the run id is printed at the end of `aiswitch run`"
        )
    raise WorkspaceError(
        f"run {run_id} has no workspaces (its agents ran in your tree, or they were cleaned)",
        hint="run with --workspace worktree or copy to give each agent its own",
    )


def find(store: StateStore, run_id: str, key: str) -> Workspace:
    found = for_run(store, run_id)
    for ws in found:
        number = ws.task_id.rpartition("/")[2]
        if key in (ws.agent_id, ws.name, ws.task_id, number):
            return ws
    known = ", ".join(ws.agent_id or ws.name for ws in found)
    raise WorkspaceError(f"run {run_id} has no agent or task {key!r}", hint=f"it has: {known}")


def drift(ws: Workspace) -> str | None:
    """What changed outside aiswitch, or None."""
    source = Path(ws.source)
    if ws.mode == "worktree" and not source.is_dir():
        return f"the repository {source} is gone (moved or deleted)"
    if not Path(ws.root).is_dir():
        return "the workspace folder was deleted by hand"
    if ws.branch is None:
        return None
    repo = Path(ws.root) if ws.mode == "copy" else source
    if not git_ok(["rev-parse", "--verify", "-q", f"refs/heads/{ws.branch}"], repo):
        return f"its branch {ws.branch} was deleted"
    tip = git(["rev-parse", f"refs/heads/{ws.branch}"], repo).strip()
    if ws.tip is not None and tip != ws.tip:
        return f"its branch moved outside aiswitch (now {tip[:10]})"
    return None


def disk_usage(path: Path) -> int:
    total = 0
    for folder, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            total += info.st_blocks * 512 if hasattr(info, "st_blocks") else info.st_size
    return total
