"""What `aiswitch run` shows a person on a real terminal (a pty, through a VT emulator) at
80 and 160 columns: the live table while agents work, then the result panels and totals.
And what it prints when stdout is piped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.cli import run_cli
from support.screen import Terminal

from aiswitch.home import Home

WIDTHS = (80, 160)
PROMPT = "summarise the parser module and list what it lacks, file by file"
LONG_WORD = "W" * 150
OUTPUT = f"first line\n{LONG_WORD}\nlast words\n\n"


@pytest.fixture
def presets(env: dict[str, str]) -> None:
    for name, *pairs in (
        ("priced", "MOCK_COST_USD=0.0125"),
        ("failing-provider-eu", "MOCK_FAILURE_RATE=1"),
        ("hangs-for-ever-provider", "MOCK_HANG=1", "MOCK_USAGE_EARLY=1"),
    ):
        done = run_cli("preset", "add", name, *pairs, "--agent", "mock", env=env)
        assert done.code == 0, done.stderr


def rows_of(screen: list[str], *agents: str) -> dict[str, str]:
    return {a: line for a in agents for line in screen if line.startswith(a + " ")}


@pytest.mark.parametrize("cols", WIDTHS)
def test_the_live_table_keeps_agent_status_and_elapsed_and_shrinks_the_last_line(
    cols: int, env: dict[str, str], presets: None, tmp_path: Path
) -> None:
    agents = ("mock#1", "mock#2", "mock#3")
    hangs = "mock@hangs-for-ever-provider"
    term = Terminal(
        "run", "--parallel", f"mock@failing-provider-eu,{hangs},{hangs}", PROMPT,
        env={**env, "MOCK_STEPS": "1"}, cols=cols, rows=30, cwd=tmp_path,
    )  # fmt: skip
    try:

        def settled(screen: list[str]) -> bool:
            rows = rows_of(screen, *agents)
            return (
                len(rows) == 3
                and "✗ failed" in rows[agents[0]]
                and all("▶ running" in rows[a] and "step 1/1" in rows[a] for a in agents[1:])
                and all(" 0 in " not in rows[a] for a in agents[1:])
            )

        screen = term.wait_for(settled)
        header = next(line for line in screen if line.startswith("agent "))
        rows = rows_of(screen, *agents)
        # Usage shows as it arrives: the hanging tasks reported theirs and never ended.
        for agent in agents[1:]:
            assert re.search(r" [1-9][\d,]* in · [1-9][\d,]* out ", rows[agent]), rows[agent]
            assert re.search(r"▶ running\s+\d+\.\ds", rows[agent])
        # A failed task's last output is its error.
        assert rows[agents[0]].rstrip().endswith("mock: simulated failure")
        progress = f"step 1/1: working on {PROMPT[:40]!r}"
        if cols == 80:
            # The last line shrinks first; then the changes and the (long) preset give
            # way; agent, status, elapsed and the tokens stay.
            assert header.split() == ["agent", "status", "elapsed", "tokens", "last", "output"]
            for agent in agents[1:]:
                assert rows[agent].endswith("…") and progress not in rows[agent]
                assert progress.startswith(rows[agent].split("out ")[1].strip()[:-1])
        else:
            assert header.split() == [
                "agent", "preset", "status", "elapsed", "tokens", "changes", "last", "output",
            ]  # fmt: skip
            for agent in agents[1:]:
                assert rows[agent].endswith(progress)
        assert all(len(line) <= cols for line in screen)
        (entry,) = run_cli("runs", "list", "--status", "running", "--json", env=env).json()["runs"]
        assert run_cli("runs", "cancel", entry["run_id"], env=env).code == 0
        assert term.finish() == 130
    finally:
        term.close()


@pytest.mark.parametrize("cols", WIDTHS)
def test_the_result_panels_keep_their_footers_fold_long_words_and_show_cost(
    cols: int, env: dict[str, str], presets: None, tmp_path: Path
) -> None:
    term = Terminal(
        "run", "--parallel", "mock@priced,mock", "x",
        env={**env, "MOCK_OUTPUT": OUTPUT, "MOCK_CACHE_WRITE_TOKENS": "7"},
        cols=cols, rows=60, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert term.finish() == 0
    finally:
        term.close()
    screen = term.lines()
    text = "\n".join(screen)
    # Every footer whole: status and time, then the border to the corner.
    footers = [line for line in screen if "╰─ ✓ ok · " in line]
    assert len(footers) == 2 or (len(footers) == 1 and footers[0].count("╰─ ✓ ok") == 2)
    assert all(re.search(r"╰─ ✓ ok · \d+\.\ds ─+╯", line) for line in footers)
    # The long word is folded onto the next lines, whole, in both panels; nothing is cut.
    assert text.count("W") == 2 * len(LONG_WORD)
    assert "…" not in text
    assert text.count("last words") == 2
    assert text.count("7 cache write") == 2  # in each panel, as its usage line
    assert "· $0.0125" in text and "· unpriced" in text
    run_line = next(line for line in screen if line.startswith("run "))
    assert "cache write)" in text and "$0.0125 (+1 unpriced)" in text
    assert run_line.startswith("run ") and " ok · parallel · " in run_line
    side_by_side = any(line.count("╭─ mock") == 2 for line in screen)
    assert side_by_side == (cols == 160)


def test_piped_the_run_lines_are_whole_and_a_batch_shows_each_tasks_last_line_or_error(
    env: dict[str, str], presets: None, tmp_path: Path, home: Home
) -> None:
    done = run_cli(
        "run", "--parallel", "mock@priced,mock", "x", cwd=tmp_path,
        env={**env, "MOCK_OUTPUT": OUTPUT, "MOCK_CACHE_WRITE_TOKENS": "7"},
    )  # fmt: skip
    assert done.code == 0, done.stderr
    (run_line,) = [line for line in done.stdout.splitlines() if line.startswith("run ")]
    assert len(run_line) > 80
    assert run_line.endswith("14 cache write) · $0.0125 (+1 unpriced)")
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("".join(f"task {n}\n" for n in range(13)))
    batch = run_cli(
        "run", "--agent", "mock", "--tasks", str(tasks), cwd=tmp_path,
        env={**env, "MOCK_OUTPUT": "a first line\nthe last line\n\n"},
    )  # fmt: skip
    lines = batch.stdout.splitlines()
    task_lines = [line for line in lines if " mock#1 ok · " in line]
    assert len(task_lines) == 13
    assert all(line.endswith("ok · the last line") for line in task_lines)
    failed = run_cli(
        "run", "--agent", "mock@failing-provider-eu", "--tasks", str(tasks), cwd=tmp_path, env=env
    )
    assert (
        sum(
            line.endswith("failed · mock: simulated failure") for line in failed.stdout.splitlines()
        )
        == 13
    )


def test_running_totals_an_agent_reports_show_live_and_are_never_recorded(
    env: dict[str, str], tmp_path: Path, home: Home
) -> None:
    """`task.progress` usage (the mock's MOCK_USAGE_LIVE, as claude's adapter sends it):
    shown as `~` figures in the live table, `ps` and the progress line while the task runs;
    the ledger and the run's file hold only the task's `tokens.usage`."""
    live = {"MOCK_USAGE_LIVE": "1", "MOCK_STEPS": "2", "MOCK_INPUT_TOKENS": "800"}
    term = Terminal(
        "run", "--agent", "mock", "x", env={**env, **live, "MOCK_HANG": "1"},
        cols=160, rows=20, cwd=tmp_path,
    )  # fmt: skip
    try:

        def shows_all_so_far(screen: list[str]) -> bool:
            row = rows_of(screen, "mock#1").get("mock#1", "")
            return "▶ running" in row and "~800 in · " in row

        screen = term.wait_for(shows_all_so_far)
        # The progress line counts them too; the ledger has nothing.
        assert any(re.search(r" · [1-9][\d,]* tokens · ", line) for line in screen), screen
        (process,) = run_cli("ps", "--json", env=env).json()["processes"]
        assert process["tokens"] > 800
        assert (
            not (home.state / "tokens.jsonl").exists()
            or not (home.state / "tokens.jsonl").read_text().strip()
        )
        (entry,) = run_cli("runs", "list", "--status", "running", "--json", env=env).json()["runs"]
        assert run_cli("runs", "cancel", entry["run_id"], env=env).code == 0
        assert term.finish() == 130
    finally:
        term.close()
    shown = run_cli("runs", "show", entry["run_id"], "--json", env=env).json()
    # Cancelled before its usage was reported: none is recorded, none is written.
    assert shown["results"][0]["usage"]["input_tokens"] == 0
    assert shown["usage"]["input_tokens"] == 0

    done = run_cli("run", "--agent", "mock", "x", "--json", env={**env, **live}, cwd=tmp_path)
    assert done.code == 0, done.stderr
    (result,) = done.json()["results"]
    records = [json.loads(line) for line in (home.state / "tokens.jsonl").read_text().splitlines()]
    # Counted once: the ledger holds the task's usage, not the running totals as well.
    assert [r.get("input_tokens") for r in records] == [800]
    assert result["usage"]["input_tokens"] == 800
