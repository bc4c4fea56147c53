"""`aiswitch doctor`: each problem made for real in a temporary home, found with the
command that fixes it, a non-zero exit while it lasts, and `--fix` for the safe ones."""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import aiswitch_bin, run_cli
from test_run_control import hanging_run, running_run

from aiswitch.agents import pinned_clis
from aiswitch.home import Home
from aiswitch.state.processes import process_identity


def doctor(env: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    done = run_cli("doctor", "--json", *args, env=env)
    document = json.loads(done.stdout)
    assert document["ok"] is (done.code == 0), done.stdout
    return done.code, document["findings"]


def problems(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in findings if f["level"] == "problem"]


def test_a_healthy_home_after_a_run_is_all_ok(env: dict[str, str]) -> None:
    assert run_cli("run", "-p", "mock,mock", "x", env=env).code == 0
    code, findings = doctor(env)
    assert code == 0 and problems(findings) == []
    checks = {f["check"]: f for f in findings if f["level"] == "ok"}
    assert {"home", "state", "locks", "processes", "presets", "disk"} <= set(checks)
    plain = run_cli("doctor", env=env)
    assert plain.code == 0 and plain.stdout.startswith("ok      home: ")


def test_corrupt_state_files_are_found_and_fix_moves_them_aside(
    env: dict[str, str], home: Home
) -> None:
    run_id = run_cli("run", "-a", "mock", "x", "--json", env=env).json()["run_id"]
    run_file = home.runs / f"{run_id}.json"
    run_file.write_text('{"run_id": "x", "status": "sideways"}')
    (home.state / "agents.json").write_text("{not json")
    code, findings = doctor(env)
    assert code == 4
    found = {f["what"]: f["fix"] for f in problems(findings)}
    assert any(w.startswith(f"{run_file} is not a run: ") for w in found), found
    assert f"{home.state / 'agents.json'} is not valid JSON" in found
    assert all(fix.startswith("aiswitch doctor --fix") for fix in found.values())
    assert run_file.read_text() == '{"run_id": "x", "status": "sideways"}'  # checked, not moved

    fixed = run_cli("doctor", "--fix", env=env)
    assert fixed.code == 0, fixed.stdout
    assert f"fixed   moved {run_file} to {run_file.name}.corrupt-" in fixed.stdout
    assert not run_file.exists() and list(home.runs.glob(f"{run_id}.json.corrupt-*"))


def _dead_pid() -> tuple[int, float | None]:
    proc = subprocess.Popen(["true"])
    created = process_identity(proc.pid)
    proc.wait()
    return proc.pid, created


def test_stale_sockets_entries_orphans_and_dead_runs_are_found_and_fixed(
    env: dict[str, str], home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run whose aiswitch is killed: marked running, its socket left, its entry left.
    with hanging_run(env, "mock") as proc:
        run_id = running_run(env)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # An orphan: alive, but the aiswitch that started it is gone.
    orphan = subprocess.Popen(["sleep", "600"], start_new_session=True)
    dead_pid, dead_created = _dead_pid()
    table = json.loads((home.state / "agents.json").read_text())
    table["agents"]["x/orphan.p1"] = {
        "pid": orphan.pid, "pgid": orphan.pid, "create_time": process_identity(orphan.pid),
        "parent_pid": dead_pid, "parent_create_time": dead_created,
    }  # fmt: skip
    (home.state / "agents.json").write_text(json.dumps(table))
    # A socket of someone else's.
    foreign = home.tmp / "sockets" / "20991231T000000Z-ffffff.sock"
    with socket.socket(socket.AF_UNIX) as server:
        monkeypatch.chdir(foreign.parent)  # a path this long is only bound relative
        server.bind(foreign.name)
    os.chown(foreign, 65534, 65534)
    try:
        code, findings = doctor(env)
        assert code == 4
        what = "\n".join(f"{f['check']}: {f['what']} -> {f['fix']}" for f in problems(findings))
        assert f"runs: run {run_id} is marked running but its aiswitch is gone" in what
        sock = home.tmp / "sockets" / f"{run_id}.sock"
        assert (
            f"sockets: {sock} is the socket of run {run_id}, which is not running -> rm {sock}"
            in what
        )
        assert "orphan.p1 (pid" in what and f"kill -9 -{orphan.pid}" in what
        assert f"sockets: {foreign} belongs to uid 65534, not you -> rm {foreign}" in what
        assert orphan.poll() is None  # doctor changes nothing

        fixed = run_cli("doctor", "--fix", env=env)
        assert f"fixed   marked run {run_id} interrupted" in fixed.stdout
        assert orphan.wait(timeout=30) == -signal.SIGKILL
        assert not sock.exists()
        # Another user's socket is theirs to remove: still reported, never touched.
        assert foreign.exists() and fixed.code == 4
        assert [f["check"] for f in problems(doctor(env)[1])] == ["sockets"]
    finally:
        if orphan.poll() is None:
            orphan.kill()
        foreign.unlink(missing_ok=True)
    assert doctor(env)[0] == 0


def test_a_held_lock_is_a_note_and_a_lock_that_is_not_a_file_is_a_problem(
    env: dict[str, str], home: Home
) -> None:
    home.ensure()
    held = home.lock_path("ledger")
    fd = os.open(held, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    home.lock_path("runs").mkdir()
    try:
        code, findings = doctor(env)
    finally:
        os.close(fd)
    assert code == 4
    locks = [(f["level"], f["what"], f["fix"]) for f in findings if f["check"] == "locks"]
    assert locks == [
        (
            "problem",
            f"{home.lock_path('runs')} is not a regular file",
            f"rm {home.lock_path('runs')}",
        ),
        ("note", "held now by a running aiswitch: ledger", None),
    ]


@pytest.fixture
def fake_clis(tmp_path: Path) -> Path:
    """A PATH folder: `claude` from an npm package at another version than the pin,
    `codex` a program that says its version, `gemini` missing."""
    package, _ = pinned_clis()["claude"]
    root = tmp_path / "npm" / "node_modules" / package
    (root / "bin").mkdir(parents=True)
    (root / "package.json").write_text(json.dumps({"name": package, "version": "2.0.1"}))
    (root / "bin" / "claude.exe").write_text("#!/bin/sh\nexit 0\n")
    (root / "bin" / "claude.exe").chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(root / "bin" / "claude.exe")
    _, codex_version = pinned_clis()["codex"]
    (bin_dir / "codex").write_text(f"#!/bin/sh\necho codex-cli {codex_version}\n")
    (bin_dir / "codex").chmod(0o755)
    return bin_dir


def test_clis_are_checked_against_the_pinned_versions(env: dict[str, str], fake_clis: Path) -> None:
    pins = pinned_clis()
    env = {**env, "PATH": f"{fake_clis}:/usr/bin:/bin"}
    code, findings = doctor(env)
    clis = {f["what"].split()[0]: f for f in findings if f["check"] == "clis"}
    assert clis["claude"]["level"] == "warning"
    assert f"is 2.0.1; aiswitch is tested with {pins['claude'][1]}" in clis["claude"]["what"]
    assert clis["claude"]["fix"] == f"npm install -g {pins['claude'][0]}@{pins['claude'][1]}"
    assert clis["codex"]["level"] == "ok" and pins["codex"][1] in clis["codex"]["what"]
    assert clis["gemini"]["level"] == "note" and "not installed" in clis["gemini"]["what"]
    assert code == 0  # another version or a missing CLI is not a failure


def test_presets_with_unresolvable_references_or_missing_defaults_are_problems(
    env: dict[str, str], home: Home
) -> None:
    home.config.mkdir(parents=True)
    (home.config / "presets.yaml").write_text(
        "version: 1\npresets:\n  p:\n    variables:\n      KEY: ${env:DOCTOR_NOT_SET}\n"
        "  q:\n    agent: nosuch\n    variables: {A: '1'}\n"
        "defaults:\n  global: gone\n"
    )
    code, findings = doctor(env)
    assert code == 4
    assert [(f["what"], f["fix"]) for f in problems(findings)] == [
        (
            "preset p: KEY: ${env:DOCTOR_NOT_SET} is not set in this environment",
            "aiswitch preset set p KEY=VALUE  # or provide what it refers to",
        ),
        ("preset q: agent 'nosuch' is not defined", "aiswitch preset set q --agent ''"),
        (
            "the default preset for global is 'gone', which does not exist",
            "aiswitch preset default --unset",
        ),
    ]
    assert doctor({**env, "DOCTOR_NOT_SET": "v"})[1] != findings


@pytest.fixture
def http_server() -> Iterator[str]:
    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_online_reaches_each_user_presets_base_url(
    env: dict[str, str], home: Home, http_server: str
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    assert run_cli("preset", "add", "up", f"ANTHROPIC_BASE_URL={http_server}", env=env).code == 0
    assert run_cli("preset", "add", "down", f"OPENAI_BASE_URL={dead}", env=env).code == 0
    assert not [f for f in doctor(env)[1] if f["check"] == "providers"]  # offline by default
    code, findings = doctor(env, "--online")
    providers = {f["level"]: f for f in findings if f["check"] == "providers"}
    assert code == 4
    assert providers["ok"]["what"] == f"preset up: {http_server} answers"
    assert providers["problem"]["what"].startswith(
        f"preset down: OPENAI_BASE_URL {dead} is not reachable: "
    )
    assert (
        providers["problem"]["fix"]
        == "aiswitch preset set down OPENAI_BASE_URL=<the provider's URL>"
    )


def test_a_home_on_a_nearly_full_disk_is_a_problem(tmp_path: Path, env: dict[str, str]) -> None:
    # A 1 MiB file system of its own, in a mount namespace of its own (nothing leaks out).
    home = tmp_path / "small"
    home.mkdir()
    script = f'mount -t tmpfs -o size=1m,mode=0700 tmpfs {home} && exec "$@"'
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
         aiswitch_bin(), "doctor", "--json"],
        env={**env, "AISWITCH_HOME": str(home)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 4, done.stderr
    (disk,) = [f for f in json.loads(done.stdout)["findings"] if f["check"] == "disk"]
    assert disk["level"] == "problem" and disk["what"].startswith(f"{home}: only 1 MiB free")
    assert disk["fix"].startswith(f"free space on {home}")
    # The namespace ended with its process: the mount never reached this one.
    assert not os.path.ismount(home)


def test_an_invalid_coordination_file_is_a_problem(env: dict[str, str], home: Home) -> None:
    home.ensure()
    (home.config / "coordination.yaml").write_text("notify:\n  terminal: loud\n")
    code, findings = doctor(env)
    (problem,) = problems(findings)
    assert code == 4 and problem["check"] == "config"
    assert "coordination.yaml: notify.terminal" in problem["what"]
    assert problem["fix"] == f"edit {home.config / 'coordination.yaml'}"
