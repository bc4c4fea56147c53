"""Model prices: the bundled offline table, user and preset overrides, and cost arithmetic.

Contract:

- `PriceTable.bundled()` reads `aiswitch/data/prices.json` (USD per million tokens, with its
  `source` and `as_of` date). `load_price_table(home, preset_overrides)` layers the user file
  `config/prices.yaml` under the home and then a per-preset mapping on top of it; later layers
  win per model.
- `PriceTable.lookup(model)` finds a model by its exact id first, then by its normalised id
  (lower case, provider prefixes such as `anthropic/` or `us.anthropic.` removed, date suffixes
  such as `-20250929`, `@20250929` or `-2025-04-14`, `-latest` and Bedrock `-v1:0` removed,
  a context tag such as `[1m]` removed, dots between Claude version digits read as dashes); a
  fast-mode id `<model>-fast` without a price of its own takes the model's price. It
  never guesses: an id that does not normalise to a known model is unpriced (`None`), and an
  unpriced request is never reported as $0.
- `ModelPrice.cost(...)` prices one request. Tiers (`above` N tokens) apply, by default, the way
  the providers bill them: to the whole request when its prompt (input + cache read + cache
  write) exceeds N. `tier_rule="per_counter"` applies them instead to the part of each counter
  above N, which is what LiteLLM-based tools such as ccusage compute.
- Cache writes with a one-hour TTL (`cache_write_1h_tokens`, a part of `cache_write_tokens`) are
  billed at the `cache_write_1h` rate when the model has one.
- Cost modes, as ccusage's: `auto` (the CLI's own reported cost when present, else calculated),
  `calculate` (always from the table), `reported` (only the CLI's own figure).

Errors: a malformed user file or override raises `ConfigError` with a one-line message.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

from aiswitch.errors import ConfigError, UsageError
from aiswitch.home import Home

CostMode = Literal["auto", "calculate", "reported"]
TierRule = Literal["prompt", "per_counter"]
COST_MODES: tuple[CostMode, ...] = ("auto", "calculate", "reported")

PER_MILLION = 1_000_000.0
USER_PRICES_FILE = "prices.yaml"
# Claude Code names fast-mode requests `<model>-fast`; without a `-fast` price of its own the
# model's price applies (as in ccusage).
FAST_SUFFIX = "-fast"

# Provider prefixes seen in model ids: LiteLLM/OpenRouter style (`anthropic/`), Bedrock style
# (`us.anthropic.`), Vertex style (`claude-…@20250929`).
_PREFIX_RE = re.compile(r"^(?:[a-z0-9_.-]+/)+")
_BEDROCK_PREFIX_RE = re.compile(r"^(?:(?:us|eu|apac|global)\.)?anthropic\.")
_BEDROCK_VERSION_RE = re.compile(r"-v\d+(?::\d+)?$")
_DATE_SUFFIX_RE = re.compile(r"(?:[-@](?:20\d{2}-?\d{2}-?\d{2}))$")
_LATEST_SUFFIX_RE = re.compile(r"-latest$")
# Claude Code tags an id with its context window (`claude-opus-4-8[1m]`).
_CONTEXT_TAG_RE = re.compile(r"\[[^\]]*\]$")
# OpenRouter writes Claude versions with dots (`anthropic/claude-sonnet-4.5`), Anthropic with
# dashes (`claude-sonnet-4-5`); ccusage prices both alike.
_CLAUDE_DOT_RE = re.compile(r"(?<=\d)\.(?=\d)")


def normalise_model_id(model: str) -> str:
    """The id a model is filed under in the table: no provider prefix, no date, lower case."""
    text = _CONTEXT_TAG_RE.sub("", model.strip().lower())
    text = _PREFIX_RE.sub("", text)
    text = _BEDROCK_PREFIX_RE.sub("", text)
    text = _BEDROCK_VERSION_RE.sub("", text)
    if text.startswith("claude-"):
        text = _CLAUDE_DOT_RE.sub("-", text)
    fast = text.endswith(FAST_SUFFIX)
    if fast:
        text = text[: -len(FAST_SUFFIX)]
    text = _DATE_SUFFIX_RE.sub("", text)
    text = _LATEST_SUFFIX_RE.sub("", text)
    return text + FAST_SUFFIX if fast else text


# How many model ids a price table remembers the answer of (`PriceTable.lookup`).
LOOKUPS_KEPT = 4096


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per million tokens for each counter."""

    input: float
    output: float
    cache_write: float
    cache_read: float
    cache_write_1h: float


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """The price of one model: base rates and optional tiers (ascending `above`)."""

    model: str
    base: Rates
    provider: str | None = None
    tiers: tuple[tuple[int, Rates], ...] = ()
    # Where this price was read and when, when the entry says (else its vendor's `source`).
    source: str | None = None
    as_of: str | None = None

    def prompt_tier(self, prompt_tokens: int) -> int:
        """Which rates a request with this prompt (input + cache read + cache write) pays under
        the "prompt" rule: 0 for the base rates, i for `tiers[i - 1]`, the last tier whose
        `above` it exceeds."""
        tier = 0
        for index, (above, _) in enumerate(self.tiers, 1):
            if prompt_tokens > above:
                tier = index
        return tier

    def cost_at(
        self,
        tier: int,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int,
        cache_write_tokens: int,
        cache_write_1h_tokens: int = 0,
    ) -> float:
        """USD at the rates of `tier` (see `prompt_tier`): linear in the counts, so it prices a
        sum of requests of one tier as well as one request."""
        rates = self.base if tier == 0 else self.tiers[tier - 1][1]
        write_1h = min(cache_write_1h_tokens, cache_write_tokens)
        return (
            input_tokens * rates.input
            + output_tokens * rates.output
            + cache_read_tokens * rates.cache_read
            + (cache_write_tokens - write_1h) * rates.cache_write
            + write_1h * rates.cache_write_1h
        ) / PER_MILLION

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int,
        cache_write_tokens: int,
        cache_write_1h_tokens: int = 0,
        tier_rule: TierRule = "prompt",
    ) -> float:
        """USD for one request."""
        if tier_rule == "per_counter" and self.tiers:
            write_1h = min(cache_write_1h_tokens, cache_write_tokens)
            return (
                self._piecewise(input_tokens, "input")
                + self._piecewise(output_tokens, "output")
                + self._piecewise(cache_read_tokens, "cache_read")
                + self._piecewise(cache_write_tokens - write_1h, "cache_write")
                + self._piecewise(write_1h, "cache_write_1h")
            ) / PER_MILLION
        tier = self.prompt_tier(input_tokens + cache_read_tokens + cache_write_tokens)
        return self.cost_at(
            tier,
            input_tokens,
            output_tokens,
            cache_read_tokens,
            cache_write_tokens,
            cache_write_1h_tokens,
        )

    def request_cost(self, tier_rule: TierRule) -> Callable[[int, int, int, int, int], float]:
        """`cost` under `tier_rule` as one call of the counts (input, output, cache read,
        cache write, 1h cache write): for a model without tiers, the base rates' at once."""
        if not self.tiers:
            return partial(self.cost_at, 0)
        return partial(self.cost, tier_rule=tier_rule)

    def _piecewise(self, tokens: int, counter: str) -> float:
        total = 0.0
        bounds = [0, *(above for above, _ in self.tiers)]
        rates = [self.base, *(tier for _, tier in self.tiers)]
        for index, start in enumerate(bounds):
            if tokens <= start:
                break
            end = bounds[index + 1] if index + 1 < len(bounds) else tokens
            total += (min(tokens, end) - start) * cast(float, getattr(rates[index], counter))
        return total


@dataclass(frozen=True)
class PriceTable:
    """Prices by model id, with the normalised ids indexed for lookup."""

    models: Mapping[str, ModelPrice]
    source: Mapping[str, str] = field(default_factory=dict)
    as_of: str | None = None
    tier_rule: TierRule = "prompt"

    @classmethod
    def bundled(cls) -> PriceTable:
        """The offline table shipped with aiswitch (read once per process)."""
        return _bundled_table()

    @classmethod
    def from_json(cls, data: Mapping[str, Any], origin: str) -> PriceTable:
        models = parse_price_specs(data.get("models"), origin)
        raw_source = data.get("source") or {}
        source = (
            {str(k): str(v) for k, v in raw_source.items()}
            if isinstance(raw_source, Mapping)
            else {"all": str(raw_source)}
        )
        as_of = data.get("as_of")
        return cls(models=models, source=source, as_of=str(as_of) if as_of else None)

    def lookup(self, model: str | None) -> ModelPrice | None:
        """The model's price: exact id, then normalised id; `None` when unknown. Each id's
        answer is kept (for `LOOKUPS_KEPT` ids): a run prices every usage record, and an id
        that is not a table key (a dated one, an unknown one) costs six regular expressions."""
        if not model:
            return None
        found = self.models.get(model)
        if found is not None:
            return found
        answers: dict[str, ModelPrice | None] | None = self.__dict__.get("_lookups")
        if answers is None:
            answers = {}
            object.__setattr__(self, "_lookups", answers)
        elif model in answers:
            return answers[model]
        normalised = normalise_model_id(model)
        found = self._normalised().get(normalised)
        if found is None and normalised.endswith(FAST_SUFFIX):
            found = self._normalised().get(normalised[: -len(FAST_SUFFIX)])
        if len(answers) < LOOKUPS_KEPT:
            answers[model] = found
        return found

    def provenance(self, price: ModelPrice) -> tuple[str, str] | None:
        """Where `price` comes from and as of when: the entry's own source and date, else its
        vendor's source in this table and the table's date; None when neither is known."""
        source = price.source or self.source.get(price.provider or "") or self.source.get("all")
        as_of = price.as_of or self.as_of
        return (source, as_of) if source and as_of else None

    def with_overrides(self, overrides: Mapping[str, ModelPrice]) -> PriceTable:
        """A new table where `overrides` replace or add models."""
        if not overrides:
            return self
        merged = dict(self.models)
        merged.update(overrides)
        return replace(self, models=merged)

    def with_tier_rule(self, tier_rule: TierRule) -> PriceTable:
        return replace(self, tier_rule=tier_rule)

    def cost(
        self,
        model: str | None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
    ) -> float | None:
        """USD for one request of `model`, or `None` when the model is not priced."""
        price = self.lookup(model)
        if price is None:
            return None
        return price.cost(
            input_tokens,
            output_tokens,
            cache_read_tokens,
            cache_write_tokens,
            cache_write_1h_tokens,
            self.tier_rule,
        )

    def fingerprint(self) -> str:
        """A short digest of every price, for cache keys that depend on the table."""
        return _fingerprint(self)

    def _normalised(self) -> dict[str, ModelPrice]:
        cached: dict[str, ModelPrice] | None = self.__dict__.get("_norm_cache")
        if cached is None:
            cached = {}
            for model_id, price in self.models.items():
                cached.setdefault(normalise_model_id(model_id), price)
            # Exact-case canonical ids win over ids that only normalise to the same key.
            for model_id, price in self.models.items():
                if normalise_model_id(model_id) == model_id:
                    cached[model_id] = price
            object.__setattr__(self, "_norm_cache", cached)
        return cached


def _fingerprint(table: PriceTable) -> str:
    payload = [(k, repr(v)) for k, v in sorted(table.models.items())]
    digest = hashlib.sha256(repr((payload, table.tier_rule)).encode()).hexdigest()
    return digest[:16]


@lru_cache(maxsize=1)
def _bundled_table() -> PriceTable:
    text = resources.files("aiswitch.data").joinpath("prices.json").read_text(encoding="utf-8")
    return PriceTable.from_json(json.loads(text), "aiswitch/data/prices.json")


def parse_price_specs(data: object, origin: str) -> dict[str, ModelPrice]:
    """Parse `{model: {input, output, cache_write?, cache_read?, cache_write_1h?, tiers?}}`.

    Rates are USD per million tokens. A missing `cache_write` or `cache_read` defaults to the
    input rate and a missing `cache_write_1h` to `cache_write`: never cheaper than stated.
    """
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: prices must be a mapping of model id to rates")
    parsed: dict[str, ModelPrice] = {}
    for model, spec in data.items():
        where = f"{origin}: model {model!r}"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: expected a mapping of rates")
        base = _rates(spec, where, None)
        tiers: list[tuple[int, Rates]] = []
        raw_tiers = spec.get("tiers") or []
        if not isinstance(raw_tiers, list):
            raise ConfigError(f"{where}: tiers must be a list")
        for tier in raw_tiers:
            if not isinstance(tier, Mapping) or not isinstance(tier.get("above"), int):
                raise ConfigError(f"{where}: each tier needs an integer 'above'")
            tiers.append((int(tier["above"]), _rates(tier, where, base)))
        tiers.sort(key=lambda item: item[0])
        provider = spec.get("provider")
        source, as_of = spec.get("source"), spec.get("as_of")
        parsed[str(model)] = ModelPrice(
            model=str(model),
            base=base,
            provider=str(provider) if provider else None,
            tiers=tuple(tiers),
            source=str(source) if source else None,
            as_of=str(as_of) if as_of else None,
        )
    return parsed


def _rates(spec: Mapping[str, Any], where: str, fallback: Rates | None) -> Rates:
    def rate(name: str, default: float | None) -> float:
        value = spec.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{where}: '{name}' must be a non-negative number (USD per 1M)")
        return float(value)

    input_rate = rate("input", fallback.input if fallback else None)
    output_rate = rate("output", fallback.output if fallback else None)
    cache_write = rate("cache_write", input_rate)
    return Rates(
        input=input_rate,
        output=output_rate,
        cache_write=cache_write,
        cache_read=rate("cache_read", input_rate),
        cache_write_1h=rate("cache_write_1h", cache_write),
    )


def read_user_prices(path: Path) -> dict[str, ModelPrice]:
    """The overrides in a user `prices.yaml` (absent file: none)."""
    if not path.exists():
        return {}
    import yaml  # lazy: only reports with a user price file pay for it

    from aiswitch.yaml_text import parse

    try:
        data = parse(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read prices: {exc}".splitlines()[0]) from exc
    if data is None:
        return {}
    if isinstance(data, Mapping) and "models" in data:
        data = data["models"]
    return parse_price_specs(data, str(path))


def load_price_table(
    home: Home | None = None,
    preset_overrides: Mapping[str, Any] | None = None,
    tier_rule: TierRule | None = None,
) -> PriceTable:
    """Bundled prices, then `config/prices.yaml` under `home`, then `preset_overrides`."""
    table = PriceTable.bundled()
    if home is not None:
        table = table.with_overrides(read_user_prices(home.config / USER_PRICES_FILE))
    if preset_overrides:
        table = table.with_overrides(parse_price_specs(preset_overrides, "preset prices"))
    if tier_rule is not None:
        table = table.with_tier_rule(tier_rule)
    return table


def check_cost_mode(mode: str) -> CostMode:
    """`mode` as a `CostMode`; anything else is a `UsageError`."""
    if mode not in COST_MODES:
        raise UsageError(f"unknown cost mode {mode!r} (choose from {', '.join(COST_MODES)})")
    return mode
