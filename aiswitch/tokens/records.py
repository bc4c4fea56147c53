"""The ledger record: one line of `state/tokens.jsonl` per usage event, declared once.

Schema version 1 (documented in docs/tokens.md). Counts are normalised as
`aiswitch.tokens.usage` defines. `cost_source` says where `cost_usd` came from:
`reported` (the CLI's own figure), `calculated` (from the price table) or `unpriced`
(no price known: `cost_usd` is null, never 0).

`LedgerRecord` is the one declaration of the ledger's schema: each field's line says its
type, its default, how a line stores it and whether report rows carry it (its
`aiswitch.tokens.schema.Stored` marker). The record model is this class; the fast reader
(`aiswitch.tokens.sources.ledger`), export, prune and import read lines by the rules
`STORED` derives from it; the report row is `ROW_FIELDS` in this order. Adding a field is one
line here (a row field also needs its value in the CLI-log readers' rows, which build rows
by position; tests/test_ledger_schema.py holds them to `ROW_FIELDS`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aiswitch.tokens.schema import Stored
from aiswitch.tokens.times import FIRST_TS, LAST_TS
from aiswitch.tokens.usage import Count, Usage

LEDGER_SCHEMA_VERSION = 1

CostSource = Literal["reported", "calculated", "unpriced"]

# The field types, each with how a line stores it; `Row…` ones are carried by report rows.
Version = Annotated[int, Stored("version")]
Time = Annotated[datetime, Stored("time", row=True)]
Source = Annotated[str, Stored("source", row=True)]
Text = Annotated[str | None, Stored("text")]
RowText = Annotated[str | None, Stored("text", row=True)]
OptionalInt = Annotated[int | None, Stored("int")]
RowCount = Annotated[Count, Stored("count", row=True)]
Cost = Annotated[float | None, Stored("cost", row=True)]
RowCostSource = Annotated[CostSource, Stored("cost_source", row=True)]


def utc_now() -> datetime:
    return datetime.now(UTC)


class LedgerRecord(BaseModel):
    """One usage event as stored in the ledger (the schema's one declaration)."""

    # Built on first use: a run writes its lines from field values (usage_records.py).
    model_config = ConfigDict(extra="ignore", defer_build=True)

    v: Version = LEDGER_SCHEMA_VERSION
    ts: Time = Field(default_factory=utc_now)
    source: Source = "aiswitch"
    agent: RowText = None
    preset: RowText = None
    provider: RowText = None
    model: RowText = None
    run_id: RowText = None
    session_id: RowText = None
    message_id: RowText = None
    request_id: RowText = None
    input_tokens: RowCount = 0
    output_tokens: RowCount = 0
    cache_read_tokens: RowCount = 0
    cache_write_tokens: RowCount = 0
    reasoning_tokens: RowCount = 0
    # The part of cache_write_tokens written with a one-hour TTL (Anthropic bills it at a
    # higher rate); 0 when the source does not say.
    cache_write_1h_tokens: RowCount = 0
    cost_usd: Cost = None
    cost_source: RowCostSource = "unpriced"
    # Attribution (reports group by them: `--by host`, `--by branch`): the host of the base
    # URL the request went to (never the key), and the git branch of the task's workspace.
    # CLI-log rows know neither (None).
    host: RowText = None
    branch: RowText = None
    # The client that asked for the run through `aiswitch mcp` (its MCP `clientInfo`,
    # `name/version`, e.g. `claude-code/2.0.1`); None for runs started from the CLI.
    caller: RowText = None
    # How many API requests the record stands for: 1 for a request recorded with its ids;
    # more for a task recorded by its stream's sums (the CLI's log did not account for it).
    requests: RowCount = 1
    task_id: Text = None
    # Which attempt of the task spent it (1 for the first; retries count up).
    attempt: OptionalInt = None
    agent_id: Text = None

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


def _stored() -> dict[str, Stored]:
    out: dict[str, Stored] = {}
    for name, info in LedgerRecord.model_fields.items():
        markers = [item for item in info.metadata if isinstance(item, Stored)]
        if len(markers) != 1:
            raise TypeError(f"LedgerRecord.{name} needs exactly one Stored marker")
        out[name] = markers[0]
    return out


# Every field's storage rule, in declaration order (the line readers' rules).
STORED: dict[str, Stored] = _stored()
# The report row: the fields reports read, in declaration order, the time first.
ROW_FIELDS: tuple[str, ...] = tuple(name for name, how in STORED.items() if how.row)
ROW_INDEX: dict[str, int] = {name: index for index, name in enumerate(ROW_FIELDS)}
COST_SOURCES: tuple[str, ...] = get_args(CostSource)
