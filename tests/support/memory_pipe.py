"""An in-memory duplex byte stream for driving a `Peer` without processes.

`duplex()` gives two `End`s. Each end has a `MemoryTransport`, a fake asyncio transport
at the seam where a real pipe's would be: what one end writes is delivered, at once and
in order, to whatever reads the other end (its "receiver"), through the same public
calls a real protocol makes (`data_received`, `eof_received`, `connection_lost`), and
closing an end's transport is EOF on the other side. Reading is paused and resumed with
the transport's `pause_reading()`/`resume_reading()`; while paused, what arrives waits
in the pipe, as it would in the kernel's.

    left, right = duplex()
    client = peer_on(left, name="client")   # a Peer writing to left, fed from right

An `End` that no peer reads can be used raw, to speak the wire by hand: `send_line`
writes one line, `write` writes raw bytes, `read_message` reads the next line and
decodes it (with a timeout, so a missing reply is a test failure rather than a hang),
`unread()` is what has arrived and not been read. Import it from a test as
``from support.memory_pipe import duplex, peer_on``.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any, Protocol

from aiswitch.rpc.peer import Peer

# A reply that is coming arrives within a few loop iterations; this only bounds a hang.
READ_TIMEOUT_S = 5.0


class Receiver(Protocol):
    """What reads an end: the public asyncio protocol calls (a `Peer` fits)."""

    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> None: ...
    def connection_lost(self, exc: BaseException | None) -> None: ...


class MemoryTransport:
    """One end's transport: writes go to the other end, reading is this end's."""

    def __init__(self) -> None:
        self.other: MemoryTransport | None = None
        self.receiver: Receiver | None = None
        self._closing = False
        self._paused = False
        # What arrived while paused (or before a receiver): bytes, or None for EOF.
        self._backlog: deque[bytes | None] = deque()
        self.bytes_written = 0
        self.writes = 0

    # -- the write side (what a peer writes with) --------------------------------------

    def write(self, data: bytes) -> None:
        if self._closing:
            # What a real transport's write after close amounts to for the peer.
            raise ConnectionResetError("memory pipe is closed")
        self.writes += 1
        self.bytes_written += len(data)
        assert self.other is not None
        self.other._arrive(bytes(data))

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            assert self.other is not None
            self.other._arrive(None)

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        return 0  # delivered at once: never anything unsent

    # -- the read side -------------------------------------------------------------------

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        self._deliver()

    def is_reading(self) -> bool:
        return not self._paused

    def attach(self, receiver: Receiver) -> None:
        """Deliver what arrives to `receiver` from now on (what waited first)."""
        self.receiver = receiver
        self._deliver()

    def _arrive(self, data: bytes | None) -> None:
        self._backlog.append(data)
        self._deliver()

    def _deliver(self) -> None:
        while self._backlog and not self._paused and self.receiver is not None:
            data = self._backlog.popleft()
            if data is None:
                self.receiver.eof_received()
                self.receiver.connection_lost(None)
            else:
                self.receiver.data_received(data)


class Inbox:
    """A raw end's receiver: what has arrived, read a line at a time."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False
        self._arrived = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._arrived.set()

    def eof_received(self) -> None:
        self.eof = True
        self._arrived.set()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof_received()

    async def read_line(self) -> bytes:
        while True:
            newline = self.buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self.buffer[: newline + 1])
                del self.buffer[: newline + 1]
                return line
            if self.eof:
                raise EOFError(f"end of stream with {bytes(self.buffer)!r} unread")
            self._arrived.clear()
            await self._arrived.wait()


class End:
    """One side of the duplex: its transport, and (when raw) what it has read."""

    def __init__(self) -> None:
        self.transport = MemoryTransport()
        self.inbox = Inbox()
        self.transport.attach(self.inbox)

    def write(self, data: bytes) -> None:
        """Write raw bytes (no newline added)."""
        self.transport.write(data)

    async def send_line(self, line: bytes | str | Any) -> None:
        """Write one line: bytes and str as given (a newline is added), else as JSON."""
        if isinstance(line, str):
            data = line.encode()
        elif isinstance(line, bytes):
            data = line
        else:
            data = json.dumps(line, separators=(",", ":")).encode()
        self.transport.write(data if data.endswith(b"\n") else data + b"\n")
        # Yield once, as a real write's drain may, so writers cannot starve the reader.
        await asyncio.sleep(0)

    async def read_line(self, timeout: float = READ_TIMEOUT_S) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.inbox.read_line()

    async def read_message(self, timeout: float = READ_TIMEOUT_S) -> Any:
        return json.loads(await self.read_line(timeout))

    def unread(self) -> bytes:
        """What has arrived at this end and not been read yet."""
        return bytes(self.inbox.buffer)

    def close(self) -> None:
        self.transport.close()


def duplex() -> tuple[End, End]:
    """Two connected ends."""
    left, right = End(), End()
    left.transport.other = right.transport
    right.transport.other = left.transport
    return left, right


def peer_on(end: End, **options: Any) -> Peer:
    """A `Peer` that writes with `end` and reads what the other end writes; not started."""
    peer = Peer(end.transport, **options)
    peer.reading_from(end.transport)  # first: it pauses reading until start()
    end.transport.attach(peer)
    return peer
