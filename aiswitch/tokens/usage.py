"""Token usage with one meaning for every provider.

`input_tokens` never includes cached tokens (OpenAI and Gemini count cached tokens
inside their input: the normalisers subtract them; Anthropic reports them apart).
`reasoning_tokens` is the part of `output_tokens` spent on reasoning (Gemini reports
thoughts apart from candidates: output = candidates + thoughts). So

    input_tokens + cache_read_tokens + cache_write_tokens + output_tokens

is the true total for every provider, and totals add up across providers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# A count is a whole number from 0 to int64's largest: the ledger's readers read no larger
# integer as one (tokens/sources/ledger.py), so a larger one would vanish from every report.
MAX_COUNT = 2**63 - 1
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]

COUNTERS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


class Usage(BaseModel):
    """Normalised token counts of one or more requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: Count = 0
    output_tokens: Count = 0
    cache_read_tokens: Count = 0
    cache_write_tokens: Count = 0
    reasoning_tokens: Count = 0

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    @property
    def is_empty(self) -> bool:
        return not (
            self.input_tokens
            or self.output_tokens
            or self.cache_read_tokens
            or self.cache_write_tokens
            or self.reasoning_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        # Frozen, so an empty side gives the other back without building a model: most
        # tasks report once, and a batch adds up every task's usage several times.
        if other.is_empty:
            return self
        if self.is_empty:
            return other
        return Usage(**{name: getattr(self, name) + getattr(other, name) for name in COUNTERS})

    @classmethod
    def total(cls, usages: Iterable[Usage]) -> Usage:
        """The sum of `usages`, counted as plain ints and built once (what adding them one
        by one gives, without a model per step: a run of 100,000 tasks sums as many)."""
        sums = [0, 0, 0, 0, 0]
        last: Usage | None = None
        parts = 0
        for usage in usages:
            if usage.is_empty:
                continue
            parts += 1
            last = usage
            sums[0] += usage.input_tokens
            sums[1] += usage.output_tokens
            sums[2] += usage.cache_read_tokens
            sums[3] += usage.cache_write_tokens
            sums[4] += usage.reasoning_tokens
        if parts == 1 and last is not None:
            return last
        return cls(**dict(zip(COUNTERS, sums, strict=True)))

    @classmethod
    def from_anthropic(cls, usage: dict[str, object]) -> Usage:
        """Anthropic reports cache reads and writes apart from `input_tokens`."""
        return cls(
            input_tokens=_int(usage.get("input_tokens")),
            output_tokens=_int(usage.get("output_tokens")),
            cache_read_tokens=_int(usage.get("cache_read_input_tokens")),
            cache_write_tokens=_int(usage.get("cache_creation_input_tokens")),
        )

    @classmethod
    def from_openai(cls, usage: dict[str, object]) -> Usage:
        """OpenAI counts cached tokens inside `input_tokens` and reasoning inside output."""
        cached = _int(usage.get("cached_input_tokens")) or _int(
            _dig(usage, "input_tokens_details", "cached_tokens")
        )
        reasoning = _int(usage.get("reasoning_output_tokens")) or _int(
            _dig(usage, "output_tokens_details", "reasoning_tokens")
        )
        total_input = _int(usage.get("input_tokens"))
        return cls(
            input_tokens=max(total_input - cached, 0),
            output_tokens=_int(usage.get("output_tokens")),
            cache_read_tokens=cached,
            reasoning_tokens=reasoning,
        )

    @classmethod
    def from_gemini(cls, usage: dict[str, object]) -> Usage:
        """Gemini counts cached tokens inside the prompt and thoughts apart from candidates."""
        cached = _int(usage.get("cachedContentTokenCount"))
        thoughts = _int(usage.get("thoughtsTokenCount"))
        return cls(
            input_tokens=max(_int(usage.get("promptTokenCount")) - cached, 0),
            output_tokens=_int(usage.get("candidatesTokenCount")) + thoughts,
            cache_read_tokens=cached,
            reasoning_tokens=thoughts,
        )


def _int(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float):
        return max(int(value), 0)
    return 0


def _dig(mapping: dict[str, object], *keys: str) -> object:
    current: object = mapping
    for key in keys:
        if not isinstance(current, dict):
            return None
        current = current.get(key)
    return current
