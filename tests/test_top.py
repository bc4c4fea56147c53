"""`aiswitch top`: `ps` live with totals on a terminal (a real pty), one frame when piped."""

from __future__ import annotations

import pytest
from support.cli import run_cli
from support.screen import Terminal
from test_run_control import hanging_run, running_run

from aiswitch.home import Home


def test_top_shows_the_processes_live_with_totals_and_q_quits(
    env: dict[str, str], home: Home
) -> None:
    with hanging_run(env, "mock", "mock@fast"):
        run_id = running_run(env)
        term = Terminal("top", "--interval", "0.5", env=env, cols=160, rows=20)
        try:
            screen = term.wait_for(lambda s: any("2 processes" in line for line in s))
            assert screen[0].startswith("aiswitch top · ")
            assert screen[0].endswith("2 agent processes in 1 run · every 0.5s · q quits")
            header = next(line for line in screen if line.startswith("agent "))
            assert header.split()[:5] == ["agent", "run", "preset", "pid", "state"]
            rows = [line for line in screen if line.startswith(("mock.p1 ", "mock@fast.p1 "))]
            assert len(rows) == 2 and all(run_id in row and "running" in row for row in rows)
            totals = next(line for line in screen if "2 processes" in line).split()
            assert totals[:4] == ["2", "processes", "1", "run"]
            assert "0/2" in totals  # tasks done / in flight, summed
            term.send(b"q")
            assert term.finish() == 0
        finally:
            term.close()
        # The alternate screen is left: the terminal shows what it showed before top.
        assert b"\x1b[?1049l" in term.raw
        piped = run_cli("top", env=env)
        assert piped.code == 0, piped.stderr
        lines = piped.stdout.splitlines()
        assert lines[0].endswith("2 agent processes in 1 run")  # no keys to tell of
        assert lines[1].split()[:3] == ["agent", "run", "preset"]
        assert lines[-1].split()[:4] == ["2", "processes", "1", "run"]
        assert len(lines) == 5


def test_top_piped_with_nothing_running_says_so_and_a_bad_interval_is_one_line(
    env: dict[str, str],
) -> None:
    done = run_cli("top", env=env)
    assert done.code == 0
    assert done.stdout.splitlines()[1:] == ["no agent process is running"]
    bad = run_cli("top", "--interval", "0", env=env)
    assert bad.code == 2 and bad.stderr.startswith("aiswitch: error: --interval 0 is out of range")


# An agent id as long as a real one gets (`claude@kimi-k2-eu.p1`), and a second process.
LONG_PRESET = "provider-eu-west"
AGENTS = ("mock.p1", f"mock@{LONG_PRESET}.p1")
EVERY_COLUMN = [
    "agent", "run", "preset", "pid", "state", "uptime", "restarts", "done/in", "flight",
    "tokens", "cpu%", "rss",
]  # fmt: skip


@pytest.mark.parametrize("cols", (80, 160))
@pytest.mark.parametrize("command", ("top", "ps"))
def test_top_and_ps_keep_their_most_important_columns_readable_on_a_narrow_terminal(
    command: str, cols: int, env: dict[str, str]
) -> None:
    added = run_cli("preset", "add", LONG_PRESET, "MOCK_USAGE_EARLY=1", "--agent", "mock", env=env)
    assert added.code == 0, added.stderr
    with hanging_run(env, "mock", f"mock@{LONG_PRESET}"):
        run_id = running_run(env)
        term = Terminal(command, env=env, cols=cols, rows=20)
        try:
            if command == "top":
                screen = term.wait_for(lambda s: any("2 processes" in line for line in s))
                term.send(b"q")
            assert term.finish() == 0
        finally:
            term.close()
        if command == "ps":
            screen = term.lines()
        assert run_cli("runs", "cancel", run_id, env=env).code == 0
    assert all(len(line) <= cols for line in screen), screen
    header = next(line for line in screen if line.startswith("agent "))
    rows = {a: line for a in AGENTS for line in screen if line.startswith(a + " ")}
    assert len(rows) == 2, screen
    if cols == 80:
        # The run id shrinks to its end; restarts, pid, uptime, preset and RSS give way;
        # agent, state, tasks done / in flight and tokens stay whole.
        assert header.split() == ["agent", "run", "state", "done/in", "flight", "tokens", "cpu%"]
    else:
        assert header.split() == EVERY_COLUMN
    for agent, row in rows.items():
        cells = row.split()
        assert cells[0] == agent and "running" in cells and "0/1" in cells, row
        if cols == 80:
            # At least the run id's random part (its last 6 characters) is left.
            shown_run = cells[1]
            assert shown_run[0] == "…" and run_id.endswith(shown_run[1:]), row
            assert len(shown_run) >= 7 and cells[2] == "running"
        else:
            assert cells[1] == run_id
    # Tokens as they arrive: the early-usage preset's process reported some.
    tokens = int(rows[AGENTS[1]].split("0/1")[1].split()[0].replace(",", ""))
    assert tokens > 0
    if command == "top":
        totals = next(line for line in screen if "2 processes" in line).split()
        assert totals[:4] == ["2", "processes", "1", "run"] and "0/2" in totals
