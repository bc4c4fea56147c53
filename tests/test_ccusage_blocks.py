"""`aiswitch tokens blocks --json` equals `ccusage blocks --json` on the same Claude logs, for
every option (--active, --recent, --token-limit N|max), through the installed console script.

ccusage 20.0.24 runs offline (`-O`) from the test cache (scripts/setup/ccusage.sh); if it is
missing these tests fail with the command to run, they never skip. The log set spans several
days (gaps and windows that roll over) and ends with requests in the last hours, so that one
block is active: its projection depends on the moment each tool looks at the clock, so it is
compared within the minute that may pass between the two runs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.ccusage import ccusage_env, run_ccusage
from support.claude_logs import LogSetSpec, write_claude_logs
from support.cli import clean_env, run_cli

SESSION = "0b9e2f3a-1111-4222-8333-944455556666"


def _recent_session(config_dir: Path, now: datetime) -> None:
    """Requests 7, 4.5 and 3.9 hours ago (two windows) and in the last hour (active)."""
    lines = []
    for index, minutes in enumerate([420, 270, 236, 50, 31, 12, 3]):
        stamp = (now - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        usage = {
            "input_tokens": 900 * (index + 1),
            "output_tokens": 400 + index,
            "cache_creation_input_tokens": 3_000,
            "cache_read_input_tokens": 20_000 * index,
        }
        message = {
            "id": f"msg_recent_{index}",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929" if index % 2 else "claude-opus-4-8",
            "content": [{"type": "text", "text": "x"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        line = {
            "parentUuid": None,
            "isSidechain": False,
            "userType": "external",
            "cwd": "/home/dev/now",
            "sessionId": SESSION,
            "version": "2.1.197",
            "type": "assistant",
            "uuid": f"00000000-0000-4000-8000-{index:012d}",
            "timestamp": stamp,
            "message": message,
            "requestId": f"req_recent_{index}",
        }
        lines.append(json.dumps(line, separators=(",", ":")))
    folder = config_dir / "projects" / "-home-dev-now"
    folder.mkdir(parents=True)
    (folder / f"{SESSION}.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("blocks")
    config_dir = root / "claude"
    now = datetime.now(UTC)
    spec = LogSetSpec(files=12, assistant_lines=900, days=5, start=now - timedelta(days=6))
    write_claude_logs(config_dir, spec)
    _recent_session(config_dir, now)
    (root / "home").mkdir()
    return config_dir, root


def _same(ours: dict[str, Any], theirs: dict[str, Any], where: str) -> None:
    assert set(ours) == set(theirs), where
    for key, expected in theirs.items():
        got = ours[key]
        if key in ("costUSD",):
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), (where, key)
        elif key == "burnRate" and expected is not None:
            assert set(got) == set(expected), where
            for name, value in expected.items():
                assert got[name] == pytest.approx(value, rel=1e-9), (where, name)
        elif key == "projection" and expected is not None:
            # The clocks of the two runs differ by the seconds between them.
            assert set(got) == set(expected), where
            assert abs(got["remainingMinutes"] - expected["remainingMinutes"]) <= 1, where
            rate = ours["burnRate"]["tokensPerMinute"]
            assert abs(got["totalTokens"] - expected["totalTokens"]) <= rate * 1.5 + 1, where
            assert got["totalCost"] == pytest.approx(expected["totalCost"], abs=0.011), where
        elif key == "tokenLimitStatus":
            assert got["limit"] == expected["limit"] and got["status"] == expected["status"]
            assert got["percentUsed"] == pytest.approx(expected["percentUsed"], rel=0.01)
        else:
            assert got == expected, (where, key)


@pytest.mark.parametrize(
    "options",
    [[], ["--recent"], ["--active"], ["--token-limit", "max"], ["--token-limit", "60000"]],
    ids=["all", "recent", "active", "limit-max", "limit-n"],
)
def test_blocks_equal_ccusage_blocks_on_the_same_logs(
    logs: tuple[Path, Path], tmp_path: Path, options: list[str]
) -> None:
    config_dir, root = logs
    theirs = run_ccusage(
        ["blocks", "--json", "-O", *options], ccusage_env(config_dir, root / "home")
    )
    env = clean_env(tmp_path / "aiswitch-home", CLAUDE_CONFIG_DIR=str(config_dir))
    env["HOME"] = str(root / "home")
    done = run_cli("tokens", "blocks", "--json", *options, env=env)
    assert done.code == 0, done.stderr
    ours = json.loads(done.stdout)
    assert set(ours) == set(theirs) == {"blocks"}
    assert [b["id"] for b in ours["blocks"]] == [b["id"] for b in theirs["blocks"]]
    assert theirs["blocks"], "the log set must make blocks"
    if options != ["--active"]:
        assert any(b["isGap"] for b in theirs["blocks"]) or options == ["--recent"]
    assert any(b["isActive"] for b in theirs["blocks"]), "one block must be active"
    for mine, expected in zip(ours["blocks"], theirs["blocks"], strict=True):
        _same(mine, expected, expected["id"])


def test_a_bad_token_limit_is_a_one_line_error(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "aiswitch-home", CLAUDE_CONFIG_DIR=str(tmp_path / "none"))
    done = run_cli("tokens", "blocks", "--token-limit", "lots", env=env)
    assert done.code != 0 and "--token-limit" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
