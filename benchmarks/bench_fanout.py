"""Fan-out: thousands of mock tasks through the runtime, and one `aiswitch run` beside its floor.

    .venv/bin/python benchmarks/bench_fanout.py                 # 1k and 10k tasks, invocation
    .venv/bin/python benchmarks/bench_fanout.py --big --repeat 3  # adds 100k tasks
    .venv/bin/python benchmarks/bench_fanout.py --only fanout --profile 10000

(a) Fan-out (issue 10): a batch of N tasks (`--tasks 1000,10000`, `--big` adds 100,000) on
    the mock at `--latency` seconds per task (no progress steps), `--concurrency` in flight,
    on `--processes` pool processes that each run `--per-process` tasks at once
    (`MOCK_MAX_CONCURRENT`; set in `config/agents.yaml` of a temporary AISWITCH_HOME per run,
    with `pool: {min: 0, max: PROCESSES}`). Each run is a fresh worker process (this script
    with `--worker`) that drives the runtime in-process, as `aiswitch run --tasks` does:
    `Coordinator.plan(RunRequest(mode="batch", batch=[BatchItem...], concurrency=...))`
    then `Run.execute()`. A fresh process per run keeps its peak RSS and CPU its own.
    Times, from the worker's monotonic clock:
      plan        building the N tasks (before anything starts)
      start-up    from `execute()` until the first task is assigned to a running process
      scheduling  from that first assignment until the last task is final  <- the goal
      pool-up     from `execute()` until the last pool process was running; `sched-after-up`
                  is the last final minus that (the issue's "total minus start-up")
      total       `execute()` from call to return (stopping the children included)
    Also: tasks/s over scheduling, the coordinator's CPU seconds during `execute()`
    (`time.process_time()`, threads included), its peak RSS (`ru_maxrss`), the children's
    CPU seconds and largest peak RSS (`RUSAGE_CHILDREN`), and the children's peak total
    RSS (this script samples the worker's process tree with psutil every `SAMPLE_S`).
    Every run checks the ledger (`state/tokens.jsonl`): exactly one record per task, each
    with the mock's fixed usage (`MOCK_INPUT_TOKENS`, `MOCK_OUTPUT_TOKENS`), summing to N x it.
    Goals: 10,000 tasks at 100 ms, 1,000 in flight: scheduling <= 1.5 s (ideal 1.0 s);
    100,000 tasks: >= 0.7 x the ideal 10,000 tasks/s.
(b) Invocation: the console script as a user runs it, `aiswitch run --agent mock@fast hi
    --json`, beside its floor: a Python process that imports asyncio and spawns one child
    Python that imports asyncio and echoes one line back; and `--parallel` with 8 mock@fast
    agents. For reference, "stack alone": a Python that imports asyncio and pydantic and
    validates and dumps one two-field model (no child, no aiswitch), the least a parent that
    validates anything with the user's fixed stack pays. Run the script with another
    install's interpreter (`/path/to/venv/bin/python benchmarks/bench_fanout.py`) to measure
    that install. Goals: one agent <= 1.5 x the floor; each extra parallel agent <= 0.1 s
    ((8 agents - 1 agent) / 7). The table names the install it measured: an editable one
    (`pip install -e`) loads an import finder at every start (~15 ms here) that a user's
    `pip install .` does not.

Runs of all cases are interleaved (noise hits them alike); medians are reported with the
min..max spread. `--json` prints one JSON document instead of the tables. `--profile N`
runs one fan-out of N tasks under cProfile in this process and prints the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PY = sys.executable
CONSOLE_SCRIPT = str(Path(PY).with_name("aiswitch"))
SCRIPT = os.path.abspath(__file__)
# The children's memory is sampled this often (from this process, not the worker).
SAMPLE_S = 0.05
# The mock's usage per task, fixed so that the ledger check does not depend on the prompt.
INPUT_TOKENS = 100
OUTPUT_TOKENS = 10
# Bounds one worker run: 100,000 tasks take well under this on a loaded laptop.
WORKER_TIMEOUT_S = 900.0
INVOCATION_TIMEOUT_S = 60.0
GOAL_SCHEDULING_10K_S = 1.5
GOAL_100K_VS_IDEAL = 0.7
GOAL_INVOCATION_VS_FLOOR = 1.5
GOAL_PER_EXTRA_AGENT_S = 0.1
PARALLEL_AGENTS = 8

FLOOR = """\
import asyncio, sys
async def main():
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import asyncio, sys; sys.stdout.write(sys.stdin.readline())",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    p.stdin.write(b"hi\\n")
    await p.stdin.drain()
    assert await p.stdout.readline() == b"hi\\n"
    p.stdin.close()
    await p.wait()
asyncio.run(main())
"""

# What the user's fixed stack costs before any of aiswitch runs: a parent that validates
# anything with pydantic pays for this much (no child, no file, no aiswitch import).
STACK = """\
import asyncio
from pydantic import BaseModel
class Reply(BaseModel):
    task_id: str
    status: str
Reply.model_validate_json('{"task_id": "t", "status": "ok"}').model_dump_json()
"""


# -- the fan-out worker (a fresh process per run) ----------------------------------------


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
    lines = ["agents:", "  mock:", "    env:"]
    lines += [f'      {key}: "{value}"' for key, value in env.items()]
    lines.append(f"    pool: {{min: 0, max: {processes}, idle_timeout: 60}}")
    (config / "agents.yaml").write_text("\n".join(lines) + "\n")


async def fanout(tasks: int, concurrency: int) -> dict[str, Any]:
    """One batch of `tasks` through Coordinator + Run in this process (AISWITCH_HOME set)."""
    from aiswitch import logs
    from aiswitch.coordinator.coordinator import Coordinator
    from aiswitch.coordinator.request import BatchItem, RunEvent, RunRequest
    from aiswitch.coordinator.specs import parse_specs
    from aiswitch.home import Home

    home = Home.current().ensure()
    logs.configure(home)
    coordinator = Coordinator(home)
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

    cpu0, wall0 = time.process_time(), time.monotonic()
    request = RunRequest(
        mode="batch",
        specs=parse_specs("mock"),
        prompt="",
        batch=[BatchItem(prompt=f"task {i}", id=str(i)) for i in range(tasks)],
        concurrency=concurrency,
        # Every task in the one working folder: run from a git checkout, the default rule
        # would make a worktree per task (the workspaces' cost, not the scheduler's).
        workspace="shared",
    )
    plan = coordinator.plan(request)
    run = coordinator.new_run(request, plan, on_event=on_event)
    cpu1, wall1 = time.process_time(), time.monotonic()
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = await run.execute()
    wall2, cpu2 = time.monotonic(), time.process_time()
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    handles = run.executor.handles()  # type: ignore[union-attr]
    ups = [h.started_at for h in handles if h.started_at is not None]
    pool_up = max(ups) if ups else wall1
    ok = sum(1 for r in result.results if r.status == "ok")
    scheduling = marks["last_final"] - marks["assigned"]
    return {
        "tasks": tasks,
        "status": str(result.status),
        "ok": ok,
        "processes": result.figures.peak_processes,
        "peak_in_flight": result.figures.peak_concurrency,
        "plan_s": wall1 - wall0,
        "startup_s": marks["assigned"] - wall1,
        "scheduling_s": scheduling,
        "pool_up_s": pool_up - wall1,
        "sched_after_up_s": marks["last_final"] - pool_up,
        "teardown_s": wall2 - marks["last_final"],
        "total_s": wall2 - wall1,
        "tasks_per_s": tasks / scheduling,
        "plan_cpu_s": cpu1 - cpu0,
        "cpu_s": cpu2 - cpu1,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children_cpu_s": (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime),
        "child_max_rss_mb": kids1.ru_maxrss / 1024,
        "ledger": check_ledger(home.ledger, result.run_id, tasks),
    }


def check_ledger(path: Path, run_id: str, tasks: int) -> dict[str, Any]:
    """One record per task of the run, each the mock's fixed usage; raises when not."""
    per_task: dict[str, int] = {}
    tokens = 0
    with path.open("rb") as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("run_id") != run_id:
                continue
            task_id = record.get("task_id")
            per_task[task_id] = per_task.get(task_id, 0) + 1
            if record.get("input_tokens") != INPUT_TOKENS or (
                record.get("output_tokens") != OUTPUT_TOKENS
            ):
                raise SystemExit(f"ledger: unexpected usage in {record}")
            tokens += record["input_tokens"] + record["output_tokens"]
    records = sum(per_task.values())
    expected = {f"{run_id}/{i}" for i in range(1, tasks + 1)}
    if set(per_task) != expected or records != tasks:
        raise SystemExit(f"ledger: {records} records for {len(per_task)} of {tasks} tasks")
    if tokens != tasks * (INPUT_TOKENS + OUTPUT_TOKENS):
        raise SystemExit(
            f"ledger: {tokens} tokens, expected {tasks * (INPUT_TOKENS + OUTPUT_TOKENS)}"
        )
    return {"records": records, "tokens": tokens, "ok": True}


def worker(args: argparse.Namespace) -> None:
    home = Path(os.environ["AISWITCH_HOME"])
    write_agents_yaml(home, args.latency, args.processes, args.per_process)
    result = asyncio.run(fanout(args.worker, args.concurrency))
    sys.stdout.write(json.dumps(result) + "\n")


def profile(args: argparse.Namespace) -> None:
    import cProfile
    import pstats

    with tempfile.TemporaryDirectory(prefix="aiswitch-bench-") as home:
        os.environ["AISWITCH_HOME"] = home
        os.environ["AISWITCH_LOG_LEVEL"] = "WARNING"
        write_agents_yaml(Path(home), args.latency, args.processes, args.per_process)
        profiler = cProfile.Profile()
        profiler.enable()
        result = asyncio.run(fanout(args.profile, args.concurrency))
        profiler.disable()
    print(json.dumps({k: v for k, v in result.items() if k != "ledger"}, indent=1))
    stats = pstats.Stats(profiler)
    if args.profile_out:
        stats.dump_stats(args.profile_out)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)


# -- the driver --------------------------------------------------------------------------


def sample_tree(pid: int, stop: threading.Event, peak: dict[str, float]) -> None:
    """Peak total RSS of `pid`'s descendants (the pool processes), sampled."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    while not stop.wait(SAMPLE_S):
        total = 0
        try:
            children = root.children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += child.memory_info().rss
        peak["children_rss_mb"] = max(peak.get("children_rss_mb", 0.0), total / 2**20)
        peak["children_seen"] = max(peak.get("children_seen", 0), len(children))


def run_worker(tasks: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aiswitch-bench-") as home:
        env = dict(os.environ, AISWITCH_HOME=home, AISWITCH_LOG_LEVEL="WARNING")
        argv = [PY, SCRIPT, "--worker", str(tasks), "--concurrency", str(args.concurrency)]
        argv += ["--latency", str(args.latency), "--processes", str(args.processes)]
        argv += ["--per-process", str(args.per_process)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True)
        stop, peak = threading.Event(), dict[str, float]()
        sampler = threading.Thread(target=sample_tree, args=(proc.pid, stop, peak), daemon=True)
        sampler.start()
        try:
            out, _ = proc.communicate(timeout=WORKER_TIMEOUT_S)
        finally:
            stop.set()
            sampler.join()
        if proc.returncode != 0:
            raise SystemExit(f"the worker for {tasks} tasks exited with {proc.returncode}")
        result: dict[str, Any] = json.loads(out.splitlines()[-1])
        result.update(peak)
        return result


def run_to_exit(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        argv,
        env=env,
        # Outside any git repository: a parallel run in one gets worktrees by default
        # (docs/workspaces.md), which is not what this measures.
        cwd=env["AISWITCH_HOME"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=INVOCATION_TIMEOUT_S,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited with {proc.returncode}: {proc.stderr[-500:]!r}")
    return elapsed


def install_kind() -> str:
    """How this interpreter has aiswitch: `editable` (`pip install -e`: an import finder
    that every start loads, ~15 ms here, which a user's `pip install .` does not pay) or
    `regular`."""
    import glob
    import site

    for folder in site.getsitepackages():
        if glob.glob(os.path.join(folder, "__editable__*aiswitch*")):
            return "editable"
    return "regular"


def invocation_cases() -> list[tuple[str, str, list[str]]]:
    agents = ",".join(["mock@fast"] * PARALLEL_AGENTS)
    return [
        ("python -c pass", "bare", [PY, "-c", "pass"]),
        ("floor: asyncio + child echoing a line", "floor", [PY, "-c", FLOOR]),
        ("stack alone: asyncio + one pydantic model", "stack", [PY, "-c", STACK]),
        (
            "aiswitch run --agent mock@fast hi --json",
            "one",
            [CONSOLE_SCRIPT, "run", "--agent", "mock@fast", "hi", "--json"],
        ),
        (
            f"aiswitch run --parallel {PARALLEL_AGENTS}x mock@fast",
            "parallel",
            [CONSOLE_SCRIPT, "run", "--parallel", agents, "hi", "--json"],
        ),
    ]


def bench_invocation(runs: int) -> dict[str, list[float]]:
    cases = invocation_cases()
    times: dict[str, list[float]] = {key: [] for _, key, _ in cases}
    homes = {key: tempfile.mkdtemp(prefix="aiswitch-bench-") for _, key, _ in cases}
    envs = {
        key: dict(os.environ, AISWITCH_HOME=home, AISWITCH_LOG_LEVEL="WARNING")
        for key, home in homes.items()
    }
    for env in envs.values():
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        for _, key, argv in cases:  # warm the page cache and .pyc files
            run_to_exit(argv, envs[key])
        for _ in range(runs):
            for _, key, argv in cases:
                times[key].append(run_to_exit(argv, envs[key]))
    finally:
        import shutil

        for home in homes.values():
            shutil.rmtree(home, ignore_errors=True)
    return times


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {"tasks": runs[0]["tasks"], "repeats": len(runs)}
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool) and key != "tasks":
            values = [r[key] for r in runs]
            row[key] = statistics.median(values)
            row[key + "_min"], row[key + "_max"] = min(values), max(values)
    row["ledger_ok"] = all(r["ledger"]["ok"] for r in runs)
    row["status"] = sorted({r["status"] for r in runs})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="1000,10000", help="fan-out sizes, comma-separated")
    parser.add_argument("--big", action="store_true", help="also 100,000 tasks (about a minute)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per fan-out size")
    parser.add_argument("--runs", type=int, default=10, help="runs per invocation case")
    parser.add_argument("--only", choices=("fanout", "invocation"), help="one part only")
    parser.add_argument("--concurrency", type=int, default=1000, help="tasks in flight")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per mock task")
    parser.add_argument("--processes", type=int, default=10, help="pool max")
    parser.add_argument("--per-process", type=int, default=100, help="MOCK_MAX_CONCURRENT")
    parser.add_argument("--json", action="store_true", help="print JSON, not tables")
    parser.add_argument("--profile", type=int, metavar="N", help="cProfile one fan-out of N")
    parser.add_argument("--top", type=int, default=30, help="rows of the profile")
    parser.add_argument(
        "--profile-out", metavar="FILE", help="also save the profile's stats (pstats) to FILE"
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args)
        return
    if args.profile is not None:
        profile(args)
        return
    sizes = [int(n) for n in args.tasks.split(",") if n]
    if args.big and 100_000 not in sizes:
        sizes.append(100_000)
    result: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg()[0],
    }
    if args.only != "invocation":
        runs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
        started = time.monotonic()
        for _ in range(args.repeat):
            for n in sizes:
                runs[n].append(run_worker(n, args))
        result["fanout"] = {
            "settings": {
                "concurrency": args.concurrency,
                "latency_s": args.latency,
                "processes": args.processes,
                "per_process": args.per_process,
                "ideal_tasks_per_s": min(args.concurrency, args.processes * args.per_process)
                / args.latency,
            },
            "rows": [median_row(runs[n]) for n in sizes],
            "seconds": round(time.monotonic() - started, 1),
        }
    if args.only != "fanout":
        times = bench_invocation(args.runs)
        med = {key: statistics.median(v) for key, v in times.items()}
        result["invocation"] = {
            "runs": args.runs,
            "install": install_kind(),
            "load_after": os.getloadavg()[0],
            "rows": [
                {
                    "case": label,
                    "key": key,
                    "median_ms": round(med[key] * 1e3, 1),
                    "min_ms": round(min(times[key]) * 1e3, 1),
                    "max_ms": round(max(times[key]) * 1e3, 1),
                }
                for label, key, _ in invocation_cases()
            ],
            "one_vs_floor": round(med["one"] / med["floor"], 2),
            "stack_vs_floor": round(med["stack"] / med["floor"], 2),
            "per_extra_agent_s": round((med["parallel"] - med["one"]) / (PARALLEL_AGENTS - 1), 3),
        }
    result["goals"] = goals(result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_tables(result)


def goals(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fan = result.get("fanout")
    if fan is not None:
        rows = {row["tasks"]: row for row in fan["rows"]}
        ideal = fan["settings"]["ideal_tasks_per_s"]
        if 10_000 in rows:
            value = rows[10_000]["scheduling_s"]
            out["scheduling_10k_s"] = {
                "value": round(value, 3),
                "goal": GOAL_SCHEDULING_10K_S,
                "met": value <= GOAL_SCHEDULING_10K_S,
            }
        if 100_000 in rows:
            value = rows[100_000]["tasks_per_s"] / ideal
            out["rate_100k_vs_ideal"] = {
                "value": round(value, 2),
                "goal": GOAL_100K_VS_IDEAL,
                "met": value >= GOAL_100K_VS_IDEAL,
            }
        out["ledger"] = {"met": all(row["ledger_ok"] for row in fan["rows"])}
    inv = result.get("invocation")
    if inv is not None:
        out["one_vs_floor"] = {
            "value": inv["one_vs_floor"],
            "goal": GOAL_INVOCATION_VS_FLOOR,
            "met": inv["one_vs_floor"] <= GOAL_INVOCATION_VS_FLOOR,
        }
        out["per_extra_agent_s"] = {
            "value": inv["per_extra_agent_s"],
            "goal": GOAL_PER_EXTRA_AGENT_S,
            "met": inv["per_extra_agent_s"] <= GOAL_PER_EXTRA_AGENT_S,
        }
    return out


def print_tables(result: dict[str, Any]) -> None:
    print(
        f"python {result['python']}, {result['cpus']} CPUs, {result['platform']}, "
        f"load {result['load_before']:.2f} before"
    )
    fan = result.get("fanout")
    if fan is not None:
        s = fan["settings"]
        print(
            f"\nFan-out: mock at {s['latency_s']:g}s/task, {s['concurrency']} in flight on "
            f"{s['processes']} processes x {s['per_process']}; ideal {s['ideal_tasks_per_s']:,.0f}"
            f" tasks/s; medians of {fan['rows'][0]['repeats']} interleaved runs ({fan['seconds']}s)"
        )
        print(
            "scheduling = first assignment to last final; start-up = execute() to first "
            "assignment; sched-after-up = last final minus pool fully up"
        )
        header = (
            f"{'tasks':>7} {'plan s':>7} {'start-up':>8} {'sched s':>8} {'min..max':>12} "
            f"{'after-up':>8} {'total s':>8} {'tasks/s':>8} {'x ideal':>7} {'cpu s':>6} "
            f"{'RSS MB':>7} {'kids cpu':>8} {'kids RSS':>8} {'ledger':>6}"
        )
        print(header)
        print("-" * len(header))
        for row in fan["rows"]:
            spread = f"{row['scheduling_s_min']:.2f}..{row['scheduling_s_max']:.2f}"
            ideal_s = row["tasks"] / s["ideal_tasks_per_s"]
            print(
                f"{row['tasks']:>7,} {row['plan_s']:>7.2f} {row['startup_s']:>8.2f} "
                f"{row['scheduling_s']:>8.2f} {spread:>12} {row['sched_after_up_s']:>8.2f} "
                f"{row['total_s']:>8.2f} {row['tasks_per_s']:>8,.0f} "
                f"{ideal_s / row['scheduling_s']:>6.2f}x {row['cpu_s']:>6.2f} "
                f"{row['rss_mb']:>7.0f} {row['children_cpu_s']:>8.2f} "
                f"{row.get('children_rss_mb', 0):>8.0f} {'ok' if row['ledger_ok'] else 'BAD':>6}"
            )
        print(
            "(RSS MB: the coordinator's peak; kids RSS: the pool processes' peak total, "
            "sampled; kids cpu: their CPU seconds)"
        )
    inv = result.get("invocation")
    if inv is not None:
        med = {row["key"]: row["median_ms"] for row in inv["rows"]}
        print(
            f"\nInvocation: console script run to exit, median of {inv['runs']} interleaved "
            f"runs ({inv['install']} install; load {inv['load_after']:.2f} after)"
        )
        header = f"{'case':<45} {'median ms':>10} {'min..max ms':>15} {'x floor':>8}"
        print(header)
        print("-" * len(header))
        for row in inv["rows"]:
            spread = f"{row['min_ms']:.0f}..{row['max_ms']:.0f}"
            print(
                f"{row['case']:<45} {row['median_ms']:>10.1f} {spread:>15} "
                f"{row['median_ms'] / med['floor']:>7.2f}x"
            )
    print()
    labels = {
        "scheduling_10k_s": ("10,000 tasks: scheduling wall s", "<="),
        "rate_100k_vs_ideal": ("100,000 tasks: tasks/s / ideal", ">="),
        "one_vs_floor": ("one agent / floor", "<="),
        "per_extra_agent_s": ("each extra parallel agent, s", "<="),
    }
    for name, verdict in result["goals"].items():
        status = "met" if verdict["met"] else "MISSED"
        if name == "ledger":
            print(f"goal {'every task once in the ledger, usage sums':<38} {'':>7}  {status}")
            continue
        label, op = labels[name]
        print(f"goal {label:<38} {verdict['value']:>7} (goal {op} {verdict['goal']:g}): {status}")


if __name__ == "__main__":
    main()
