"""`aiswitch logs -f` (following a running run), rotated and compressed logs read in
order, the coordinator log as JSON lines, and the global -v / -q."""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
from pathlib import Path

import pytest
from support.cli import aiswitch_bin, assert_one_error_line, run_cli
from test_run_control import WAIT_S, hanging_run, running_run

from aiswitch import logs
from aiswitch.home import Home
from aiswitch.supervisor.logs import KEEP_ROTATED, rotate

RUN = "20261204T100000Z-abcdef"


def test_logs_follows_a_running_run_until_it_ends(env: dict[str, str], home: Home) -> None:
    with hanging_run(env, "mock"):
        run_id = running_run(env)
        follow = subprocess.Popen(
            [aiswitch_bin(), "logs", "--run", run_id, "-f"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert follow.stdout is not None
            header = f"run {run_id} agent mock.p1 ===="
            first = follow.stdout.readline()
            assert first.startswith("mock.p1 | ==== ") and first.rstrip().endswith(header)
            # A restart starts a new process, which writes its header into the same log:
            # the follower prints it as it comes.
            assert run_cli("agents", "restart", "mock.p1", env=env).code == 0
            while True:
                line = follow.stdout.readline()
                assert line, "logs -f ended before the new process's header"
                if line.rstrip().endswith(header):
                    break
            assert run_cli("runs", "cancel", run_id, env=env).code == 0
            # The run ended: logs -f prints what is left and exits by itself.
            rest, err = follow.communicate(timeout=WAIT_S)
            assert follow.returncode == 0, err
            assert header not in rest  # no line printed twice
        finally:
            if follow.poll() is None:
                follow.kill()
                follow.communicate(timeout=WAIT_S)
    done = run_cli("logs", "--run", run_id, "-f", env=env)
    assert done.code == 0
    assert done.stdout.count(f"run {run_id} agent mock.p1 ====") == 2
    assert done.stderr.strip().endswith("nothing more to follow")
    assert len(done.stderr.splitlines()) == 1


def test_rotated_parts_are_compressed_and_read_in_order(env: dict[str, str], home: Home) -> None:
    folder = home.ensure().agent_logs / RUN
    folder.mkdir(mode=0o700)
    log = folder / "mock.p1.log"
    for n in range(KEEP_ROTATED + 2):
        log.write_text(f"2026-12-04 10:00:0{n},000 INFO x: part {n}\n")
        rotate(log)
    assert not log.exists()
    kept = sorted(p.name for p in folder.iterdir())
    assert kept == [f"mock.p1.log.{i}.gz" for i in range(1, KEEP_ROTATED + 1)] + [
        "mock.p1.log.dropped"
    ]
    assert gzip.decompress((folder / "mock.p1.log.1.gz").read_bytes()).endswith(b"part 4\n")
    assert oct((folder / "mock.p1.log.1.gz").stat().st_mode & 0o777) == "0o600"
    log.write_text("2026-12-04 10:00:09,000 INFO x: now\n")
    done = run_cli("logs", "--run", RUN, env=env)
    assert done.code == 0, done.stderr
    assert done.stderr == "mock.p1: lines older than its 3 rotated parts were rotated away\n"
    # The oldest parts were dropped; the kept ones are read oldest first, then the log.
    assert [line.split(": ")[-1] for line in done.stdout.splitlines()] == [
        "part 2", "part 3", "part 4", "now",
    ]  # fmt: skip
    log.unlink()
    only_rotated = run_cli("-q", "logs", "mock.p1", env=env)
    assert only_rotated.stderr == ""
    assert only_rotated.code == 0 and only_rotated.stdout.count(" | ") == 3
    (folder / "mock.p1.log.1.gz").write_bytes(b"not gzip")
    broken = run_cli("logs", "--run", RUN, env=env)
    assert broken.code == 0 and broken.stdout.count(" | ") == 2
    for part in folder.iterdir():
        part.unlink()
    assert_one_error_line(run_cli("logs", "--run", RUN, env=env), f"run {RUN} has no agent logs")


def test_the_coordinator_log_is_json_lines_and_rotates_compressed(
    env: dict[str, str], home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    env["MOCK_GARBAGE"] = "2"
    assert run_cli("run", "--agent", "mock", "x", env=env).code == 0
    records = [
        json.loads(line) for line in (home.logs / "coordinator.log").read_text().splitlines()
    ]
    skipped = [r for r in records if "skipped a line" in r["message"]]
    assert len(skipped) == 2
    assert set(skipped[0]) == {"time", "level", "logger", "message", "pid"}
    assert skipped[0]["time"].endswith("+00:00") and skipped[0]["level"] == "WARNING"
    root = logging.getLogger("aiswitch")
    before = list(root.handlers)
    try:
        # The rotating file is opened for the first record, with the size then in force.
        monkeypatch.setattr(logs, "MAX_LOG_BYTES", 2000)
        logs.configure(home)
        for n in range(100):
            logging.getLogger("aiswitch.test").warning("line %d of the test", n)
        part = home.logs / "coordinator.log.1.gz"
        lines = gzip.decompress(part.read_bytes()).decode().splitlines()
        assert all(json.loads(line)["logger"] == "aiswitch.test" for line in lines)
        assert oct(part.stat().st_mode & 0o777) == "0o600"
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
            handler.close()


def test_global_quiet_and_verbose(env: dict[str, str], home: Home, tmp_path: Path) -> None:
    plain = run_cli("run", "--agent", "mock", "x", env=env)
    assert "aiswitch: mock#1 running" in plain.stderr
    quiet = run_cli("-q", "run", "--agent", "mock", "x", env=env)
    assert quiet.code == 0 and quiet.stderr == "" and "run " in quiet.stdout
    assert run_cli("-q", "logs", "mock.p1", env=env).stderr == ""
    assert run_cli("logs", "mock.p1", env=env).stderr.startswith("run ")
    loud = run_cli("-v", "run", "--agent", "mock", "x", env={**env, "MOCK_GARBAGE": "1"})
    assert loud.code == 0
    assert "aiswitch: WARNING aiswitch" in loud.stderr and "skipped a line" in loud.stderr
    assert "skipped a line" not in plain.stderr
    assert "-q, --quiet" in run_cli("--help", env=env).stdout
    assert_one_error_line(run_cli("-q", "logs", env=env), "give an agent id")
