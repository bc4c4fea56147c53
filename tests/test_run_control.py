"""Live control of a running `aiswitch run` from another process, through its control
socket: `runs cancel`, `runs watch`, `agents stop|restart|switch`. Real processes: the
run in one subprocess, each command in another; waits are on what they print."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
from support.cli import aiswitch_bin, assert_one_error_line, run_cli

from aiswitch.home import Home

# Only stops a hung test: each wait below ends on an event (a line printed, an exit).
WAIT_S = 60.0


@contextmanager
def hanging_run(env: dict[str, str], *agents: str) -> Iterator[subprocess.Popen[str]]:
    """`aiswitch run` whose tasks never end until cancelled, once every agent runs."""
    proc = subprocess.Popen(
        [aiswitch_bin(), "run", "--parallel", ",".join(agents), "hang"],
        env={**env, "MOCK_HANG": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in agents:
            next_running(proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=WAIT_S)


def next_running(proc: subprocess.Popen[str]) -> None:
    """Wait for the run's next plain status line saying that a task (attempt) runs."""
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        assert line, "aiswitch exited before its agents were running"
        if line.strip().endswith(" running"):
            return


def running_run(env: dict[str, str]) -> str:
    (entry,) = run_cli("runs", "list", "--status", "running", "--json", env=env).json()["runs"]
    return str(entry["run_id"])


def run_file(home: Home, run_id: str) -> dict[str, Any]:
    return json.loads((home.runs / f"{run_id}.json").read_text())


def test_runs_cancel_from_another_process_cancels_the_tasks_and_stops_the_children(
    env: dict[str, str], home: Home
) -> None:
    with hanging_run(env, "mock", "mock") as proc:
        run_id = running_run(env)
        sock = home.tmp / "sockets" / f"{run_id}.sock"
        mode = os.stat(sock).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children
        refused = run_cli("runs", "rm", run_id, env=env)
        assert_one_error_line(refused, f"run {run_id} is still running", code=2)
        done = run_cli("runs", "cancel", run_id, env=env)
        assert done.code == 0, done.stderr
        assert done.stderr == f"run {run_id} cancelled\n"
        # `runs cancel` returns once the run has ended: its process exits on its own.
        proc.wait(timeout=WAIT_S)
        assert proc.returncode == 130
    _, alive = psutil.wait_procs(children, timeout=WAIT_S)
    assert not alive
    run = run_file(home, run_id)
    assert run["status"] == "cancelled"
    assert [r["status"] for r in run["results"]] == ["cancelled", "cancelled"]
    assert not sock.exists()
    assert json.loads((home.state / "agents.json").read_text())["agents"] == {}
    again = run_cli("runs", "cancel", run_id, env=env)
    assert_one_error_line(again, f"run {run_id} is not running (it is cancelled)", code=2)


def test_runs_watch_streams_the_runs_events_until_it_ends(env: dict[str, str], home: Home) -> None:
    with hanging_run(env, "mock", "mock@fast") as proc:
        run_id = running_run(env)
        watch = subprocess.Popen(
            [aiswitch_bin(), "runs", "watch", run_id, "--jsonl"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert watch.stdout is not None
        first = json.loads(watch.stdout.readline())
        assert first == {"kind": "run", "run_id": run_id, "status": "running"}
        assert run_cli("runs", "cancel", run_id, env=env).code == 0
        out, err = watch.communicate(timeout=WAIT_S)
        proc.wait(timeout=WAIT_S)
    events = [json.loads(line) for line in out.splitlines()]
    assert watch.returncode == 0, err
    assert events[-1] == {"kind": "run", "run_id": run_id, "status": "cancelled"}
    finals = {
        e["agent_id"]: e for e in events if e["kind"] == "status" and e["status"] == "cancelled"
    }
    assert set(finals) == {"mock#1", "mock#2"}
    assert finals["mock#2"]["preset"] == "fast"
    assert {e["task_id"] for e in finals.values()} == {f"{run_id}/1", f"{run_id}/2"}


def test_agents_switch_restart_and_stop_reach_a_live_process(
    env: dict[str, str], home: Home
) -> None:
    with hanging_run(env, "mock") as proc:
        run_id = running_run(env)
        (key,) = json.loads((home.state / "agents.json").read_text())["agents"]
        agent_id = key.split("/")[1]
        old_pid = json.loads((home.state / "agents.json").read_text())["agents"][key]["pid"]
        switched = run_cli("agents", "switch", agent_id, "fast", env=env)
        assert switched.code == 0, switched.stderr
        assert switched.json()["env"]["preset"] == "fast"
        assert "MOCK_LATENCY" in switched.json()["env"]["names"]
        unknown = run_cli("agents", "switch", agent_id, "no-such-preset", env=env)
        assert_one_error_line(unknown, "no-such-preset")
        restarted = run_cli("agents", "restart", agent_id, env=env)
        assert restarted.code == 0, restarted.stderr
        after = restarted.json()
        assert after["state"] == "running" and after["restarts"] == 1
        assert after["pid"] != old_pid and not psutil.pid_exists(old_pid)
        next_running(proc)  # the restart ended the attempt; the task runs again
        missing = run_cli("agents", "stop", "mock.p99", env=env)
        assert_one_error_line(missing, "no live agent process 'mock.p99'")
        wrong = run_cli("agents", "stop", "mock.p99", "--run", run_id, env=env)
        assert_one_error_line(wrong, f"no agent process 'mock.p99' in run {run_id}")
        stopped = run_cli("agents", "stop", agent_id, env=env)
        assert stopped.code == 0, stopped.stderr
        assert stopped.json()["state"] == "stopped"
        next_running(proc)  # and again, on a fresh process
        assert run_cli("runs", "cancel", run_id, env=env).code == 0
        proc.wait(timeout=WAIT_S)
    (result,) = run_file(home, run_id)["results"]
    # The restart and the stop each ended an attempt as a crash would: it ran again.
    assert result["attempts"] == 3
    assert result["status"] == "cancelled"


def test_a_stale_socket_of_a_killed_run_is_removed_and_said_so(
    env: dict[str, str], home: Home
) -> None:
    with hanging_run(env, "mock") as proc:
        run_id = running_run(env)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=WAIT_S)
    sock = home.tmp / "sockets" / f"{run_id}.sock"
    assert sock.exists()  # nobody removed it: its aiswitch was killed
    done = run_cli("runs", "cancel", run_id, env=env)
    assert_one_error_line(done, f"run {run_id} is not running (it is interrupted)", code=2)
    assert not sock.exists()


def test_a_socket_that_is_not_the_users_own_is_refused(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    run_id = run_cli("run", "-a", "mock", "x", "--json", env=env).json()["run_id"]
    sock = home.tmp / "sockets" / f"{run_id}.sock"
    sock.write_text("")  # not a socket
    assert_one_error_line(run_cli("runs", "watch", run_id, env=env), "is not a socket")
    if os.getuid() == 0:
        os.chown(sock, 65534, 65534)
        assert_one_error_line(run_cli("runs", "cancel", run_id, env=env), "belongs to another user")
    assert_one_error_line(run_cli("runs", "watch", "bad/../id", env=env), "is not a run id")


def test_ps_lists_each_live_agent_process_with_its_runs_figures(
    env: dict[str, str], home: Home
) -> None:
    with hanging_run(env, "mock", "mock@fast") as proc:
        run_id = running_run(env)
        table = json.loads((home.state / "agents.json").read_text())
        # An entry whose pid lives but is another process (a recycled pid) is not listed.
        table["agents"]["20261204T000000Z-000000/ghost.p1"] = {
            "pid": os.getpid(),
            "create_time": 1.0,
        }
        (home.state / "agents.json").write_text(json.dumps(table))
        done = run_cli("ps", "--json", env=env)
        assert done.code == 0, done.stderr
        rows = done.json()["processes"]
        children = {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        assert {r["agent_id"] for r in rows} == {"mock.p1", "mock@fast.p1"}
        for row in rows:
            assert row["run_id"] == run_id
            assert row["pid"] in children
            assert row["state"] == "running"
            assert (row["tasks_done"], row["in_flight"]) == (0, 1)
            assert row["restarts"] == 0 and row["tokens"] == 0
            assert row["rss"] > 0 and row["cpu_percent"] >= 0 and row["uptime_s"] >= 0
        assert {r["preset"] for r in rows} == {None, "fast"}
        shown = run_cli("ps", env=env)
        assert shown.code == 0
        assert shown.stdout.splitlines()[0].split()[:5] == [
            "agent",
            "run",
            "preset",
            "pid",
            "state",
        ]
        assert run_cli("runs", "cancel", run_id, env=env).code == 0
        proc.wait(timeout=WAIT_S)
    assert run_cli("ps", "--json", env=env).json() == {"processes": []}
