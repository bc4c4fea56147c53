"""What a peer reads while something must finish first, held back in order.

Contract:
- Until the peer starts, and while the awaitable a line's handling returned (a
  notification handler's, a batch) is not done, what is read is held in `queue`, in
  order: lines, `Oversized`, and the end of input. `queue` is None when nothing is held:
  the peer then handles each line as it is read.
- While anything is held the input transport is paused (`pause_reading`), so what the
  other side sends waits in the pipe, not in memory; it resumes once the queue is empty.
- `release()` handles what is held, in order, through the peer's `handle`, up to the
  first item that returns an awaitable; the rest waits for that one (`behind`). After
  each release the peer's `released` runs (answers started meanwhile join one write).
- `stop()`: nothing is held any more and the transport is not held up (the peer stops
  reading).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class ReadControl(Protocol):
    """What the peer needs from its input transport (`asyncio.ReadTransport` fits)."""

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class InputHold:
    def __init__(
        self,
        handle: Callable[[object], Awaitable[Any] | None],
        released: Callable[[], None],
        log: logging.Logger,
    ) -> None:
        self._handle = handle
        self._released = released
        self._log = log
        # Held from the start: nothing is handled before the peer starts.
        self.queue: deque[object] | None = deque()
        # What the queue waits on (close() cancels it).
        self.task: asyncio.Task[None] | None = None
        self._input: ReadControl | None = None
        self._paused = False  # whether we paused `_input`
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def reading_from(self, transport: ReadControl, reading: bool) -> None:
        self._input = transport
        if self.queue is not None and reading:
            self._pause()

    def behind(self, first: Awaitable[Any]) -> None:
        """Hold what is read next until `first` is done, and stop reading meanwhile."""
        self.queue = deque()
        self._pause()
        self._wait(first)

    def release(self) -> None:
        """Handle what is held, in order, up to the first item that holds the rest."""
        queue = self.queue
        while queue:
            waiting = self._handle(queue.popleft())
            if waiting is not None:
                self._wait(waiting)
                break
        else:
            self.queue = None
            self._resume()
        self._released()

    def stop(self) -> None:
        self.queue = None
        self._resume()

    def _wait(self, first: Awaitable[Any]) -> None:
        loop = self._loop or asyncio.get_running_loop()
        self.task = loop.create_task(self._release(first))

    async def _release(self, first: Awaitable[Any]) -> None:
        try:
            await first
        except Exception:
            self._log.exception("failed to process input")
        self.task = None
        self.release()

    def _pause(self) -> None:
        if self._input is not None and not self._paused:
            self._paused = True
            self._input.pause_reading()

    def _resume(self) -> None:
        if self._input is not None and self._paused:
            self._paused = False
            self._input.resume_reading()
