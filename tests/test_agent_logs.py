"""Agent logs per run (`logs/agents/<run>/<agent-id>.log`) and `aiswitch logs`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from support.cli import assert_one_error_line, run_cli

from aiswitch.home import Home
from aiswitch.supervisor.logs import merged


def test_two_runs_of_the_same_agent_write_two_logs_and_logs_reads_each(
    env: dict[str, str], home: Home
) -> None:
    env["MOCK_LOG_ENV"] = "1"  # each task writes lines to the agent's log
    first = run_cli("run", "-a", "mock", "one", "--json", env=env).json()["run_id"]
    second = run_cli("run", "-p", "mock,mock@fast", "two", "--json", env=env).json()["run_id"]
    one = home.agent_logs / first / "mock.p1.log"
    assert one.exists() and oct(one.stat().st_mode & 0o777) == "0o600"
    assert oct((home.agent_logs / first).stat().st_mode & 0o777) == "0o700"
    assert f"run {first} " in one.read_text() and second not in one.read_text()
    assert sorted(p.name for p in (home.agent_logs / second).iterdir()) == [
        "mock.p1.log",
        "mock@fast.p1.log",
    ]
    both = run_cli("logs", "--run", second, env=env)
    assert both.code == 0, both.stderr
    agents = {line.split(" | ")[0].strip() for line in both.stdout.splitlines()}
    assert agents == {"mock.p1", "mock@fast.p1"}
    assert "==== " in both.stdout and "[mock-cli] " in both.stdout
    # Without --run, the agent's newest run.
    newest = run_cli("logs", "mock.p1", env=env)
    assert newest.stderr == f"run {second}\n"
    assert {line.split(" | ")[0] for line in newest.stdout.splitlines()} == {"mock.p1"}
    assert f"run {second} " in newest.stdout
    older = run_cli("logs", "mock.p1", "--run", first, env=env)
    assert f"run {first} " in older.stdout
    assert run_cli("logs", "--run", second, "--since", "2999-01-01", env=env).stdout == ""
    assert run_cli("logs", "--run", second, "--since", "1h", env=env).stdout == both.stdout


def test_lines_are_merged_in_time_order_and_untimed_lines_follow_their_predecessor(
    tmp_path: Path,
) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    # Headers carry an offset, adapters' lines local time: both as this machine's zone.
    at = datetime(2026, 12, 4, 10, 0, 0).astimezone().isoformat()
    at_b = datetime(2026, 12, 4, 10, 0, 1).astimezone().isoformat()
    a.write_text(
        f"==== {at} run R agent a ====\n"
        "2026-12-04 10:00:02,500 INFO x: a second\n"
        "[cli] relayed after a second\n"
    )
    b.write_text(f"==== {at_b} run R agent b ====\n2026-12-04 10:00:03,000 INFO x: b second\n")
    lines = merged({"a": a, "b": b})
    times = [line.when for line in lines]
    assert times == sorted(times)
    assert [line.agent_id for line in lines][:2] == ["a", "b"]
    relayed = next(line for line in lines if line.text.startswith("[cli]"))
    second = next(line for line in lines if line.text.endswith("a second"))
    assert relayed.when == second.when
    assert merged({"a": a}, since=datetime.fromisoformat("2999-01-01T00:00:00+00:00")) == []


def test_bad_log_requests_are_one_line(env: dict[str, str], home: Home) -> None:
    run_id = run_cli("run", "-a", "mock", "x", "--json", env=env).json()["run_id"]
    assert_one_error_line(run_cli("logs", env=env), "give an agent id")
    assert_one_error_line(run_cli("logs", "nobody.p1", env=env), "no log of agent 'nobody.p1'")
    assert_one_error_line(
        run_cli("logs", "nobody.p1", "--run", run_id, env=env), "its agents: mock.p1"
    )
    assert_one_error_line(run_cli("logs", "--run", "../x", env=env), "is not a run id")
    assert_one_error_line(
        run_cli("logs", "--run", run_id, "--since", "yesterday", env=env), "--since"
    )


def test_a_link_planted_in_place_of_a_runs_log_folder_is_refused(
    home: Home, tmp_path: Path
) -> None:
    import pytest

    from aiswitch.errors import StateError
    from aiswitch.supervisor.logs import open_agent_log

    victim = tmp_path / "victim"
    victim.mkdir()
    home.ensure()
    (home.agent_logs / "20261204T000000Z-abcdef").symlink_to(victim)
    with pytest.raises(StateError, match="20261204T000000Z-abcdef"):
        open_agent_log(home, "mock.p1", "20261204T000000Z-abcdef")
    assert list(victim.iterdir()) == []
