"""The ledger's line parser (`aiswitch.tokens.sources.ledger`) against a copy of the orjson-only
implementation it replaced, and the parallel cold path built on it (`...sources.parallel`).

The msgspec path must give exactly the old answers: the same rows (values and their types:
an int cost stays an int, -0.0 stays -0.0) in the same order, and the same malformed count.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from aiswitch.home import Home
from aiswitch.tokens.report import Aggregator, build_report
from aiswitch.tokens.report_options import parse_report_options
from aiswitch.tokens.sources import ledger, parallel
from aiswitch.tokens.sources.ledger import parse_ledger_bytes
from aiswitch.tokens.times import FIRST_TS, LAST_TS


@pytest.fixture(autouse=True)
def _local_zone_not_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A naive time read as local instead of UTC must show: run in a zone that is not UTC."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# --- the reference: parse_ledger_bytes as it was before msgspec (orjson only), with the
# rules added since: times outside UTC's calendar are malformed; and since the schema is
# declared once (records.LedgerRecord), every field is checked, not only those reports read,
# because export and prune must take the same lines: a count is at most 2**63-1, `source` is
# text or null, `v` and `attempt` are 64-bit integers, `task_id` and `agent_id` text ---------

_COST_SOURCES = frozenset({"reported", "calculated", "unpriced"})


def reference_parse(data: bytes) -> tuple[list[tuple[Any, ...]], int]:
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    malformed = 0
    loads = orjson.loads
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
            requests = get("requests", 1)  # added since: a count, default 1
            if type(requests) is not int or not 0 <= requests <= 2**63 - 1:
                malformed += 1
                continue
            if (
                type(inp) is not int
                or type(out) is not int
                or type(read) is not int
                or type(write) is not int
                or type(reasoning) is not int
                or type(write_1h) is not int
                or (inp | out | read | write | reasoning | write_1h) < 0  # any negative
                or max(inp, out, read, write, reasoning, write_1h) > 2**63 - 1
            ):
                malformed += 1
                continue
            version = get("v", 1)
            attempt = get("attempt")
            if type(version) is not int or not -(2**63) <= version <= 2**63 - 1:
                malformed += 1
                continue
            if attempt is not None and (
                type(attempt) is not int or not -(2**63) <= attempt <= 2**63 - 1
            ):
                malformed += 1
                continue
            source = get("source")
            if not (source is None or type(source) is str):
                malformed += 1
                continue
            if any(
                get(name) is not None and type(get(name)) is not str
                for name in ("task_id", "agent_id", "host", "branch", "caller")
            ):
                malformed += 1
                continue
            texts = (
                source or "aiswitch",
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
                        ts = ts.replace(tzinfo=UTC)
                    # The one rule added since: a time must exist in UTC (years 1-9999).
                    if not FIRST_TS <= ts.timestamp() <= LAST_TS:
                        malformed += 1
                        continue
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
                            get("host"),
                            get("branch"),
                            get("caller"),
                            requests,
                        )
                    )
                    continue
            malformed += 1
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError, KeyError):
            malformed += 1
    return rows, malformed


def _exact(result: tuple[list[tuple[Any, ...]], int]) -> tuple[list[list[tuple[str, str]]], int]:
    """A result with every value's type and repr: 1 == 1.0 and 0.0 == -0.0 would hide a
    difference, and NaN != NaN would show one that is not there."""
    rows, malformed = result
    return [[(type(value).__name__, repr(value)) for value in row] for row in rows], malformed


def assert_same(data: bytes) -> tuple[list[tuple[Any, ...]], int]:
    expected = reference_parse(data)
    assert _exact(parse_ledger_bytes(data)) == _exact(expected)
    return expected


# --- generated lines --------------------------------------------------------------------------

BIG = [2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**80, -(2**63), -(2**63) - 1, -1, 0]
TIMES = [
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:30.001Z",
    "2026-11-22T10:00:00.123456Z",
    "2026-11-22T10:00:00.1234567Z",
    "2026-11-22T10:00:00",
    "2026-11-22T10:00:00+05:30",
    "2026-11-22T10:00:00-00:00",
    "2026-11-22 10:00:00Z",
    "2026-11-22t10:00:00z",
    "2026-11-22",
    "20261122T100000Z",
    "2026-11-22T23:59:60Z",
    "2026-13-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59.999999-23:59",
    "",
    "yesterday",
]
TEXT_FIELDS = [
    "source",
    "agent",
    "preset",
    "provider",
    "model",
    "run_id",
    "session_id",
    "message_id",
    "request_id",
    "task_id",
    "agent_id",
]
COUNT_FIELDS = [
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cache_write_1h_tokens",
]


def good_record(rng: random.Random, index: int) -> dict[str, Any]:
    record: dict[str, Any] = {"v": 1, "ts": rng.choice(TIMES[:7])}
    for name in TEXT_FIELDS:
        if rng.random() < 0.7:
            record[name] = rng.choice([f"{name}-{index % 7}", "é✓", "x\u2028y", "\x00", 'q"\\'])
    for name in COUNT_FIELDS:
        if rng.random() < 0.7:
            record[name] = rng.choice([0, 1, rng.randint(0, 10**6), 2**63 - 1])
    if rng.random() < 0.5:
        record["cost_usd"] = rng.choice(
            [None, 0, 3, 0.0, -0.0, 0.1, 1e-05, rng.random(), 2.5e300, 5e-324, -2]
        )
    if rng.random() < 0.5:
        record["cost_source"] = rng.choice(sorted(_COST_SOURCES))
    return record


def dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def odd_lines() -> list[bytes]:
    """Lines where msgspec and orjson could disagree, or the old rules are subtle."""
    base = b'"ts":"2026-01-01T00:00:00Z"'
    lines = [
        b"",
        b" ",
        b"\t",
        b"\r",
        b" \r",
        b"\x0b",
        b"\x0c",
        b"{}",
        b"[]",
        b"[1]",
        b"1",
        b"null",
        b"true",
        b'"text"',
        b"{" + base + b"}",
        b"  {" + base + b"}  \r",
        b"\xef\xbb\xbf{" + base + b"}",
        b"{" + base + b"} {" + base + b"}",
        b"{" + base + b"}{" + base + b"}",
        b"{" + base + b"},{" + base + b"}",
        b"{" + base + b"}\r{" + base + b"}",
        b"{" + base + b",}",
        b"{" + base + b',"t\\u0073":"2026-02-01T00:00:00Z"}',
        b'{"t\\u0073":"2026-02-01T00:00:00Z"}',
        b"{" + base + b',"ts":"2026-03-01T00:00:00Z"}',
        b"{" + base + b',"ts":1}',
        b'{"ts":1,' + base + b"}",
        b"{" + base + b',"input_tokens":5,"input_tokens":7}',
        b"{" + base + b',"input_tokens":"5","input_tokens":7}',
        b"{" + base + b',"input_tokens":5,"input_tokens":-7}',
        b"{" + base + b',"input_tokens":-5,"input_tokens":7}',
        b"{" + base + b',"cost_source":"bogus","cost_source":"reported"}',
        b"{" + base + b',"source":"a","source":""}',
        b"{" + base + b',"source":null}',
        b"{" + base + b',"source":""}',
        b"{" + base + b',"source":0}',
        b"{" + base + b',"source":false}',
        b"{" + base + b',"source":[]}',
        b"{" + base + b',"source":{}}',
        b"{" + base + b',"source":[1]}',
        b"{" + base + b',"source":1}',
        b"{" + base + b',"agent":1}',
        b"{" + base + b',"agent":true}',
        b"{" + base + b',"agent":null}',
        b"{" + base + b',"cost_source":null}',
        b"{" + base + b',"cost_source":"Reported"}',
        b"{" + base + b',"cost_source":1}',
        b"{" + base + b',"cost_source":[]}',
        b"{" + base + b',"cost_usd":true}',
        b"{" + base + b',"cost_usd":"1"}',
        b"{" + base + b',"cost_usd":1e400}',
        b"{" + base + b',"cost_usd":-1e400}',
        b"{" + base + b',"cost_usd":1.7976931348623157e308}',
        b"{" + base + b',"cost_usd":1.7976931348623159e308}',
        b"{" + base + b',"cost_usd":1e-400}',
        b"{" + base + b',"cost_usd":0.' + b"0" * 400 + b"1}",
        b"{" + base + b',"cost_usd":' + b"9" * 400 + b"}",
        b"{" + base + b',"cost_usd":' + b"9" * 300 + b"}",
        b"{" + base + b',"cost_usd":1.00000000000000000001}',
        b"{" + base + b',"cost_usd":2.2250738585072011e-308}',
        b"{" + base + b',"cost_usd":-0}',
        b"{" + base + b',"cost_usd":-0.0}',
        b"{" + base + b',"cost_usd":1E+2}',
        b"{" + base + b',"cost_usd":01}',
        b"{" + base + b',"cost_usd":1.}',
        b"{" + base + b',"cost_usd":.5}',
        b"{" + base + b',"cost_usd":NaN}',
        b"{" + base + b',"cost_usd":Infinity}',
        b"{" + base + b',"cost_usd":-Infinity}',
        b"{" + base + b',"input_tokens":true}',
        b"{" + base + b',"input_tokens":false}',
        b"{" + base + b',"input_tokens":1.0}',
        b"{" + base + b',"input_tokens":1e2}',
        b"{" + base + b',"input_tokens":-0}',
        b"{" + base + b',"input_tokens":null}',
        b"{" + base + b',"input_tokens":"1"}',
        b"{" + base + b',"input_tokens":' + b"9" * 400 + b"}",
        b"{" + base + b',"v":' + b"9" * 400 + b"}",
        b"{" + base + b',"v":' + b"9" * 30 + b"}",
        b"{" + base + b',"v":true}',
        b"{" + base + b',"v":"1"}',
        b"{" + base + b',"v":1.5}',
        b"{" + base + b',"task_id":5}',
        b"{" + base + b',"extra":1}',
        b"{" + base + b',"extra":1e400}',
        b"{" + base + b',"extra":' + b"9" * 400 + b"}",
        b"{" + base + b',"extra":"\xff"}',
        b"{" + base + b',"extra":"\xed\xa0\x80"}',
        b"{" + base + b',"extra":' + b"[" * 100 + b"]" * 100 + b"}",
        b"{" + base + b',"extra":' + b"[" * 2000 + b"]" * 2000 + b"}",
        b"{" + base + b',"extra":{"a":1,"a":2}}',
        b"{" + base + b',"agent":"\xff"}',
        b"{" + base + b',"agent":"\xc0\x80"}',
        b"{" + base + b',"agent":"\xed\xa0\x80"}',
        b"{" + base + b',"agent":"\xf4\x90\x80\x80"}',
        b"{" + base + b',"agent":"\\ud800"}',
        b"{" + base + b',"agent":"\\udc00"}',
        b"{" + base + b',"agent":"\\ud800\\udc00"}',
        b"{" + base + b',"agent":"\\u0000"}',
        b"{" + base + b',"agent":"a\x01b"}',
        b"{" + base + b',"agent":"a\tb"}',
        b"{" + base + b',"agent":"\\x41"}',
        b"{" + base + b',"agent":"\x7f"}',
        b'{"\xff":1,' + base + b"}",
        b'{"ts":"2026-01-01T00:00:00Z\xff"}',
        b'{"ts":null}',
        b'{"ts":["2026-01-01T00:00:00Z"]}',
        b'{"input_tokens":1}',
        b"{" + base,
        b"{" + base + b"}}",
        b"{" + base + b"} x",
        b"{" + base + b"} //",
    ]
    for value in BIG:
        for name in ("input_tokens", "cache_write_1h_tokens", "cost_usd", "v"):
            lines.append(b"{" + base + b',"%s":%d}' % (name.encode(), value))
    for stamp in TIMES:
        lines.append(dumps({"ts": stamp, "input_tokens": 3}))
    return lines


def mutate(rng: random.Random, line: bytes) -> bytes:
    """A valid line with a few random edits: deleted, repeated, swapped or odd bytes."""
    data = bytearray(line)
    for _ in range(rng.randint(1, 3)):
        if not data:
            break
        at = rng.randrange(len(data))
        action = rng.randrange(5)
        if action == 0:
            del data[at]
        elif action == 1:
            data.insert(at, rng.choice(b'{}[]",:0123456789-+.eE \t\r\\ntfu\xff\x00'))
        elif action == 2:
            end = min(len(data), at + rng.randint(1, 12))
            data[at:at] = data[at:end]
        elif action == 3:
            data[at] = rng.randrange(256)
        else:
            other = rng.randrange(len(data))
            data[at], data[other] = data[other], data[at]
    return bytes(data).replace(b"\n", b" ")


def generated_lines(count: int, seed: int) -> list[bytes]:
    """`count` lines: good ones, mutated ones, odd ones."""
    rng = random.Random(seed)
    odd = odd_lines()
    lines: list[bytes] = []
    for index in range(count):
        roll = rng.random()
        good = dumps(good_record(rng, index))
        if roll < 0.55:
            lines.append(good)
        elif roll < 0.6 and b"," in good:
            # One value over two lines: two malformed lines (decode_lines would join them).
            commas = [at for at, byte in enumerate(good) if byte == ord(",")]
            cut = rng.choice(commas) + 1
            lines.extend([good[:cut], good[cut:]])
        elif roll < 0.85:
            lines.append(mutate(rng, good))
        else:
            lines.append(rng.choice(odd))
    return lines


# --- the differential tests -------------------------------------------------------------------


def test_every_odd_line_alone_gets_the_old_answer() -> None:
    for line in odd_lines():
        assert_same(line)
        assert_same(line + b"\n")


@pytest.mark.parametrize("block_bytes", [1, 200, 4096, ledger.BLOCK_BYTES])
def test_generated_and_mutated_lines_get_the_old_answers(
    block_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger, "BLOCK_BYTES", block_bytes)
    lines = generated_lines(6000, seed=20261122)
    data = b"\n".join(lines) + b"\n"
    rows, malformed = assert_same(data)
    assert len(rows) > 2000 and malformed > 500  # both paths are exercised
    # One line at a time, and without the last newline (an unterminated last line).
    for line in lines[:1500]:
        assert_same(line + b"\n")
    assert_same(data[:-1])
    assert_same(data + b"{")


def test_good_lines_take_the_block_path_and_all_of_them_match() -> None:
    rng = random.Random(7)
    data = b"".join(dumps(good_record(rng, index)) + b"\n" for index in range(5000))
    blocked: list[tuple[Any, ...]] = []
    assert ledger._block_rows(data, blocked)  # msgspec accepts every line, in one call
    expected = assert_same(data)
    assert _exact((blocked, 0)) == _exact(expected) and len(blocked) == 5000


def test_floats_read_by_msgspec_are_the_floats_orjson_reads() -> None:
    rng = random.Random(3)
    values = [rng.uniform(0, 10) for _ in range(2000)]
    values += [rng.random() * 10.0 ** rng.randint(-320, 300) for _ in range(2000)]
    values += [math.ulp(1.0), 2.0**-1074, 1 - 2**-53, 9007199254740993.0]
    lines = [b'{"ts":"2026-01-01T00:00:00Z","cost_usd":%s}' % repr(v).encode() for v in values]
    # Also the shortest and longer spellings of the same numbers.
    lines += [b'{"ts":"2026-01-01T00:00:00Z","cost_usd":%.25e}' % v for v in values[:500]]
    lines += [b'{"ts":"2026-01-01T00:00:00Z","cost_usd":%.17g}' % v for v in values[:500]]
    rows, malformed = assert_same(b"\n".join(lines) + b"\n")
    assert malformed == 0 and len(rows) == len(lines)


# --- the block path falls back line by line, and loses no good line ---------------------------


def _good(index: int, **fields: Any) -> bytes:
    record = {"v": 1, "ts": f"2026-01-01T00:{index // 60 % 60:02d}:{index % 60:02d}Z"}
    record.update(message_id=f"m{index}", request_id=f"r{index}", input_tokens=index)
    record.update(fields)
    return dumps(record)


@pytest.mark.parametrize(
    ("bad", "malformed"),
    [
        (b"not json", 1),
        (b"", 0),
        (b"   ", 0),
        (b'{"ts":"2026-01-01T00:00:00Z","input_tokens":-1}', 1),
        (b'{"ts":"2026-01-01T00:00:00Z","input_tokens":1} {"ts":"2026-01-01T00:00:00Z"}', 1),
        (b'{"ts":"2026-01-01T00:00:00Z",', 1),
        (b'{"ts":"2026-01-01T00:00:00Z","extra":1}', 0),  # a row: unknown fields are ignored
        (b'{"ts":"tomorrow"}', 1),
    ],
)
def test_one_odd_line_among_good_ones_loses_no_good_line(bad: bytes, malformed: int) -> None:
    lines = [_good(index) for index in range(300)]
    lines.insert(150, bad)
    rows, bad_lines = assert_same(b"\n".join(lines) + b"\n")
    assert [row[10] for row in rows if row[8]] == list(range(300))
    assert bad_lines == malformed


def test_lines_that_decode_lines_would_join_or_split_are_decided_one_by_one() -> None:
    # A value spanning two lines (two malformed lines) and, in the same block, two values on
    # one line (one malformed line): as many values as newlines, yet not one per line.
    data = b"\n".join(
        [
            _good(1),
            b'{"ts":"2026-01-01T00:00:00Z",',
            b'"agent":"a","input_tokens":5}',
            _good(2) + b" " + _good(3),
            _good(4),
        ]
    )
    rows, malformed = assert_same(data + b"\n")
    assert [row[10] for row in rows] == [1, 4] and malformed == 3
    assert not ledger._block_rows(data + b"\n", [])
    # A value over two lines, alone: fewer values than newlines.
    data = b"\n".join([_good(1), b'{"ts":"2026-01-01T00:00:00Z",', b'"input_tokens":5}', _good(4)])
    rows, malformed = assert_same(data + b"\n")
    assert [row[10] for row in rows] == [1, 4] and malformed == 2
    # Two values on one line next to a blank line: the count alone would not see it.
    data = b"\n".join([_good(1), b"", _good(2) + b"\r" + _good(3), _good(4)]) + b"\n"
    rows, malformed = assert_same(data)
    assert [row[10] for row in rows] == [1, 4] and malformed == 1


def test_a_naive_time_in_a_block_is_taken_as_utc() -> None:
    data = _good(1) + b"\n" + _good(2, ts="2026-01-01T00:00:02") + b"\n"
    rows, _ = assert_same(data)
    assert rows[1][0] == datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC).timestamp()


# --- the parallel cold path -------------------------------------------------------------------


def test_key_hashes_are_the_hashes_of_the_reports_dedupe_keys() -> None:
    lines = generated_lines(3000, seed=5)
    rows, _ = parse_ledger_bytes(b"\n".join(lines) + b"\n")
    rows += [(*row[:8], None, row[9], *row[10:]) for row in rows[:50]]
    rows += [(*row[:8], "", "r", *row[10:]) for row in rows[:50]]
    aggregator = Aggregator(parse_report_options(by="day", timezone="UTC"))
    aggregator.add(rows)
    assert set(parallel._key_hashes(rows)) == set(map(hash, aggregator.state.seen))
    assert aggregator.state.seen  # some rows have both ids


def _ledger(home: Home, lines: list[bytes], tail: bytes = b"") -> Path:
    path = home.ledger
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n" + tail)
    return path


def _rounded(value: Any) -> Any:
    """Costs summed in another order may differ in their last bits: compare them rounded."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(item) for item in value]
    return value


def _sequential(path: Path, by: str) -> Any:
    options = parse_report_options(by=by, timezone="UTC")
    rows, malformed = parse_ledger_bytes(path.read_bytes())
    report = build_report(rows, options)
    return _rounded((report.rows, report.totals, malformed))


def _parallel(path: Path, by: str, workers: int) -> Any:
    options = parse_report_options(by=by, timezone="UTC")
    aggregator, malformed, _torn = parallel.aggregate_ledger(path, options, workers)
    report = aggregator.finish()
    return _rounded((report.rows, report.totals, malformed))


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_small_blocks_long_lines_and_a_torn_tail_give_the_one_process_report(
    home: Home, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setattr(parallel, "READ_BYTES", 512)
    lines = generated_lines(2000, seed=11)
    lines[700] = _good(700, agent="x" * 5000)  # longer than many reads
    path = _ledger(home, lines, tail=b'{"ts":"2026-01-01T00:00:00Z","input_')
    for by in ("day", "day,agent,model"):
        assert _parallel(path, by, workers) == _sequential(path, by)
    _, malformed, torn = parallel.aggregate_ledger(
        path, parse_report_options(by="day", timezone="UTC"), workers
    )
    assert torn and malformed == _sequential(path, "day")[2]


def test_a_duplicate_across_ranges_is_counted_once_the_first_one(home: Home) -> None:
    lines = [_good(index, input_tokens=index) for index in range(400)]
    lines.append(_good(3, input_tokens=10**6))  # same ids as line 3, in the last range
    path = _ledger(home, lines)
    got = _parallel(path, "day", 2)
    assert got == _sequential(path, "day")
    assert got[1]["input_tokens"] == sum(range(400)) and got[1]["requests"] == 400


def test_a_failed_worker_leaves_the_report_to_the_parent(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _ledger(home, [_good(index) for index in range(400)])

    def vanish(connection: Any, *args: Any) -> None:
        connection.close()  # no answer: the parent sees the pipe end

    def fail(connection: Any, *args: Any) -> None:
        raise RuntimeError("worker broke")  # reported to the parent as a failure

    for worker in (vanish, fail):
        monkeypatch.setattr(parallel, "_worker", worker)
        assert _parallel(path, "day", 2) == _sequential(path, "day")
