"""The ledger's schema is declared once (`records.LedgerRecord`), and every path that reads
ledger lines — reports (the fast reader, block by block and line by line), export, prune and
import — accepts and refuses exactly the same lines, with the same values.

The differential test draws lines with hypothesis: each field holds a value of its kind or of
another (text such as "5000", bools, floats, nulls, integers beyond 64 bits, lists), fields
go missing, unknown ones appear, and whole lines are not JSON at all.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiswitch.errors import UsageError
from aiswitch.home import Home
from aiswitch.tokens import transfer
from aiswitch.tokens.ledger import ledger_line, values_line
from aiswitch.tokens.records import COST_SOURCES, ROW_FIELDS, STORED, LedgerRecord
from aiswitch.tokens.report_options import parse_report_options
from aiswitch.tokens.rows import row_from_record
from aiswitch.tokens.sources import ledger as ledger_reader
from aiswitch.tokens.sources import report_for_source
from aiswitch.tokens.sources.codex import parse_codex_bytes
from aiswitch.tokens.sources.gemini import parse_gemini_bytes

TIMES = [
    "2026-01-01T00:00:00Z",
    "2026-05-01T10:00:00.123456+05:30",
    "2026-05-01T10:00:00",
    "2026-05-01",
    "2026-13-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "yesterday",
    "",
]

_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["5000", "1", "", "x", "reported", "2026-01-01T00:00:00Z"]),
    st.lists(st.integers(0, 3), max_size=2),
)
_GOOD: dict[str, st.SearchStrategy[Any]] = {
    "version": st.just(1),
    "time": st.sampled_from(TIMES[:4]),
    "source": st.sampled_from(["aiswitch", "claude", "codex"]),
    "text": st.sampled_from(["a", "b", "é✓"]),
    "int": st.integers(1, 3),
    "count": st.integers(0, 10**7) | st.just(2**63 - 1),
    "cost": st.floats(0, 10, allow_nan=False) | st.integers(0, 5) | st.none(),
    "cost_source": st.sampled_from(COST_SOURCES),
}


@st.composite
def ledger_lines(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 19)) == 0:  # now and then, not a JSON object at all
        return draw(st.sampled_from([b"{broken", b"[]", b"1", b'"x"', b"{}", b"null"]))
    obj: dict[str, Any] = {}
    for name, how in STORED.items():
        roll = draw(st.integers(0, 9))
        if roll < 6:
            obj[name] = draw(_GOOD[how.kind])
        elif roll < 8 and how.kind != "time":
            continue  # missing: takes the default
        else:
            obj[name] = draw(_junk | st.sampled_from(TIMES))
    if draw(st.booleans()):
        obj["unknown_field"] = draw(_junk)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _typed(values: tuple[Any, ...] | list[Any]) -> list[tuple[str, str]]:
    """Values with their types: 1 == 1.0 and True == 1 would hide a difference."""
    return [(type(value).__name__, repr(value)) for value in values]


def _home(tmp_path: Path, lines: list[bytes]) -> Home:
    home = Home(tmp_path / f"home-{len(list(tmp_path.iterdir()))}")
    home.ensure()
    home.ledger.write_bytes(b"".join(line + b"\n" for line in lines))
    return home


def _import_accepts(tmp_path: Path, line: bytes) -> LedgerRecord | None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(line + b"\n")
    try:
        [record] = transfer.read_import_file(path)
    except UsageError:
        return None
    return record


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=st.lists(ledger_lines(), min_size=1, max_size=12))
def test_report_export_prune_and_import_accept_and_refuse_the_same_lines(
    tmp_path: Path, lines: list[bytes]
) -> None:
    data = b"".join(line + b"\n" for line in lines)
    # Reports: the block path, and each line alone (the line-by-line path).
    rows, malformed = ledger_reader.parse_ledger_bytes(data)
    one_by_one = [ledger_reader.parse_ledger_bytes(line + b"\n") for line in lines]
    accepted = [bool(found) for found, _ in one_by_one]
    assert [_typed(row) for row in rows] == [
        _typed(row) for found, _ in one_by_one for row in found
    ]
    assert malformed == accepted.count(False)

    # Export: the same lines, as records whose rows are the report's rows.
    home = _home(tmp_path, lines)
    exported = transfer.export_records(home)
    assert exported.malformed == malformed
    assert [_typed(row_from_record(r)) for r in exported.records] == [_typed(r) for r in rows]

    # Import: each line alone is imported exactly when reports read it, with the same values.
    for line, ok in zip(lines, accepted, strict=True):
        record = _import_accepts(tmp_path, line)
        assert (record is not None) == ok, line
        if record is not None:
            [row] = ledger_reader.parse_ledger_bytes(line + b"\n")[0]
            assert _typed(row_from_record(record)) == _typed(row)

    # Prune: rolls up exactly the lines reports read, keeps the others, and leaves every
    # report total as it was.
    options = parse_report_options(by=["day"], timezone="UTC")
    before = report_for_source("aiswitch", home, options, use_cache=False).totals
    result = transfer.prune(home, date(9999, 12, 31), timezone="UTC")
    assert result.malformed_kept == malformed
    after = report_for_source("aiswitch", home, options, use_cache=False).totals
    for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        assert after[name] == before[name], name
    assert after["requests"] == before["requests"]


def test_a_count_written_as_text_is_refused_by_every_path_and_prune_keeps_totals(
    tmp_path: Path,
) -> None:
    """The issue's example: `"input_tokens":"5000"` was skipped by reports but rolled up by
    prune, so pruning changed the totals."""
    good = b'{"v":1,"ts":"2026-01-01T00:00:00Z","input_tokens":7,"model":"m"}'
    bad = b'{"v":1,"ts":"2026-01-01T00:00:00Z","input_tokens":"5000","model":"m"}'
    home = _home(tmp_path, [good, bad])
    options = parse_report_options(by=["day"], timezone="UTC")
    before = report_for_source("aiswitch", home, options, use_cache=False).totals
    assert before["input_tokens"] == 7
    assert transfer.export_records(home).malformed == 1
    with pytest.raises(UsageError, match="input_tokens"):
        (tmp_path / "in.jsonl").write_bytes(bad + b"\n")
        transfer.read_import_file(tmp_path / "in.jsonl")
    result = transfer.prune(home, date(2026, 6, 1), timezone="UTC")
    assert (result.pruned, result.malformed_kept) == (1, 1)
    after = report_for_source("aiswitch", home, options, use_cache=False).totals
    assert after["input_tokens"] == 7 and after["requests"] == 1
    assert bad in home.ledger.read_bytes()  # kept, never lost


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 2**63 - 1), min_size=7, max_size=7),
    texts=st.lists(st.none() | st.text(max_size=4), min_size=10, max_size=10),
    cost=st.none() | st.floats(0, 1e6, allow_nan=False),
    cost_source=st.sampled_from(COST_SOURCES),
    attempt=st.none() | st.integers(1, 9),
)
def test_every_line_the_writer_writes_is_read_back_as_written(
    counts: list[int],
    texts: list[str | None],
    cost: float | None,
    cost_source: str,
    attempt: int | None,
) -> None:
    names = [name for name, how in STORED.items() if how.kind == "text"]
    record = LedgerRecord(
        ts="2026-05-01T10:00:00.5Z",
        source="claude",
        **dict(zip(names, texts, strict=False)),
        **dict(zip([n for n, h in STORED.items() if h.kind == "count"], counts, strict=True)),
        cost_usd=cost,
        cost_source=cost_source,
        attempt=attempt,
    )
    line = ledger_line(record)
    read = ledger_reader.line_record(line)
    assert read is not None
    assert read.model_dump() == record.model_dump()
    [row] = ledger_reader.parse_ledger_bytes(line + b"\n")[0]
    assert _typed(row) == _typed(row_from_record(record))


def test_the_cli_log_readers_build_rows_of_the_declared_layout(tmp_path: Path) -> None:
    """The CLI-log readers build rows by position: a field added to the row must reach them."""
    codex = b"".join(
        json.dumps(obj).encode() + b"\n"
        for obj in [
            {"type": "session_meta", "payload": {"id": "S"}},
            {
                "timestamp": "2026-01-01T00:00:01Z",
                "type": "event_msg",
                "payload": {
                    "type": "token_count",
                    "info": {
                        "total_token_usage": {"input_tokens": 5, "output_tokens": 1},
                        "last_token_usage": {"input_tokens": 5, "output_tokens": 1},
                    },
                },
            },
        ]
    )
    rows, _ = parse_codex_bytes(codex, "S")
    gemini = {
        "sessionId": "G",
        "startTime": "2026-01-01T00:00:00Z",
        "messages": [
            {
                "type": "gemini",
                "id": "g1",
                "timestamp": "2026-01-01T00:00:05Z",
                "model": "gemini-2.5-pro",
                "tokens": {"input": 3, "output": 2},
            }
        ],
    }
    more, _ = parse_gemini_bytes(json.dumps(gemini).encode(), tmp_path / "session-1.json")
    from aiswitch.tokens.sources.claude import rows_from_entries

    claude = rows_from_entries([(1000, "s", "m", "r", False, "claude-x", 1, 2, 3, 4, 0, None)])
    for row in [*rows, *more, *claude]:
        assert len(row) == len(ROW_FIELDS)
    assert rows and more and claude


def test_prune_keeps_totals_of_a_negative_reported_cost_and_of_sums_beyond_64_bits(
    tmp_path: Path,
) -> None:
    # Found by the differential test: a rollup entry whose reported cost summed below zero was
    # read back as malformed (its tokens vanished), and three counts of 2**63-1 summed past what
    # a line holds as an integer.
    big = 2**63 - 1
    base = {"v": 1, "ts": "2026-01-01T00:00:00Z", "source": "aiswitch", "model": "m"}
    lines = [
        json.dumps({**base, "output_tokens": 5, "cost_usd": -1, "cost_source": "reported"}),
        *(json.dumps({**base, "input_tokens": big}) for _ in range(3)),
    ]
    home = _home(tmp_path, [line.encode() for line in lines])
    options = parse_report_options(by=["day"], timezone="UTC")
    before = report_for_source("aiswitch", home, options, use_cache=False).totals
    assert before["input_tokens"] == 3 * big and before["output_tokens"] == 5
    transfer.prune(home, date(9999, 12, 31), timezone="UTC")
    assert home.ledger.read_bytes() == b""
    after = report_for_source("aiswitch", home, options, use_cache=False).totals
    for name in ("input_tokens", "output_tokens", "requests"):
        assert after[name] == before[name], name


def _pydantic_line(record: LedgerRecord) -> bytes:
    """The line as the model serializes it (`ledger_line`'s rule, by pydantic alone)."""
    body = record.model_dump_json(exclude_defaults=True, exclude={"v"})
    return b'{"v":%d,' % record.v + body[1:].encode()


@settings(max_examples=300, deadline=None)
@given(
    ts=st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.none() | st.just(UTC) | st.timezones(),
    ),
    counts=st.lists(st.integers(0, 2**63 - 1) | st.just(0), min_size=7, max_size=7),
    texts=st.lists(st.none() | st.text(max_size=6), min_size=10, max_size=10),
    source=st.sampled_from(["aiswitch", "claude", ""]),
    cost=st.none() | st.floats(0, 1e9) | st.floats(allow_nan=True, allow_infinity=True),
    cost_source=st.sampled_from(COST_SOURCES),
    attempt=st.none() | st.integers(-(2**70), 2**70),
    requests=st.integers(0, 2**63 - 1),
)
def test_a_records_line_made_from_its_values_is_pydantics_line(
    ts: datetime,
    counts: list[int],
    texts: list[str | None],
    source: str,
    cost: float | None,
    cost_source: str,
    attempt: int | None,
    requests: int,
) -> None:
    """`ledger_line` and the coordinator's `values_line` write the bytes pydantic writes
    for the record (or leave it to pydantic: None), whatever the values."""
    names = [name for name, how in STORED.items() if how.kind == "text"]
    count_names = [n for n, h in STORED.items() if h.kind == "count" and n != "requests"]
    try:
        record = LedgerRecord(
            ts=ts,
            source=source,
            **dict(zip(names, texts, strict=False)),
            **dict(zip(count_names, counts, strict=False)),
            requests=requests,
            cost_usd=cost,
            cost_source=cost_source,
            attempt=attempt,
        )
    except ValueError:
        return  # not a record (a time outside years 1-9999 in UTC, text pydantic refuses)
    expected = _pydantic_line(record)
    assert ledger_line(record) == expected
    fast = values_line(record.__dict__)
    assert fast is None or fast == expected
    # The values a record holds only where they differ from the defaults: the same line.
    fields = LedgerRecord.model_fields
    given_values = {n: v for n, v in record.__dict__.items() if v != fields[n].default}
    given_values["ts"] = record.ts
    assert values_line(given_values) in (None, expected)


def test_a_plain_utc_record_is_made_without_the_model() -> None:
    record = LedgerRecord(ts=datetime(2026, 5, 1, 10, 0, 0, 5, tzinfo=UTC), input_tokens=3)
    assert values_line(record.__dict__) == _pydantic_line(record)
    assert values_line({"ts": record.ts, "input_tokens": 3}) == _pydantic_line(record)
