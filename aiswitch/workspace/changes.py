"""What a task changed, and the commands run in its workspace (setup, check).

Contract:
- `settle(ws)` records the task's work: in a worktree or a copy, everything the agent
  left (untracked files too, never the included or linked paths) becomes one commit on
  the workspace's branch; in a shared git tree, a snapshot tree. Then `ws.tip` is where
  the work ends and `ws.changes` is `git diff base..tip` counted (files, +/- lines, the
  `--stat` text), so a diff is scoped to the task whatever git does later.
- `run_command(command, cwd, timeout_s)` runs one shell command in a workspace, its
  output (stdout and stderr together) kept to a tail; cancelling it kills its whole
  process group. `setup` runs the setup list and raises `WorkspaceError` quoting the
  failing command's output; `check` returns a `CheckResult`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from pathlib import Path

from aiswitch.errors import WorkspaceError
from aiswitch.process_group import signal_group
from aiswitch.workspace.git import COMMIT_CONFIG, git, git_ok
from aiswitch.workspace.make import pathspec, snapshot_tree
from aiswitch.workspace.model import Changes, CheckResult, Workspace

# What of a command's output a result keeps: its end says what went wrong.
TAIL_LINES = 20
TAIL_CHARS = 4000
# How long a setup command or a check may run when the task has no timeout of its own.
COMMAND_TIMEOUT_S = 1800.0


def repo_of(ws: Workspace) -> Path:
    """Where the workspace's commits live: the user's repository for a worktree (so its
    diff survives the worktree being deleted), the copy itself for a copy."""
    return Path(ws.root if ws.mode == "copy" else ws.source)


def settle(ws: Workspace) -> None:
    if ws.base is None:
        return
    root = Path(ws.root)
    if not root.is_dir():
        raise WorkspaceError(f"the workspace {root} is gone (deleted by hand?)")
    if ws.mode == "shared":
        with tempfile.TemporaryDirectory(prefix="aiswitch-index-") as scratch:
            ws.tip = snapshot_tree(root, Path(scratch))
    else:
        git(["add", "-A", *pathspec(ws.excluded)], root, what="git add")
        if not git_ok(["diff", "--cached", "--quiet"], root):
            message = f"aiswitch: {ws.agent_id or ws.name} in run {ws.run_id}"
            git(
                [*COMMIT_CONFIG, "commit", "-q", "--no-verify", "-m", message],
                root,
                what="git commit",
            )
        ws.tip = git(["rev-parse", "HEAD"], root).strip()
    ws.changes = changes(repo_of(ws), ws.base, ws.tip)


def changes(repo: Path, base: str, tip: str) -> Changes:
    found = Changes()
    if base == tip:
        return found
    numstat = git(["diff", "--no-renames", "--numstat", "-z", base, tip], repo, what="git diff")
    for entry in numstat.split("\0"):
        if not entry:
            continue
        added, deleted, path = entry.split("\t", 2)
        found.files += 1
        found.paths.append(path)
        # Binary files count as changed files with no lines.
        found.insertions += int(added) if added.isdigit() else 0
        found.deletions += int(deleted) if deleted.isdigit() else 0
    found.stat = git(["diff", "--stat", base, tip], repo, what="git diff --stat")
    return found


def tail(text: str) -> str:
    lines = text.rstrip().splitlines()[-TAIL_LINES:]
    return "\n".join(lines)[-TAIL_CHARS:]


async def run_command(command: str, cwd: str, timeout_s: float | None) -> tuple[int | None, str]:
    """(exit code or None when it was killed for time, the output's tail)."""
    process = await asyncio.create_subprocess_shell(
        command,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "AISWITCH_WORKSPACE": cwd},
    )
    try:
        async with asyncio.timeout(timeout_s or COMMAND_TIMEOUT_S):
            out, _ = await process.communicate()
    except TimeoutError:
        signal_group(process.pid, signal.SIGKILL)
        out, _ = await process.communicate()
        return None, tail(out.decode("utf-8", "replace"))
    except asyncio.CancelledError:
        signal_group(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    return process.returncode, tail(out.decode("utf-8", "replace"))


async def setup(ws: Workspace, commands: list[str], timeout_s: float | None) -> None:
    for command in commands:
        code, output = await run_command(command, ws.root, timeout_s)
        if code != 0:
            how = "timed out" if code is None else f"exited {code}"
            raise WorkspaceError(f"workspace setup `{command}` {how}:\n{output}")


async def check(ws: Workspace, command: str, timeout_s: float | None) -> CheckResult:
    started = time.monotonic()
    code, output = await run_command(command, ws.cwd, timeout_s)
    return CheckResult(
        command=command,
        passed=code == 0,
        exit_code=code,
        tail=output,
        duration_s=round(time.monotonic() - started, 3),
    )
