"""Start-up costs: the mock adapter's spawn-to-ready, and `aiswitch --version`/`--help`.

    .venv/bin/python benchmarks/bench_startup.py [--runs 30] [--importtime]

(a) Spawn-to-ready: from `asyncio.create_subprocess_exec(python -m aiswitch_adapters.mock)`
    with pipes until its `agent.initialize` reply has been read, beside the time for
    `python -c "import asyncio, pydantic"` (what any adapter must import) to run to exit,
    and a bare `python -c pass`; also, for context, a process that imports asyncio and
    defines and uses one pydantic model (the floor for anything using pydantic).
    Goal (issue 2): mock <= 1.3x the import baseline.
(b) Wall time of the console script `aiswitch --version` and `aiswitch --help` (the one
    next to this interpreter, e.g. .venv/bin/aiswitch) beside `python -c pass`.
    Goals: `--version` <= 5x bare, `--help` <= 20x bare.

Runs of all cases are interleaved (noise hits every case alike); medians are reported.
Children run with bytecode writing on (`PYTHONDONTWRITEBYTECODE` removed), so the
warm-up run leaves .pyc files for this project as pip leaves them for its dependencies:
otherwise every run of the mock would compile the project's modules again while the
baseline's modules load compiled, which measures the shell's settings, not start-up.
`--importtime` also prints the modules with the largest cumulative import time in
`python -X importtime -m aiswitch_adapters.mock` (stdin an empty pipe) and in
`aiswitch --help`,
i.e. what to make lazy when a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiswitch.protocol.models import InitializeParams
from aiswitch.rpc.messages import dumps, request_payload
from aiswitch.rpc.peer import LINE_LIMIT

PY = sys.executable
CONSOLE_SCRIPT = str(Path(PY).with_name("aiswitch"))
# Bounds one run: an adapter answers its handshake in well under a second.
RUN_TIMEOUT_S = 30.0
GOAL_MOCK_VS_IMPORT = 1.3
GOAL_VERSION_VS_BARE = 5.0
GOAL_HELP_VS_BARE = 20.0
FIRST_MODEL = "import asyncio\nfrom pydantic import BaseModel\nclass M(BaseModel):\n x: int\nM(x=1)"
INIT_LINE = dumps(
    request_payload(
        1,
        "agent.initialize",
        InitializeParams(agent_id="mock#1", parent_pid=os.getpid()).model_dump(mode="json"),
    )
)


async def spawn_to_ready(env: dict[str, str]) -> float:
    """Seconds from spawn until the mock's `agent.initialize` reply is read."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        PY,
        "-m",
        "aiswitch_adapters.mock",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
        limit=LINE_LIMIT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(INIT_LINE)
    await proc.stdin.drain()
    line = await proc.stdout.readuntil(b"\n")
    elapsed = time.perf_counter() - started
    reply = json.loads(line)
    if "result" not in reply:
        raise RuntimeError(f"the mock refused agent.initialize: {reply}")
    proc.stdin.close()  # an adapter exits when its stdin closes
    await proc.wait()
    return elapsed


async def run_to_exit(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from spawn until the process has exited (it must exit 0)."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    code = await proc.wait()
    elapsed = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"{argv} exited with {code}")
    return elapsed


CASES: list[tuple[str, str, Callable[[dict[str, str]], Awaitable[float]]]] = [
    ("python -c pass", "bare", lambda env: run_to_exit([PY, "-c", "pass"], env)),
    (
        'python -c "import asyncio, pydantic"',
        "import",
        lambda env: run_to_exit([PY, "-c", "import asyncio, pydantic"], env),
    ),
    # For context: `import pydantic` is lazy, so the baseline above has not loaded the
    # model machinery that any pydantic model (and so any adapter) needs.
    (
        "python -c <asyncio + one pydantic model>",
        "model",
        lambda env: run_to_exit([PY, "-c", FIRST_MODEL], env),
    ),
    ("mock adapter spawn-to-ready", "mock", spawn_to_ready),
    ("aiswitch --version", "version", lambda env: run_to_exit([CONSOLE_SCRIPT, "--version"], env)),
    ("aiswitch --help", "help", lambda env: run_to_exit([CONSOLE_SCRIPT, "--help"], env)),
]


async def bench(runs: int, env: dict[str, str]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {key: [] for _, key, _ in CASES}
    for _, _key, case in CASES:  # warm the page cache and .pyc files
        await asyncio.wait_for(case(env), RUN_TIMEOUT_S)
    for _ in range(runs):
        for _, key, case in CASES:
            times[key].append(await asyncio.wait_for(case(env), RUN_TIMEOUT_S))
    return times


def summarise(times: dict[str, list[float]], runs: int) -> dict[str, Any]:
    med = {key: statistics.median(values) for key, values in times.items()}
    rows = [
        {
            "case": label,
            "key": key,
            "median_ms": round(med[key] * 1e3, 2),
            "min_ms": round(min(times[key]) * 1e3, 2),
            "max_ms": round(max(times[key]) * 1e3, 2),
        }
        for label, key, _ in CASES
    ]
    goals = {
        "mock_vs_import": (med["mock"] / med["import"], GOAL_MOCK_VS_IMPORT),
        "version_vs_bare": (med["version"] / med["bare"], GOAL_VERSION_VS_BARE),
        "help_vs_bare": (med["help"] / med["bare"], GOAL_HELP_VS_BARE),
    }
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "runs": runs,
        "rows": rows,
        "goals": {
            name: {"ratio": round(ratio, 2), "goal": goal, "met": ratio <= goal}
            for name, (ratio, goal) in goals.items()
        },
    }


def print_table(result: dict[str, Any]) -> None:
    med = {row["key"]: row["median_ms"] for row in result["rows"]}
    print(
        f"Start-up: python {result['python']}, {result['cpus']} CPUs, "
        f"median of {result['runs']} interleaved runs"
    )
    header = f"{'case':<41} {'median ms':>10} {'min..max ms':>17} {'x bare':>7} {'x import':>9}"
    print(header)
    print("-" * len(header))
    for row in result["rows"]:
        spread = f"{row['min_ms']:.1f}..{row['max_ms']:.1f}"
        print(
            f"{row['case']:<41} {row['median_ms']:>10.1f} {spread:>17} "
            f"{row['median_ms'] / med['bare']:>6.2f}x {row['median_ms'] / med['import']:>8.2f}x"
        )
    print()
    labels = {
        "mock_vs_import": "mock spawn-to-ready / import baseline",
        "version_vs_bare": "aiswitch --version / bare python",
        "help_vs_bare": "aiswitch --help / bare python",
    }
    for name, verdict in result["goals"].items():
        status = "met" if verdict["met"] else "MISSED"
        print(
            f"goal {labels[name]:<40} {verdict['ratio']:>6.2f}x "
            f"(goal <= {verdict['goal']:g}x): {status}"
        )


def importtime(argv: list[str], env: dict[str, str], top: int) -> None:
    """Print the `top` imports by cumulative time, and by own time, for one command."""
    # stdin is an empty pipe, not /dev/null: an adapter exits at its EOF, but asyncio
    # cannot watch /dev/null (epoll refuses character devices).
    proc = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        input="",
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )
    entries: list[tuple[int, int, str]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        own_us, cumulative_us, module = (part.strip() for part in line[12:].split("|"))
        if own_us.isdigit():
            entries.append((int(own_us), int(cumulative_us), module))
    total = sum(own for own, _, _ in entries)
    print(f"\n== python -X importtime {' '.join(argv[1:])}: {total / 1e3:.1f} ms in imports ==")
    print("top by cumulative time (ms):")
    for _own, cumulative, name in sorted(entries, key=lambda e: -e[1])[:top]:
        print(f"  {cumulative / 1e3:8.1f}  {name}")
    print("top by own time (ms):")
    for own, _cumulative, name in sorted(entries, key=lambda e: -e[0])[:top]:
        print(f"  {own / 1e3:8.1f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per case (>= 20)")
    parser.add_argument("--json", action="store_true", help="print JSON, not a table")
    parser.add_argument("--importtime", action="store_true", help="also show import costs")
    parser.add_argument("--top", type=int, default=15, help="rows in the import lists")
    args = parser.parse_args()
    if not Path(CONSOLE_SCRIPT).exists():
        sys.exit(f"no console script at {CONSOLE_SCRIPT}: install the project into this venv")
    with tempfile.TemporaryDirectory(prefix="aiswitch-bench-") as home:
        # The mock and the CLI never touch the real ~/.aiswitch from a benchmark.
        env = dict(os.environ, AISWITCH_HOME=home, AISWITCH_LOG_LEVEL="WARNING")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        result = summarise(asyncio.run(bench(args.runs, env)), args.runs)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print_table(result)
        if args.importtime:
            importtime([PY, "-m", "aiswitch_adapters.mock"], env, args.top)
            importtime([PY, CONSOLE_SCRIPT, "--help"], env, args.top)


if __name__ == "__main__":
    main()
