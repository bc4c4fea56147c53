"""The serving side of one peer: its handlers, the tasks that run them, their answers.

Contract (the peer's, for what the other side asks of this one):
- `on_request(method, handler)`: each such request runs its handler in its own task (a
  long `task.assign` never blocks `task.status`); `answers_due` says a task started in
  this turn, so that the peer holds the outbox and the answers join one write.
  `on_request_inline(method, handler)`: a synchronous handler (work that never waits),
  run and answered right where its request is read, with no task. A method has one
  handler: registering it one way drops the other. `on_notification(method, handler)`:
  `notified` runs it inline and returns what must finish before the next line is
  handled (the awaitable a handler returned, guarded: its failure is logged).
- Every answer, inline, from a task or in a batch, is made by `answer`, that is by
  `answers.answer_line` (its contract says how each outcome is encoded), and goes out
  through `reply` (a closed stream drops it, logged).
- `batch(requests, answers)`: a batch's requests run concurrently in one task; their
  answers, after `answers` (what the batch's other items got), go back as one array.
- While a request handler runs, `CURRENT_REQUEST_ID` holds its request's id (a server
  that cancels requests by id, as MCP does, maps ids to its tasks).
- `running()`: the handler tasks still running (the peer's `close()` cancels them).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any

from aiswitch.rpc.answers import answer_line, batch_line, not_found
from aiswitch.rpc.errors import ConnectionClosedError
from aiswitch.rpc.messages import Params, Request
from aiswitch.rpc.outbox import Outbox
from aiswitch.rpc.pending import RequestId

RequestHandler = Callable[[Params], Awaitable[Any]]
InlineHandler = Callable[[Params], Any]
NotificationHandler = Callable[[Params], Awaitable[None] | None]

# The id of the request a handler task is answering (None outside one): a server that
# cancels requests by id (MCP's `notifications/cancelled`) maps ids to its tasks.
CURRENT_REQUEST_ID: ContextVar[RequestId | None] = ContextVar("request_id", default=None)


class Serving:
    def __init__(self, out: Outbox, *, line_limit: int, log: logging.Logger) -> None:
        self._out = out
        self.line_limit = line_limit
        self._log = log
        self._requests: dict[str, RequestHandler] = {}
        self._inline: dict[str, InlineHandler] = {}
        self._notifications: dict[str, NotificationHandler] = {}
        # Running handler tasks by serial number (the peer's close() cancels them).
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._serial = 0
        self._new_task: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]] = (
            asyncio.ensure_future
        )
        # A handler task started in this turn: its answer should join the turn's write.
        self.answers_due = False

    # -- registration -------------------------------------------------------------------

    def on_request(self, method: str, handler: RequestHandler) -> None:
        self._inline.pop(method, None)
        self._requests[method] = handler

    def on_request_inline(self, method: str, handler: InlineHandler) -> None:
        self._requests.pop(method, None)
        self._inline[method] = handler

    def on_notification(self, method: str, handler: NotificationHandler) -> None:
        self._notifications[method] = handler

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make handler tasks on `loop` (the peer's, once it starts)."""
        if loop.get_task_factory() is None:
            # What loop.create_task does then, minus its wrapper (a task per request).
            self._new_task = functools.partial(asyncio.Task, loop=loop)
        else:
            self._new_task = loop.create_task

    def running(self) -> list[asyncio.Task[None]]:
        return list(self._tasks.values())

    # -- what the other side sends ------------------------------------------------------

    def notified(self, method: str, params: Params) -> Awaitable[Any] | None:
        handler = self._notifications.get(method)
        if handler is None:
            self._log.debug("no handler for notification %s", method)
            return None
        try:
            outcome = handler(params)
        except Exception:
            self._log.exception("notification handler for %s failed", method)
            return None
        if outcome is not None and inspect.isawaitable(outcome):
            return _guarded(outcome, self._log, method)
        return None

    def requested(self, request_id: RequestId, method: str, params: Params) -> None:
        inline = self._inline.get(method)
        if inline is not None:
            try:
                result = inline(params)
            except Exception as exc:
                self.reply(self.answer(request_id, method, None, exc))
            else:
                self.reply(self.answer(request_id, method, result, None))
            return
        handler = self._requests.get(method)
        if handler is None:
            self.reply(self.answer(request_id, method, None, not_found(method)))
            return
        serial = self._serial = self._serial + 1
        self._tasks[serial] = self._new_task(
            self._serve(handler, request_id, method, params, serial)
        )
        self.answers_due = True

    def batch(self, requests: list[Request], answers: list[bytes]) -> None:
        if requests:
            serial = self._serial = self._serial + 1
            self._tasks[serial] = self._new_task(self._answer_batch(requests, answers, serial))
        elif answers:
            self._send_batch(answers)

    # -- answering ----------------------------------------------------------------------

    def answer(
        self, request_id: RequestId, method: str, result: Any, failure: Exception | None
    ) -> bytes:
        """The one place a handler's outcome becomes its answer line (module contract)."""
        return answer_line(request_id, method, result, failure, self.line_limit, self._log)

    def reply(self, data: bytes) -> None:
        try:
            self._out.put(data)
        except ConnectionClosedError:
            self._log.debug("could not send: stream closed")

    async def _serve(
        self,
        handler: RequestHandler,
        request_id: RequestId,
        method: str,
        params: Params,
        serial: int,
    ) -> None:
        """One request's task: run its handler, write its answer."""
        CURRENT_REQUEST_ID.set(request_id)
        try:
            try:
                result = await handler(params)
            except Exception as exc:
                line = self.answer(request_id, method, None, exc)
            else:
                line = self.answer(request_id, method, result, None)
            out = self._out
            try:
                out.put(line)
                if not out.holding and out.unsent():
                    await out.drain()
            except ConnectionClosedError:
                self._log.debug("could not answer %s: stream closed", method)
        finally:
            del self._tasks[serial]

    async def _answer_batch(
        self, requests: list[Request], answers: list[bytes], serial: int
    ) -> None:
        try:
            answers.extend(await asyncio.gather(*(self._run(r) for r in requests)))
            self._send_batch(answers)
        finally:
            del self._tasks[serial]

    async def _run(self, request: Request) -> bytes:
        """One request of a batch, inline or not, answered by `answer`."""
        method, params = request.method, request.params
        try:
            inline = self._inline.get(method)
            if inline is not None:
                result = inline(params)
            else:
                handler = self._requests.get(method)
                if handler is None:
                    raise not_found(method)
                CURRENT_REQUEST_ID.set(request.id)
                result = await handler(params)
        except Exception as exc:
            return self.answer(request.id, method, None, exc)
        return self.answer(request.id, method, result, None)

    def _send_batch(self, answers: list[bytes]) -> None:
        self.reply(batch_line(answers, self.line_limit, self._log))


async def _guarded(outcome: Awaitable[Any], logger: logging.Logger, method: str) -> None:
    try:
        await outcome
    except Exception:
        logger.exception("notification handler for %s failed", method)
