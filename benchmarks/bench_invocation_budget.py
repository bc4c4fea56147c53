"""Where one `aiswitch run` spends its instructions, against the budget its goal leaves.

    .venv/bin/python benchmarks/bench_invocation_budget.py          # needs valgrind
    /path/to/venv/bin/python benchmarks/bench_invocation_budget.py  # another install

bench_fanout.py's invocation goal: `aiswitch run --agent mock@fast hi --json` in <= 1.5x
the wall time of its floor, a Python that imports asyncio and spawns a child Python that
imports asyncio and echoes one line. Wall times move with the machine's load and speed;
instruction counts do not (callgrind counts them the same on a busy machine), so this
script counts, for each process on its own (`valgrind --tool=callgrind`, children not
traced): a bare `python -c pass`; the floor's parent and its child, which run one after
the other, so the floor's critical path is their sum; `import asyncio`; `import asyncio,
pydantic`; "stack alone" (bench_fanout.py's: asyncio, pydantic and one model built,
validated and dumped); and the parent of one `aiswitch run`. Its agent's process is not in
the count: it starts first, on the other core (docs/agents.md, warm interpreters), and the
parent's instructions are its critical path.

The budget is 1.5x the floor's path. What it leaves after "stack alone" is what all of
aiswitch (its modules, config, the run's records, three round trips with the child, the
ledger, the output) may cost for the goal to be met.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from bench_fanout import CONSOLE_SCRIPT, FLOOR, GOAL_INVOCATION_VS_FLOOR, PY, STACK, install_kind

CHILD = "import asyncio, sys; sys.stdout.write(sys.stdin.readline())"
COLLECTED = re.compile(r"Collected : (\d+)")


def cases() -> list[tuple[str, str, list[str]]]:
    return [
        ("python -c pass", "bare", [PY, "-c", "pass"]),
        ("floor's parent: asyncio, spawn, read a line", "floor_parent", [PY, "-c", FLOOR]),
        ("floor's child: asyncio, echo a line", "floor_child", [PY, "-c", CHILD]),
        ("import asyncio", "asyncio", [PY, "-c", "import asyncio"]),
        ("import asyncio, pydantic", "pydantic", [PY, "-c", "import asyncio, pydantic"]),
        ("stack alone: asyncio + one pydantic model", "stack", [PY, "-c", STACK]),
        (
            "aiswitch run --agent mock@fast hi --json (parent)",
            "one",
            [CONSOLE_SCRIPT, "run", "--agent", "mock@fast", "hi", "--json"],
        ),
    ]


def instructions(argv: list[str], env: dict[str, str]) -> int:
    """The instructions `argv`'s own process executes (its children not traced)."""
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        env=env,
        cwd=env["AISWITCH_HOME"],  # not a git repository (docs/workspaces.md)
        input="hi\n",
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    found = COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(
            f"{argv[:3]} under valgrind exited {proc.returncode}: {proc.stderr[-400:]}"
        )
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON, not a table")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("bench_invocation_budget: valgrind is not installed (apt-get install valgrind)")
    home = tempfile.mkdtemp(prefix="aiswitch-bench-")
    env = dict(os.environ, AISWITCH_HOME=home, AISWITCH_LOG_LEVEL="WARNING")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        # Once outside valgrind: the home's first files, .pyc files, the page cache.
        argvs = {key: argv for _, key, argv in cases()}
        subprocess.run(argvs["one"], env=env, cwd=home, capture_output=True, check=True)
        counts = {key: instructions(argv, env) for key, argv in argvs.items()}
    finally:
        shutil.rmtree(home, ignore_errors=True)
    floor = counts["floor_parent"] + counts["floor_child"]
    budget = GOAL_INVOCATION_VS_FLOOR * floor
    result = {
        "python": sys.version.split()[0],
        "install": install_kind(),
        "instructions": counts,
        "floor_path": floor,
        "budget": round(budget),
        "stack_vs_floor": round(counts["stack"] / floor, 2),
        "one_vs_floor": round(counts["one"] / floor, 2),
        "left_after_stack": round(budget - counts["stack"]),
        "aiswitch_own": counts["one"] - counts["stack"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"python {result['python']} ({result['install']} install), instructions (callgrind)")
    for label, key, _ in cases():
        print(f"  {label:<52} {counts[key] / 1e6:9.1f} M  {counts[key] / floor:5.2f}x floor")
    print(f"  {'floor: its parent + its child, one after the other':<52} {floor / 1e6:9.1f} M")
    print(
        f"\nbudget ({GOAL_INVOCATION_VS_FLOOR}x floor) {budget / 1e6:.1f} M; stack alone takes "
        f"{counts['stack'] / budget:.0%} of it and leaves {result['left_after_stack'] / 1e6:.1f} M"
        f"\nfor all of aiswitch, which spends {result['aiswitch_own'] / 1e6:.1f} M beyond the "
        f"stack in the parent ({result['one_vs_floor']}x floor in all)"
    )


if __name__ == "__main__":
    main()
