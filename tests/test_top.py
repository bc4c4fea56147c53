"""`aiswitch top`: `ps` live with totals on a terminal (a real pty), one frame when piped."""

from __future__ import annotations

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
