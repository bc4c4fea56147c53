"""The line framer alone: bytes in, bounded lines out (aiswitch/rpc/framing.py)."""

from __future__ import annotations

import pytest

from aiswitch.rpc.framing import HEAD_BYTES, LineFramer, Oversized

LIMIT = 64


def lines(out: list[bytes | Oversized]) -> list[bytes | str]:
    """Lines as bytes, an oversized line as 'oversized:<its first bytes>'."""
    return [item if isinstance(item, bytes) else f"oversized:{item.head.decode()}" for item in out]


def test_complete_lines_in_one_chunk_come_out_in_order_without_newlines() -> None:
    framer = LineFramer(LIMIT)
    assert framer.feed(b"one\ntwo\n\nthree\n") == [b"one", b"two", b"", b"three"]
    assert framer.held == 0


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_a_stream_split_into_chunks_anywhere_gives_the_same_lines(size: int) -> None:
    data = b'{"id":1}\n{"id":2,"text":"a longer line"}\nx\n\n{"id":3}\n'
    framer = LineFramer(LIMIT)
    out: list[bytes | Oversized] = []
    for offset in range(0, len(data), size):
        out += framer.feed(data[offset : offset + size])
    assert out == data.split(b"\n")[:-1]
    assert framer.end() is None


def test_an_incomplete_line_waits_for_its_newline() -> None:
    framer = LineFramer(LIMIT)
    assert framer.feed(b"par") == []
    assert framer.held == 3
    assert framer.feed(b"tial") == []
    assert framer.feed(b"\nnext") == [b"partial"]
    assert framer.held == 4


def test_a_last_line_without_a_newline_is_a_line_at_eof() -> None:
    framer = LineFramer(LIMIT)
    assert framer.feed(b"done\nhalf a li") == [b"done"]
    assert framer.end() == b"half a li"
    assert framer.held == 0
    assert framer.end() is None  # and only once


def test_a_line_of_exactly_the_limit_fits_and_one_byte_more_does_not() -> None:
    framer = LineFramer(LIMIT)
    assert framer.feed(b"a" * LIMIT + b"\n") == [b"a" * LIMIT]
    out = framer.feed(b"b" * (LIMIT + 1) + b"\nafter\n")
    assert lines(out) == ["oversized:" + "b" * (LIMIT + 1), b"after"]


def test_an_oversized_line_is_reported_as_soon_as_the_limit_is_passed() -> None:
    framer = LineFramer(LIMIT)
    assert framer.feed(b'{"id":9,') == []
    # No newline yet, but the line is already over the limit: reported now.
    out = framer.feed(b"x" * LIMIT)
    assert len(out) == 1 and isinstance(out[0], Oversized)
    assert out[0].head.startswith(b'{"id":9,')
    assert framer.held == 0


def test_an_oversized_line_is_dropped_in_bounded_memory_however_long_it_goes_on() -> None:
    framer = LineFramer(LIMIT)
    assert len(framer.feed(b"y" * (LIMIT + 1))) == 1
    for _ in range(10_000):
        assert framer.feed(b"y" * 1000) == []
        assert framer.held == 0
    assert framer.feed(b"tail of it\nnext line\n") == [b"next line"]
    assert framer.end() is None


def test_an_oversized_line_keeps_only_its_first_bytes() -> None:
    framer = LineFramer(HEAD_BYTES * 4)
    body = b"z" * (HEAD_BYTES * 5)
    (item,) = framer.feed(body[:100]) + framer.feed(body[100:])
    assert isinstance(item, Oversized)
    assert item.head == body[:HEAD_BYTES]


def test_the_head_of_an_oversized_line_stops_at_its_newline() -> None:
    framer = LineFramer(LIMIT)
    framer.feed(b"g" * 10)
    out = framer.feed(b"g" * LIMIT + b'\n{"id":5}\n')
    assert lines(out) == ["oversized:" + "g" * (LIMIT + 10), b'{"id":5}']


def test_an_oversized_line_cut_off_by_eof_is_not_a_line() -> None:
    framer = LineFramer(LIMIT)
    framer.feed(b"q" * (LIMIT * 2))
    assert framer.end() is None


def test_reset_forgets_a_partial_line() -> None:
    framer = LineFramer(LIMIT)
    framer.feed(b"partial")
    framer.reset()
    assert framer.held == 0
    assert framer.feed(b"whole\n") == [b"whole"]
