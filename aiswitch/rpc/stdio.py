"""The child side of the protocol: a `Peer` over this process's stdin and stdout.

Contract:
- `stdio_peer()` returns a `Peer` that is not started: register handlers, then call
  `start()`. What arrives on stdin before that waits (reading is paused) and is handled
  at `start()`, in order.
- A pipe or socket gets a non-blocking asyncio pipe transport (`connect_read_pipe`,
  `connect_write_pipe`); its protocol feeds the peer through public callbacks only
  (`data_received`, `eof_received`, `connection_lost`, `pause_writing`,
  `resume_writing`), and the peer pauses the read transport with `pause_reading()`.
- A regular file or /dev/null (`< tasks.jsonl`, `> out.jsonl`), which epoll refuses, is
  read in a thread (paused like a pipe) or written with blocking writes.
- stdout is the peer's alone from then on (`aiswitch.own_stdout.hold`): what the process
  prints to `sys.stdout` goes to stderr, not into the protocol's stream.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from typing import Any

from aiswitch.own_stdout import hold
from aiswitch.rpc.peer import LINE_LIMIT, Peer

# How much one read of a regular-file stdin takes (one thread hop per chunk).
FILE_CHUNK = 65536
# Tasks that must not be garbage-collected while they run.
_BACKGROUND: set[asyncio.Task[None]] = set()


async def stdio_peer(name: str, *, fast_json: bool = True, line_limit: int = LINE_LIMIT) -> Peer:
    """A peer over this process's stdin/stdout, not yet started (module contract)."""
    loop = asyncio.get_running_loop()
    output = _Output()
    transport: Any
    # The pipe is the peer's alone: what else prints to sys.stdout goes to stderr.
    stdout = hold()
    if _pollable(stdout.fileno()):
        transport, _ = await loop.connect_write_pipe(lambda: output, stdout)
    else:
        transport = _FileWriter(stdout.fileno())
    peer = Peer(transport, name=name, line_limit=line_limit, fast_json=fast_json)
    output.peer = peer
    if _pollable(sys.stdin.fileno()):
        await loop.connect_read_pipe(lambda: _Input(peer), sys.stdin)
    else:
        reader = _FileReader(peer)
        peer.reading_from(reader)
        task = loop.create_task(reader.run(sys.stdin.buffer))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)
    return peer


class _Input(asyncio.Protocol):
    """Feeds what the read pipe delivers to the peer."""

    def __init__(self, peer: Peer) -> None:
        self._peer = peer
        # The hot path: one call from the transport to the peer.
        self.data_received = peer.data_received  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._peer.reading_from(transport)  # type: ignore[arg-type]

    def eof_received(self) -> bool | None:
        self._peer.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._peer.connection_lost(exc)


class _Output(asyncio.BaseProtocol):
    """Forwards the write pipe's flow control to the peer (set once it is built)."""

    peer: Peer | None = None

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_writing()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.output_lost(exc)


class _FileReader:
    """Reads a regular file in a thread and feeds the peer; pausable like a pipe."""

    def __init__(self, peer: Peer) -> None:
        self._peer = peer
        self._resumed = asyncio.Event()
        self._resumed.set()

    def pause_reading(self) -> None:
        self._resumed.clear()

    def resume_reading(self) -> None:
        self._resumed.set()

    async def run(self, raw: Any) -> None:
        try:
            while True:
                await self._resumed.wait()
                chunk = await asyncio.to_thread(raw.read1, FILE_CHUNK)
                if not chunk:
                    self._peer.eof_received()
                    return
                self._peer.data_received(chunk)
        except OSError as exc:
            self._peer.connection_lost(exc)


class _FileWriter:
    """A blocking writer for a stdout that is a regular file (asyncio pipes refuse it)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._closed = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self._closed = True

    def is_closing(self) -> bool:
        return self._closed


def _pollable(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)
