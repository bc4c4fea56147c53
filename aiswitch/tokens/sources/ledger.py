"""The aiswitch ledger's lines (`state/tokens.jsonl`, schema in docs/tokens.md): the one reader
every path uses (reports, export, prune, import), so they all accept and refuse the same lines.

Contract:

- `parse_ledger_bytes(data)` turns the complete lines in `data` into report rows (plain tuples
  in `records.ROW_FIELDS` order, the time as seconds since the epoch) and counts the
  malformed ones.
- `line_values(line)` is one line's values (every `LedgerRecord` field by name, the time an
  aware `datetime`) or None when the line is malformed; `line_record(line)` the same as a
  `LedgerRecord`; `check_values(obj)` decides an already-parsed object.
- A line is malformed when it is not one JSON object, or any field breaks its rule: the
  rules are the `Stored` kinds of `LedgerRecord`'s fields (`aiswitch.tokens.schema`), so
  adding a field to `LedgerRecord` adds it here. A malformed line is skipped, never fatal.

How (the same answers, faster): blocks of lines (128 KiB) are decoded by msgspec in one C call
into `_Line`, a struct built from the same declaration, whose field types are the rules; a
line msgspec refuses for any reason is decided by `check_values`, the rules written out over
orjson's reading of the line (tests/test_ledger_lines.py and tests/test_ledger_schema.py hold
both, and every path, to the same answers).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec

from aiswitch.tokens.records import COST_SOURCES, ROW_FIELDS, STORED, LedgerRecord
from aiswitch.tokens.schema import DEFAULT_SOURCE, MAX_INT64, MIN_INT64, Kind
from aiswitch.tokens.sources.jsonl import JSONError as _JSONError
from aiswitch.tokens.sources.jsonl import loads as _loads
from aiswitch.tokens.times import FIRST_TS, LAST_TS

# msgspec reads integers of any size, orjson only 64-bit ones (beyond, it reads a float, or
# refuses the line): an integer msgspec may accept is bounded to int64, so that orjson reads
# it as the same int. Larger ones go to `check_values`, which decides.
_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT64)]
_Int64 = Annotated[int, msgspec.Meta(ge=MIN_INT64, le=MAX_INT64)]

# Each kind's type under msgspec. No field is skipped unread (msgspec checks less in what it
# skips: bytes that are not UTF-8, numbers beyond a double's range, nesting depth), and an
# unknown field, a null `source`, an int beyond 64 bits, a bool or float count, a
# `cost_source` outside its names, sends its line to `check_values`. `source` is never empty
# under msgspec: `check_values` puts "aiswitch" in place of an empty or null one.
_MSGSPEC_TYPES: dict[Kind, Any] = {
    "version": _Int64,
    "time": str,
    "source": Annotated[str, msgspec.Meta(min_length=1)],
    "text": str | None,
    "int": _Int64 | None,
    "count": _Count,
    "cost": _Int64 | float | None,  # an int stays an int, as orjson reads it
    "cost_source": Literal[COST_SOURCES],
}


def _default(name: str) -> Any:
    info = LedgerRecord.model_fields[name]
    return None if info.default_factory is not None else info.default


# (name, kind, default) of every field, in declaration order.
_SPECS: tuple[tuple[str, Kind, Any], ...] = tuple(
    (name, how.kind, _default(name)) for name, how in STORED.items()
)
_FIELDS = tuple(name for name, _, _ in _SPECS)
_TIME_FIELD = next(name for name, kind, _ in _SPECS if kind == "time")
if ROW_FIELDS[0] != _TIME_FIELD:
    raise TypeError("the report row starts with the ledger's time field")

_Line: Any = msgspec.defstruct(
    "_Line",
    [
        (name, _MSGSPEC_TYPES[kind]) if kind == "time" else (name, _MSGSPEC_TYPES[kind], default)
        for name, kind, default in _SPECS
    ],
    kw_only=True,
    forbid_unknown_fields=True,
    gc=False,
)

_decode_lines = msgspec.json.Decoder(_Line).decode_lines
_decode_line = msgspec.json.Decoder(_Line).decode
_all_fields: Callable[[Any], tuple[Any, ...]] = attrgetter(*_FIELDS)
# The rows of a decoded block: one comprehension written out from `ROW_FIELDS`, reading each
# field by name in one expression (~1.6x faster than `attrgetter` and a tuple concatenation
# per row, which cost the cold ledger report ~15 %). The names are the declaration's
# identifiers, never input.
_ROWS_SOURCE = (
    "lambda stamps, lines: [(stamp, "
    + ", ".join(f"line.{name}" for name in ROW_FIELDS[1:])
    + ") for stamp, line in zip(stamps, lines, strict=True)]"
)
_block_rows_of: Callable[[list[float], list[Any]], list[tuple[Any, ...]]] = eval(_ROWS_SOURCE)  # noqa: S307
# Two values on one line: the end of an object, then only blanks before the next one.
_TWO_ON_A_LINE = re.compile(rb"\}[ \t\r]*\{").search
_get_ts = attrgetter(_TIME_FIELD)
_get_tzinfo = attrgetter("tzinfo")
_fromiso = datetime.fromisoformat
_timestamp = datetime.timestamp
# Lines decoded per msgspec call: enough that the per-block costs vanish, few enough that
# the block's objects stay in the CPU's cache and that a refused block costs little to decide
# line by line.
BLOCK_BYTES = 128 * 1024


def parse_ledger_bytes(data: bytes) -> tuple[list[tuple[Any, ...]], int]:
    """Rows (plain tuples in `ROW_FIELDS` order) of the complete ledger lines in `data`, and
    how many lines were malformed.

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
    rows.extend(_block_rows_of(stamps, lines))
    return True


def _lines_rows(data: bytes, rows: list[tuple[Any, ...]]) -> int:
    """Append the rows of the lines in `data`, one line at a time; return how many were
    malformed."""
    malformed = 0
    for line in data.split(b"\n"):
        if not line or line.isspace():
            continue
        values = line_values(line)
        if values is None:
            malformed += 1
        else:
            rows.append((values[_TIME_FIELD].timestamp(), *[values[n] for n in ROW_FIELDS[1:]]))
    return malformed


def line_values(line: bytes) -> dict[str, Any] | None:
    """Every field's value of one non-blank ledger line (the time an aware `datetime`), or
    None when the line is malformed. A line msgspec accepts is read from `_Line`; any other
    is `check_values`'s, on the line as orjson reads it."""
    try:
        decoded = _decode_line(line)
        ts = _fromiso(decoded.ts)
    except (ValueError, RecursionError):
        try:
            obj = _loads(line)
        except (_JSONError, ValueError, RecursionError):
            return None
        return check_values(obj)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)  # the ledger's times are UTC
    if not FIRST_TS <= ts.timestamp() <= LAST_TS:
        return None  # not an instant in UTC's calendar
    values = dict(zip(_FIELDS, _all_fields(decoded), strict=True))
    values[_TIME_FIELD] = ts
    return values


def line_record(line: bytes) -> LedgerRecord | None:
    """The record of one non-blank ledger line, or None when it is malformed."""
    values = line_values(line)
    return None if values is None else LedgerRecord.model_construct(**values)


def _is_int64(value: Any) -> bool:
    return type(value) is int and MIN_INT64 <= value <= MAX_INT64


def _time(value: Any) -> datetime | None:
    if type(value) is not str:
        return None
    try:
        ts = _fromiso(value)
    except ValueError:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts if FIRST_TS <= ts.timestamp() <= LAST_TS else None


_MISSING = object()


def check_values(obj: Any) -> dict[str, Any] | None:
    """Every field's value of a parsed line (`obj`, as orjson reads it), or None when it is
    malformed: the rules of `aiswitch.tokens.schema`'s kinds, written out."""
    return _check(obj)[0]


def refused_field(obj: Any) -> str:
    """Why `check_values` refuses `obj`, in a few words naming the field ("" if it does not)."""
    return _check(obj)[1]


_RULES: dict[Kind, str] = {
    "version": "an integer of 64 bits",
    "time": "an ISO 8601 time in years 1-9999",
    "source": "text or null",
    "text": "text or null",
    "int": "an integer of 64 bits or null",
    "count": "a whole number from 0 to 2**63-1",
    "cost": "a number or null",
    "cost_source": "one of " + ", ".join(COST_SOURCES),
}


def _check(obj: Any) -> tuple[dict[str, Any] | None, str]:
    if type(obj) is not dict:
        return None, "not a JSON object"
    values: dict[str, Any] = {}
    for name, kind, default in _SPECS:
        value = obj.get(name, _MISSING)
        if value is _MISSING:
            if kind == "time":
                return None, f"{name}: missing"
            values[name] = default
            continue
        ok = True
        if kind == "count":
            ok = type(value) is int and 0 <= value <= MAX_INT64
        elif kind == "text":
            ok = value is None or type(value) is str
        elif kind == "time":
            value = _time(value)
            ok = value is not None
        elif kind == "source":
            ok = value is None or type(value) is str
            value = value or DEFAULT_SOURCE
        elif kind == "version":
            ok = _is_int64(value)
        elif kind == "int":
            ok = value is None or _is_int64(value)
        elif kind == "cost":
            ok = value is None or type(value) is float or type(value) is int
        elif kind == "cost_source":
            ok = value in COST_SOURCES
        if not ok:
            return None, f"{name}: must be {_RULES[kind]}"
        values[name] = value
    return values, ""
