"""Run control from another terminal: how long `aiswitch runs cancel` takes to end a run.

    .venv/bin/python benchmarks/bench_control.py                 # 4 agents, 5 repeats
    .venv/bin/python benchmarks/bench_control.py --agents 8 --repeat 3

Each repeat starts `aiswitch run --parallel mock,…` whose tasks hang (MOCK_HANG=1) in a
fresh home, waits until every task is running (its status lines on stderr), then times:

- `aiswitch runs cancel RUN` from its start until it returns (it returns once the run has
  ended and its file is final), and until the run's own process has exited;
- `aiswitch ps --json` and `aiswitch runs list --json` while the run runs (each a fresh
  process: start-up included).

The issue's goal for the cancel: the run ends `cancelled` within 5 s. Reported: median and
min..max seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = str(Path(sys.executable).parent / "aiswitch")


def one(agents: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="aiswitch-bench-control-") as tmp:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "AISWITCH_HOME": str(Path(tmp) / "home"),
            "LANG": "C.UTF-8",
            "MOCK_HANG": "1",
            "MOCK_STEPS": "1",
        }
        proc = subprocess.Popen(
            [BIN, "run", "--parallel", ",".join(["mock"] * agents), "hang"],
            env=env,
            cwd=tmp,  # outside any repository: no worktrees of the checkout it runs from
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        running = 0
        while running < agents:
            line = proc.stderr.readline()
            if not line:
                raise SystemExit("the run ended before its tasks were running")
            running += line.strip().endswith(" running")
        figures = {}
        start = time.perf_counter()
        subprocess.run([BIN, "ps", "--json"], env=env, check=True, capture_output=True)
        figures["ps"] = time.perf_counter() - start
        start = time.perf_counter()
        listed = subprocess.run(
            [BIN, "runs", "list", "--json"], env=env, check=True, capture_output=True, text=True
        )
        figures["runs list"] = time.perf_counter() - start
        run_id = listed.stdout.split('"run_id": "')[1].split('"')[0]
        start = time.perf_counter()
        subprocess.run([BIN, "runs", "cancel", run_id], env=env, check=True, capture_output=True)
        figures["runs cancel (returns)"] = time.perf_counter() - start
        proc.wait(timeout=60)
        figures["runs cancel (run exited)"] = time.perf_counter() - start
        proc.stderr.close()
        return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs = [one(args.agents) for _ in range(args.repeat)]
    print(f"{args.agents} hanging mock agents, {args.repeat} repeats")
    for name in runs[0]:
        values = [r[name] for r in runs]
        print(
            f"{name:<26} median {statistics.median(values):.3f}s "
            f"({min(values):.3f}..{max(values):.3f})"
        )


if __name__ == "__main__":
    main()
