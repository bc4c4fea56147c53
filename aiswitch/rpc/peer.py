"""One JSON-RPC 2.0 peer over a line-framed byte stream, used by both sides.

Contract:
- `request()` correlates replies by id, with a per-request timeout; a reply that comes
  after its request timed out (or with an id nobody asked for) is logged and skipped.
- A pydantic model given as params (or returned as a result) goes out as its JSON form,
  written by pydantic (`answers.model_json`: a float that is not finite is null there).
- `notify()` sends a notification. What the other side sends is served by the handlers
  registered with `on_request`, `on_request_inline` and `on_notification` (serving.py
  says how: a task per request, inline ones answered where read, one answer path).
  Notification handlers run in arrival order, as the line is read; one that returns an
  awaitable holds everything read after it (notifications, replies, requests) until
  that awaitable is done, and reading pauses meanwhile.
- The reader survives invalid JSON, wrong shapes, unknown ids and late replies. Every
  message is checked by one function, `messages.classify`. Batches are handled as the
  spec says: each request answered, the answers sent as one array, notifications
  unanswered, an empty batch answered with a single -32600.
- A line longer than `line_limit` is discarded in bounded memory: no more than the limit
  is ever held (`framing.LineFramer`). As soon as the limit is passed, if the line's
  first bytes carry the id of a pending request, that request fails with
  `MessageTooLargeError` instead of waiting for its timeout (a request that is too large
  is answered -32007). Outgoing messages over `line_limit` are refused before they are
  written.
- EOF, or a write to a closed stream, fails every pending request at once with
  `ConnectionClosedError`, and sets `closed`.

How it is built: five objects that own their state, composed here. `LineFramer`
(framing.py) turns bytes into bounded lines; `PendingCalls` (pending.py) owns the
pending table, the ids and the deadline timers; `Outbox` (outbox.py) owns the lines held
for one write and the transport's flow control; `Serving` (serving.py) owns the
handlers, their tasks and their answers; `InputHold` (holding.py) owns what is read
while something must finish first, and the input's pause. The peer dispatches lines to
handlers and futures.

How it reads: there is no reader task. A public asyncio protocol feeds the peer's input
side: `data_received`, `eof_received`, `connection_lost` (an `asyncio.Protocol` on a
read pipe, see `aiswitch.rpc.stdio`; an `asyncio.SubprocessProtocol` on a child's
stdout, see `aiswitch.rpc.child`), and `reading_from(transport)` names the transport to
pause. Each line is dispatched in that callback: a reply resolves its future there, a
request starts its handler task there, so a message costs one event-loop turn, as a
bare line echo does. Until `start()`, reading is paused and what arrived is kept, in
order, for `start()`; the transport's public `pause_reading()`/`resume_reading()` is
the only flow control on input.

How it writes: through the `Outbox` (write batching; see its contract) to an
`asyncio.WriteTransport`; the protocol that owns that transport forwards
`pause_writing`/`resume_writing` and the output's `connection_lost` (`output_lost`).
Answers to requests read in the same turn join one write. `drain()` is awaited only
when the transport holds unsent data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, cast

from aiswitch.rpc import codes, messages
from aiswitch.rpc.answers import (
    id_json,
    model_json,
    plain,
    too_large,
    too_large_answer,
)
from aiswitch.rpc.errors import (
    ConnectionClosedError,
    MessageTooLargeError,
    ProtocolError,
    RemoteError,
)
from aiswitch.rpc.framing import HEAD_BYTES, LineFramer, Oversized
from aiswitch.rpc.holding import InputHold, ReadControl
from aiswitch.rpc.messages import (
    DECODE_ERRORS,
    ErrorResponse,
    Invalid,
    Notification,
    Params,
    Request,
    Response,
    classify,
    error_payload,
    notification_payload,
)
from aiswitch.rpc.outbox import Outbox, OutputTransport
from aiswitch.rpc.pending import Convert, PendingCalls, RequestId
from aiswitch.rpc.serving import (
    InlineHandler,
    NotificationHandler,
    RequestHandler,
    Serving,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

# A task result or a prompt can be large (a whole file), but a line with no newline
# must not grow without bound.
LINE_LIMIT = 16 * 1024 * 1024
# Long enough for any control request; task.assign passes its own (the task timeout).
DEFAULT_REQUEST_TIMEOUT = 30.0
_ID_PATTERN = re.compile(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")')
# Garbage is logged, but only this much of it: it may be large, and may be anything.
_LOG_EXCERPT = 200

log = logging.getLogger("aiswitch.rpc")
# Marks the end of input in the held-back queue (see `_hold_behind`).
_EOF = object()


class Peer:
    """A JSON-RPC 2.0 endpoint writing to `output`, fed by its input protocol."""

    def __init__(
        self,
        output: OutputTransport,
        *,
        name: str = "peer",
        line_limit: int = LINE_LIMIT,
        fast_json: bool = True,
    ) -> None:
        """`fast_json`: switch this process to orjson at `start()` (`messages.use_orjson`);
        an adapter passes False and switches after its handshake, to start faster."""
        self.name = name
        self.line_limit = line_limit
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.skipped_lines = 0
        self._shut_down = False  # closed.is_set(), without a call on the hot path
        self._fast_json = fast_json
        self._log = log.getChild(name)
        self._calls = PendingCalls()
        self._out = Outbox(output, name=name, on_lost=self._output_broken, log=self._log)
        self._framer = LineFramer(line_limit)
        # Method names as JSON, for the requests this side sends.
        self._methods: dict[str, bytes] = {}
        self._serving = Serving(self._out, line_limit=line_limit, log=self._log)
        # Reading.
        self._started = False
        self._reading = True  # until end of input or close()
        self._feeding = False
        self._reentered: deque[bytes] = deque()
        # What is read until start(), or behind a handler's awaitable (holding.py).
        self._hold = InputHold(self._handle, self._join_answers, self._log)

    # -- registration -------------------------------------------------------------

    def on_request(self, method: str, handler: RequestHandler) -> None:
        self._serving.on_request(method, handler)

    def on_request_inline(self, method: str, handler: InlineHandler) -> None:
        """A synchronous handler, answered as its request is read (it must not block)."""
        self._serving.on_request_inline(method, handler)

    def on_notification(self, method: str, handler: NotificationHandler) -> None:
        self._serving.on_notification(method, handler)

    # -- lifetime -----------------------------------------------------------------

    def start(self) -> None:
        """Start reading: handle what arrived before, then each line as it arrives."""
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        self._serving.bind(loop)
        self._hold.bind(loop)
        if self._fast_json:
            messages.use_orjson()
        if self._hold.task is None:
            self._hold.release()

    async def close(self, reason: str = "closed") -> None:
        """Stop reading, cancel running handlers, fail pending requests, close output."""
        self._shut(reason)
        self._stop_reading()
        held = [] if self._hold.task is None else [self._hold.task]
        tasks = held + self._serving.running()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._out.close()

    def close_output(self) -> None:
        """Write what is held and close the output (EOF for the other side); replies
        to requests already sent are still read. Later sends fail."""
        self._out.close()

    async def wait_closed(self) -> None:
        await self.closed.wait()

    def _shut(self, reason: str) -> None:
        if self._shut_down:
            return
        self.close_reason = reason
        self._shut_down = True
        self.closed.set()
        name = self.name
        self._calls.fail_all(
            lambda method: ConnectionClosedError(f"{name}: {reason} before replying to {method}")
        )

    def _output_broken(self) -> None:
        self._shut("output stream closed")

    def _stop_reading(self) -> None:
        """Read no more: what arrives later is dropped, the transport is not held up."""
        self._reading = False
        self._framer.reset()
        self._reentered.clear()
        self._hold.stop()

    # -- the input side: called by the protocol that reads the transport -------------

    def reading_from(self, transport: ReadControl) -> None:
        """The input transport, paused while the peer holds input back (and until start)."""
        self._hold.reading_from(transport, self._reading)

    def data_received(self, data: bytes) -> None:
        """Split and dispatch; never raises into the transport."""
        if not self._reading or not data:
            return
        if type(data) is not bytes:
            data = bytes(data)
        if self._feeding:
            # Written to by our own handler through an in-memory pipe: after this chunk.
            self._reentered.append(data)
            return
        self._feeding = True
        try:
            self._take(data)
            while self._reentered and self._reading:
                self._take(self._reentered.popleft())
        except Exception:
            self._log.exception("failed to process input")
        finally:
            self._feeding = False
        self._join_answers()

    def _join_answers(self) -> None:
        """Handler tasks started in this turn run in the next: their answers join one
        write (the outbox holds from now to the turn's end)."""
        serving = self._serving
        if serving.answers_due:
            serving.answers_due = False
            self._out.hold()

    def eof_received(self) -> None:
        """End of input: the last partial line is a line, then pending requests fail."""
        if not self._reading:
            return
        self._reading = False
        tail = self._framer.end()
        if tail:
            held = self._hold.queue
            if held is not None:
                held.append(tail)
            else:
                self._handle(tail)
        self._input_ended(_EOF)

    def connection_lost(self, exc: BaseException | None) -> None:
        """The input transport is gone: after EOF (exc None), or broken."""
        if exc is None:
            self.eof_received()
        elif self._reading:
            self._reading = False
            self._framer.reset()
            self._input_ended(f"input stream failed ({exc.__class__.__name__})")

    # -- the output side's flow control: called by the protocol that owns it ----------

    def pause_writing(self) -> None:
        self._out.pause_writing()

    def resume_writing(self) -> None:
        self._out.resume_writing()

    def output_lost(self, exc: BaseException | None) -> None:
        self._out.connection_lost(exc)

    # -- sending ------------------------------------------------------------------

    async def request(
        self,
        method: str,
        params: Params | BaseModel = None,
        *,
        timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
    ) -> Any:
        """Send a request and wait for its result; raise a typed `RpcError` otherwise.

        `params` may be a pydantic model (sent as its JSON form). The timeout runs from
        when the request has been handed to the transport."""
        request_id, future = self._issue(method, params, timeout)
        try:
            if self._out.unsent():
                # The deadline runs from when the transport took the request.
                self._calls.suspend_deadline(request_id)
                await self._drain()
                if timeout is not None:
                    self._calls.restart_deadline(request_id, timeout)
            return await future
        finally:
            # Normally the reply took the entry already; not when cancelled or failed.
            self._calls.forget(request_id)

    def send_request(
        self,
        method: str,
        params: Params | BaseModel = None,
        *,
        timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        convert: Convert | None = None,
    ) -> asyncio.Future[Any]:
        """Send a request now and return the future of its result (or typed `RpcError`);
        with `convert`, of `convert(result)` (or what it raises), made as the reply is read.

        For many requests in flight at once, without a task each: send them, then
        `await asyncio.gather(*futures)`. It does not wait for the transport to drain
        (`await drain()` does). Cancelling the future abandons the request; its entry
        goes when its reply, its deadline or the end of the stream comes."""
        return self._issue(method, params, timeout, convert)[1]

    async def drain(self) -> None:
        """Wait until the transport has room (flow control for `send_request`)."""
        if self._out.unsent():
            await self._drain()

    async def notify(
        self, method: str, params: Params | BaseModel = None, *, hold: bool = False
    ) -> None:
        """Send a notification; `params` may be a pydantic model. `hold`: hold it for this
        loop turn's one write, with what is put after it in the same turn (a task's usage,
        then its answer: one write, not two), out at the turn's end at the latest."""
        body = None if params is None or type(params) is dict else model_json(params)
        if body is not None:
            data = b'{"jsonrpc":"2.0","method":%s,"params":%s}\n' % (
                self._method_json(method),
                body,
            )
        else:
            data = messages.dumps(notification_payload(method, plain(params)))
        if len(data) > self.line_limit:
            raise self._too_large(data)
        if hold:
            self._out.hold()
        self._out.put(data)
        if self._out.unsent():
            await self._drain()

    async def _write(self, data: bytes) -> None:
        """Write raw bytes, in order with the messages (test adapters send garbage)."""
        self._out.put(data)
        await self._drain()

    def _issue(
        self,
        method: str,
        params: Params | BaseModel,
        timeout: float | None,
        convert: Convert | None = None,
    ) -> tuple[RequestId, asyncio.Future[Any]]:
        """Register and write one request, and start its deadline; raise before writing
        anything if it cannot go."""
        if self._shut_down:
            raise ConnectionClosedError(f"{self.name}: {self.close_reason}; cannot send {method}")
        request_id = self._calls.new_id()
        body = None if params is None or type(params) is dict else model_json(params)
        if body is not None:
            data = b'{"jsonrpc":"2.0","id":%d,"method":%s,"params":%s}\n' % (
                request_id,
                self._method_json(method),
                body,
            )
        else:
            payload: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
            if params is not None:
                payload["params"] = plain(params)
            data = messages.dumps(payload)
        if len(data) > self.line_limit:
            raise self._too_large(data)
        # Registered before the write: an in-memory peer may answer within it.
        future = self._calls.add(request_id, method, timeout, convert)
        try:
            self._out.put(data)
        except BaseException:
            self._calls.forget(request_id)
            # A broken pipe has failed every pending call, this one too: the caller gets
            # the error raised, never this future (else "exception never retrieved").
            if future.done() and not future.cancelled():
                future.exception()
            future.cancel()
            raise
        return request_id, future

    def _method_json(self, method: str) -> bytes:
        text = self._methods.get(method)
        if text is None:
            text = self._methods[method] = id_json(method)
        return text

    async def _drain(self) -> None:
        await self._out.drain()

    def _too_large(self, data: bytes) -> MessageTooLargeError:
        return too_large(data, self.line_limit, self.name)

    # -- reading: lines to messages -----------------------------------------------

    def _take(self, data: bytes) -> None:
        """Dispatch the lines that `data` completes (or hold them back)."""
        hold = self._hold
        for line in self._framer.feed(data):
            if hold.queue is not None:
                hold.queue.append(line)
            elif type(line) is bytes:
                try:
                    follow_up = self._dispatch(line)
                except Exception:
                    # A bug, not bad input (that is answered): the next line still counts.
                    self._log.exception("failed to handle a line")
                    follow_up = None
                if follow_up is not None:
                    hold.behind(follow_up)
            else:
                self._discard_oversized(cast(Oversized, line).head)

    def _handle(self, item: object) -> Awaitable[Any] | None:
        """One held-back item: a line, an oversized line, or the end of input."""
        if type(item) is bytes:
            try:
                return self._dispatch(item)
            except Exception:
                self._log.exception("failed to handle a line")
                return None
        if isinstance(item, Oversized):
            self._discard_oversized(item.head)
        else:
            self._shut("end of stream" if item is _EOF else str(item))
        return None

    def _input_ended(self, end: object) -> None:
        """End of input (`_EOF`, or the reason it failed), after anything held back."""
        held = self._hold.queue
        if held is not None:
            held.append(end)
        else:
            self._shut("end of stream" if end is _EOF else str(end))

    def _dispatch(self, line: bytes) -> Awaitable[Any] | None:
        """Handle one line now; return what must finish before the next line is handled
        (a notification handler's awaitable, or a batch)."""
        try:
            obj = messages.loads(line)
        except DECODE_ERRORS:
            if line.strip():
                self._invalid(Invalid(codes.PARSE_ERROR, "not valid JSON"), line)
            return None  # a blank line is no message
        if type(obj) is list:
            if not obj:
                self._invalid(Invalid(codes.INVALID_REQUEST, "empty batch"), line)
                return None
            return self._handle_batch([classify(item) for item in obj], line)
        message = classify(obj)
        if type(message) is Response:
            if not self._calls.resolve(message.id, message.result):
                self._unknown_reply(message.id)
        elif type(message) is Request:
            self._serving.requested(message.id, message.method, message.params)
        elif type(message) is Notification:
            return self._serving.notified(message.method, message.params)
        elif type(message) is ErrorResponse:
            self._failed(message)
        elif type(message) is Invalid:
            self._invalid(message, line)
        return None

    def _invalid(self, message: Invalid, line: bytes) -> None:
        reply = self._skip_invalid(message, line)
        if reply is not None:
            self._serving.reply(messages.dumps(reply))

    def _skip_invalid(self, message: Invalid, line: bytes) -> dict[str, Any] | None:
        """Log and count an unreadable message; return the error to answer, if any."""
        self.skipped_lines += 1
        self._log.warning("skipped a line: %s: %r", message.reason, line[:_LOG_EXCERPT])
        if message.response and message.id is not None:
            name, reason = self.name, message.reason
            self._calls.fail(
                message.id,
                lambda method: ProtocolError(
                    f"{name} sent an invalid reply ({reason}) to {method}"
                ),
            )
        if message.answerable:
            return error_payload(
                message.id, message.code, codes.STANDARD_MESSAGES[message.code], message.reason
            )
        return None

    def _failed(self, reply: ErrorResponse) -> None:
        err = reply.error
        if reply.id is None or not self._calls.fail(
            reply.id, lambda _method: RemoteError(err.code, err.message, err.data)
        ):
            self._unknown_reply(reply.id)

    def _unknown_reply(self, request_id: RequestId | None) -> None:
        self.skipped_lines += 1
        self._log.warning("skipped a reply with unknown or expired id %r", request_id)

    def _discard_oversized(self, head: bytes) -> None:
        self.skipped_lines += 1
        self._log.warning(
            "discarded a line over the %d-byte limit (starts %r)",
            self.line_limit,
            head[:_LOG_EXCERPT],
        )
        match = _ID_PATTERN.search(head[:HEAD_BYTES])
        if match is None:
            return
        raw = match.group(1)
        request_id: RequestId = int(raw) if raw[:1] != b'"' else raw[1:-1].decode(errors="replace")
        name, limit = self.name, self.line_limit
        failed = self._calls.fail(
            request_id,
            lambda method: MessageTooLargeError(
                f"{name}: reply to {method} exceeded the {limit}-byte limit"
            ),
        )
        if not failed and b'"method"' in head:
            self._serving.reply(too_large_answer(request_id))

    # -- batches -------------------------------------------------------------------

    async def _handle_batch(self, items: list[Any], line: bytes) -> None:
        # Notifications and replies are handled now, in order; requests run
        # concurrently in one task whose answers go back as a single array.
        immediate: list[bytes] = []
        requests: list[Request] = []
        for item in items:
            if isinstance(item, Request):
                requests.append(item)
            elif isinstance(item, Notification):
                outcome = self._serving.notified(item.method, item.params)
                if outcome is not None:
                    await outcome
            elif isinstance(item, Response):
                if not self._calls.resolve(item.id, item.result):
                    self._unknown_reply(item.id)
            elif isinstance(item, ErrorResponse):
                self._failed(item)
            else:
                reply = self._skip_invalid(item, line)
                if reply is not None:
                    immediate.append(messages.dumps(reply))
        self._serving.batch(requests, immediate)
