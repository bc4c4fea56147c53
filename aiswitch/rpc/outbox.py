"""Write batching: the lines one peer sends, written to one transport in few writes.

Contract:
- `put(line)` writes the line at once when nothing else was written in this loop turn;
  otherwise it is held with the lines put after it, and they go out as one write at the
  start of the next turn, or as soon as `JOIN_LINES` are held or they pass `JOIN_LIMIT`
  bytes (so the other process starts on them while this one writes the rest). `hold()`
  starts holding without a write (answers due in the next turn join one write). So
  pipelined traffic costs a write syscall per chunk of lines, and a lone line goes out
  at once.
- A line put on a closing or broken transport raises `ConnectionClosedError`, and
  `on_lost` is called (the peer fails its pending requests); so does a held write that
  fails (nobody is there to raise to).
- Flow control is the transport's own, through its protocol: the protocol that owns the
  transport forwards `pause_writing`, `resume_writing` and `connection_lost` here, and
  `drain()` waits while writing is paused. `unsent()` is the transport's
  `get_write_buffer_size()`; drain only when it is not zero.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from aiswitch.rpc.errors import ConnectionClosedError

# Lines held back for one write are written at once past this size, so the held bytes
# stay small and the transport's own flow control sees them ...
JOIN_LIMIT = 256 * 1024
# ... and past this many lines, so that the other side can start on them while this
# side writes the rest (pipelined requests, or answers, overlap across the processes).
JOIN_LINES = 16

# What a transport raises when its pipe is gone (or the loop is closing).
_WRITE_ERRORS = (ConnectionError, OSError, RuntimeError)


class OutputTransport(Protocol):
    """What the outbox needs from its transport (`asyncio.WriteTransport` fits)."""

    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool: ...
    def close(self) -> None: ...
    def get_write_buffer_size(self) -> int: ...


class Outbox:
    """The write side of a peer (see the module contract)."""

    def __init__(
        self,
        transport: OutputTransport,
        *,
        name: str,
        on_lost: Callable[[], None],
        log: logging.Logger,
    ) -> None:
        self.transport = transport
        self.name = name
        self._on_lost = on_lost
        self._log = log
        self.unsent: Callable[[], int] = transport.get_write_buffer_size
        self._is_closing = transport.is_closing
        self._loop: asyncio.AbstractEventLoop | None = None
        # Lines held for one write at the next turn, or None when not holding.
        self._held: list[bytes] | None = None
        self._held_size = 0
        self._paused = False
        self._lost = False
        self._drainers: list[asyncio.Future[None]] = []

    @property
    def holding(self) -> bool:
        return self._held is not None

    def put(self, data: bytes) -> None:
        """Write now, or hold the line for this turn's one write (module contract)."""
        held = self._held
        if held is not None:
            if self._is_closing():
                raise self._closed()
            held.append(data)
            self._held_size += len(data)
            if len(held) >= JOIN_LINES or self._held_size > JOIN_LIMIT:
                self._write_held(held)
            return
        self._write(data)
        # Whatever else is written in this turn joins one write at the next.
        self.hold()

    def hold(self) -> None:
        """Hold what is put from now until the next loop turn, and write it then."""
        if self._held is None:
            self._held = []
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._end_turn)

    def _end_turn(self) -> None:
        """Write what is held, and stop holding (the turn is over)."""
        held = self._held
        self._held = None
        if held:
            self._write_held(held)

    def close(self) -> None:
        """Write what is held, then close the transport (it sends what it buffered)."""
        self._end_turn()
        if not self._is_closing():
            self.transport.close()

    async def drain(self) -> None:
        """Wait while the transport has paused writing; raise if the output is lost."""
        if self._lost:
            raise self._broken()
        if not self._paused:
            return
        loop = self._loop or asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._drainers.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._drainers:
                self._drainers.remove(waiter)
        if self._lost:
            raise self._broken()

    # -- flow control, forwarded by the transport's protocol -------------------------

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def connection_lost(self, exc: BaseException | None) -> None:
        """The transport is gone: later writes and drains fail."""
        self._lost = True
        self._paused = False
        self._wake()

    def _wake(self) -> None:
        for waiter in self._drainers:
            if not waiter.done():
                waiter.set_result(None)
        self._drainers.clear()

    # -- writing ----------------------------------------------------------------------

    def _write_held(self, held: list[bytes]) -> None:
        data = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        self._held_size = 0
        try:
            self._write(data)
        except ConnectionClosedError:
            # Held lines can no longer go out; `on_lost` has failed what waited on them.
            self._log.debug("could not send: stream closed")

    def _write(self, data: bytes) -> None:
        if self._is_closing():
            raise self._closed()
        try:
            self.transport.write(data)
        except _WRITE_ERRORS as exc:
            raise self._broken() from exc
        # A transport whose pipe broke drops the data and says so only by closing.
        if self._is_closing():
            raise self._broken()

    def _closed(self) -> ConnectionClosedError:
        return ConnectionClosedError(f"{self.name}: output stream is closed")

    def _broken(self) -> ConnectionClosedError:
        self._on_lost()
        return ConnectionClosedError(f"{self.name}: output stream closed")
