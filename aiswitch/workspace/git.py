"""Running git: the one way the workspace layer calls it.

Contract:
- `git(args, cwd)` runs `git` with a clean environment (no `GIT_DIR`, `GIT_WORK_TREE`,
  `GIT_INDEX_FILE` of a calling hook; no prompts; no pager; no colour) and returns its
  stdout; a failure raises `WorkspaceError` quoting the command and git's own last line.
- `git_ok` is the same for a question whose answer is the exit status.
- Commits aiswitch makes carry its own identity and skip the user's hooks and signing,
  so they never depend on (or run) the user's configuration.
- `inspect(path)` says what a directory is to git: the repository's top level, the
  subdirectory within it, HEAD's commit and branch, and whether the tree is dirty.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiswitch.errors import WorkspaceError

# Variables a git hook or a wrapper may have set that would point our commands at another
# repository or index than the one we name.
_REPO_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
)
# The identity and switches of the commits aiswitch makes in its own workspaces.
COMMIT_CONFIG = (
    "-c",
    "user.name=aiswitch",
    "-c",
    "user.email=aiswitch@localhost",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "core.hooksPath=/dev/null",
)


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _REPO_VARIABLES}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_PAGER"] = "cat"
    env["LC_ALL"] = "C"
    if extra:
        env.update(extra)
    return env


def git(
    args: Sequence[str],
    cwd: str | Path,
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    what: str | None = None,
) -> str:
    """git's stdout; a failure is a `WorkspaceError` saying `what` failed and why."""
    done = _run(args, cwd, input=input, env=env)
    if done.returncode != 0:
        raise WorkspaceError(f"{what or 'git ' + args[0]} failed: {last_line(done.stderr)}")
    return done.stdout.decode("utf-8", "replace")


def git_bytes(
    args: Sequence[str],
    cwd: str | Path,
    *,
    what: str | None = None,
    env: Mapping[str, str] | None = None,
) -> bytes:
    done = _run(args, cwd, env=env)
    if done.returncode != 0:
        raise WorkspaceError(f"{what or 'git ' + args[0]} failed: {last_line(done.stderr)}")
    return done.stdout


def git_stdout(args: Sequence[str], cwd: str | Path, input: bytes) -> bytes:
    """git's stdout whatever its exit status (for questions answered by what it prints)."""
    return _run(args, cwd, input=input).stdout


def git_code(args: Sequence[str], cwd: str | Path) -> int:
    """git's exit status (for commands whose statuses say different things)."""
    return _run(args, cwd).returncode


def git_ok(args: Sequence[str], cwd: str | Path, *, env: Mapping[str, str] | None = None) -> bool:
    return _run(args, cwd, env=env).returncode == 0


def _run(
    args: Sequence[str],
    cwd: str | Path,
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=input,
            capture_output=True,
            env=git_env(env),
            check=False,
        )
    except FileNotFoundError:
        raise WorkspaceError(
            "git is not installed", hint="install git, or use --workspace copy|shared"
        ) from None
    except NotADirectoryError:
        raise WorkspaceError(f"{cwd} is not a directory") from None


def last_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith("hint:")]
    return lines[-1] if lines else "no message"


@dataclass(frozen=True)
class RepoState:
    """What a directory is to git."""

    top: Path  # the repository's top level
    subdir: str  # the directory's path within it ("" at the top)
    head: str | None  # HEAD's commit; None in a repository with no commit yet
    branch: str | None  # HEAD's branch; None when detached
    dirty: bool  # uncommitted changes or untracked (not ignored) files


def inspect(path: str | Path) -> RepoState | None:
    """`path` as git sees it, or None when it is not inside a work tree."""
    done = _run(["rev-parse", "--show-toplevel", "--show-prefix"], path)
    if done.returncode != 0:
        return None
    top, _, prefix = done.stdout.decode().partition("\n")
    head_done = _run(["rev-parse", "--verify", "-q", "HEAD^{commit}"], path)
    head = head_done.stdout.decode().strip() if head_done.returncode == 0 else None
    branch_done = _run(["symbolic-ref", "-q", "--short", "HEAD"], path)
    branch = branch_done.stdout.decode().strip() if branch_done.returncode == 0 else None
    status = _run(["status", "--porcelain", "-z", "--untracked-files=normal"], top)
    return RepoState(
        top=Path(top),
        subdir=prefix.strip().rstrip("/"),
        head=head,
        branch=branch,
        dirty=bool(status.stdout),
    )
