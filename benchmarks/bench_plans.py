"""A plan's graph against a flat batch of as many tasks, on the same runtime.

    .venv/bin/python benchmarks/bench_plans.py                    # 100 chains of 100, 3 runs
    .venv/bin/python benchmarks/bench_plans.py --chains 10 --length 100 --repeat 1

The plan is a wide graph: `--chains` independent chains of `--length` steps, each step
depending on the one before and its prompt holding that step's output (`{ID.output}`).
The batch is the same number of independent tasks (`run --tasks`). Both run on the mock at
`--latency` seconds per task (no progress steps), `--concurrency` in flight (default: the
number of chains, so both keep as many tasks in flight), on `--processes` pool processes
of `--per-process` tasks each. Each run is a fresh worker process (this script with
`--worker`) driving the runtime in-process as `aiswitch run --plan` / `--tasks` do:
`read_plan` (the plan: its file written first) and `Coordinator.plan`, then
`Run.execute()`. Runs of the two cases are interleaved; medians with the min..max spread.

Reported per case: build (reading and checking the plan, building the tasks), wall
(`execute()` from call to return), scheduling (first task assigned to last final), tasks/s
over scheduling, the coordinator's CPU seconds during `execute()` and per task (us), and
the overhead per task (us): (wall - the ideal) / tasks, the ideal being tasks x latency /
concurrency. Every run checks the ledger (one record per task, the mock's fixed usage).
Goal: the plan's wall time <= 1.2 x the batch's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PY = sys.executable
SCRIPT = os.path.abspath(__file__)
INPUT_TOKENS = 100
OUTPUT_TOKENS = 10
WORKER_TIMEOUT_S = 900.0
GOAL_PLAN_VS_BATCH = 1.2


def write_agents_yaml(home: Path, latency: float, processes: int, per_process: int) -> None:
    config = home / "config"
    config.mkdir(parents=True, exist_ok=True)
    env = {
        "MOCK_LATENCY": str(latency),
        "MOCK_STEPS": "0",
        "MOCK_MAX_CONCURRENT": str(per_process),
        "MOCK_INPUT_TOKENS": str(INPUT_TOKENS),
        "MOCK_OUTPUT_TOKENS": str(OUTPUT_TOKENS),
    }
    agents = {"agents": {"mock": {"env": env, "pool": {"min": 0, "max": processes}}}}
    (config / "agents.yaml").write_text(json.dumps(agents))


def write_plan(path: Path, chains: int, length: int) -> None:
    tasks: list[dict[str, Any]] = []
    for chain in range(chains):
        for step in range(length):
            task: dict[str, Any] = {"id": f"c{chain}-{step}"}
            if step:
                before = f"c{chain}-{step - 1}"
                task["depends_on"] = [before]
                task["prompt"] = f"step {step} of chain {chain} after {{{before}.output}}"
            else:
                task["prompt"] = f"chain {chain} begins"
            tasks.append(task)
    path.write_text(json.dumps({"defaults": {"agent": "mock"}, "tasks": tasks}))


async def one_run(case: str, args: argparse.Namespace) -> dict[str, Any]:
    from aiswitch import logs
    from aiswitch.coordinator.coordinator import Coordinator
    from aiswitch.coordinator.request import BatchItem, RunEvent, RunRequest
    from aiswitch.coordinator.specs import parse_specs
    from aiswitch.home import Home

    home = Home.current().ensure()
    logs.configure(home)
    tasks = args.chains * args.length
    concurrency = args.concurrency or args.chains
    plan_file = home.root / "plan.json"
    if case == "plan":
        write_plan(plan_file, args.chains, args.length)
    marks: dict[str, float] = {}
    finals = 0

    def on_event(event: RunEvent) -> None:
        nonlocal finals
        if event.kind != "status":
            return
        if "assigned" not in marks and event.result.status == "running":
            marks["assigned"] = time.monotonic()
        if event.result.final:
            finals += 1
            if finals == tasks:
                marks["last_final"] = time.monotonic()

    wall0 = time.monotonic()
    coordinator = Coordinator(home)
    if case == "plan":
        from aiswitch.coordinator.plan_check import read_plan

        request = RunRequest(
            mode="plan",
            specs=[],
            prompt="plan",
            plan=read_plan(plan_file),
            concurrency=concurrency,
        )
    else:
        request = RunRequest(
            mode="batch",
            specs=parse_specs("mock"),
            prompt="",
            batch=[BatchItem(prompt=f"task {i}", id=str(i)) for i in range(tasks)],
            concurrency=concurrency,
        )
    planned = coordinator.plan(request)
    run = coordinator.new_run(request, planned, on_event=on_event)
    wall1, cpu1 = time.monotonic(), time.process_time()
    result = await run.execute()
    wall2, cpu2 = time.monotonic(), time.process_time()
    ok = sum(1 for r in result.results if r.status == "ok")
    if ok != tasks:
        raise SystemExit(f"{case}: {ok} of {tasks} tasks ok")
    check_ledger(home.ledger, result.run_id, tasks)
    ideal = tasks * args.latency / concurrency
    wall = wall2 - wall1
    scheduling = marks["last_final"] - marks["assigned"]
    return {
        "case": case,
        "tasks": tasks,
        "build_s": wall1 - wall0,
        "wall_s": wall,
        "scheduling_s": scheduling,
        "tasks_per_s": tasks / scheduling,
        "cpu_s": cpu2 - cpu1,
        "cpu_per_task_us": (cpu2 - cpu1) / tasks * 1e6,
        "overhead_per_task_us": (wall - ideal) / tasks * 1e6,
        "ideal_s": ideal,
        "peak_in_flight": result.figures.peak_concurrency,
    }


def check_ledger(path: Path, run_id: str, tasks: int) -> None:
    seen: set[str] = set()
    with path.open("rb") as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("run_id") != run_id:
                continue
            if record["task_id"] in seen or record["input_tokens"] != INPUT_TOKENS:
                raise SystemExit(f"ledger: unexpected record {record}")
            seen.add(record["task_id"])
    if len(seen) != tasks:
        raise SystemExit(f"ledger: {len(seen)} records for {tasks} tasks")


def run_worker(case: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aiswitch-bench-") as home:
        env = dict(os.environ, AISWITCH_HOME=home, AISWITCH_LOG_LEVEL="WARNING")
        write_agents_yaml(Path(home), args.latency, args.processes, args.per_process)
        argv = [PY, SCRIPT, "--worker", case, "--chains", str(args.chains)]
        argv += ["--length", str(args.length), "--latency", str(args.latency)]
        argv += ["--concurrency", str(args.concurrency or args.chains)]
        # In the temporary home, not the caller's folder: a git checkout would get tasks
        # worktrees of their own (docs/workspaces.md), which is not what this measures.
        done = subprocess.run(
            argv,
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"worker {case} failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        return result


def median(runs: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in runs]
    mid = statistics.median(values)
    if len(values) == 1:
        return f"{mid:,.3f}"
    return f"{mid:,.3f} ({min(values):,.3f}..{max(values):,.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chains", type=int, default=100)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.01)
    parser.add_argument("--concurrency", type=int, default=0)
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--per-process", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", choices=["plan", "batch"])
    args = parser.parse_args()
    if args.worker:
        result = asyncio.run(one_run(args.worker, args))
        sys.stdout.write(json.dumps(result) + "\n")
        return
    runs: dict[str, list[dict[str, Any]]] = {"batch": [], "plan": []}
    for _ in range(args.repeat):
        for case in ("batch", "plan"):
            runs[case].append(run_worker(case, args))
    ratio = statistics.median(r["wall_s"] for r in runs["plan"]) / statistics.median(
        r["wall_s"] for r in runs["batch"]
    )
    if args.json:
        print(json.dumps({"runs": runs, "plan_vs_batch_wall": ratio}, indent=1))
        return
    tasks = args.chains * args.length
    print(
        f"{tasks:,} tasks ({args.chains} chains of {args.length} vs a flat batch), mock at "
        f"{args.latency * 1000:g} ms, {args.concurrency or args.chains} in flight, "
        f"{args.processes} processes x {args.per_process}; medians of {args.repeat} "
        f"(min..max); ideal {runs['plan'][0]['ideal_s']:.2f} s"
    )
    keys = [
        ("build_s", "build s"),
        ("wall_s", "wall s"),
        ("scheduling_s", "scheduling s"),
        ("tasks_per_s", "tasks/s"),
        ("cpu_s", "coordinator CPU s"),
        ("cpu_per_task_us", "CPU per task us"),
        ("overhead_per_task_us", "overhead per task us"),
    ]
    for key, label in keys:
        batch, plan = median(runs["batch"], key), median(runs["plan"], key)
        print(f"  {label:<22} batch {batch:<28} plan {plan}")
    verdict = "met" if ratio <= GOAL_PLAN_VS_BATCH else "MISSED"
    print(f"  plan wall / batch wall  {ratio:.2f}x (goal <= {GOAL_PLAN_VS_BATCH}x: {verdict})")


if __name__ == "__main__":
    main()
