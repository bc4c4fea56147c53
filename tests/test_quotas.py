"""Quotas: `aiswitch tokens quota set/show/clear`, and `make_quota_check` refusing tasks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from support.cli import assert_one_error_line, run_cli

from aiswitch.errors import QuotaExceededError
from aiswitch.home import Home
from aiswitch.tokens.ledger import ledger_line
from aiswitch.tokens.quota_check import check_for
from aiswitch.tokens.quotas import load_quotas, make_quota_check
from aiswitch.tokens.records import LedgerRecord


def spend(home: Home, agent: str, tokens: int, *, preset: str | None = None) -> None:
    """Today's usage in the ledger: `tokens` input tokens by `agent`."""
    home.ledger.parent.mkdir(parents=True, exist_ok=True)
    record = LedgerRecord(
        ts=datetime.now(UTC),
        agent=agent,
        preset=preset,
        model="claude-sonnet-4-5",
        input_tokens=tokens,
    )
    with home.ledger.open("ab") as out:
        out.write(ledger_line(record) + b"\n")


def test_set_merges_limits_show_lists_them_with_usage_and_clear_removes_them(
    home: Home, env: dict[str, str]
) -> None:
    done = run_cli("tokens", "quota", "set", "--agent", "mock", "--daily-tokens", "1000", env=env)
    assert done.code == 0, done.stderr
    done = run_cli("tokens", "quota", "set", "--agent", "mock", "--monthly-usd", "2.5", env=env)
    assert done.code == 0, done.stderr
    assert "daily_tokens=1000" in done.stdout and "monthly_usd=2.5" in done.stdout
    spend(home, "mock", 400)
    shown = run_cli("tokens", "quota", "show", "--json", env=env).json()["quotas"]
    assert shown == [
        {
            "kind": "agent",
            "name": "mock",
            "limits": {"daily_tokens": 1000, "monthly_usd": 2.5},
            "used": shown[0]["used"],
            "exceeded": False,
        }
    ]
    assert shown[0]["used"]["daily_tokens"] == 400
    assert (home.config / "quotas.yaml").stat().st_mode & 0o077 == 0
    assert run_cli("tokens", "quota", "clear", "--agent", "mock", env=env).code == 0
    assert load_quotas(home).agents == {}


def test_clear_all_removes_every_quota(home: Home, env: dict[str, str]) -> None:
    run_cli("tokens", "quota", "set", "--agent", "mock", "--daily-usd", "1", env=env)
    done = run_cli("tokens", "quota", "clear", "--all", env=env)
    assert done.code == 0 and "cleared 1" in done.stdout
    assert_one_error_line(
        run_cli("tokens", "quota", "clear", "--agent", "mock", env=env), "no quota", code=2
    )


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("--agent", "nobody", "--daily-tokens", "5"), 5, "nobody"),
        (("--preset", "nothing", "--daily-tokens", "5"), 3, "nothing"),
        (("--agent", "mock"), 2, "at least one limit"),
        (("--agent", "mock", "--daily-usd", "-1"), 2, "positive"),
        (("--daily-tokens", "5"), 2, "exactly one of --agent or --preset"),
        (("--agent", "mock", "--preset", "x", "--daily-tokens", "5"), 2, "exactly one"),
    ],
)
def test_bad_quota_settings_are_one_line_errors_and_change_nothing(
    home: Home, env: dict[str, str], args: tuple[str, ...], code: int, fragment: str
) -> None:
    assert_one_error_line(run_cli("tokens", "quota", "set", *args, env=env), fragment, code=code)
    assert not (home.config / "quotas.yaml").exists()


def test_the_check_refuses_an_agent_at_its_daily_token_limit_saying_how_to_change_it(
    home: Home, env: dict[str, str]
) -> None:
    assert (
        run_cli("tokens", "quota", "set", "--agent", "mock", "--daily-tokens", "1000", env=env).code
        == 0
    )
    spend(home, "mock", 999)
    make_quota_check(home)("mock", None)  # under the limit: allowed
    make_quota_check(home)("other", None)  # no quota: allowed
    spend(home, "mock", 1)
    with pytest.raises(QuotaExceededError) as caught:
        make_quota_check(home)("mock", None)
    line = caught.value.one_line()
    assert "\n" not in line and caught.value.exit_code == 6
    for fragment in ("agent 'mock'", "daily token quota", "1,000 of 1,000", "quota set --agent"):
        assert fragment in line, line


def test_a_preset_quota_counts_that_presets_usage_in_usd(home: Home, env: dict[str, str]) -> None:
    home.config.mkdir(parents=True, exist_ok=True)
    (home.config / "presets.yaml").write_text("version: 1\npresets:\n  work:\n    agent: claude\n")
    done = run_cli("tokens", "quota", "set", "--preset", "work", "--monthly-usd", "0.01", env=env)
    assert done.code == 0, done.stderr
    spend(home, "claude", 100_000, preset="other")
    make_quota_check(home)("claude", "work")
    spend(home, "claude", 100_000, preset="work")  # $0.30 at $3 per million
    with pytest.raises(QuotaExceededError, match="preset 'work' is over its monthly USD quota"):
        make_quota_check(home)("claude", "work")


def test_a_broken_quotas_file_is_a_config_error(home: Home, env: dict[str, str]) -> None:
    home.config.mkdir(parents=True, exist_ok=True)
    (home.config / "quotas.yaml").write_text("agents:\n  mock: {daily_tokens: lots}\n")
    assert_one_error_line(run_cli("tokens", "quota", "show", env=env), "daily_tokens", code=3)


def test_a_home_without_a_quotas_file_gives_a_run_no_check_and_a_broken_one_stops_it(
    home: Home, env: dict[str, str]
) -> None:
    assert check_for(home) is None
    home.config.mkdir(parents=True, exist_ok=True)
    (home.config / "quotas.yaml").write_text("agents:\n  mock: {daily_tokens: lots}\n")
    done = run_cli("run", "--agent", "mock", "x", "--json", env=env)
    assert_one_error_line(done, "daily_tokens", code=3)


def test_run_refuses_the_next_task_once_a_run_spent_past_the_daily_token_quota(
    home: Home, env: dict[str, str]
) -> None:
    done = run_cli("tokens", "quota", "set", "--agent", "mock", "--daily-tokens", "1000", env=env)
    assert done.code == 0, done.stderr
    spender = {**env, "MOCK_INPUT_TOKENS": "1500"}
    first = run_cli("run", "--agent", "mock", "spend it", "--json", env=spender)
    assert first.code == 0, first.stderr
    second = run_cli("run", "--agent", "mock", "one more", env=spender)
    assert_one_error_line(second, "daily token quota", "mock", code=6)
