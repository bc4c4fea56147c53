"""The write batcher alone (aiswitch/rpc/outbox.py), on a fake transport."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aiswitch.rpc.errors import ConnectionClosedError
from aiswitch.rpc.outbox import JOIN_LINES, Outbox

HANG_GUARD_S = 5.0


class FakeTransport:
    """Records each write; `broken` makes the next write close it, as a broken pipe does."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False
        self.broken = False
        self.unsent = 0

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        if self.broken:
            self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return self.unsent


def outbox(transport: FakeTransport, lost: list[str]) -> Outbox:
    return Outbox(
        transport, name="test", on_lost=lambda: lost.append("lost"), log=logging.getLogger()
    )


async def test_a_lone_line_is_written_at_once_and_the_rest_of_the_turn_joins_one_write() -> None:
    transport, lost = FakeTransport(), []
    box = outbox(transport, lost)
    box.put(b"a\n")
    assert transport.writes == [b"a\n"]
    box.put(b"b\n")
    box.put(b"c\n")
    assert transport.writes == [b"a\n"]  # held for the next turn
    await asyncio.sleep(0)
    assert transport.writes == [b"a\n", b"b\nc\n"]
    assert not box.holding


async def test_held_lines_go_out_as_soon_as_there_are_enough_of_them() -> None:
    transport, lost = FakeTransport(), []
    box = outbox(transport, lost)
    box.put(b"first\n")
    for n in range(JOIN_LINES):
        box.put(b"%d\n" % n)
    # Without waiting for the turn to end: the other side can start on them.
    assert len(transport.writes) == 2
    assert transport.writes[1].count(b"\n") == JOIN_LINES


async def test_hold_makes_the_next_lines_of_the_turn_one_write() -> None:
    transport, lost = FakeTransport(), []
    box = outbox(transport, lost)
    box.hold()
    box.put(b"x\n")
    box.put(b"y\n")
    assert transport.writes == []
    await asyncio.sleep(0)  # the turn ends
    assert transport.writes == [b"x\ny\n"]


async def test_a_write_to_a_closed_transport_raises_and_one_that_breaks_it_reports_the_loss() -> (
    None
):
    transport, lost = FakeTransport(), []
    box = outbox(transport, lost)
    transport.broken = True
    with pytest.raises(ConnectionClosedError):
        box.put(b"a\n")
    assert lost == ["lost"]
    with pytest.raises(ConnectionClosedError):
        box.put(b"b\n")


async def test_drain_waits_while_writing_is_paused_and_fails_when_the_output_is_lost() -> None:
    transport, lost = FakeTransport(), []
    box = outbox(transport, lost)
    await box.drain()  # not paused: at once
    box.pause_writing()
    waiting = asyncio.create_task(box.drain())
    await asyncio.sleep(0)
    assert not waiting.done()
    box.resume_writing()
    async with asyncio.timeout(HANG_GUARD_S):
        await waiting
    box.pause_writing()
    waiting = asyncio.create_task(box.drain())
    await asyncio.sleep(0)
    box.connection_lost(BrokenPipeError())
    async with asyncio.timeout(HANG_GUARD_S):
        with pytest.raises(ConnectionClosedError):
            await waiting
    assert lost == ["lost"]


async def test_close_writes_what_is_held_then_closes_the_transport() -> None:
    transport, lost = FakeTransport(), []
    box = outbox(transport, lost)
    box.put(b"a\n")
    box.put(b"b\n")
    box.close()
    assert transport.writes == [b"a\n", b"b\n"] and transport.closing
