"""`aiswitch tokens statusline`: Claude Code's status-line JSON in, one line out, with the same
figures as the reports (session, today, the active block and its burn rate); a warm run reads
only its recorded summary (no typer, pydantic or log parsing), and a log that grows is seen."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.cli import aiswitch_bin, clean_env, run_cli

from aiswitch.tokens.money import format_usd

SESSION = "5c0ffee0-1111-4222-8333-944455556666"
OTHER = "0dd0dd00-1111-4222-8333-944455556666"


def _line(index: int, session: str, when: datetime, tokens: int) -> str:
    usage = {
        "input_tokens": tokens,
        "output_tokens": tokens // 4,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 5000,
    }
    return json.dumps(
        {
            "parentUuid": None,
            "isSidechain": False,
            "userType": "external",
            "cwd": "/work",
            "sessionId": session,
            "version": "2.1.197",
            "type": "assistant",
            "uuid": f"00000000-0000-4000-8000-{index:012d}",
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "message": {
                "id": f"msg_{session[:4]}_{index}",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [{"type": "text", "text": "x"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": usage,
            },
            "requestId": f"req_{session[:4]}_{index}",
        },
        separators=(",", ":"),
    )


def _setup(tmp_path: Path) -> tuple[dict[str, str], Path]:
    now = datetime.now(UTC)
    project = tmp_path / "claude" / "projects" / "-work"
    project.mkdir(parents=True)
    mine = [
        _line(i, SESSION, now - timedelta(minutes=40 - 10 * i), 2000 * (i + 1)) for i in range(4)
    ]
    other = [_line(i, OTHER, now - timedelta(minutes=35 - 10 * i), 1000) for i in range(2)]
    (project / f"{SESSION}.jsonl").write_text("\n".join(mine) + "\n")
    (project / f"{OTHER}.jsonl").write_text("\n".join(other) + "\n")
    env = clean_env(tmp_path / "aiswitch-home", CLAUDE_CONFIG_DIR=str(tmp_path / "claude"))
    env["HOME"] = str(tmp_path)
    env["TZ"] = _noon_zone(now)  # the last hour is "today" whenever the test runs
    return env, project / f"{SESSION}.jsonl"


def _noon_zone(now: datetime) -> str:
    """A fixed-offset zone where it is about noon now (Etc/GMT's signs are inverted)."""
    offset = 12 - now.hour
    return "Etc/GMT" + (f"+{-offset}" if offset < 0 else f"-{offset}" if offset else "")


def _statusline(env: dict[str, str], hook: object) -> str:
    done = run_cli("tokens", "statusline", env=env, input=json.dumps(hook))
    assert done.code == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    return lines[0]


def _without_time_left(line: str) -> str:
    return re.sub(r"\([^()]*\bleft\)", "(left)", line)


def _expected(env: dict[str, str]) -> tuple[str, str, str, str]:
    sessions = run_cli(
        "tokens", "session", "--source", "claude", "--json", "--format", "ccusage", env=env
    ).json()
    session = next(s for s in sessions["sessions"] if s["sessionId"] == SESSION)["totalCost"]
    from zoneinfo import ZoneInfo

    today = datetime.now(ZoneInfo(env["TZ"])).strftime("%Y-%m-%d")
    daily = run_cli("tokens", "daily", "--source", "claude", "--json", env=env).json()
    day = next(row["cost_usd"] for row in daily["rows"] if row["day"] == today)
    [block] = run_cli("tokens", "blocks", "--active", "--json", env=env).json()["blocks"]
    burn = block["burnRate"]["costPerHour"]
    return format_usd(session), format_usd(day), format_usd(block["costUSD"]), format_usd(burn)


def test_the_line_shows_the_session_today_the_active_block_and_its_burn_rate(
    tmp_path: Path,
) -> None:
    env, _ = _setup(tmp_path)
    hook = {"session_id": SESSION, "model": {"id": "claude-sonnet-4-5", "display_name": "Sonnet"}}
    line = _statusline(env, hook)
    session, today, block, burn = _expected(env)
    assert line.startswith("🤖 Sonnet | 💰 ")
    assert f"{session} session / {today} today / {block} block (" in line, line
    assert line.endswith(f"| 🔥 {burn}/hr"), line
    assert session != today  # the other session counts today, not in this session


def test_a_warm_run_reads_only_its_summary_and_a_grown_log_is_seen(tmp_path: Path) -> None:
    env, log = _setup(tmp_path)
    hook = {"session_id": SESSION}
    first = _statusline(env, hook)
    # Warm: the console script's imports, listed by Python itself.
    warm = subprocess.run(
        [aiswitch_bin(), "tokens", "statusline"],
        input=json.dumps(hook),
        env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # The same line, but for the block's time left, which a minute boundary may move.
    assert _without_time_left(warm.stdout.strip()) == _without_time_left(first)
    imported = {line.split("|")[-1].strip() for line in warm.stderr.splitlines()}
    assert "aiswitch.tokens.statusline" in imported
    for heavy in ("typer", "pydantic", "rich", "msgspec", "aiswitch.tokens.report"):
        assert heavy not in imported, heavy
    with log.open("a") as out:
        out.write(_line(9, SESSION, datetime.now(UTC), 50_000) + "\n")
    grown = _statusline(env, hook)
    assert grown != first
    assert f"{_expected(env)[0]} session" in grown


def test_input_that_is_not_json_still_gets_a_line(tmp_path: Path) -> None:
    env, _ = _setup(tmp_path)
    done = run_cli("tokens", "statusline", env=env, input="not json {")
    assert done.code == 0 and done.stdout.startswith("💰 $0.00 session / "), done.stdout
