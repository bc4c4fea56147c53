"""The aiswitch ledger's lines (`state/tokens.jsonl`, schema in docs/tokens.md) as report rows.

Contract: `parse_ledger_bytes(data)` turns the complete lines in `data` into rows (plain tuples
in `aiswitch.tokens.report.Row` order) and counts the malformed ones: not JSON, or off-schema
(a bad timestamp, a negative or non-integer count, a non-string id, an unknown `cost_source`).
A malformed line is skipped, never fatal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiswitch.tokens.sources.claude import _JSONError, _loads

_COST_SOURCES = frozenset({"reported", "calculated", "unpriced"})


def parse_ledger_bytes(data: bytes) -> tuple[list[tuple[Any, ...]], int]:
    """Rows (plain tuples in `Row` order) of the complete ledger lines in `data`, and how
    many lines were malformed (not JSON, or off-schema: a bad timestamp, a negative or
    non-integer count, a non-string id, an unknown `cost_source`).

    This loop runs once per ledger line, so its checks are written out inline: generator
    expressions here cost more than parsing the JSON does (measured; a column-wise variant
    with C-level `map`s was slower still, as it walks every dict once per field)."""
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    malformed = 0
    loads = _loads
    fromiso = datetime.fromisoformat
    cost_sources = _COST_SOURCES
    for line in data.split(b"\n"):
        if not line or line.isspace():
            continue
        try:
            obj = loads(line)
            get = obj.get
            inp = get("input_tokens", 0)
            out = get("output_tokens", 0)
            read = get("cache_read_tokens", 0)
            write = get("cache_write_tokens", 0)
            reasoning = get("reasoning_tokens", 0)
            write_1h = get("cache_write_1h_tokens", 0)
            if (
                type(inp) is not int
                or type(out) is not int
                or type(read) is not int
                or type(write) is not int
                or type(reasoning) is not int
                or type(write_1h) is not int
                or (inp | out | read | write | reasoning | write_1h) < 0  # any negative
            ):
                malformed += 1
                continue
            texts = (
                get("source") or "aiswitch",
                get("agent"),
                get("preset"),
                get("provider"),
                get("model"),
                get("run_id"),
                get("session_id"),
                get("message_id"),
                get("request_id"),
            )
            for value in texts:
                if value is not None and type(value) is not str:
                    break
            else:
                cost = get("cost_usd")
                cost_source = get("cost_source", "unpriced")
                if cost_source in cost_sources and (
                    cost is None or type(cost) is float or type(cost) is int
                ):
                    ts = fromiso(obj["ts"])
                    if ts.tzinfo is None:
                        ts = ts.replace(tzinfo=UTC)  # the ledger's times are UTC
                    append(
                        (
                            ts.timestamp(),
                            *texts,
                            inp,
                            out,
                            read,
                            write,
                            reasoning,
                            write_1h,
                            cost,
                            cost_source,
                        )
                    )
                    continue
            malformed += 1
        except (_JSONError, AttributeError, TypeError, ValueError, KeyError):
            malformed += 1
    return rows, malformed
