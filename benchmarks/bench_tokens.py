"""Token report benchmarks (figures, not a test): `.venv/bin/python benchmarks/bench_tokens.py`.

1. A ledger of 1,000,000 records -> `report --by day --json`, cold (no index) and warm (the
   same report again; then a different report over the warm per-file index).
2. A generated Claude log set (~200,000 assistant lines in ~2,000 files) -> our
   `--source claude --by day` report beside `ccusage claude daily --json -O` on the same
   files, cold and warm, and whether the totals match.
3. On the same Claude logs: `tokens blocks --json` beside `ccusage blocks --json -O` (cold,
   interleaved, medians; warm; whether the blocks match), and `tokens statusline` warm (wall
   time and CPU time of the process, medians of `--statusline-repeat` runs).

Each timing runs in a fresh Python process (what a user's command costs, start-up included).
Data is generated in a temporary directory. ccusage comes from scripts/setup/ccusage.sh.
Options: `--records N`, `--claude-lines N`, `--claude-files N`, `--keep DIR` (reuse data),
`--ledger-only` (skip parts 2 and 3), `--claude-only` (skip part 1), `--no-blocks` (skip part 3),
`--statusline-repeat N` (warm status lines timed; default 20), `--full-records` (write every
field of every record, as ledgers written before `ledger_line` did; the default is the compact
lines `LedgerWriter` writes now), `--repeat N` (cold Claude runs, each followed by a ccusage run
so both see the same machine; their medians are compared; default 5), `--ledger-repeat N`
(cold ledger runs, median; default 3), `--legacy-lines` (Claude logs of Claude Code 2.0
lines only and without `stop_sequence: null`, as earlier figures used; by default half the
sessions are in Claude Code 2.1's shape and every assistant message has the null the API
sends).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.ccusage import ccusage_env, ccusage_path  # noqa: E402
from support.claude_logs import LogSetSpec, write_claude_logs  # noqa: E402

MODELS = ("claude-sonnet-4-5-20250929", "gpt-5-codex", "gemini-2.5-pro", "kimi-k2-0905-preview")
AGENTS = ("claude", "codex", "gemini")

# The console script, as a user runs it (start-up, imports and the CLI's fast path included).
AISWITCH = Path(sys.executable).with_name("aiswitch")


# Fields a compact ledger line leaves out when they hold these values (`ledger_line`).
COMPACT_DEFAULTS = {"source": "aiswitch", "cost_source": "unpriced", "reasoning_tokens": 0}


def write_ledger(path: Path, records: int, *, full: bool = False) -> None:
    rng = random.Random(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = 1_767_225_600  # 2026-01-01T00:00:00Z
    with path.open("w", encoding="utf-8") as out:
        for index in range(records):
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + index * 30))
            record = {
                "v": 1,
                "ts": f"{ts}.{index % 1000:03d}Z",
                "source": "aiswitch",
                "run_id": f"run-{index // 500}",
                "task_id": f"task-{index // 50}",
                "agent": AGENTS[index % 3],
                "agent_id": f"{AGENTS[index % 3]}-1",
                "preset": "default",
                "provider": "api.example.com",
                "model": MODELS[index % len(MODELS)],
                "session_id": f"s-{index // 200}",
                "message_id": f"msg_{index:09d}",
                "request_id": f"req_{index:09d}",
                "input_tokens": rng.randint(1, 5000),
                "output_tokens": rng.randint(1, 2000),
                "cache_read_tokens": rng.randint(0, 50_000),
                "cache_write_tokens": rng.randint(0, 5_000),
                "reasoning_tokens": 0,
                "cost_usd": None,
                "cost_source": "unpriced",
            }
            if not full:
                record = {
                    key: value
                    for key, value in record.items()
                    if value is not None and COMPACT_DEFAULTS.get(key, ...) != value
                }
            out.write(json.dumps(record, separators=(",", ":")) + "\n")


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def ours(source: str, home: Path, by: str, env: dict[str, str]) -> tuple[float, dict]:  # type: ignore[type-arg]
    """`aiswitch tokens report --source SOURCE --by BY --timezone UTC --json`, timed."""
    command = [str(AISWITCH), "tokens", "report", "--source", source, "--by", by]
    run_env = {"PATH": os.environ.get("PATH", ""), **env, "AISWITCH_HOME": str(home)}
    seconds, out = timed([*command, "--timezone", "UTC", "--json"], run_env)
    return seconds, json.loads(out)


def ledger_part(args: argparse.Namespace, base: Path, table: list[tuple[str, str, str]]) -> None:
    """Part 1: a ledger of `--records` records, cold (median of `--ledger-repeat` runs without
    the index or cached reports) and warm."""
    home = base / "home"
    if not (home / "state" / "tokens.jsonl").exists():
        write_ledger(home / "state" / "tokens.jsonl", args.records, full=args.full_records)
    cold_runs: list[float] = []
    for _ in range(args.ledger_repeat):
        shutil.rmtree(home / "tmp", ignore_errors=True)
        seconds, report = ours("aiswitch", home, "day", {})
        cold_runs.append(seconds)
    warm, again = ours("aiswitch", home, "day", {})
    index_warm, _ = ours("aiswitch", home, "day,agent", {})
    assert again["totals"] == report["totals"]
    size = (home / "state" / "tokens.jsonl").stat().st_size
    label = f"ledger {args.records:,} records ({size / 1e6:.0f} MB)"
    runs = ", ".join(f"{value:.2f}" for value in cold_runs)
    cold = statistics.median(cold_runs)
    table.append((label, "report --by day --json, cold (median)", f"{cold:.2f} s ({runs})"))
    table.append((label, "report --by day --json, warm", f"{warm:.2f} s"))
    table.append((label, "report --by day,agent (warm index)", f"{index_warm:.2f} s"))


def claude_part(args: argparse.Namespace, base: Path, table: list[tuple[str, str, str]]) -> None:
    """Part 2: a generated Claude log set, ours beside ccusage."""
    config = base / ("claude-legacy" if args.legacy_lines else "claude")
    if not config.exists():
        spec = LogSetSpec(
            files=args.claude_files,
            assistant_lines=args.claude_lines,
            days=30,
            legacy=args.legacy_lines,
        )
        stats = write_claude_logs(config, spec)
        print(
            f"generated {stats.assistant_lines:,} assistant lines in {stats.files:,} "
            f"files ({stats.bytes / 1e6:.0f} MB)"
        )
    claude_home = base / "claude-home"
    env = {"CLAUDE_CONFIG_DIR": str(config), "HOME": str(base)}
    cc_env = ccusage_env(config, base)
    cc_args = [str(ccusage_path()), "claude", "daily", "--json", "-O", "--timezone", "UTC"]
    cc_first, cc_out = timed(cc_args, cc_env)
    # Cold runs of ours interleaved with ccusage runs (whose page cache is then as warm as
    # ours), so that both see the same machine; the medians are compared.
    cc_runs: list[float] = []
    cold_runs: list[float] = []
    for _ in range(args.repeat):
        shutil.rmtree(claude_home, ignore_errors=True)
        seconds, our_report = ours("claude", claude_home, "day", env)
        cold_runs.append(seconds)
        cc_runs.append(timed(cc_args, cc_env)[0])
    our_cold, cc_warm = statistics.median(cold_runs), statistics.median(cc_runs)
    our_warm, _ = ours("claude", claude_home, "day", env)
    our_index, _ = ours("claude", claude_home, "day,model", env)
    theirs = json.loads(cc_out)["totals"]
    mine = our_report["totals"]
    match = (
        theirs["inputTokens"] == mine["input_tokens"]
        and theirs["outputTokens"] == mine["output_tokens"]
        and theirs["cacheCreationTokens"] == mine["cache_write_tokens"]
        and theirs["cacheReadTokens"] == mine["cache_read_tokens"]
    )
    shape = "2.0 lines, no nulls" if args.legacy_lines else "2.0 + 2.1 lines"
    label = f"claude {args.claude_lines:,} lines ({shape})"
    runs = ", ".join(f"{value:.2f}" for value in cc_runs)
    table.append((label, "ccusage claude daily --json -O (1st)", f"{cc_first:.2f} s"))
    table.append((label, "ccusage, later runs (median)", f"{cc_warm:.2f} s ({runs})"))
    runs = ", ".join(f"{value:.2f}" for value in cold_runs)
    table.append((label, "ours --source claude --by day, cold", f"{our_cold:.2f} s ({runs})"))
    table.append((label, "ours --source claude --by day, warm", f"{our_warm:.2f} s"))
    table.append((label, "ours --by day,model (warm index)", f"{our_index:.2f} s"))
    table.append((label, "cold / ccusage", f"{our_cold / cc_warm:.2f}x"))
    table.append((label, "ccusage / warm", f"{cc_warm / our_warm:.1f}x"))
    table.append((label, "totals equal to ccusage", "yes" if match else "NO"))
    table.append(
        (label, "cost ours / ccusage", f"{mine['cost_usd']:.4f} / {theirs['totalCost']:.4f}")
    )


def blocks_part(args: argparse.Namespace, base: Path, table: list[tuple[str, str, str]]) -> None:
    """Part 3: `tokens blocks` beside `ccusage blocks`, and the status line, on part 2's logs."""
    import resource

    config = base / ("claude-legacy" if args.legacy_lines else "claude")
    blocks_home = base / "blocks-home"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "CLAUDE_CONFIG_DIR": str(config),
        "HOME": str(base),
        "AISWITCH_HOME": str(blocks_home),
    }
    cc_env = ccusage_env(config, base)
    cc_args = [str(ccusage_path()), "blocks", "--json", "-O"]
    our_args = [str(AISWITCH), "tokens", "blocks", "--json"]
    timed(cc_args, cc_env)  # the page cache as warm for both
    cc_runs: list[float] = []
    cold_runs: list[float] = []
    for _ in range(args.repeat):
        shutil.rmtree(blocks_home, ignore_errors=True)
        seconds, out = timed(our_args, env)
        cold_runs.append(seconds)
        seconds, cc_out = timed(cc_args, cc_env)
        cc_runs.append(seconds)
    warm, _ = timed(our_args, env)
    mine, theirs = json.loads(out)["blocks"], json.loads(cc_out)["blocks"]
    match = [(b["id"], b["totalTokens"], b["entries"]) for b in mine] == [
        (b["id"], b["totalTokens"], b["entries"]) for b in theirs
    ]
    label = f"claude {args.claude_lines:,} lines"
    cold, cc = statistics.median(cold_runs), statistics.median(cc_runs)
    runs = ", ".join(f"{value:.2f}" for value in cc_runs)
    table.append((label, "ccusage blocks --json -O (median)", f"{cc:.2f} s ({runs})"))
    runs = ", ".join(f"{value:.2f}" for value in cold_runs)
    table.append((label, "ours tokens blocks --json, cold", f"{cold:.2f} s ({runs})"))
    table.append((label, "ours tokens blocks --json, warm", f"{warm:.2f} s"))
    table.append((label, "blocks cold / ccusage", f"{cold / cc:.2f}x"))
    table.append((label, "blocks equal to ccusage's", "yes" if match else "NO"))
    hook = json.dumps({"session_id": theirs[-1]["id"], "model": {"display_name": "Opus"}})
    statusline = [str(AISWITCH), "tokens", "statusline"]
    subprocess.run(statusline, input=hook, env=env, capture_output=True, text=True, check=True)
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(args.statusline_repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(statusline, input=hook, env=env, capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    version = [timed([str(AISWITCH), "--version"])[0] for _ in range(args.statusline_repeat)]
    table.append(
        (
            label,
            "statusline warm: wall / cpu (median)",
            f"{statistics.median(walls) * 1000:.0f} ms / {statistics.median(cpus) * 1000:.0f} ms "
            f"(min {min(walls) * 1000:.0f} / {min(cpus) * 1000:.0f})",
        )
    )
    table.append(
        (label, "aiswitch --version (median)", f"{statistics.median(version) * 1000:.0f} ms")
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--claude-lines", type=int, default=200_000)
    parser.add_argument("--claude-files", type=int, default=2_000)
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--ledger-only", action="store_true")
    parser.add_argument("--claude-only", action="store_true")
    parser.add_argument(
        "--legacy-lines",
        action="store_true",
        help="Claude logs as this generator wrote them before: 2.0 lines without nulls",
    )
    parser.add_argument("--full-records", action="store_true")
    parser.add_argument("--repeat", type=int, default=5, help="cold Claude runs (median)")
    parser.add_argument("--ledger-repeat", type=int, default=3, help="cold ledger runs (median)")
    parser.add_argument("--statusline-repeat", type=int, default=20, help="warm status lines")
    parser.add_argument("--no-blocks", action="store_true", help="skip part 3")
    args = parser.parse_args()
    # Time the command as installed: with its bytecode compiled (an editable install, or
    # PYTHONDONTWRITEBYTECODE, would otherwise compile changed modules on every run).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "aiswitch")], check=True)
    base = args.keep or Path(tempfile.mkdtemp(prefix="aiswitch-bench-"))
    table: list[tuple[str, str, str]] = []
    try:
        if not args.claude_only:
            ledger_part(args, base, table)
        if not args.ledger_only:
            claude_part(args, base, table)
            if not args.no_blocks:
                blocks_part(args, base, table)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    width = max(len(row[0]) for row in table)
    what = max(len(row[1]) for row in table)
    print(f"{'data':<{width}}  {'measure':<{what}}  value")
    for data, measure, value in table:
        print(f"{data:<{width}}  {measure:<{what}}  {value}")
    print(f"cpus: {os.cpu_count()}  python: {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
