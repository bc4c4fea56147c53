"""`tokens report --json --format ccusage` writes ccusage's own daily, monthly and session
documents: on the same Claude logs, the same keys, types, order and values as the pinned
ccusage's `claude daily|monthly|session --json` (scripts/setup/ccusage.sh; never skipped)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.ccusage import ccusage_env, run_ccusage
from support.claude_logs import LogSetSpec, write_claude_logs
from support.cli import assert_one_error_line, clean_env, run_cli


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ccusage-format")
    write_claude_logs(root / "claude", LogSetSpec(files=10, assistant_lines=700, days=5))
    (root / "home").mkdir()
    return root / "claude", root


def _same(ours: Any, theirs: Any, where: str) -> None:
    """Equal values of equal types (floats within rounding), dict keys in the same order."""
    if isinstance(theirs, float):
        assert isinstance(ours, float | int), where
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-9), where
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), where
        for key, value in theirs.items():
            _same(ours[key], value, f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list), where
        if where.endswith("modelsUsed"):  # ccusage lists them in the order it read them
            assert sorted(ours) == sorted(theirs), where
            return
        assert len(ours) == len(theirs), where
        for index, (mine, value) in enumerate(zip(ours, theirs, strict=True)):
            _same(mine, value, f"{where}[{index}]")
    else:
        assert type(ours) is type(theirs) and ours == theirs, (where, ours, theirs)


@pytest.mark.parametrize("report", ["daily", "monthly", "session"])
@pytest.mark.parametrize("timezone", ["UTC", "Asia/Tokyo"])
def test_the_ccusage_format_is_ccusages_own_document(
    logs: tuple[Path, Path], tmp_path: Path, report: str, timezone: str
) -> None:
    config_dir, root = logs
    theirs = run_ccusage(
        ["claude", report, "--json", "-O", "--timezone", timezone],
        ccusage_env(config_dir, root / "home"),
    )
    env = clean_env(tmp_path / "aiswitch-home", CLAUDE_CONFIG_DIR=str(config_dir))
    env["HOME"] = str(root / "home")
    args = ["tokens", report, "--source", "claude", "--json", "--format", "ccusage"]
    done = run_cli(*args, "--timezone", timezone, env=env)
    assert done.code == 0, done.stderr
    ours = json.loads(done.stdout)
    entries = next(key for key in theirs if key != "totals")
    assert theirs[entries], "the log set must produce usage"
    _same(ours, theirs, report)


def test_the_ccusage_format_says_what_it_needs(home: Path, env: dict[str, str]) -> None:
    assert_one_error_line(
        run_cli("tokens", "daily", "--format", "ccusage", env=env), "--json", code=2
    )
    assert_one_error_line(
        run_cli("tokens", "weekly", "--json", "--format", "ccusage", env=env), "--by day", code=2
    )
    assert_one_error_line(
        run_cli("tokens", "daily", "--json", "--format", "ledger", env=env), "--format", code=2
    )
