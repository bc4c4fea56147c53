"""The requests one side has sent and waits on: ids, futures and deadlines.

Contract:
- `new_id()` numbers requests 1, 2, 3, ...; `add()` registers one with its method, its
  future and its timeout (None: no deadline), and starts its deadline. With `convert`, the
  future gets `convert(result)` (or the exception it raises) instead of the result, as the
  reply is read: a typed caller needs no second future and no callback per request.
- A request that reaches its deadline fails with `RequestTimeoutError` and is forgotten,
  so its reply, if it comes later, is an unknown id to `resolve` (which says so).
- Every way out forgets the entry and its deadline: `resolve` (a result), `fail` (an
  error built from the method's name), `fail_all` (the stream ended), `forget` (the
  caller gave up). A future already done (cancelled by its caller) is left alone.
- Deadlines cost one timer per distinct timeout value, not one per request: requests
  with the same timeout expire in the order they were registered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiswitch.rpc.errors import RequestTimeoutError

# A deadline timer may fire this much early (the loop's clock granularity); a request
# that is due within it is expired then rather than by another timer.
DEADLINE_SLACK_S = 0.001

RequestId = int | str
# What a reply's result becomes before its future gets it.
Convert = Callable[[Any], Any]
# A pending request: its method (for messages), its future, its timeout (if any), and
# what its result becomes (if anything).
Call = tuple[str, asyncio.Future[Any], float | None, Convert | None]


class PendingCalls:
    """The pending-call table of one peer."""

    def __init__(self) -> None:
        self._next_id = 1
        self._calls: dict[RequestId, Call] = {}
        # Per timeout value, the requests waiting with it and their deadlines, in
        # deadline order (insertion order): one timer per value, not one per request.
        self._deadlines: dict[float, dict[RequestId, float]] = {}
        self._timers: dict[float, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._calls

    @property
    def timed(self) -> int:
        """How many requests have a running deadline (for tests and diagnostics)."""
        return sum(len(waiting) for waiting in self._deadlines.values())

    def new_id(self) -> int:
        request_id = self._next_id
        self._next_id = request_id + 1
        return request_id

    def add(
        self,
        request_id: RequestId,
        method: str,
        timeout: float | None,
        convert: Convert | None = None,
    ) -> asyncio.Future[Any]:
        """Register a request about to be written; its future, with its deadline running."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._calls[request_id] = (method, future, timeout, convert)
        if timeout is not None:
            self._arm(request_id, timeout, loop)
        return future

    def suspend_deadline(self, request_id: RequestId) -> None:
        """Stop the request's clock (until `restart_deadline`): it has not gone out yet."""
        entry = self._calls.get(request_id)
        if entry is not None and entry[2] is not None:
            self._disarm(request_id, entry[2])
            self._calls[request_id] = (entry[0], entry[1], None, entry[3])

    def restart_deadline(self, request_id: RequestId, timeout: float) -> None:
        """Start the request's clock again, from now."""
        entry = self._calls.get(request_id)
        if entry is None:
            return  # answered already (an in-memory peer answers within the write)
        self._calls[request_id] = (entry[0], entry[1], timeout, entry[3])
        loop = self._loop or asyncio.get_running_loop()
        self._arm(request_id, timeout, loop)

    def resolve(self, request_id: RequestId, result: Any) -> bool:
        """Give a request its result; False when no request with that id is pending."""
        entry = self._calls.pop(request_id, None)
        if entry is None:
            return False
        _method, future, timeout, convert = entry
        if timeout is not None:
            waiting = self._deadlines.get(timeout)
            if waiting is not None:
                waiting.pop(request_id, None)
        if future.done():
            return True
        if convert is not None:
            try:
                result = convert(result)
            except Exception as exc:
                future.set_exception(exc)
                return True
        future.set_result(result)
        return True

    def fail(self, request_id: RequestId, error: Callable[[str], BaseException]) -> bool:
        """Fail a request with `error(method)`; False when no such request is pending."""
        entry = self.forget(request_id)
        if entry is None:
            return False
        if not entry[1].done():
            entry[1].set_exception(error(entry[0]))
        return True

    def forget(self, request_id: RequestId) -> Call | None:
        """Drop a request (and its deadline); its entry if it was pending."""
        entry = self._calls.pop(request_id, None)
        if entry is not None and entry[2] is not None:
            self._disarm(request_id, entry[2])
        return entry

    def fail_all(self, error: Callable[[str], BaseException]) -> None:
        """Fail every pending request with `error(method)`, and stop every timer."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._deadlines.clear()
        calls, self._calls = self._calls, {}
        for method, future, _timeout, _convert in calls.values():
            if not future.done():
                future.set_exception(error(method))

    # -- deadlines --------------------------------------------------------------------

    def _arm(self, request_id: RequestId, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        deadline = loop.time() + timeout
        waiting = self._deadlines.get(timeout)
        if waiting is None:
            waiting = self._deadlines[timeout] = {}
        waiting[request_id] = deadline
        if timeout not in self._timers:
            self._timers[timeout] = loop.call_at(deadline, self._expire, timeout)

    def _disarm(self, request_id: RequestId, timeout: float) -> None:
        waiting = self._deadlines.get(timeout)
        if waiting is not None:
            waiting.pop(request_id, None)

    def _expire(self, timeout: float) -> None:
        """Fail the requests with this timeout that are due; wait for the next one."""
        loop = self._loop or asyncio.get_running_loop()
        self._timers.pop(timeout, None)
        waiting = self._deadlines.get(timeout)
        if not waiting:
            self._deadlines.pop(timeout, None)
            return
        now = loop.time() + DEADLINE_SLACK_S
        due: list[RequestId] = []
        next_deadline = None
        for request_id, deadline in waiting.items():
            if deadline > now:
                next_deadline = deadline
                break
            due.append(request_id)
        for request_id in due:
            del waiting[request_id]
            entry = self._calls.pop(request_id, None)
            if entry is not None and not entry[1].done():
                entry[1].set_exception(RequestTimeoutError(entry[0], timeout))
        if next_deadline is None:
            self._deadlines.pop(timeout, None)
        else:
            self._timers[timeout] = loop.call_at(next_deadline, self._expire, timeout)
