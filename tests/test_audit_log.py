"""The audit log (`logs/audit.jsonl`): who changed presets, revealed keys, started and
cancelled runs, set quotas and imported, through the installed console script; records
of concurrent processes stay whole; no secret ever reaches the file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from support.cli import assert_one_error_line, run_cli
from test_run_control import hanging_run, running_run

from aiswitch.home import Home
from aiswitch.state.audit import MAX_RECORD_BYTES, audit_path, read_records

KEY = "sk-ant-api03-" + "Kq8" * 14


def actions(env: dict[str, str]) -> list[dict[str, object]]:
    done = run_cli("audit", "--json", env=env)
    assert done.code == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_preset_changes_reveals_quotas_and_runs_are_recorded_without_the_key(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    assert run_cli("preset", "add", "p", f"ANTHROPIC_API_KEY={KEY}", env=env).code == 0
    assert run_cli("preset", "set", "p", "OTHER=1", env=env).code == 0
    assert KEY in run_cli("preset", "show", "p", "--reveal", env=env).stdout
    assert KEY in run_cli("preset", "export", "p", "--include-secrets", env=env).stdout
    assert KEY in run_cli("preset", "env", "p", "--reveal", env=env).stdout
    exported = tmp_path / "p.yaml"
    exported.write_text(run_cli("preset", "export", "p", "--include-secrets", env=env).stdout)
    assert run_cli("preset", "remove", "p", env=env).code == 0
    assert run_cli("preset", "import", str(exported), env=env).code == 0
    assert (
        run_cli("tokens", "quota", "set", "--agent", "mock", "--daily-tokens", "9", env=env).code
        == 0
    )
    assert run_cli("tokens", "quota", "clear", "--agent", "mock", env=env).code == 0
    ran = run_cli("run", "-a", "mock", "hello", "--json", env=env).json()

    records = actions(env)
    assert [r["action"] for r in records] == [
        "preset.add",
        "preset.set",
        "preset.reveal",
        "preset.reveal",
        "preset.reveal",
        "preset.reveal",
        "preset.remove",
        "preset.import",
        "quota.set",
        "quota.clear",
        "run.start",
    ]
    first = records[0]
    assert first["preset"] == "p" and first["variables"] == ["ANTHROPIC_API_KEY"]
    assert first["uid"] == os.getuid() and isinstance(first["pid"], int)
    assert first["pid"] != os.getpid() and first["user"]
    assert [r["command"] for r in records[2:5]] == ["preset show", "preset export", "preset env"]
    assert records[7]["added"] == ["p"]
    assert records[8]["limits"] == {"daily_tokens": 9}
    assert records[10]["run_id"] == ran["run_id"] and records[10]["agents"] == ["mock#1"]
    raw = audit_path(home).read_bytes()
    assert KEY.encode() not in raw and KEY[-20:].encode() not in raw
    assert stat.S_IMODE(audit_path(home).stat().st_mode) == 0o600
    plain = run_cli("audit", env=env)
    assert " preset.add preset=p variables=ANTHROPIC_API_KEY" in plain.stdout
    assert KEY not in plain.stdout
    assert run_cli("audit", "--since", "2999-01-01", env=env).stdout == ""
    assert len(run_cli("audit", "--since", "1h", env=env).stdout.splitlines()) == 11


def test_a_run_cancelled_from_another_terminal_records_who_cancelled_it(
    env: dict[str, str], home: Home
) -> None:
    with hanging_run(env, "mock"):
        run_id = running_run(env)
        assert run_cli("runs", "cancel", run_id, env=env).code == 0
    records = [r for r in actions(env) if r.get("run_id") == run_id]
    assert [r["action"] for r in records] == ["run.start", "run.cancel", "run.cancelled"]
    # The cancel is the other terminal's process; the end is the run's own.
    assert records[1]["pid"] != records[0]["pid"] == records[2]["pid"]


_WRITER = """
import sys
from aiswitch.home import Home
from aiswitch.state.audit import audit
home = Home(__import__("pathlib").Path(sys.argv[1]))
for n in range(int(sys.argv[2])):
    audit("test.write", home=home, writer=sys.argv[3], n=n, pad="x" * 3000)
"""


def test_records_of_concurrent_processes_are_appended_whole(home: Home) -> None:
    writers, each = 4, 200
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(home.root), str(each), str(w)])
        for w in range(writers)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0] * writers
    lines = audit_path(home).read_bytes().splitlines()
    assert len(lines) == writers * each
    assert all(len(line) < MAX_RECORD_BYTES for line in lines)
    records = list(read_records(home))
    assert len(records) == writers * each
    for w in range(writers):
        assert [r["n"] for r in records if r["writer"] == str(w)] == list(range(each))


def test_a_detail_too_long_for_one_record_is_cut_and_a_secret_in_a_detail_is_masked(
    home: Home,
) -> None:
    from aiswitch.state.audit import audit

    audit("test.long", home=home, names=["n" * 250] * 40)
    audit("test.leak", home=home, note=f"oops {KEY}")
    long, leak = read_records(home)
    assert long["truncated"] is True and "names" not in long
    assert KEY not in json.dumps(leak) and leak["note"].startswith("oops ")


def test_an_unreadable_audit_log_is_one_line(env: dict[str, str], home: Home) -> None:
    home.logs.mkdir(parents=True)
    audit_path(home).symlink_to("/etc/passwd")
    assert_one_error_line(run_cli("audit", env=env), "cannot read", code=4)
    assert_one_error_line(run_cli("audit", "--since", "soon", env=env), "--since", code=2)
