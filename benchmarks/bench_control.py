"""Run control from another terminal: how long `aiswitch runs cancel` takes to end a run.

    .venv/bin/python benchmarks/bench_control.py                 # 4 agents, 5 repeats
    .venv/bin/python benchmarks/bench_control.py --agents 8 --repeat 3

Each repeat starts `aiswitch run --parallel mock,…` whose tasks hang (MOCK_HANG=1) in a
fresh home, waits until every task is running (its status lines on stderr), then times:

- `aiswitch runs cancel RUN` from its start until it returns (it returns once the run has
  ended and its file is final), and until the run's own process has exited;
- `aiswitch ps --json`, `aiswitch top --once` and `aiswitch runs list --json` while the
  run runs (each a fresh process: start-up included), and one refresh of `top` (what each
  frame costs: `ps_cmd.collect` in this process, its imports already done).

Then, on a big history (`--history N` runs of 4 agent processes each in
`state/metrics.json`, the most the file keeps is 500): `aiswitch metrics` and
`aiswitch metrics --json` (fresh processes), and one run's metrics write (what each run
pays at its end: the file read, its entry replaced, written back with fsync, under lock).

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
        subprocess.run([BIN, "top", "--once"], env=env, check=True, capture_output=True)
        figures["top --once"] = time.perf_counter() - start
        figures["top refresh (in process)"] = refresh(env["AISWITCH_HOME"])
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


def refresh(home: str) -> float:
    """One `top` frame's data (`ps_cmd.collect`), the median of 5, in this process."""
    os.environ["AISWITCH_HOME"] = home
    from aiswitch.cli.ps_cmd import collect
    from aiswitch.home import Home
    from aiswitch.state.store import StateStore

    store = StateStore(Home.current())
    collect(store)  # imports (psutil, the RPC peer) out of the figure
    times = []
    for _ in range(5):
        start = time.perf_counter()
        collect(store)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def history(runs: int) -> dict[str, float]:
    from datetime import UTC, datetime, timedelta

    with tempfile.TemporaryDirectory(prefix="aiswitch-bench-metrics-") as tmp:
        home = Path(tmp) / "home"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AISWITCH_HOME": str(home)}
        os.environ["AISWITCH_HOME"] = str(home)
        from aiswitch.coordinator import metrics
        from aiswitch.home import Home
        from aiswitch.state.store import StateStore

        store = StateStore(Home.current())
        agent = {
            "agent": "mock", "preset": None, "tasks": 25, "errors": 1, "p50_response_s": 0.8,
            "p95_response_s": 2.1, "tokens": 120_000, "cost_usd": 0.42, "unpriced": 0,
            "cpu_s": 3.2, "rss_peak": 60_000_000,
        }  # fmt: skip
        begun = datetime(2026, 11, 1, tzinfo=UTC)
        entries = {}
        for n in range(runs):
            run_id = f"{(begun + timedelta(minutes=n)):%Y%m%dT%H%M%SZ}-{n:06x}"
            entries[run_id] = {
                "run_id": run_id, "mode": "parallel", "status": "ok",
                "started_at": (begun + timedelta(minutes=n)).isoformat(),
                "run": {
                    **agent, "tasks": 100, "operations": 100, "succeeded": 96,
                    "success_rate": 0.96, "avg_response_s": 1.0, "peak_concurrency": 8,
                    "operations_per_s": 2.5, "duration_s": 40.0,
                    "response_histogram": {str(b): 2 for b in range(100, 150)},
                },
                "agents": {f"mock.p{i}": agent for i in range(1, 5)},
            }  # fmt: skip
        path = metrics.metrics_path(store)
        store.write_json(path, {"version": 1, "runs": entries}, compact=True)
        figures = {"metrics.json bytes": float(path.stat().st_size)}
        for args in (["metrics"], ["metrics", "--json"]):
            start = time.perf_counter()
            subprocess.run([BIN, *args], env=env, check=True, capture_output=True)
            figures[" ".join(args)] = time.perf_counter() - start
        entry = dict(next(iter(entries.values())), run_id="20261202T000000Z-ffffff")
        writer = metrics.RunMetrics.__new__(metrics.RunMetrics)
        writer.store = store
        start = time.perf_counter()
        writer._write(entry)
        figures["one run's metrics write"] = time.perf_counter() - start
        return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--history", type=int, default=500)
    args = parser.parse_args()
    runs = [one(args.agents) for _ in range(args.repeat)]
    print(f"{args.agents} hanging mock agents, {args.repeat} repeats")
    for name in runs[0]:
        values = [r[name] for r in runs]
        print(
            f"{name:<26} median {statistics.median(values):.3f}s "
            f"({min(values):.3f}..{max(values):.3f})"
        )
    print(f"metrics on a history of {args.history} runs (4 agent processes each)")
    for name, value in history(args.history).items():
        shown = f"{value:,.0f}" if name.endswith("bytes") else f"{value:.3f}s"
        print(f"{name:<26} {shown}")


if __name__ == "__main__":
    main()
