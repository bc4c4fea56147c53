"""A report row: the compact form of one usage event that every reader yields, the token
index stores and the report engine sums (the values of `records.ROW_FIELDS` in that order),
with the index of each field and the conversions from and to `LedgerRecord`. Light on
purpose: adapters and the status line read rows without loading the report engine."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from aiswitch.tokens.records import ROW_FIELDS, ROW_INDEX, LedgerRecord

# A report row: one usage event in compact form (what readers yield and the index stores),
# the values of `records.ROW_FIELDS` in that order, the time as seconds since the epoch (UTC).
Row = tuple[Any, ...]

R_TS = ROW_INDEX["ts"]
R_SOURCE = ROW_INDEX["source"]
R_AGENT = ROW_INDEX["agent"]
R_PRESET = ROW_INDEX["preset"]
R_PROVIDER = ROW_INDEX["provider"]
R_MODEL = ROW_INDEX["model"]
R_RUN = ROW_INDEX["run_id"]
R_SESSION = ROW_INDEX["session_id"]
R_MESSAGE = ROW_INDEX["message_id"]
R_REQUEST = ROW_INDEX["request_id"]
R_INPUT = ROW_INDEX["input_tokens"]
R_OUTPUT = ROW_INDEX["output_tokens"]
R_CACHE_READ = ROW_INDEX["cache_read_tokens"]
R_CACHE_WRITE = ROW_INDEX["cache_write_tokens"]
R_REASONING = ROW_INDEX["reasoning_tokens"]
R_CACHE_WRITE_1H = ROW_INDEX["cache_write_1h_tokens"]
R_COST = ROW_INDEX["cost_usd"]
R_COST_SOURCE = ROW_INDEX["cost_source"]
R_REQUESTS = ROW_INDEX["requests"]
# The counters and the cost, read in one slice (declared next to one another, in this order).
R_SUMS = slice(R_INPUT, R_COST_SOURCE + 1)
if ROW_FIELDS[R_SUMS] != (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cache_write_1h_tokens",
    "cost_usd",
    "cost_source",
):
    raise TypeError("LedgerRecord declares the counters and the cost together, in this order")
_ROW_REST = ROW_FIELDS[1:]


def row_from_record(record: LedgerRecord) -> Row:
    ts = record.ts if record.ts.tzinfo else record.ts.replace(tzinfo=UTC)
    return (ts.timestamp(), *[getattr(record, name) for name in _ROW_REST])


def rows_from_records(records: Iterable[LedgerRecord]) -> Iterator[Row]:
    for record in records:
        yield row_from_record(record)


def record_from_row(row: Row) -> LedgerRecord:
    return LedgerRecord(
        ts=datetime.fromtimestamp(row[R_TS], UTC), **dict(zip(_ROW_REST, row[1:], strict=True))
    )
