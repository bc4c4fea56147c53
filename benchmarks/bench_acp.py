"""Bridge overhead of the acp adapter: `gemini-acp` against the native `gemini` adapter.

    .venv/bin/python benchmarks/bench_acp.py                 # 10 pairs
    .venv/bin/python benchmarks/bench_acp.py --pairs 20 --json
    .venv/bin/python benchmarks/bench_acp.py --handshake 20  # adapters' spawn-to-ready only

Both agents run the same pinned Gemini CLI (scripts/setup/agent-clis.sh installs it into
the test cache) against `aiswitch.testing.fake_provider` on 127.0.0.1, through the
installed `aiswitch run --agent AGENT@fake PROMPT --json`, one task per run: the native
adapter runs `gemini -p … -o stream-json`, the acp adapter `gemini --experimental-acp`
plus the ACP round trips (initialize, session/new, session/prompt, updates). Runs are
paired and interleaved (the order alternates pair by pair) so the machine's load hits
both alike; the figures are medians, with the ratio also taken pair by pair.

Figures: the task's `duration_s` (from assignment to result, inside the adapter: what the
bridge adds) and the whole command's wall time. Goal (issue 16): gemini-acp <= 1.1x the
native adapter's per-task time. The load average is printed before and after: on a shared
machine it is part of the figure.

`--handshake N`: each adapter's spawn-to-ready (`python -m aiswitch_adapters.X` until its
`agent.initialize` reply is read), N interleaved runs, medians: the acp adapter starts no
agent at its handshake, only finds the binary, so it must stay as cheap as the native one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiswitch.testing.fake_provider import FakeProvider
from aiswitch.testing.fake_script import ApiKind, FakeUsage, Script, TextReply

MODEL = "fake-gemini"
PROMPT = "Review the parser"
# One task of a node CLI on a loaded machine takes seconds; past this it is hung.
RUN_TIMEOUT_S = 120.0
AGENTS = ("gemini", "gemini-acp")


def cache_root() -> Path:
    override = os.environ.get("AISWITCH_TEST_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "aiswitch-test"


def aiswitch_bin() -> str:
    return str(Path(sys.executable).parent / "aiswitch")


def environment(root: Path, bin_dir: Path) -> dict[str, str]:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not on PATH (Gemini CLI needs it)")
    return {
        "PATH": os.pathsep.join(
            [str(bin_dir), str(Path(node).resolve().parent), "/usr/bin", "/bin"]
        ),
        "HOME": str(root / "home"),
        "AISWITCH_HOME": str(root / "ais"),
        "TMPDIR": str(root / "tmp"),
        "LANG": "C.UTF-8",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def run_once(agent: str, env: dict[str, str], work: Path) -> tuple[float, float]:
    """One `aiswitch run`: (the task's duration_s, the command's wall seconds)."""
    started = time.perf_counter()
    done = subprocess.run(
        [aiswitch_bin(), "run", "--agent", f"{agent}@fake", PROMPT, "--json"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    wall = time.perf_counter() - started
    try:
        result = json.loads(done.stdout)["results"][0]
    except (ValueError, KeyError, IndexError):
        raise SystemExit(f"{agent}: exit {done.returncode}: {done.stderr.strip()[-400:]}") from None
    if result["status"] != "ok":
        raise SystemExit(f"{agent}: {result['status']}: {result.get('error')}")
    return float(result["duration_s"]), wall


def handshake(module: str, config: dict[str, Any], env: dict[str, str]) -> float:
    """Seconds from spawn until the adapter's `agent.initialize` reply is read."""
    params = {"agent_id": f"{module}#1", "parent_pid": os.getpid(), "config": config}
    line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "agent.initialize", "params": params})
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", f"aiswitch_adapters.{module}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((line + "\n").encode())
    proc.stdin.flush()
    reply = json.loads(proc.stdout.readline())
    elapsed = time.perf_counter() - started
    proc.stdin.close()  # an adapter exits when its stdin closes
    proc.wait()
    if "result" not in reply:
        raise SystemExit(f"{module} refused agent.initialize: {reply}")
    return elapsed


def handshakes(runs: int, bin_dir: Path) -> None:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    cases = {
        "gemini": ("gemini", {}),
        "acp (gemini-acp)": (
            "acp",
            {"acp_command": ["gemini", "--experimental-acp"], "acp_cli": "gemini"},
        ),
        "mock": ("mock", {}),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, (module, config) in cases.items():
            times[name].append(handshake(module, config, env))
    print(f"spawn-to-ready, {runs} interleaved runs, load average {os.getloadavg()[0]:.2f}")
    for name, values in times.items():
        s = summary(values)
        print(
            f"{name:<18}{s['median'] * 1000:7.1f} ms ({s['min'] * 1000:.1f}..{s['max'] * 1000:.1f})"
        )


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument(
        "--bin-dir", type=Path, default=cache_root() / "npm" / "node_modules" / ".bin"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--handshake", type=int, default=0, metavar="N")
    args = parser.parse_args()
    if args.handshake:
        handshakes(args.handshake, args.bin_dir)
        return
    if not (args.bin_dir / "gemini").exists():
        raise SystemExit(f"no gemini in {args.bin_dir}: run `bash scripts/setup/agent-clis.sh`")

    base = cache_root() / "bench"
    base.mkdir(parents=True, exist_ok=True)
    # Not under /tmp: gemini ignores a system settings file below a folder others may write.
    root = Path(tempfile.mkdtemp(prefix="acp-", dir=base))
    for folder in ("home", "ais", "tmp", "work"):
        (root / folder).mkdir()
    load_before = os.getloadavg()
    durations: dict[str, list[float]] = {agent: [] for agent in AGENTS}
    walls: dict[str, list[float]] = {agent: [] for agent in AGENTS}
    try:
        usage = FakeUsage(input_tokens=700, output_tokens=150)
        with FakeProvider(Script(default=TextReply("Reviewed, looks fine.", usage=usage))) as fake:
            env = environment(root, args.bin_dir)
            variables = [
                f"GOOGLE_GEMINI_BASE_URL={fake.url}",
                "GEMINI_API_KEY=fake-gemini-bench-key",
                f"GEMINI_MODEL={MODEL}",
            ]
            subprocess.run(
                [aiswitch_bin(), "preset", "add", "fake", *variables],
                env=env,
                check=True,
                capture_output=True,
            )
            # One unmeasured run each: the first pays for cold caches and settings files.
            for agent in AGENTS:
                run_once(agent, env, root / "work")
            for pair in range(args.pairs):
                order = AGENTS if pair % 2 == 0 else AGENTS[::-1]
                for agent in order:
                    duration, wall = run_once(agent, env, root / "work")
                    durations[agent].append(duration)
                    walls[agent].append(wall)
            requests = len(fake.requests_for(ApiKind.GEMINI))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()
    pair_ratios = [a / n for a, n in zip(durations["gemini-acp"], durations["gemini"], strict=True)]
    report: dict[str, Any] = {
        "pairs": args.pairs,
        "requests_to_fake": requests,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "task_s": {agent: summary(values) for agent, values in durations.items()},
        "wall_s": {agent: summary(values) for agent, values in walls.items()},
        "ratio_of_medians": statistics.median(durations["gemini-acp"])
        / statistics.median(durations["gemini"]),
        "median_pair_ratio": statistics.median(pair_ratios),
        "wall_ratio_of_medians": statistics.median(walls["gemini-acp"])
        / statistics.median(walls["gemini"]),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"pairs: {args.pairs} (interleaved), requests to the fake: {requests}")
    print(f"load average before: {report['load_before']}, after: {report['load_after']}")
    print(f"{'':<12}{'task s (median, min..max)':<32}{'command wall s (median, min..max)'}")
    for agent in AGENTS:
        t, w = report["task_s"][agent], report["wall_s"][agent]
        print(
            f"{agent:<12}{t['median']:.3f} ({t['min']:.3f}..{t['max']:.3f})".ljust(44)
            + f"{w['median']:.3f} ({w['min']:.3f}..{w['max']:.3f})"
        )
    print(
        f"gemini-acp / gemini per task: {report['ratio_of_medians']:.3f}x (ratio of medians), "
        f"{report['median_pair_ratio']:.3f}x (median of pair ratios); "
        f"command wall: {report['wall_ratio_of_medians']:.3f}x; goal <= 1.1x"
    )


if __name__ == "__main__":
    main()
