"""Taking a task's changes into the user's tree, and cleaning workspaces up.

Contract:
- `apply(store, ws, how)` brings `base..tip` of the workspace into the directory it was
  made from: `patch` (to the working tree, uncommitted), `merge` (a merge commit of the
  branch) or `cherry-pick` (its commits, one by one). It is all or nothing: every
  conflict is found before anything is written (`git apply --check`, `git merge-tree`,
  the tree's own uncommitted changes to the same files), and a git step that still fails
  is aborted, so the tree is as it was. The record then says how it was applied.
- `unapplied(ws)` is whether a workspace holds work that went nowhere yet: commits past
  its base, not applied, not in the repository's HEAD. `clean` never removes such a
  workspace without `force`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from aiswitch.errors import WorkspaceError
from aiswitch.state.store import StateStore
from aiswitch.workspace.changes import repo_of
from aiswitch.workspace.git import git, git_bytes, git_code, git_ok, inspect
from aiswitch.workspace.make import remove
from aiswitch.workspace.model import Workspace
from aiswitch.workspace.records import drift, forget, save

How = Literal["patch", "merge", "cherry-pick"]
HOWS: tuple[How, ...] = ("patch", "merge", "cherry-pick")


def apply(store: StateStore, ws: Workspace, how: How) -> int:
    """Apply the workspace's changes; the number of files changed."""
    label = ws.agent_id or ws.name
    if ws.mode == "shared":
        raise WorkspaceError(f"{label} ran in your own tree: its changes are already there")
    if ws.applied:
        raise WorkspaceError(f"{label}'s changes were already applied (as {ws.applied})")
    if ws.base is None or ws.tip is None:
        raise WorkspaceError(f"{label} has no recorded changes (did its task end?)")
    target = Path(ws.source)
    if not target.is_dir():
        raise WorkspaceError(f"the repository {target} is gone (moved or deleted)")
    repo = repo_of(ws)
    if not repo.is_dir():
        raise WorkspaceError(f"{label}'s workspace {repo} was deleted by hand; its work is lost")
    if ws.mode == "copy" and how != "patch":
        raise WorkspaceError(
            f"{label} worked in a copy, whose commits are not in your repository",
            hint="use --as patch",
        )
    if ws.tip == ws.base:
        raise WorkspaceError(f"{label} changed nothing; there is nothing to apply")
    paths = ws.changes.paths if ws.changes else []
    if how == "patch":
        _apply_patch(repo, target, ws)
    else:
        _commit_into(target, ws, how, paths)
    ws.applied = how
    save(store, ws)
    return len(paths)


def _apply_patch(repo: Path, target: Path, ws: Workspace) -> None:
    assert ws.base is not None and ws.tip is not None
    patch = git_bytes(["diff", "--binary", ws.base, ws.tip], repo, what="git diff")
    check = ["apply", "--check", "--binary", "--whitespace=nowarn"]
    try:
        git(check, target, input=patch, what="checking the patch")
    except WorkspaceError as exc:
        raise WorkspaceError(
            f"{ws.agent_id or ws.name}'s changes conflict with your tree ({exc.message}); "
            "nothing was changed",
            hint="commit or stash your changes, then apply again",
        ) from None
    git(["apply", "--binary", "--whitespace=nowarn"], target, input=patch, what="git apply")


def _commit_into(target: Path, ws: Workspace, how: How, paths: list[str]) -> None:
    assert ws.base is not None and ws.tip is not None
    label = ws.agent_id or ws.name
    state = inspect(target)
    if state is None or state.head is None:
        raise WorkspaceError(f"{target} is no longer a git repository with a commit")
    if state.branch is None:
        raise WorkspaceError(f"HEAD is detached in {target}", hint="check out a branch first")
    dirty = _dirty_paths(target)
    overlap = sorted(set(paths) & dirty)
    if overlap:
        raise WorkspaceError(
            f"your tree has uncommitted changes to {', '.join(overlap[:3])}, which {label} "
            "also changed; nothing was changed",
            hint="commit or stash them, then apply again",
        )
    merge_tree = ["merge-tree", "--write-tree", "--name-only", "--no-messages"]
    if how == "cherry-pick":
        merge_tree.append(f"--merge-base={ws.base}")
    # 0: clean, 1: conflicts; anything else is a git too old for `--merge-base` (< 2.40),
    # where the step itself finds the conflict and is aborted.
    if git_code([*merge_tree, "HEAD", ws.tip], target) == 1:
        raise WorkspaceError(
            f"{label}'s changes conflict with {state.branch}; nothing was changed",
            hint="try --as patch, or resolve by hand with `git merge` of its branch",
        )
    if how == "merge":
        message = f"aiswitch: merge {label} from run {ws.run_id}"
        step = ["merge", "--no-ff", "--no-edit", "-m", message, ws.tip]
        undo = ["merge", "--abort"]
    else:
        step = ["cherry-pick", "--allow-empty", f"{ws.base}..{ws.tip}"]
        undo = ["cherry-pick", "--abort"]
    try:
        git(step, target, what=f"git {how}")
    except WorkspaceError as exc:
        git_ok(undo, target)
        raise WorkspaceError(
            f"{label}'s changes conflict with {state.branch} ({exc.message}); nothing was changed",
            hint="try --as patch, or resolve by hand with `git merge` of its branch",
        ) from None


def _dirty_paths(target: Path) -> set[str]:
    out = git(["status", "--porcelain", "-z", "--untracked-files=all"], target)
    paths = set()
    for entry in out.split("\0"):
        if len(entry) > 3:
            paths.add(entry[3:])
    return paths


def unapplied(ws: Workspace) -> bool:
    if ws.mode == "shared" or ws.applied:
        return False
    repo = repo_of(ws)
    tip = ws.tip
    if ws.branch and repo.is_dir() and git_ok(["rev-parse", "-q", "--verify", ws.branch], repo):
        tip = git(["rev-parse", ws.branch], repo).strip()
    if tip is None or tip == ws.base:
        return False
    if ws.mode == "worktree" and Path(ws.source).is_dir():
        # Merged (or cherry-picked as is) into the user's branch by other means: applied.
        return not git_ok(["merge-base", "--is-ancestor", tip, "HEAD"], ws.source)
    return True


def parse_age(text: str) -> timedelta:
    """`7d`, `12h`, `30m`: a duration for --older-than."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit():
        raise WorkspaceError(f"--older-than {text!r} is not a duration", hint="use e.g. 7d, 12h")
    return timedelta(**{units[unit]: int(number)})


def clean(
    store: StateStore,
    found: list[Workspace],
    *,
    older_than: timedelta | None = None,
    force: bool = False,
) -> tuple[list[Workspace], list[tuple[Workspace, str]]]:
    """Remove `found` workspaces: (removed, kept with the reason)."""
    now = datetime.now(UTC)
    removed: list[Workspace] = []
    kept: list[tuple[Workspace, str]] = []
    for ws in found:
        if older_than is not None and now - ws.created_at < older_than:
            continue
        if not force and unapplied(ws):
            kept.append((ws, "has work not applied (apply it, or --force)"))
            continue
        problem = drift(ws)
        try:
            remove(ws)
        except WorkspaceError as exc:
            kept.append((ws, exc.message))
            continue
        forget(store, ws)
        removed.append(ws)
        if problem is not None:
            store.warn(f"{ws.run_id} {ws.agent_id or ws.name}: {problem}")
    return removed, kept
