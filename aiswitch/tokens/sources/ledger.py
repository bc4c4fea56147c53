"""The aiswitch ledger's lines (`state/tokens.jsonl`, schema in docs/tokens.md) as report rows.

Contract: `parse_ledger_bytes(data)` turns the complete lines in `data` into rows (plain tuples
in `aiswitch.tokens.report.Row` order) and counts the malformed ones: not JSON, or off-schema
(a bad timestamp or one outside years 1-9999 in UTC, a negative or non-integer count, a
non-string id, an unknown `cost_source`).
A malformed line is skipped, never fatal.

How (the same answers, faster): blocks of lines (128 KiB) are decoded by msgspec in one C call
into `_Line`, whose field types are the rules; a line msgspec refuses for any reason is
decided by `_line_row`, the rules written out over orjson's reading of the line (the
reference: tests/test_ledger_lines.py holds both to the same answers).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec

from aiswitch.tokens.sources.jsonl import JSONError as _JSONError
from aiswitch.tokens.sources.jsonl import loads as _loads
from aiswitch.tokens.times import FIRST_TS, LAST_TS

_COST_SOURCES = frozenset({"reported", "calculated", "unpriced"})

# msgspec reads integers of any size, orjson only 64-bit ones (beyond, it reads a float, or
# refuses the line): an integer msgspec may accept is bounded to int64, so that orjson reads
# it as the same int. Larger ones (and negative counts) go to `_line_row`, which decides.
_Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Line(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A ledger line every field of which msgspec checked: each field the writer writes
    (`LedgerRecord`), with a type under which a value means what it means to `_line_row`.

    No field is skipped unread (msgspec checks less in what it skips: bytes that are not
    UTF-8, numbers beyond a double's range, nesting depth), so an unknown field, a null
    `source`, an int beyond 64 bits, a bool or float count, a `cost_source` outside the three
    names, sends its line to `_line_row`. Duplicate keys: the last one counts, as in orjson.
    `source` is never empty here: `_line_row` puts "aiswitch" in place of an empty one."""

    ts: str
    source: Annotated[str, msgspec.Meta(min_length=1)] = "aiswitch"
    agent: str | None = None
    preset: str | None = None
    provider: str | None = None
    model: str | None = None
    run_id: str | None = None
    session_id: str | None = None
    message_id: str | None = None
    request_id: str | None = None
    input_tokens: _Count = 0
    output_tokens: _Count = 0
    cache_read_tokens: _Count = 0
    cache_write_tokens: _Count = 0
    reasoning_tokens: _Count = 0
    cache_write_1h_tokens: _Count = 0
    cost_usd: _Int64 | float | None = None  # an int stays an int, as orjson reads it
    cost_source: Literal["reported", "calculated", "unpriced"] = "unpriced"
    # Written but not reported on: checked all the same (see above).
    v: _Int64 = 1
    task_id: str | None = None
    agent_id: str | None = None


_decode_lines = msgspec.json.Decoder(_Line).decode_lines
_decode_line = msgspec.json.Decoder(_Line).decode
# Two values on one line: the end of an object, then only blanks before the next one.
_TWO_ON_A_LINE = re.compile(rb"\}[ \t\r]*\{").search
_get_ts = attrgetter("ts")
_get_tzinfo = attrgetter("tzinfo")
_fromiso = datetime.fromisoformat
_timestamp = datetime.timestamp
# Lines decoded per msgspec call: enough that the per-block costs vanish, few enough that
# the block's objects stay in the CPU's cache and that a refused block costs little to decide
# line by line.
BLOCK_BYTES = 128 * 1024


def parse_ledger_bytes(data: bytes) -> tuple[list[tuple[Any, ...]], int]:
    """Rows (plain tuples in `Row` order) of the complete ledger lines in `data`, and how
    many lines were malformed (not JSON, or off-schema: a bad timestamp, a negative or
    non-integer count, a non-string id, an unknown `cost_source`).

    Blocks of whole lines go to `_block_rows` (msgspec, one C call per block); a block it
    refuses, and an unterminated last line, are decided line by line by `_lines_rows`."""
    rows: list[tuple[Any, ...]] = []
    malformed = 0
    end = data.rfind(b"\n") + 1  # the lines before `end` end with a newline
    start = 0
    while start < end:
        stop = data.find(b"\n", start + BLOCK_BYTES, end) + 1 or end
        block = data[start:stop]
        start = stop
        if not _block_rows(block, rows):
            malformed += _lines_rows(block, rows)
    if end < len(data):
        malformed += _lines_rows(data[end:], rows)
    return rows, malformed


def _block_rows(block: bytes, rows: list[tuple[Any, ...]]) -> bool:
    """Append the rows of `block` (whole lines, the last one ending with a newline) and say
    True, when msgspec accepts every line in one call; else append nothing and say False.

    `decode_lines` reads values separated by any JSON whitespace, newlines included, so it
    is held to the lines: as many values (objects) as newlines, and no `}` followed on its
    line, past blanks, by a `{`. Then each line holds one whole value and blanks, which is
    what orjson reads of it: a line with no value start (blank, or inside a value spanning
    lines) would need another with two starts, and a second start on a line, or the start
    after the end of a value spanning lines, puts a `}`, blanks and a `{` on one line."""
    try:
        lines = _decode_lines(block)
        if len(lines) != block.count(b"\n") or _TWO_ON_A_LINE(block):
            return False
        times = list(map(_fromiso, map(_get_ts, lines)))
    except (ValueError, RecursionError):  # msgspec's errors and bad UTF-8 are ValueErrors
        return False
    if not all(map(_get_tzinfo, times)):  # a time without a zone is UTC
        times = [ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC) for ts in times]
    stamps = list(map(_timestamp, times))
    if stamps and (min(stamps) < FIRST_TS or max(stamps) > LAST_TS):
        return False  # a time outside the calendar in UTC: decided line by line
    rows.extend(
        [
            (
                stamp,
                line.source,
                line.agent,
                line.preset,
                line.provider,
                line.model,
                line.run_id,
                line.session_id,
                line.message_id,
                line.request_id,
                line.input_tokens,
                line.output_tokens,
                line.cache_read_tokens,
                line.cache_write_tokens,
                line.reasoning_tokens,
                line.cache_write_1h_tokens,
                line.cost_usd,
                line.cost_source,
            )
            for stamp, line in zip(stamps, lines, strict=True)
        ]
    )
    return True


def _lines_rows(data: bytes, rows: list[tuple[Any, ...]]) -> int:
    """Append the rows of the lines in `data`, one line at a time; return how many were
    malformed. A line msgspec accepts is read from `_Line`; any other is `_line_row`'s."""
    malformed = 0
    for line in data.split(b"\n"):
        if not line or line.isspace():
            continue
        row: tuple[Any, ...] | None = None
        try:
            decoded = _decode_line(line)
            ts = _fromiso(decoded.ts)
        except (ValueError, RecursionError):
            row = _line_row(line)
        else:
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
            stamp = ts.timestamp()
            if FIRST_TS <= stamp <= LAST_TS:  # else: not an instant in UTC's calendar
                row = (
                    stamp,
                    decoded.source,
                    decoded.agent,
                    decoded.preset,
                    decoded.provider,
                    decoded.model,
                    decoded.run_id,
                    decoded.session_id,
                    decoded.message_id,
                    decoded.request_id,
                    decoded.input_tokens,
                    decoded.output_tokens,
                    decoded.cache_read_tokens,
                    decoded.cache_write_tokens,
                    decoded.reasoning_tokens,
                    decoded.cache_write_1h_tokens,
                    decoded.cost_usd,
                    decoded.cost_source,
                )
        if row is None:
            malformed += 1
        else:
            rows.append(row)
    return malformed


def _line_row(line: bytes) -> tuple[Any, ...] | None:
    """The row of one non-blank ledger line, or None when it is malformed: the ledger's
    rules, on the line as orjson reads it. Every line msgspec refuses comes here."""
    try:
        obj = _loads(line)
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
            return None
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
                return None
        cost = get("cost_usd")
        cost_source = get("cost_source", "unpriced")
        if cost_source not in _COST_SOURCES or not (
            cost is None or type(cost) is float or type(cost) is int
        ):
            return None
        ts = _fromiso(obj["ts"])
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)  # the ledger's times are UTC
        stamp = ts.timestamp()
        if not FIRST_TS <= stamp <= LAST_TS:
            return None  # not an instant in UTC's calendar
        return (
            stamp,
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
    except (_JSONError, AttributeError, TypeError, ValueError, KeyError):
        return None
