"""The ledger record: one line of `state/tokens.jsonl` per usage event.

Schema version 1 (documented in docs/tokens.md). Counts are normalised as
`aiswitch.tokens.usage` defines. `cost_source` says where `cost_usd` came from:
`reported` (the CLI's own figure), `calculated` (from the price table) or `unpriced`
(no price known: `cost_usd` is null, never 0).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, field_validator

from aiswitch.tokens.times import FIRST_TS, LAST_TS
from aiswitch.tokens.usage import Usage

LEDGER_SCHEMA_VERSION = 1

CostSource = Literal["reported", "calculated", "unpriced"]


def utc_now() -> datetime:
    return datetime.now(UTC)


class LedgerRecord(BaseModel):
    """One usage event as stored in the ledger."""

    model_config = ConfigDict(extra="ignore")

    v: int = LEDGER_SCHEMA_VERSION
    ts: datetime = Field(default_factory=utc_now)
    source: str = "aiswitch"
    run_id: str | None = None
    task_id: str | None = None
    # Which attempt of the task spent it (1 for the first; retries count up).
    attempt: int | None = None
    agent: str | None = None
    agent_id: str | None = None
    preset: str | None = None
    provider: str | None = None
    model: str | None = None
    session_id: str | None = None
    message_id: str | None = None
    request_id: str | None = None
    input_tokens: NonNegativeInt = 0
    output_tokens: NonNegativeInt = 0
    cache_read_tokens: NonNegativeInt = 0
    cache_write_tokens: NonNegativeInt = 0
    # The part of cache_write_tokens written with a one-hour TTL (Anthropic bills it at a
    # higher rate); 0 when the source does not say.
    cache_write_1h_tokens: NonNegativeInt = 0
    reasoning_tokens: NonNegativeInt = 0
    cost_usd: float | None = None
    cost_source: CostSource = "unpriced"

    @field_validator("ts")
    @classmethod
    def _ts_exists_in_utc(cls, value: datetime) -> datetime:
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        if not FIRST_TS <= moment.timestamp() <= LAST_TS:
            raise ValueError("a time outside years 1-9999 in UTC")
        return value

    @property
    def usage(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )

    def dedupe_key(self) -> tuple[str, str, str] | None:
        """Records with the same source, message id and request id count once.

        A record missing either id is never deduplicated (ccusage's rule).
        """
        if self.message_id and self.request_id:
            return (self.source, self.message_id, self.request_id)
        return None
