"""Every model a shipped preset template or a pinned CLI's default uses has a price, with its
source and date; a model nobody priced stays unpriced, never $0 (issue 12, defect 5)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.clis import PINNED, PINNED_DEFAULT_MODELS, cache_root, cli_path

from aiswitch.presets.builtin import templates
from aiswitch.tokens.prices import ModelPrice, PriceTable, parse_price_specs
from aiswitch.tokens.records import LedgerRecord
from aiswitch.tokens.report import build_report
from aiswitch.tokens.report_options import parse_report_options
from aiswitch.tokens.rows import row_from_record

# The variables through which a template chooses the CLI's models.
MODEL_VARIABLE = re.compile(r"(?:^|_)(?:SMALL_FAST_)?MODEL$")


def _template_models() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for name, preset in sorted(templates().items()):
        models = {preset.model} if preset.model else set()
        models |= {v for k, v in preset.variables.items() if MODEL_VARIABLE.search(k) and v}
        found.extend((name, model) for model in sorted(models) if "${" not in model)
    return found


def _price_with_source(table: PriceTable, model: str) -> tuple[ModelPrice, tuple[str, str]]:
    price = table.lookup(model)
    assert price is not None, f"{model} is unpriced"
    provenance = table.provenance(price)
    assert provenance is not None, f"{model}'s price ({price.model}) names no source and date"
    source, as_of = provenance
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", as_of), (model, as_of)
    return price, (source, as_of)


def test_the_templates_name_the_models_this_test_walks() -> None:
    models = {model for _, model in _template_models()}
    # The third-party providers the issue names, and an OpenRouter route.
    for expected in ("kimi-k2.5", "glm-4.6", "deepseek-chat", "qwen3-coder-plus"):
        assert expected in models
    assert any(model.startswith("anthropic/") for model in models)


@pytest.mark.parametrize(("template", "model"), _template_models())
def test_every_model_a_shipped_template_names_is_priced_with_its_source(
    template: str, model: str
) -> None:
    preset = templates()[template]
    own = parse_price_specs(
        {name: price.model_dump(exclude_none=True) for name, price in preset.prices.items()},
        f"template {template}",
    )
    if model in own:  # a template that prices its own model (a local server costs nothing)
        assert own[model].base.input == 0 and "local" in preset.tags
        return
    price, (source, _) = _price_with_source(PriceTable.bundled(), model)
    assert price.base.input > 0 and price.base.output > 0, (model, source)


@pytest.mark.parametrize(
    "model", [model for models in PINNED_DEFAULT_MODELS.values() for model in models]
)
def test_every_default_model_of_the_pinned_clis_is_priced_with_its_source(model: str) -> None:
    price, _ = _price_with_source(PriceTable.bundled(), model)
    assert price.base.input > 0 and price.base.output > 0


def test_the_declared_defaults_are_in_the_pinned_clis_themselves() -> None:
    """The defaults above are read off the pinned CLIs: each id is in its CLI's own files."""
    packages = {
        "claude": "@anthropic-ai/claude-code-linux-x64/claude",
        "codex": "@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
    }
    for cli, models in PINNED_DEFAULT_MODELS.items():
        cli_path(cli)  # the pinned version is installed
        if cli in packages:
            data = (cache_root() / "npm" / "node_modules" / packages[cli]).read_bytes()
        else:
            root = cache_root() / "npm" / "node_modules" / PINNED[cli][0]
            data = b"".join(p.read_bytes() for p in Path(root).rglob("*.js"))
        for model in models:
            bare = re.sub(r"\[[^\]]*\]$", "", model).encode()
            assert bare in data, (cli, model)
    gemini = cache_root() / "npm" / "node_modules" / PINNED["gemini"][0]
    sources = b"".join(p.read_bytes() for p in Path(gemini).rglob("*.js"))
    assert b'DEFAULT_GEMINI_MODEL = "gemini-2.5-pro"' in sources


def test_an_unknown_model_stays_unpriced_never_zero() -> None:
    record = LedgerRecord(ts="2026-05-01T00:00:00Z", model="made-up-model-9", input_tokens=1000)
    report = build_report([row_from_record(record)], parse_report_options(by="model"))
    assert report.totals["cost_usd"] is None and report.totals["unpriced_requests"] == 1
    assert PriceTable.bundled().lookup("claude-opus-4-9") is None


def test_an_openrouter_claude_route_and_a_context_tag_price_as_the_plain_model() -> None:
    table = PriceTable.bundled()
    assert table.lookup("anthropic/claude-sonnet-4.5") == table.lookup("claude-sonnet-4-5")
    assert table.lookup("claude-opus-4-8[1m]") == table.lookup("claude-opus-4-8")
    # ccusage 20.0.24 prices claude-opus-4-8 at these rates (per million tokens).
    price = table.lookup("claude-opus-4-8")
    assert price is not None
    assert price.cost(10**6, 10**6, 10**6, 10**6) == pytest.approx(5 + 25 + 0.5 + 6.25)
