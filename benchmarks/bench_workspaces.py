"""Workspace creation against `git worktree add` alone, on a big repository.

    .venv/bin/python benchmarks/bench_workspaces.py                      # 20,000 files, 200 MB
    .venv/bin/python benchmarks/bench_workspaces.py --files 2000 --mb 20 --repeat 3

Makes a repository of `--files` files totalling `--mb` MB (random bytes, so nothing
compresses away; in folders of 100), commits it, then times, interleaved `--repeat` times:

- `git worktree add -b B PATH HEAD` alone (the baseline);
- aiswitch's worktree (`aiswitch.workspace.make.make` in `worktree` mode: the same `git
  worktree add` plus its checks and the record it returns);
- aiswitch's copy (`copy` mode: the files git would not ignore copied, and the copy made a
  repository with a first commit);
- settling a task that changed one file (`changes.settle`: `git add -A`, a commit, the
  diff's numbers and stat), the work done at each task's end.

Each timing is a fresh folder (removed between runs, not timed). Reported: the median and
min..max seconds, the worktree's ratio to the baseline (goal <= 1.2), and the disk each
uses (`du`-style: blocks of the folder, links as links; a worktree's objects stay in the
repository's .git, a copy holds a second object store).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiswitch.home import Home  # noqa: E402
from aiswitch.workspace import changes, make  # noqa: E402
from aiswitch.workspace.model import WorkspaceSettings  # noqa: E402
from aiswitch.workspace.records import disk_usage  # noqa: E402

T = TypeVar("T")
IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=ENV)


ENV = {**os.environ, **IDENTITY}


def make_repo(path: Path, files: int, megabytes: int) -> None:
    path.mkdir(parents=True)
    git(path, "init", "-q", "--initial-branch=main")
    size = megabytes * 1024 * 1024 // files
    for index in range(files):
        folder = path / f"d{index // 100:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{index:05d}.bin").write_bytes(os.urandom(size))
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "big")


def timed(action: Callable[..., T], *args: Any) -> tuple[float, T]:
    started = time.perf_counter()
    value = action(*args)
    return time.perf_counter() - started, value


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):7.3f}s  ({min(values):.3f}..{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    try:
        repo = scratch / "repo"
        started = time.perf_counter()
        make_repo(repo, args.files, args.mb)
        print(
            f"repository: {args.files:,} files, {args.mb} MB "
            f"(made in {time.perf_counter() - started:.1f}s)"
        )
        home = Home(scratch / "home").ensure()
        worktree_source = make.check_source("worktree", repo)
        copy_source = make.check_source("copy", repo)
        settings = WorkspaceSettings()
        base: list[float] = []
        ours: list[float] = []
        copies: list[float] = []
        settles: list[float] = []
        disk: dict[str, int] = {}
        for n in range(args.repeat):
            plain = scratch / f"plain-{n}"
            add = ["worktree", "add", "-q", "-b", f"b{n}", str(plain)]
            base.append(timed(git, repo, *add)[0])
            disk["git worktree add"] = disk_usage(plain)
            git(repo, "worktree", "remove", "--force", str(plain))
            git(repo, "branch", "-D", f"b{n}")

            run_id = f"bench{n}"
            took, ws = timed(make.make, worktree_source, home, run_id, "w", settings)
            ours.append(took)
            disk["aiswitch worktree"] = disk_usage(Path(ws.root))
            first = next(Path(ws.root).glob("d000/*.bin"))
            first.write_bytes(b"changed\n")
            settles.append(timed(changes.settle, ws)[0])
            assert ws.changes is not None and ws.changes.files == 1
            make.remove(ws)

            took, cws = timed(make.make, copy_source, home, run_id, "c", settings)
            copies.append(took)
            disk["aiswitch copy"] = disk_usage(Path(cws.root))
            make.remove(cws)
        print(f"git worktree add alone   {summary(base)}")
        print(f"aiswitch worktree        {summary(ours)}")
        print(f"aiswitch copy            {summary(copies)}")
        print(f"settle (1 file changed)  {summary(settles)}")
        ratio = statistics.median(ours) / statistics.median(base)
        print(f"worktree / git worktree add: {ratio:.2f}x (goal <= 1.2x)")
        for name, used in disk.items():
            print(f"disk, {name:18s} {used / 1024 / 1024:8.1f} MB")
    finally:
        subprocess.run(["git", "worktree", "prune"], cwd=scratch / "repo", check=False)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
