"""The CLI's fast path for cached JSON reports agrees byte for byte with the typer path.

Each command line runs three ways in fresh processes: with the fast path disabled
(`AISWITCH_NO_FAST_PATH=1`), then twice with it enabled (the first run goes through typer
and records its output, the second is answered by the fast path). Stdout, stderr and the
exit code must be identical, over generated Claude logs and a ledger with a malformed line
(so warnings are replayed too). A changed input file, an unknown flag or `--no-cache` must
never be answered from a record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.claude_logs import LogSetSpec, write_claude_logs

from aiswitch.home import Home
from aiswitch.tokens import fastpath

COMMANDS = [
    ["tokens", "report", "--source", "claude", "--by", "day", "--json", "--timezone", "UTC"],
    ["tokens", "daily", "--source", "claude", "--json", "--timezone", "UTC"],
    [
        "tokens", "report", "--source", "claude", "--by", "day,model", "--json",
        "--since", "2026-03-07", "--timezone", "Europe/Paris",
    ],
    ["tokens", "monthly", "--source", "aiswitch", "--json"],
    ["tokens", "session", "--source", "claude", "--json", "--timezone", "UTC"],
    [
        "tokens", "report", "--source", "all", "--by", "agent,model", "--json",
        "--cost-mode", "calculate", "--timezone", "UTC",
    ],
    ["tokens", "weekly", "--json", "--agent", "claude,codex", "--timezone", "UTC"],
    ["tokens", "report", "--json", "--csv"],
    ["tokens", "report", "--by", "bogus", "--json"],
    ["tokens", "report", "--json", "--bogus-flag"],
]  # fmt: skip

LEDGER_LINES = [
    {
        "v": 1,
        "ts": f"2026-03-0{day}T10:00:00Z",
        "agent": agent,
        "preset": "default",
        "model": "claude-sonnet-4-5-20250929",
        "message_id": f"m{day}{agent}",
        "request_id": f"r{day}{agent}",
        "input_tokens": 100 * day,
        "output_tokens": 10 * day,
    }
    for day in range(1, 6)
    for agent in ("claude", "codex")
]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    claude = tmp_path / "claude"
    write_claude_logs(claude, LogSetSpec(files=12, assistant_lines=600))
    home = Home(tmp_path / "aiswitch-home")
    home.ledger.parent.mkdir(parents=True)
    text = "".join(json.dumps(line) + "\n" for line in LEDGER_LINES) + "{not json\n"
    home.ledger.write_text(text, encoding="utf-8")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "AISWITCH_HOME": str(home.root),
        "CLAUDE_CONFIG_DIR": str(claude),
        "CODEX_HOME": str(tmp_path / "codex"),
        "GEMINI_DATA_DIR": str(tmp_path / "gemini"),
    }


def run(args: list[str], env: dict[str, str], *, fast: bool) -> tuple[int, str, str]:
    full = dict(env) if fast else {**env, fastpath.FAST_PATH_ENV: "1"}
    done = subprocess.run(
        [sys.executable, "-m", "aiswitch.cli.entry", *args],
        env=full,
        capture_output=True,
        check=False,
        cwd=env["HOME"],
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def answered_fast(
    args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[bool, str, str]:
    """Whether the fast path answers `args` in this process, and what it printed (run in
    `env`, from the directory `run` uses)."""
    import io

    for name in fastpath.CONTEXT_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(env["HOME"])  # the working directory is part of a record's context
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    answered = fastpath.try_fast_report(args)
    monkeypatch.undo()
    return answered, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(args[1:]) for args in COMMANDS])
def test_fast_and_normal_paths_print_the_same_bytes(
    args: list[str], cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    normal = run(args, cli_env, fast=False)
    first = run(args, cli_env, fast=True)
    second = run(args, cli_env, fast=True)
    assert first == normal
    assert second == normal
    answered, out, err = answered_fast(args, cli_env, monkeypatch)
    if normal[0] == 0:
        assert answered, "a successful JSON report is answered by the fast path next time"
        assert (0, out, err) == normal
        assert json.loads(out)["rows"]
    else:
        assert not answered and out == err == ""


def test_a_changed_input_is_never_answered_from_a_record(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    args = COMMANDS[0]
    before = run(args, cli_env, fast=True)
    assert answered_fast(args, cli_env, monkeypatch)[0]
    victim = sorted((tmp_path / "claude").rglob("*.jsonl"))[0]
    line = victim.read_text(encoding="utf-8").splitlines()[0]
    with victim.open("a", encoding="utf-8") as handle:
        handle.write(line.replace('"id":"', '"id":"fresh-') + "\n")
    assert not answered_fast(args, cli_env, monkeypatch)[0]
    normal = run(args, cli_env, fast=False)
    assert run(args, cli_env, fast=True) == normal
    assert answered_fast(args, cli_env, monkeypatch)[1:] == normal[1:]
    assert normal[0] == before[0] == 0
    # A new file is an input too.
    (victim.parent / "new-session.jsonl").write_text(line + "\n", encoding="utf-8")
    assert not answered_fast(args, cli_env, monkeypatch)[0]


def test_no_cache_and_a_disabled_fast_path_are_never_answered(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    args = [*COMMANDS[0], "--no-cache"]
    assert run(args, cli_env, fast=True)[0] == 0
    assert not answered_fast(args, cli_env, monkeypatch)[0]
    plain = COMMANDS[0]
    run(plain, cli_env, fast=True)
    assert answered_fast(plain, cli_env, monkeypatch)[0]
    assert not answered_fast(plain, {**cli_env, fastpath.FAST_PATH_ENV: "1"}, monkeypatch)[0]
    # Another environment (here: the timezone variable) is another record.
    assert not answered_fast(plain, {**cli_env, "TZ": "Asia/Tokyo"}, monkeypatch)[0]


def test_the_fast_path_loads_no_typer_or_pydantic(cli_env: dict[str, str], tmp_path: Path) -> None:
    args = COMMANDS[0]
    run(args, cli_env, fast=True)
    probe = (
        "import sys\nfrom aiswitch.cli.entry import main\n"
        f"main({args!r})\n"
        "heavy = [m for m in ('typer', 'rich', 'pydantic', 'click') if m in sys.modules]\n"
        "sys.stderr.write('HEAVY:' + ','.join(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=cli_env, capture_output=True, text=True, check=True,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.stderr.endswith("HEAVY:")
    assert json.loads(done.stdout)["by"] == ["day"]
