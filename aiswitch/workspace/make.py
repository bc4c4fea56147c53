"""Making and removing workspaces.

Contract:
- `check_source(mode, cwd, with_changes)` refuses, before anything is made, what a mode
  cannot work from: `worktree` outside a git repository, in one with no commit, on a
  detached HEAD, or in a dirty tree without `with_changes`. It records HEAD's commit
  then: every worktree of the run starts from it, whatever git does later.
- `make(...)` makes one task's workspace under `home/workspaces/<run>/<name>/`:
  `worktree` is `git worktree add` on a new branch `aiswitch/<run>/<name>` (uncommitted
  changes carried over as a first commit when asked, so the base excludes them); `copy`
  copies the files git would not ignore (inside or outside a repository) and makes the copy
  a repository of its own with the same branch name; `shared` is the user's own directory,
  its state snapshotted as a tree (through a temporary index; nothing of the user's changes).
  Then `include` copies ignored files in and `symlink` links big folders. A failure removes
  whatever it made (worktree, branch, folder) and raises `WorkspaceError`: nothing is left
  half-made.
- `remove(ws)` takes a workspace away: its worktree (or copy), its branch, its record.
- The user's working tree is only ever read here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiswitch.errors import WorkspaceError
from aiswitch.home import DIR_MODE, Home
from aiswitch.workspace.git import COMMIT_CONFIG, RepoState, git, git_ok, git_stdout, inspect
from aiswitch.workspace.model import Mode, Workspace, WorkspaceSettings

BRANCH_PREFIX = "aiswitch"
# `git worktree add` and `remove` read every worktree's notes under .git/worktrees/, and
# fail on one that another is writing at that moment: they run one at a time per
# repository (a file lock in its .git, for other aiswitch processes too). Creating a big
# worktree can take a while, so the wait is long.
WORKTREE_LOCK = "aiswitch-worktrees.lock"
WORKTREE_LOCK_TIMEOUT_S = 600.0
_OTHERS = ("-o", "--exclude-standard", "-z")


@dataclass(frozen=True)
class Source:
    """Where a run's workspaces are made from: checked once, before any is made."""

    mode: Mode
    directory: Path  # where the user ran (the agents run at the same place in theirs)
    repo: RepoState | None
    with_changes: bool = False

    @property
    def top(self) -> Path:
        return self.repo.top if self.repo is not None else self.directory

    @property
    def subdir(self) -> str:
        return self.repo.subdir if self.repo is not None else ""


def check_source(mode: Mode, cwd: str | Path | None, with_changes: bool = False) -> Source:
    directory = Path(cwd or os.getcwd()).resolve()
    repo = inspect(directory)
    if mode == "worktree":
        if repo is None:
            raise WorkspaceError(
                f"--workspace worktree needs a git repository, and {directory} is not in one",
                hint="use --workspace copy, or `git init` and commit",
            )
        if repo.head is None:
            raise WorkspaceError(
                f"the repository {repo.top} has no commit yet, so there is nothing to make a "
                "worktree from",
                hint="commit once, or use --workspace copy",
            )
        if repo.branch is None:
            raise WorkspaceError(
                f"HEAD is detached in {repo.top}",
                hint="check out a branch (git switch NAME), or use --workspace copy",
            )
        if repo.dirty and not with_changes:
            raise WorkspaceError(
                f"{repo.top} has uncommitted changes, which worktrees would not see",
                hint="pass --with-changes to carry them over, commit or stash them, or use "
                "--workspace shared",
            )
    return Source(mode, directory, repo, with_changes)


def branch_name(run_id: str, name: str) -> str:
    return f"{BRANCH_PREFIX}/{run_id}/{name}"


def workspace_dir(home: Home, run_id: str, name: str) -> Path:
    return home.workspaces / run_id / name


def branch_exists(repo: Path, branch: str) -> bool:
    return git_ok(["rev-parse", "--verify", "-q", f"refs/heads/{branch}"], repo)


def check_names(source: Source, home: Home, run_id: str, names: list[str]) -> None:
    """Refuse a branch or folder that is already there (made outside this run)."""
    if source.mode == "shared":
        return
    for name in names:
        path = workspace_dir(home, run_id, name)
        branch = branch_name(run_id, name)
        if source.mode == "worktree" and branch_exists(source.top, branch):
            raise WorkspaceError(
                f"a branch {branch} already exists in {source.top}",
                hint=f"delete it (git branch -D {branch}) or start the run again",
            )
        if path.exists():
            raise WorkspaceError(
                f"{path} already exists", hint="remove it, or `aiswitch workspaces clean`"
            )


def make(
    source: Source,
    home: Home,
    run_id: str,
    name: str,
    settings: WorkspaceSettings,
    *,
    agent_id: str = "",
    task_id: str = "",
    start: str | None = None,
) -> Workspace:
    """One task's workspace, whole, or a `WorkspaceError` and nothing left behind; a
    worktree starts from `start` (a commit) when given, else from the source's HEAD."""
    if source.mode == "shared":
        return _shared(source, run_id, name, agent_id, task_id)
    path = workspace_dir(home, run_id, name)
    branch = branch_name(run_id, name)
    ws = Workspace(
        mode=source.mode,
        run_id=run_id,
        name=name,
        agent_id=agent_id,
        task_id=task_id,
        root=str(path),
        cwd=str(path / source.subdir) if source.subdir else str(path),
        source=str(source.top),
        branch=branch,
    )
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if path.exists() or (source.mode == "worktree" and branch_exists(source.top, branch)):
        # Not ours to remove: the clash is reported and everything stays as it was.
        check_names(source, home, run_id, [name])
    try:
        if source.mode == "worktree":
            ws.base = _worktree(source, path, branch, start)
        else:
            ws.base = _copy(source, path, branch)
        ws.tip = ws.base
        ws.excluded = _not_ignored(path, _include(source.top, path, settings))
        Path(ws.cwd).mkdir(parents=True, exist_ok=True)
    except BaseException:
        remove(ws)
        raise
    return ws


@contextlib.contextmanager
def worktree_admin(repo: Path) -> Iterator[None]:
    """One `git worktree add|remove|prune` at a time in `repo` (see WORKTREE_LOCK)."""
    from filelock import FileLock, Timeout

    common = git(["rev-parse", "--path-format=absolute", "--git-common-dir"], repo).strip()
    lock = FileLock(str(Path(common) / WORKTREE_LOCK))
    try:
        with _IN_PROCESS, lock.acquire(timeout=WORKTREE_LOCK_TIMEOUT_S):
            yield
    except Timeout:
        raise WorkspaceError(
            f"another process held {common}/{WORKTREE_LOCK} for {WORKTREE_LOCK_TIMEOUT_S:g}s",
            hint="wait for the other aiswitch run, or remove the lock file if none is running",
        ) from None


_IN_PROCESS = threading.Lock()


def _worktree(source: Source, path: Path, branch: str, start: str | None) -> str:
    assert source.repo is not None and source.repo.head is not None
    top, head = source.top, start or source.repo.head
    with worktree_admin(top):
        add = ["worktree", "add", "-q", "-b", branch, str(path), head]
        git(add, top, what="git worktree add")
    if start is not None or not source.with_changes or not source.repo.dirty:
        return head
    # Carried as a first commit on the branch: the task's diff starts after it.
    patch = git(["diff", "--binary", "HEAD"], top, what="reading your uncommitted changes")
    if patch:
        git(
            ["apply", "--binary", "--whitespace=nowarn"],
            path,
            input=patch.encode(),
            what="carrying your uncommitted changes",
        )
    _copy_files(top, path, _untracked(top))
    return _commit_all(path, f"aiswitch: uncommitted changes carried from {top}", []) or head


def _copy(source: Source, path: Path, branch: str) -> str:
    top = source.top
    files = _listed(top, source.repo is not None)
    path.mkdir(mode=DIR_MODE)
    _copy_files(top, path, files)
    git(["init", "-q", f"--initial-branch={branch}"], path, what="git init in the copy")
    tip = _commit_all(path, f"aiswitch: copy of {top}", [], allow_empty=True)
    assert tip is not None
    return tip


def _listed(top: Path, in_repo: bool) -> list[str]:
    """The files git would not ignore under `top`, tracked or not."""
    if in_repo:
        out = git(["ls-files", "-co", "--exclude-standard", "-z"], top, what="listing files")
        return [p for p in out.split("\0") if p]
    # Outside a repository: an empty repository of our own reads `top`'s .gitignore files.
    with tempfile.TemporaryDirectory(prefix="aiswitch-ls-") as scratch:
        git(["init", "-q", "--bare", scratch], top, what="git init")
        out = git(
            [
                f"--git-dir={scratch}",
                f"--work-tree={top}",
                "ls-files",
                "-o",
                "--exclude-standard",
                "-z",
            ],
            top,
            what="listing files",
        )
    return [p for p in out.split("\0") if p]


def _untracked(top: Path) -> list[str]:
    out = git(["ls-files", "-o", "--exclude-standard", "-z"], top, what="listing files")
    return [p for p in out.split("\0") if p]


def _copy_files(top: Path, dest: Path, files: list[str]) -> None:
    for relative in files:
        src = top / relative
        target = dest / relative
        if relative.endswith("/"):  # a nested repository: copied whole
            shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
            continue
        if not src.is_symlink() and not src.exists():
            continue  # tracked, deleted in the tree: the copy lacks it too
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)


def _include(top: Path, dest: Path, settings: WorkspaceSettings) -> list[str]:
    """Copy `include`, link `symlink`; the paths made."""
    made: list[str] = []
    for pattern in settings.include:
        for src in sorted(top.glob(pattern)):
            target = dest / src.relative_to(top)
            made.append(str(src.relative_to(top)))
            target.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir() and not src.is_symlink():
                shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(src, target, follow_symlinks=False)
    for relative in settings.symlink:
        src = top / relative
        target = dest / relative
        if not src.exists() or target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(src, target_is_directory=src.is_dir())
        made.append(relative)
    return made


def _not_ignored(root: Path, paths: list[str]) -> list[str]:
    """Of `paths`, those git would add (a link is not the folder `node_modules/` ignores):
    the ones every `git add` of the workspace must leave out."""
    if not paths:
        return []
    out = git_stdout(["check-ignore", "-z", "--stdin"], root, "\0".join(paths).encode())
    ignored = set(out.decode().split("\0"))
    return [p for p in paths if p not in ignored]


def pathspec(excluded: list[str]) -> list[str]:
    """`git add` arguments: everything, except what was included or linked in."""
    return ["--", ".", *(f":(exclude,literal){p}" for p in excluded)]


def _commit_all(
    root: Path, message: str, excluded: list[str], *, allow_empty: bool = False
) -> str | None:
    """Commit the whole tree of `root` (a repository we made); the new commit, or None
    when there was nothing to commit."""
    git(["add", "-A", *pathspec(excluded)], root, what="git add")
    if not allow_empty and git_ok(["diff", "--cached", "--quiet"], root):
        return None
    git(
        [*COMMIT_CONFIG, "commit", "-q", "--no-verify", "--allow-empty", "-m", message],
        root,
        what="git commit",
    )
    return git(["rev-parse", "HEAD"], root).strip()


def snapshot_tree(top: Path, scratch: Path) -> str:
    """The tree of `top`'s working state (untracked files too), written through a copy of
    its index so that the user's own index is never touched."""
    index = scratch / f"index-{os.getpid()}-{id(scratch)}"
    real = Path(git(["rev-parse", "--path-format=absolute", "--git-path", "index"], top).strip())
    try:
        if real.exists():
            shutil.copyfile(real, index)
        env = {"GIT_INDEX_FILE": str(index)}
        git(["add", "-A", "--", "."], top, env=env, what="reading your working tree")
        return git(["write-tree"], top, env=env, what="git write-tree").strip()
    finally:
        with contextlib.suppress(FileNotFoundError):
            index.unlink()


def _shared(source: Source, run_id: str, name: str, agent_id: str, task_id: str) -> Workspace:
    ws = Workspace(
        mode="shared",
        run_id=run_id,
        name=name,
        agent_id=agent_id,
        task_id=task_id,
        root=str(source.top),
        cwd=str(source.directory),
        source=str(source.top),
    )
    repo = source.repo
    if repo is not None and repo.head is not None:
        with tempfile.TemporaryDirectory(prefix="aiswitch-index-") as scratch:
            ws.base = ws.tip = snapshot_tree(source.top, Path(scratch))
    return ws


def remove(ws: Workspace) -> None:
    """Remove the workspace's folder and branch (never the user's own directory)."""
    if ws.mode == "shared":
        return
    path = Path(ws.root)
    source = Path(ws.source)
    if ws.mode == "worktree" and source.is_dir() and git_ok(["rev-parse"], source):
        with worktree_admin(source):
            if path.exists():
                git_ok(["worktree", "remove", "--force", "--force", str(path)], source)
            # A worktree deleted by hand leaves git's note of it: pruned, not an error.
            git_ok(["worktree", "prune"], source)
        if ws.branch and branch_exists(source, ws.branch):
            git(["branch", "-D", ws.branch], source, what=f"deleting branch {ws.branch}")
    if path.exists() or path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # the run's folder, once empty
