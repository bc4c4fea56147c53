"""The bundled price table, lookups that never guess, tiers, overrides and cost modes."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiswitch.errors import ConfigError, UsageError
from aiswitch.home import Home
from aiswitch.tokens.prices import PriceTable, load_price_table, normalise_model_id
from aiswitch.tokens.records import LedgerRecord
from aiswitch.tokens.report import build_report
from aiswitch.tokens.report_options import parse_report_options

# What LiteLLM (and so ccusage 20.0.24 offline) charges, USD per million tokens:
# input, output, cache write (5 min), cache read, cache write (1 hour).
LITELLM_CLAUDE = {
    "claude-3-5-haiku-20241022": (0.8, 4.0, 1.0, 0.08, 1.6),
    "claude-3-7-sonnet-20250219": (3.0, 15.0, 3.75, 0.3, 6.0),
    "claude-sonnet-4-20250514": (3.0, 15.0, 3.75, 0.3, 6.0),
    "claude-sonnet-4-5-20250929": (3.0, 15.0, 3.75, 0.3, 6.0),
    "claude-opus-4-1-20250805": (15.0, 75.0, 18.75, 1.5, 30.0),
    "claude-opus-4-5-20251101": (5.0, 25.0, 6.25, 0.5, 10.0),
    "claude-haiku-4-5-20251001": (1.0, 5.0, 1.25, 0.1, 2.0),
}


def test_the_bundled_table_says_where_its_prices_come_from_and_when() -> None:
    table = PriceTable.bundled()
    assert table.as_of and table.as_of[:2] == "20"
    assert {"anthropic", "openai", "google", "deepseek", "moonshot", "zhipu", "qwen"} <= set(
        table.source
    )


@pytest.mark.parametrize(("model", "rates"), sorted(LITELLM_CLAUDE.items()))
def test_claude_prices_are_the_numbers_ccusage_uses(model: str, rates: tuple[float, ...]) -> None:
    price = PriceTable.bundled().lookup(model)
    assert price is not None
    base = price.base
    assert (
        base.input,
        base.output,
        base.cache_write,
        base.cache_read,
        base.cache_write_1h,
    ) == rates


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic/claude-opus-4-1", "claude-opus-4-1"),
        ("openrouter/anthropic/claude-haiku-4-5", "claude-haiku-4-5"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("GLM-4.6", "glm-4.6"),
    ],
)
def test_lookup_finds_models_by_normalised_id(model: str, expected: str) -> None:
    price = PriceTable.bundled().lookup(model)
    assert price is not None and price.model == expected


@pytest.mark.parametrize(
    "model", ["claude-sonnet-4-7", "gpt-5.1-codex-maxi", "kimi", "sonnet", "", None]
)
def test_lookup_never_guesses_an_unknown_model(model: str | None) -> None:
    assert PriceTable.bundled().lookup(model) is None


def test_normalising_keeps_the_fast_suffix_after_removing_the_date() -> None:
    assert normalise_model_id("claude-opus-4-6-20260101-fast") == "claude-opus-4-6-fast"


def test_a_request_over_200k_prompt_tokens_is_billed_at_the_premium_tier_entirely() -> None:
    sonnet = PriceTable.bundled().lookup("claude-sonnet-4-5")
    assert sonnet is not None
    assert sonnet.cost(100_000, 1_000, 0, 0) == pytest.approx(0.3 + 0.015)
    assert sonnet.cost(150_000, 1_000, 60_000, 0) == pytest.approx(0.9 + 0.0225 + 0.036)


def test_the_per_counter_tier_rule_reproduces_litellm_arithmetic() -> None:
    sonnet = PriceTable.bundled().lookup("claude-sonnet-4-5")
    assert sonnet is not None
    # ccusage: 200k at $3 plus 800k at $6 = $5.40 for 1M input tokens.
    assert sonnet.cost(1_000_000, 0, 0, 0, tier_rule="per_counter") == pytest.approx(5.4)


def test_one_hour_cache_writes_cost_twice_the_input_rate() -> None:
    opus = PriceTable.bundled().lookup("claude-opus-4-5")
    assert opus is not None
    assert opus.cost(0, 0, 0, 1_000_000, cache_write_1h_tokens=400_000) == pytest.approx(
        0.6 * 6.25 + 0.4 * 10.0
    )


def test_a_user_price_file_and_preset_overrides_win_in_that_order(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.config.mkdir(parents=True)
    (home.config / "prices.yaml").write_text(
        "models:\n  my-model: {input: 1, output: 2}\n  gpt-4.1: {input: 9, output: 9}\n"
    )
    table = load_price_table(home, preset_overrides={"gpt-4.1": {"input": 7, "output": 8}})
    mine = table.lookup("my-model")
    gpt = table.lookup("gpt-4.1")
    assert mine is not None and gpt is not None
    assert (mine.base.input, mine.base.cache_read, mine.base.cache_write) == (1.0, 1.0, 1.0)
    assert (gpt.base.input, gpt.base.output) == (7.0, 8.0)
    assert table.lookup("claude-haiku-4-5") is not None  # bundled prices still there


def test_a_malformed_price_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.config.mkdir(parents=True)
    (home.config / "prices.yaml").write_text("models:\n  m: {input: -1, output: 2}\n")
    with pytest.raises(ConfigError, match=r"prices.yaml: model 'm': 'input' must be"):
        load_price_table(home)


def _records() -> list[LedgerRecord]:
    return [
        LedgerRecord(model="claude-haiku-4-5", input_tokens=1_000_000, ts="2026-01-01T10:00:00Z"),
        LedgerRecord(
            model="claude-haiku-4-5",
            input_tokens=1_000_000,
            cost_usd=0.25,
            cost_source="reported",
            ts="2026-01-01T11:00:00Z",
        ),
        LedgerRecord(model="mystery-model", input_tokens=5, ts="2026-01-01T12:00:00Z"),
    ]


def test_auto_mode_takes_reported_costs_and_calculates_the_rest() -> None:
    report = build_report(_records(), parse_report_options(cost_mode="auto", timezone="UTC"))
    assert report.totals["cost_usd"] == pytest.approx(1.0 + 0.25)
    assert report.totals["unpriced_requests"] == 1


def test_calculate_mode_ignores_reported_costs() -> None:
    report = build_report(_records(), parse_report_options(cost_mode="calculate", timezone="UTC"))
    assert report.totals["cost_usd"] == pytest.approx(2.0)


def test_reported_mode_counts_requests_without_a_reported_cost_as_unpriced() -> None:
    report = build_report(_records(), parse_report_options(cost_mode="reported", timezone="UTC"))
    assert report.totals["cost_usd"] == pytest.approx(0.25)
    assert report.totals["unpriced_requests"] == 2


def test_an_unknown_model_is_unpriced_never_zero_dollars() -> None:
    report = build_report([_records()[2]], parse_report_options(by="model", timezone="UTC"))
    assert report.rows[0]["cost_usd"] is None
    assert report.rows[0]["unpriced_requests"] == 1


def test_per_preset_prices_apply_only_to_that_preset() -> None:
    records = [
        LedgerRecord(model="kimi-k2-0905-preview", preset=name, input_tokens=1_000_000)
        for name in ("kimi", "other")
    ]
    options = parse_report_options(
        by="preset",
        timezone="UTC",
        preset_prices={"kimi": {"kimi-k2-0905-preview": {"input": 1.0, "output": 1.0}}},
    )
    report = build_report(records, options)
    assert [row["cost_usd"] for row in report.rows] == pytest.approx([1.0, 0.6])


def test_an_unknown_cost_mode_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown cost mode 'cheap'"):
        parse_report_options(cost_mode="cheap")


def test_a_lookups_answer_is_kept_per_table_and_an_overridden_table_asks_again() -> None:
    from aiswitch.tokens.prices import ModelPrice, Rates

    table = PriceTable.bundled().with_overrides({})
    dated = "anthropic/Claude-Sonnet-4-5-20250929"
    first = table.lookup(dated)
    assert first is not None and table.lookup(dated) is first
    assert table.lookup("No-Such-Model-1") is None and table.lookup("No-Such-Model-1") is None
    mine = ModelPrice("no-such-model-1", Rates(1.0, 2.0, 1.0, 1.0, 1.0))
    overridden = table.with_overrides({"no-such-model-1": mine})
    assert overridden.lookup("No-Such-Model-1") is mine  # its own answer, by the normalised id
    assert table.lookup("No-Such-Model-1") is None  # the first table's answer stands
