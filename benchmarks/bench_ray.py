"""The `ray` backend against `local`: one batch of mock tasks, three ways (issue 17).

    .venv/bin/python benchmarks/bench_ray.py                      # 10,000 tasks at 100 ms
    .venv/bin/python benchmarks/bench_ray.py --tasks 2000 --only local,ray1

Cases, each a fresh `aiswitch run --agent mock --tasks FILE --concurrency C --jsonl` (the
console script, as a user runs it) in a temporary AISWITCH_HOME whose agents.yaml gives
the mock `--latency` seconds per task, no progress steps, fixed usage, `--per-process`
tasks at once per process and at most `--processes` processes per pool:
  local   `--backend local`: the pool on this machine
  ray1    `--backend ray` on a local Ray cluster of one node (its `agent:mock` = C)
  ray2    `--backend ray` on a local cluster of a head and a second node process
          (`agent:mock` = C/2 each), both on this machine
The clusters (aiswitch.testing.ray_cluster: 127.0.0.1 in a loopback-only network
namespace, so run as root; dashboard off, one CPU and a 100 MB object store per node) are
started before and stopped after their case; their start is not timed. The ray cases'
driver runs in that namespace (`nsenter`). Figures, from this script's monotonic clock as
the lines arrive:
  wall        from the command's start to its exit (connecting to Ray and making the
              actors included, and stopping them)
  first       until the first task's line
  steady      tasks/s between the first and the last task's line
  overhead    per task: C / steady - latency (the slot time a task took beyond its own
              latency; 0 is ideal)
Each run checks the ledger: one record per task with the mock's fixed usage. The load
average (1 min) at the start and end of each case is printed beside its figures: on a
shared machine they say how much of a figure is the neighbours'.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiswitch.testing.ray_cluster import LocalRayCluster

CONSOLE_SCRIPT = str(Path(sys.executable).with_name("aiswitch"))
INPUT_TOKENS = 10
OUTPUT_TOKENS = 5
# A case that has not ended by then is stuck: stop it and say so.
CASE_TIMEOUT_S = 1800.0


def make_home(root: Path, args: argparse.Namespace) -> Path:
    home = root / "home"
    (home / "config").mkdir(parents=True)
    env = {
        "MOCK_LATENCY": str(args.latency),
        "MOCK_STEPS": "0",
        "MOCK_INPUT_TOKENS": str(INPUT_TOKENS),
        "MOCK_OUTPUT_TOKENS": str(OUTPUT_TOKENS),
        "MOCK_MAX_CONCURRENT": str(args.per_process),
    }
    pool = {"min": 0, "max": args.processes, "idle_timeout": 60}
    agents = {"agents": {"mock": {"env": env, "pool": pool}}}
    (home / "config" / "agents.yaml").write_text(json.dumps(agents))
    return home


def run_case(
    name: str, args: argparse.Namespace, cluster: LocalRayCluster | None
) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        home = make_home(root, args)
        tasks = root / "tasks.txt"
        tasks.write_text("".join(f"task number {n}\n" for n in range(args.tasks)))
        command = [CONSOLE_SCRIPT, "run", "--agent", "mock", "--tasks", str(tasks)]
        command += ["--concurrency", str(args.concurrency), "--jsonl"]
        command += ["--backend", "local" if cluster is None else "ray"]
        if cluster is not None:
            # The driver runs in the cluster's loopback-only network namespace, as it must.
            command = cluster.command([*command, "--address", cluster.address])
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "AISWITCH_HOME": str(home),
            "LANG": "C.UTF-8",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "disabled",
        }
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        proc = subprocess.Popen(
            command, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        first = last = None
        done = 0
        run: dict[str, Any] = {}
        for line in proc.stdout:
            now = time.monotonic()
            record = json.loads(line)
            if record["type"] == "task":
                done += record["status"] == "ok"
                first = first if first is not None else now
                last = now
            else:
                run = record
        proc.wait(timeout=CASE_TIMEOUT_S)
        wall = time.monotonic() - started
        stderr = proc.stderr.read() if proc.stderr else ""
        if proc.returncode != 0 or done != args.tasks:
            raise SystemExit(f"{name}: exit {proc.returncode}, {done} ok\n{stderr[-3000:]}")
        records = [
            json.loads(x) for x in (home / "state" / "tokens.jsonl").read_text().splitlines()
        ]
        mine = [r for r in records if r.get("run_id") == run["run_id"]]
        assert len(mine) == args.tasks, (name, len(mine))
        assert sum(r["input_tokens"] for r in mine) == args.tasks * INPUT_TOKENS
        assert first is not None and last is not None
        steady = (args.tasks - 1) / (last - first) if last > first else float("inf")
        return {
            "case": name,
            "tasks": args.tasks,
            "wall_s": round(wall, 2),
            "first_s": round(first - started, 2),
            "steady_tasks_per_s": round(steady, 1),
            "overhead_ms_per_task": round((args.concurrency / steady - args.latency) * 1000, 1),
            "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def with_cluster(name: str, args: argparse.Namespace, nodes: int) -> dict[str, Any]:
    from aiswitch.testing.ray_cluster import LocalRayCluster

    per_node = args.concurrency // nodes
    cluster = LocalRayCluster({"agent:mock": per_node})
    try:
        cluster.start_head()
        for n in range(2, nodes + 1):
            cluster.add_node(f"node{n}")
        return run_case(name, args, cluster)
    finally:
        left = cluster.stop()
        if left:
            print(f"{name}: {len(left)} cluster processes left", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--processes", type=int, default=20)
    parser.add_argument("--per-process", type=int, default=10)
    parser.add_argument("--only", default="local,ray1,ray2")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    for case in args.only.split(","):
        if case == "local":
            results.append(run_case(case, args, None))
        else:
            results.append(with_cluster(case, args, int(case.removeprefix("ray"))))
        if not args.json:
            r = results[-1]
            print(
                f"{r['case']:6} {r['tasks']:>6} tasks  wall {r['wall_s']:7.2f} s  "
                f"first {r['first_s']:6.2f} s  steady {r['steady_tasks_per_s']:8.1f} tasks/s  "
                f"overhead {r['overhead_ms_per_task']:7.1f} ms/task  "
                f"load {r['load_1min'][0]:.2f} -> {r['load_1min'][1]:.2f}",
                flush=True,
            )
    if args.json:
        print(json.dumps({"cpus": os.cpu_count(), "args": vars(args), "results": results}))


if __name__ == "__main__":
    main()
