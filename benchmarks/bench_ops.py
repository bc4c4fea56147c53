"""Operations (issue 15, parts 6-10): what the audit log, completion, doctor and --notify cost.

    .venv/bin/python benchmarks/bench_ops.py               # 5 repeats
    .venv/bin/python benchmarks/bench_ops.py --repeat 9 --runs 500

In a fresh home holding `--runs` recorded runs (copies of one real mock run):

- audit: one record appended in process (`aiswitch.state.audit.audit`), microseconds each
  over 2,000 records;
- completion: one Tab, i.e. one `aiswitch` process asked for bash completions
  (`runs show 2026…`, `preset show `, `run -p mock,`): wall and CPU seconds;
- doctor: `aiswitch doctor --json` over that home: wall and CPU seconds;
- notify: `aiswitch run -p mock×4 --notify` with `notify.command: cat > /dev/null`
  against the same run without it: wall seconds each (the run never waits on the command
  but at its end).

Reported: median (min..max). CPU seconds are user + system of the child process, which a
loaded machine changes less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BIN = str(Path(sys.executable).parent / "aiswitch")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def summary(values: list[float], unit: str = "s", scale: float = 1.0) -> str:
    v = [x * scale for x in values]
    return f"{statistics.median(v):.3f} {unit} ({min(v):.3f}..{max(v):.3f})"


def both(results: list[tuple[float, float]]) -> str:
    walls, cpus = [r[0] for r in results], [r[1] for r in results]
    return f"wall {summary(walls)}, cpu {summary(cpus)}"


def make_home(root: Path, runs: int) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "AISWITCH_HOME": str(root / "home"),
        "LANG": "C.UTF-8",
        "MOCK_LATENCY": "0",
        "MOCK_STEPS": "1",
    }
    done = subprocess.run(
        [BIN, "run", "-a", "mock", "x", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    run_id = json.loads(done.stdout)["run_id"]
    home = root / "home"
    document = json.loads((home / "state" / "runs" / f"{run_id}.json").read_text())
    index = json.loads((home / "state" / "tasks.json").read_text())
    entry = index["runs"][0]
    for n in range(runs - 1):
        other = f"20260101T{n // 3600:02d}{n // 60 % 60:02d}{n % 60:02d}Z-{n:06x}"
        (home / "state" / "runs" / f"{other}.json").write_text(
            json.dumps({**document, "run_id": other})
        )
        index["runs"].append({**entry, "run_id": other})
    (home / "state" / "tasks.json").write_text(json.dumps(index))
    return env


def bench_audit(env: dict[str, str]) -> float:
    from aiswitch.home import Home
    from aiswitch.state.audit import audit

    home = Home(Path(env["AISWITCH_HOME"]))
    count = 2000
    start = time.perf_counter()
    for n in range(count):
        audit("bench.record", home=home, n=n, preset="p", variables=["A", "B"])
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aiswitch-bench-ops-") as tmp:
        env = make_home(Path(tmp), args.runs)
        audit_s = [bench_audit(env) for _ in range(args.repeat)]
        print(f"audit record append:        {summary(audit_s, 'us', 1e6)}")
        tabs: dict[str, Callable[[], tuple[float, float]]] = {}
        for words in (
            ["aiswitch", "runs", "show", "2026"],
            ["aiswitch", "preset", "show", ""],
            ["aiswitch", "run", "-p", "mock,"],
        ):
            tab_env = {
                **env,
                "_AISWITCH_COMPLETE": "complete_bash",
                "COMP_WORDS": " ".join(words),
                "COMP_CWORD": str(len(words) - 1),
            }
            tabs[" ".join(words[1:])] = lambda e=tab_env: timed([BIN], e)
        for name, tab in tabs.items():
            results = [tab() for _ in range(args.repeat)]
            print(f"completion {name!r:<22} {both(results)}")
        doctor = [timed([BIN, "doctor", "--json"], env) for _ in range(args.repeat)]
        print(f"doctor --json ({args.runs} runs)      {both(doctor)}")
        run = [BIN, "run", "-p", "mock,mock,mock,mock", "x", "--json"]
        plain = [timed(run, env)[0] for _ in range(args.repeat)]
        coordination = Path(env["AISWITCH_HOME"]) / "config" / "coordination.yaml"
        coordination.write_text("notify:\n  command: cat > /dev/null\n")
        notified = [timed([*run, "--notify"], env)[0] for _ in range(args.repeat)]
        print(f"run 4 mocks                  wall {summary(plain)}")
        print(f"run 4 mocks --notify (5 cmd) wall {summary(notified)}")


if __name__ == "__main__":
    main()
