"""`aiswitch run --notify`: a task that finished, failed or waits for the user is told to a
user command (the notice as JSON on its stdin) and, on a terminal, by a bell or OSC 9.
Real runs of mock agents; the command is a real shell command."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
from support.cli import aiswitch_bin, assert_one_error_line, run_cli

from aiswitch.home import Home

KEY = "sk-ant-api03-" + "Nt4" * 14
MOCK = f"[{sys.executable}, -m, aiswitch_adapters.mock]"


def configure(home: Home, notify: str) -> None:
    home.config.mkdir(parents=True, exist_ok=True)
    (home.config / "agents.yaml").write_text(
        "agents:\n"
        f"  waiter: {{command: {MOCK}, env: {{MOCK_WAIT_FOR_USER: '1', "
        f'MOCK_OUTPUT: "done\\nkey {KEY}"}}}}\n'
        f"  breaker: {{command: {MOCK}, env: {{MOCK_FAIL: '1'}}}}\n"
    )
    (home.config / "coordination.yaml").write_text(f"notify:\n{notify}")


def notices(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_waiting_finished_failed_and_the_run_are_told_to_the_command(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    sink = tmp_path / "notices.jsonl"
    configure(home, f"  command: 'cat >> {sink}; echo $AISWITCH_NOTIFY_EVENT >> {sink}.events'\n")
    done = run_cli("run", "-p", "waiter,breaker", "x", "--notify", "--json", env=env)
    assert done.code == 7, done.stderr  # partial: the notifications change nothing
    run_id = done.json()["run_id"]
    told = notices(sink)
    by_agent = {
        a: [n["event"] for n in told if n.get("agent_id") == a] for a in ("waiter#1", "breaker#1")
    }
    assert by_agent == {"waiter#1": ["waiting", "finished"], "breaker#1": ["failed"]}
    waiting = next(n for n in told if n["event"] == "waiting")
    assert waiting["text"] == "permission needed: mock wants to run `make deploy`"
    assert waiting["run_id"] == run_id and waiting["status"] == "running"
    finished = next(n for n in told if n["event"] == "finished")
    assert finished["status"] == "ok" and finished["text"].startswith("key sk-ant-")
    failed = next(n for n in told if n["event"] == "failed")
    assert failed["status"] == "failed" and failed["text"] == "mock: simulated failure"
    assert told[-1]["event"] == "run" and told[-1]["status"] == "partial"
    assert sorted((tmp_path / "notices.jsonl.events").read_text().split()) == sorted(
        n["event"] for n in told
    )
    assert KEY not in sink.read_text() and KEY[-12:] not in sink.read_text()


def test_nothing_is_told_without_notify_unless_the_config_says_always(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    sink = tmp_path / "notices.jsonl"
    configure(home, f"  command: 'cat >> {sink}'\n  events: [failed]\n")
    assert run_cli("run", "-p", "waiter,breaker", "x", env=env).code == 7
    assert not sink.exists()
    configure(home, f"  command: 'cat >> {sink}'\n  events: [failed]\n  always: true\n")
    assert run_cli("run", "-p", "waiter,breaker", "x", env=env).code == 7
    assert [n["event"] for n in notices(sink)] == ["failed"]


def test_a_failing_or_hanging_command_never_fails_or_holds_the_run(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    configure(
        home,
        f"  command: 'echo $$ >> {pids}; "
        "if [ $AISWITCH_NOTIFY_EVENT = run ]; then exec sleep 600; fi; exit 3'\n"
        "  timeout: 1\n",
    )
    done = run_cli("run", "-a", "waiter", "x", "--notify", env=env)
    assert done.code == 0, done.stderr
    log = (home.logs / "coordinator.log").read_text()
    assert "notify command exited with 3 (waiting event)" in log
    assert "notify command killed after 1s (run event)" in log
    for pid in map(int, pids.read_text().split()):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def _on_a_terminal(env: dict[str, str], *args: str) -> bytes:
    """What `aiswitch ARGS` writes on a pseudo-terminal as its stderr (stdout a pipe)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [aiswitch_bin(), *args], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    proc.communicate(timeout=60)
    assert proc.returncode == 7
    return seen


def test_on_a_terminal_a_bell_or_an_osc9_notification_and_in_a_pipe_none(
    env: dict[str, str], home: Home
) -> None:
    configure(home, "  terminal: bell\n")
    bells = _on_a_terminal(env, "run", "-p", "waiter,breaker", "x", "--notify", "--json")
    assert bells.count(b"\a") == 4  # waiting, finished, failed, the run
    configure(home, "  terminal: osc9\n  events: [waiting]\n")
    osc = _on_a_terminal(env, "run", "-p", "waiter,breaker", "x", "--notify", "--json")
    expected = (
        b"\x1b]9;aiswitch: waiter#1 waiting: permission needed: mock wants to run `make deploy`\a"
    )
    assert osc.count(b"\x1b]9;") == 1 and expected in osc
    piped = run_cli("run", "-p", "waiter,breaker", "x", "--notify", env=env)
    assert "\a" not in piped.stderr and "\x1b]9" not in piped.stderr


def test_an_invalid_notify_section_is_one_line(env: dict[str, str], home: Home) -> None:
    configure(home, "  terminal: loud\n")
    done = run_cli("run", "-a", "waiter", "x", "--notify", env=env)
    assert_one_error_line(done, "coordination.yaml: notify.terminal", code=3)


def test_an_acp_agent_refused_a_permission_is_told_as_waiting(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    from test_acp_cli import define

    define(
        home, tmp_path, [{"permission": "execute", "title": "rm -rf build", "cwd": str(tmp_path)}]
    )
    sink = tmp_path / "notices.jsonl"
    (home.config / "coordination.yaml").write_text(f"notify:\n  command: 'cat >> {sink}'\n")
    args = ["run", "-a", "scripted", "x", "--permissions", "read-only", "--notify"]
    done = run_cli(*args, env=env, cwd=tmp_path)
    assert done.code == 0, done.stderr
    told = [(n["event"], n["text"]) for n in notices(sink)]
    assert told[0][0] == "waiting" and told[0][1].startswith("permission refused: rm -rf build")
    assert [event for event, _ in told[1:]] == ["finished", "run"]
