"""An in-memory duplex byte stream for driving a `Peer` without processes.

`duplex()` gives two `End`s; bytes written on one end's `writer` are fed to the other
end's `reader` (an `asyncio.StreamReader` with the given limit), and closing a writer
is EOF on the other side. The writer implements exactly what `aiswitch.rpc.peer.LineWriter`
asks for (write/drain/close/is_closing), so a `Peer` runs on an `End` unchanged:

    left, right = duplex()
    client = Peer(left.reader, left.writer)

An `End` can also be used raw, to speak the wire by hand: `send_line` writes one line,
`read_message` reads the next line and decodes it (with a timeout, so a missing reply is
a test failure rather than a hang). Import it from a test as
``from support.memory_pipe import duplex``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiswitch.rpc.peer import LINE_LIMIT

# A reply that is coming arrives within a few loop iterations; this only bounds a hang.
READ_TIMEOUT_S = 5.0


class MemoryWriter:
    """Feeds written bytes to another side's StreamReader; close() is its EOF."""

    def __init__(self, sink: asyncio.StreamReader) -> None:
        self._sink = sink
        self._closing = False
        self.bytes_written = 0
        self.writes = 0

    def write(self, data: bytes) -> None:
        if self._closing:
            # What a real transport's write after close amounts to for the peer.
            raise ConnectionResetError("memory pipe is closed")
        self.writes += 1
        self.bytes_written += len(data)
        self._sink.feed_data(bytes(data))

    async def drain(self) -> None:
        # Yield once, as a real drain may, so writers cannot starve the reader.
        await asyncio.sleep(0)

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._sink.feed_eof()

    def is_closing(self) -> bool:
        return self._closing


@dataclass
class End:
    """One side of the duplex: what it reads, and how it writes to the other side."""

    reader: asyncio.StreamReader
    writer: MemoryWriter = field(init=False)

    async def send_line(self, line: bytes | str | Any) -> None:
        """Write one line: bytes and str as given (a newline is added), else as JSON."""
        if isinstance(line, str):
            data = line.encode()
        elif isinstance(line, bytes):
            data = line
        else:
            data = json.dumps(line, separators=(",", ":")).encode()
        self.writer.write(data if data.endswith(b"\n") else data + b"\n")
        await self.writer.drain()

    async def read_line(self, timeout: float = READ_TIMEOUT_S) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.reader.readuntil(b"\n")

    async def read_message(self, timeout: float = READ_TIMEOUT_S) -> Any:
        return json.loads(await self.read_line(timeout))

    def unread(self) -> bytes:
        """What has arrived at this end and not been read yet."""
        return bytes(self.reader._buffer)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.writer.close()


def duplex(limit: int = LINE_LIMIT) -> tuple[End, End]:
    """Two connected ends; each reader is a StreamReader with `limit` as its line limit."""
    left = End(asyncio.StreamReader(limit=limit))
    right = End(asyncio.StreamReader(limit=limit))
    left.writer = MemoryWriter(right.reader)
    right.writer = MemoryWriter(left.reader)
    return left, right
