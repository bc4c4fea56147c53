"""One JSON-RPC 2.0 peer over a pair of asyncio byte streams, used by both sides.

Contract:
- `request()` correlates replies by id, with a per-request timeout; a reply that comes
  after its request timed out (or with an id nobody asked for) is logged and skipped.
- `notify()` sends a notification; handlers registered with `on_notification` run in
  arrival order, inline as the line is read (so progress events keep their order).
  A handler that returns an awaitable holds everything read after it (notifications,
  replies, requests) until that awaitable is done, and reading pauses meanwhile.
- Requests are answered by handlers registered with `on_request`, each in its own task
  (a long `task.assign` never blocks `task.status`). A synchronous handler registered
  with `on_request_inline` (status queries, environment changes: work that never
  waits) is run and answered right where its request is read, with no task. A
  handler's exception becomes a wire error in exactly one place, `_answer_failure`:
  `MethodError` keeps its code and message, a pydantic `ValidationError` becomes
  -32602 naming only the fields, anything else becomes -32603 with no detail. No
  traceback or value ever goes on the wire. A result that cannot be encoded is
  answered -32603 too.
- The reader survives invalid JSON, wrong shapes, unknown ids and late replies. Batches
  are handled as the spec says: each request answered, the answers sent as one array,
  notifications unanswered, an empty batch answered with a single -32600.
- A line longer than the line limit (the smaller of `line_limit` and the reader's own
  `limit`) is discarded in bounded memory: no more than the limit is ever held. As soon
  as the limit is passed, if the line's first bytes carry the id of a pending request,
  that request fails with `MessageTooLargeError` instead of waiting for its timeout (a
  request that is too large is answered -32007). Outgoing messages over `line_limit` are
  refused before they are written.
- EOF, or a write to a closed stream, fails every pending request at once with
  `ConnectionClosedError`, and sets `closed`.

How it reads: `start()` takes the `StreamReader` over. The protocol that feeds it
(`StreamReaderProtocol`, the subprocess protocol, or a test pipe) calls `feed_data`,
`feed_eof` and `set_exception`; the peer answers those calls itself, splitting lines into
its own bounded buffer and dispatching each line at once, in the callback: a reply
resolves its future there, a request starts its handler task there. There is no reader
task, so a message costs one event-loop turn, as a bare line echo does. What the reader
had buffered before `start()` is taken over first; `close()` hands the reader back.

How it writes: a line is written to the transport at once, unless a write already went
out in this loop turn; then it is held with the lines written after it, and they go out
together at the start of the next turn, or as soon as `_JOIN_LINES` are held (so the
other process starts on them while this one writes the rest). Answers to requests read
in the same turn are held the same way. Pipelined traffic thus makes a write syscall
per chunk of lines, not per line; a lone message goes out at once. `drain()` is awaited
only when the transport holds unsent data.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import re
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, cast

from aiswitch.rpc import codes, messages
from aiswitch.rpc.errors import (
    ConnectionClosedError,
    MessageTooLargeError,
    MethodError,
    ProtocolError,
    RemoteError,
    RequestTimeoutError,
)
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
    result_payload,
)

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

# A task result or a prompt can be large (a whole file), but a line with no newline
# must not grow without bound.
LINE_LIMIT = 16 * 1024 * 1024
# Long enough for any control request; task.assign passes its own (the task timeout).
DEFAULT_REQUEST_TIMEOUT = 30.0
# How much of an oversized line is searched for its request id.
_ID_SNIFF_BYTES = 4096
_ID_PATTERN = re.compile(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")')
# Garbage is logged, but only this much of it: it may be large, and may be anything.
_LOG_EXCERPT = 200
# Lines held back for one write are written at once past this size, so the held bytes
# stay small and the transport's own flow control sees them ...
_JOIN_LIMIT = 256 * 1024
# ... and past this many lines, so that the other side can start on them while this
# side writes the rest (pipelined requests, or answers, overlap across the processes).
_JOIN_LINES = 16
# A deadline timer may fire this much early (the loop's clock granularity); a request
# that is due within it is expired then rather than by another timer.
_DEADLINE_SLACK_S = 0.001

RequestHandler = Callable[[Params], Awaitable[Any]]
InlineHandler = Callable[[Params], Any]
NotificationHandler = Callable[[Params], Awaitable[None] | None]

log = logging.getLogger("aiswitch.rpc")
# Tasks that must not be garbage-collected while they run.
_BACKGROUND: set[asyncio.Task[None]] = set()
# Marks the end of input in the held-back queue (see `_hold`).
_EOF = object()
# The StreamReader methods its protocol calls, which the peer answers while it reads.
_READER_HOOKS = ("feed_data", "feed_eof", "set_exception")


class LineWriter(Protocol):
    """What the peer needs from its output stream (asyncio.StreamWriter fits)."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    def is_closing(self) -> bool: ...


# A pending request: its method (for messages), its future, its timeout (if any).
_Call = tuple[str, asyncio.Future[Any], float | None]


class _Oversized:
    """A line over the limit, as far as it matters: its first bytes."""

    __slots__ = ("head",)

    def __init__(self, head: bytes) -> None:
        self.head = head


class Peer:
    """A JSON-RPC 2.0 endpoint over `reader`/`writer`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: LineWriter,
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
        self._reader = reader
        self._writer = writer
        self._fast_json = fast_json
        # The reader's own limit bounds a line too (the streams are made with it).
        self._limit = min(line_limit, getattr(reader, "_limit", line_limit))
        transport = getattr(writer, "transport", None)
        self._unsent: Callable[[], int] | None = getattr(transport, "get_write_buffer_size", None)
        # A StreamWriter's is_closing() is its transport's, one call fewer per message.
        self._is_closing: Callable[[], bool] = (
            transport.is_closing
            if isinstance(writer, asyncio.StreamWriter) and transport is not None
            else writer.is_closing
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_id = 1
        self._pending: dict[int | str, _Call] = {}
        # Per timeout value, the requests waiting with it and their deadlines, in
        # deadline order (insertion order): one timer per value, not one per request.
        self._deadlines: dict[float, dict[int | str, float]] = {}
        self._timers: dict[float, asyncio.TimerHandle] = {}
        self._requests: dict[str, RequestHandler] = {}
        self._inline: dict[str, InlineHandler] = {}
        self._notifications: dict[str, NotificationHandler] = {}
        # Running handler tasks by serial number (close() cancels them).
        self._handler_tasks: dict[int, asyncio.Task[None]] = {}
        self._serial = 0
        self._new_task: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]] = (
            asyncio.ensure_future
        )
        self._log = log.getChild(name)
        # Reading.
        self._started = False
        self._hooked = False
        self._reading = False
        self._buf = bytearray()
        self._discarding = False
        self._feeding = False
        self._reentered: deque[bytes] = deque()
        self._answers_due = False
        self._held: deque[object] | None = None
        self._held_task: asyncio.Task[None] | None = None
        self._paused = False
        # Writing: lines held for one write at the next turn, or None when not holding.
        self._out: list[bytes] | None = None
        self._out_size = 0

    # -- registration -------------------------------------------------------------

    def on_request(self, method: str, handler: RequestHandler) -> None:
        self._inline.pop(method, None)
        self._requests[method] = handler

    def on_request_inline(self, method: str, handler: InlineHandler) -> None:
        """A synchronous handler, answered as its request is read (it must not block)."""
        self._requests.pop(method, None)
        self._inline[method] = handler
        self._requests[method] = _as_coroutine(handler)  # for batches, which run in a task

    def on_notification(self, method: str, handler: NotificationHandler) -> None:
        self._notifications[method] = handler

    # -- lifetime -----------------------------------------------------------------

    def start(self) -> None:
        """Start reading: take the reader over (see the module docstring)."""
        if self._started:
            return
        self._started = True
        loop = self._loop = asyncio.get_running_loop()
        if loop.get_task_factory() is None:
            # What loop.create_task does then, minus its wrapper (a task per request).
            self._new_task = functools.partial(asyncio.Task, loop=loop)
        else:
            self._new_task = loop.create_task
        if self._fast_json:
            messages.use_orjson()
        reader = self._reader
        # What arrived before start() is in the reader's buffer: take it first.
        buffered = getattr(reader, "_buffer", None)
        early = bytes(buffered) if buffered else b""
        if buffered:
            buffered.clear()
        if getattr(reader, "_paused", False):
            # Paused by the reader's own flow control: the peer holds no more than a line.
            vars(reader)["_paused"] = False
            transport = getattr(reader, "_transport", None)
            if transport is not None:
                transport.resume_reading()
        at_eof = getattr(reader, "_eof", False)
        failure = reader.exception()
        vars(reader).update(
            feed_data=self._data_received,
            feed_eof=self._eof_received,
            set_exception=self._stream_failed,
        )
        self._hooked = self._reading = True
        if early:
            self._data_received(early)
        if failure is not None:
            self._stream_failed(failure)
        elif at_eof:
            self._eof_received()

    async def close(self, reason: str = "closed") -> None:
        """Stop reading, cancel running handlers, fail pending requests, close output."""
        self._shut(reason)
        self._stop_reading()
        tasks = [t for t in (self._held_task, *self._handler_tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._flush()
        if not self._writer.is_closing():
            self._writer.close()

    async def wait_closed(self) -> None:
        await self.closed.wait()

    def _shut(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self._shut_down = True
        self.closed.set()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._deadlines.clear()
        pending, self._pending = self._pending, {}
        for method, future, _timeout in pending.values():
            if not future.done():
                future.set_exception(
                    ConnectionClosedError(f"{self.name}: {reason} before replying to {method}")
                )

    def _stop_reading(self) -> None:
        """Hand the reader back: later input waits in its buffer, under its limit."""
        self._reading = False
        if self._hooked:
            self._hooked = False
            for hook in _READER_HOOKS:
                vars(self._reader).pop(hook, None)
        self._buf = bytearray()
        self._held = None
        self._resume_transport()

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
            if self._unsent is None or self._unsent():
                # The deadline runs from when the transport took the request.
                self._take_deadline(request_id)
                await self._drain()
                if timeout is not None:
                    self._add_deadline(request_id, timeout)
            return await future
        finally:
            # Normally the reply took the entry already; not when cancelled or failed.
            self._take(request_id)

    def send_request(
        self,
        method: str,
        params: Params | BaseModel = None,
        *,
        timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
    ) -> asyncio.Future[Any]:
        """Send a request now and return the future of its result (or typed `RpcError`).

        For many requests in flight at once, without a task each: send them, then
        `await asyncio.gather(*futures)`. It does not wait for the transport to drain
        (`await drain()` does). Cancelling the future abandons the request; its entry
        goes when its reply, its deadline or the end of the stream comes."""
        return self._issue(method, params, timeout)[1]

    async def drain(self) -> None:
        """Wait until the transport has room (flow control for `send_request`)."""
        if self._unsent is None or self._unsent():
            await self._drain()

    def _issue(
        self, method: str, params: Params | BaseModel, timeout: float | None
    ) -> tuple[int, asyncio.Future[Any]]:
        """Register and write one request, and start its deadline; raise before writing
        anything if it cannot go."""
        if self._shut_down:
            raise ConnectionClosedError(f"{self.name}: {self.close_reason}; cannot send {method}")
        request_id = self._next_id
        self._next_id = request_id + 1
        payload: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            payload["params"] = _plain(params)
        data = messages.dumps(payload)
        if len(data) > self.line_limit:
            raise self._too_large(data)
        loop = self._loop or asyncio.get_running_loop()
        future = loop.create_future()
        # Registered before the write: an in-memory peer may answer within it.
        self._pending[request_id] = (method, future, timeout)
        if timeout is not None:
            deadline = loop.time() + timeout
            waiting = self._deadlines.get(timeout)
            if waiting is None:
                waiting = self._deadlines[timeout] = {}
            waiting[request_id] = deadline
            if timeout not in self._timers:
                self._timers[timeout] = loop.call_at(deadline, self._expire, timeout)
        try:
            self._put(data)
        except BaseException:
            self._take(request_id)
            raise
        return request_id, future

    def _take_deadline(self, request_id: int | str) -> None:
        entry = self._pending.get(request_id)
        if entry is not None and entry[2] is not None:
            waiting = self._deadlines.get(entry[2])
            if waiting is not None:
                waiting.pop(request_id, None)
            self._pending[request_id] = (entry[0], entry[1], None)

    def _take(self, request_id: int | str) -> _Call | None:
        """Forget a request (and its deadline); return its entry if it was pending."""
        entry = self._pending.pop(request_id, None)
        if entry is not None and entry[2] is not None:
            waiting = self._deadlines.get(entry[2])
            if waiting is not None:
                waiting.pop(request_id, None)
        return entry

    async def notify(self, method: str, params: Params | BaseModel = None) -> None:
        """Send a notification; `params` may be a pydantic model."""
        await self._send(notification_payload(method, _plain(params)))

    async def _send(self, payload: Any) -> None:
        data = messages.dumps(payload)
        if len(data) > self.line_limit:
            raise self._too_large(data)
        self._put(data)
        if self._unsent is None or self._unsent():
            await self._drain()

    async def _write(self, data: bytes) -> None:
        """Write raw bytes, in order with the messages (test adapters send garbage)."""
        self._put(data)
        await self._drain()

    def _too_large(self, data: bytes) -> MessageTooLargeError:
        return MessageTooLargeError(
            f"{self.name}: message of {len(data)} bytes exceeds the "
            f"{self.line_limit}-byte line limit"
        )

    def _put(self, data: bytes) -> None:
        """Write now, or hold the line for this turn's one write (module docstring)."""
        out = self._out
        if out is not None:
            if self._is_closing():
                raise ConnectionClosedError(f"{self.name}: output stream is closed")
            out.append(data)
            self._out_size += len(data)
            if len(out) >= _JOIN_LINES or self._out_size > _JOIN_LIMIT:
                self._write_held(out)
            return
        self._write_now(data)
        # Whatever else is written in this turn joins one write at the next.
        self._hold_writes()

    def _hold_writes(self) -> None:
        if self._out is None:
            self._out = []
            (self._loop or asyncio.get_running_loop()).call_soon(self._flush)

    def _flush(self) -> None:
        """Write what is held, and stop holding (the turn is over)."""
        out = self._out
        self._out = None
        if out:
            self._write_held(out)

    def _write_held(self, out: list[bytes]) -> None:
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._out_size = 0
        try:
            self._write_now(data)
        except ConnectionClosedError:
            # Held requests can no longer go out: fail them (and the rest) now rather
            # than at their deadlines.
            self._shut("output stream closed")
            self._log.debug("could not send: stream closed")

    def _write_now(self, data: bytes) -> None:
        if self._is_closing():
            raise ConnectionClosedError(f"{self.name}: output stream is closed")
        try:
            self._writer.write(data)
        except (ConnectionError, OSError, RuntimeError) as exc:
            self._shut("output stream closed")
            raise ConnectionClosedError(f"{self.name}: output stream closed") from exc
        # A transport whose pipe broke drops the data and says so only by closing.
        if self._is_closing():
            self._shut("output stream closed")
            raise ConnectionClosedError(f"{self.name}: output stream closed")

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, OSError, RuntimeError) as exc:
            self._shut("output stream closed")
            raise ConnectionClosedError(f"{self.name}: output stream closed") from exc

    def _add_deadline(self, request_id: int | str, timeout: float) -> None:
        entry = self._pending.get(request_id)
        if entry is None:
            return  # answered already (an in-memory peer answers within the write)
        self._pending[request_id] = (entry[0], entry[1], timeout)
        loop = self._loop or asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiting = self._deadlines.get(timeout)
        if waiting is None:
            waiting = self._deadlines[timeout] = {}
        waiting[request_id] = deadline
        if timeout not in self._timers:
            self._timers[timeout] = loop.call_at(deadline, self._expire, timeout)

    def _expire(self, timeout: float) -> None:
        """Fail the requests with this timeout that are due; wait for the next one."""
        loop = self._loop or asyncio.get_running_loop()
        self._timers.pop(timeout, None)
        waiting = self._deadlines.get(timeout)
        if not waiting:
            self._deadlines.pop(timeout, None)
            return
        now = loop.time() + _DEADLINE_SLACK_S
        due: list[int | str] = []
        next_deadline = None
        for request_id, deadline in waiting.items():
            if deadline > now:
                next_deadline = deadline
                break
            due.append(request_id)
        for request_id in due:
            del waiting[request_id]
            entry = self._pending.pop(request_id, None)
            if entry is not None and not entry[1].done():
                entry[1].set_exception(RequestTimeoutError(entry[0], timeout))
        if next_deadline is None:
            self._deadlines.pop(timeout, None)
        else:
            self._timers[timeout] = loop.call_at(next_deadline, self._expire, timeout)

    # -- reading: bytes to lines --------------------------------------------------

    def _data_received(self, data: bytes) -> None:
        """The reader's `feed_data`: split and dispatch, never raise into the transport."""
        if not self._reading or not data:
            return
        if type(data) is not bytes:
            data = bytes(data)  # lines are bytes (the held-back queue tells them apart so)
        if self._feeding:
            # Written to by our own handler through an in-memory pipe: after this chunk.
            self._reentered.append(bytes(data))
            return
        self._feeding = True
        try:
            self._split(data)
            while self._reentered and self._reading:
                self._split(self._reentered.popleft())
        except Exception:
            self._log.exception("failed to process input")
        finally:
            self._feeding = False
        if self._answers_due:
            self._answers_due = False
            # Handler tasks started now run next turn: their answers join one write.
            self._hold_writes()

    def _split(self, data: bytes) -> None:
        limit = self._limit
        start = 0
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return
            self._discarding = False
            start = newline + 1
        elif self._buf:
            buf = self._buf
            newline = data.find(b"\n")
            if newline < 0:
                if len(buf) + len(data) > limit:
                    self._oversized(bytes(buf[:_ID_SNIFF_BYTES]) + data[:_ID_SNIFF_BYTES])
                    self._buf = bytearray()
                    self._discarding = True
                else:
                    buf += data
                return
            if len(buf) + newline > limit:
                self._oversized(bytes(buf[:_ID_SNIFF_BYTES]) + data[:_ID_SNIFF_BYTES])
            else:
                buf += data[:newline]
                self._line(bytes(buf))
            self._buf = bytearray()
            start = newline + 1
        end = len(data)
        find = data.find
        while start < end:
            newline = find(b"\n", start)
            if newline < 0:
                if end - start > limit:
                    self._oversized(data[start : start + _ID_SNIFF_BYTES])
                    self._discarding = True
                else:
                    self._buf += data[start:]
                return
            if newline - start > limit:
                self._oversized(data[start : start + _ID_SNIFF_BYTES])
            elif self._held is None:
                try:
                    follow_up = self._dispatch(data[start:newline])
                except Exception:
                    # A bug, not bad input (that is answered): the next line still counts.
                    self._log.exception("failed to handle a line")
                    follow_up = None
                if follow_up is not None:
                    self._hold_behind(follow_up)
            else:
                self._held.append(data[start:newline])
            start = newline + 1

    def _eof_received(self) -> None:
        """The reader's `feed_eof`: the last partial line is a line, then fail pending."""
        if not self._reading:
            return
        self._reading = False
        asyncio.StreamReader.feed_eof(self._reader)
        tail = self._buf
        self._buf = bytearray()
        if tail and not self._discarding:
            self._line(bytes(tail))
        self._input_ended(_EOF)

    def _stream_failed(self, exc: Exception) -> None:
        """The reader's `set_exception`: the input broke (not a clean EOF)."""
        asyncio.StreamReader.set_exception(self._reader, exc)
        if self._reading:
            self._reading = False
            self._input_ended(f"input stream failed ({exc.__class__.__name__})")

    # -- reading: lines to messages -----------------------------------------------

    def _line(self, line: bytes) -> None:
        if self._held is not None:
            self._held.append(line)
            return
        follow_up = self._dispatch_safely(line)
        if follow_up is not None:
            self._hold_behind(follow_up)

    def _dispatch_safely(self, line: bytes) -> Awaitable[Any] | None:
        try:
            return self._dispatch(line)
        except Exception:
            # A bug, not bad input (that is answered): the next line still counts.
            self._log.exception("failed to handle a line")
            return None

    def _oversized(self, head: bytes) -> None:
        if self._held is not None:
            self._held.append(_Oversized(head))
        else:
            self._discard_oversized(head)

    def _input_ended(self, end: object) -> None:
        """End of input (`_EOF`, or the reason it failed), after anything held back."""
        if self._held is not None:
            self._held.append(end)
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
        # The well-formed single messages, checked as `messages.classify` checks them.
        if type(obj) is dict and obj.get("jsonrpc") == "2.0":
            size = len(obj)
            method = obj.get("method")
            if type(method) is str:
                params = obj.get("params")
                if params is not None or "params" in obj:
                    size -= 1  # params: null, an object or an array
                    if not (params is None or type(params) is dict or type(params) is list):
                        size = 0
                if size == 3:
                    # Three keys besides params, two of them jsonrpc and method.
                    request_id = obj.get("id")
                    if type(request_id) is int or type(request_id) is str:
                        inline = self._inline.get(method)
                        if inline is not None:
                            self._answer_inline(inline, request_id, method, params)
                            return None
                        handler = self._requests.get(method)
                        if handler is None:
                            self._requested(request_id, method, params)
                            return None
                        serial = self._serial = self._serial + 1
                        self._handler_tasks[serial] = self._new_task(
                            self._serve(handler, request_id, method, params, serial)
                        )
                        self._answers_due = True
                        return None
                elif size == 2:
                    return self._notified(method, params)
            elif size == 3 and "result" in obj:
                request_id = obj.get("id")
                if type(request_id) is int or type(request_id) is str:
                    # `_resolve`, inlined: this is every reply's path.
                    entry = self._pending.pop(request_id, None)
                    if entry is None:
                        self._unknown_reply(request_id)
                        return None
                    _method, future, timeout = entry
                    if timeout is not None:
                        waiting = self._deadlines.get(timeout)
                        if waiting is not None:
                            waiting.pop(request_id, None)
                    if not future.done():
                        future.set_result(obj["result"])
                    return None
        if type(obj) is list:
            if not obj:
                self._invalid(Invalid(codes.INVALID_REQUEST, "empty batch"), line)
                return None
            return self._batch([classify(item) for item in obj], line)
        message = classify(obj)
        if isinstance(message, Request):
            self._requested(message.id, message.method, message.params)
        elif isinstance(message, Notification):
            return self._notified(message.method, message.params)
        elif isinstance(message, Response):
            self._resolve(message.id, message.result, None)
        elif isinstance(message, ErrorResponse):
            self._resolve(message.id, None, message)
        else:
            self._invalid(message, line)
        return None

    def _invalid(self, message: Invalid, line: bytes) -> None:
        reply = self._skip_invalid(message, line)
        if reply is not None:
            self._put_answer(self._encode(reply))

    def _skip_invalid(self, message: Invalid, line: bytes) -> dict[str, Any] | None:
        """Log and count an unreadable message; return the error to answer, if any."""
        self.skipped_lines += 1
        self._log.warning("skipped a line: %s: %r", message.reason, line[:_LOG_EXCERPT])
        if message.response and message.id is not None:
            self._fail_pending(message.id, f"sent an invalid reply ({message.reason})")
        if message.answerable:
            return error_payload(
                message.id, message.code, codes.STANDARD_MESSAGES[message.code], message.reason
            )
        return None

    def _resolve(
        self, request_id: int | str | None, result: Any, failure: ErrorResponse | None
    ) -> None:
        entry = self._take(request_id) if request_id is not None else None
        if entry is None:
            self._unknown_reply(request_id)
            return
        future = entry[1]
        if future.done():
            return
        if failure is None:
            future.set_result(result)
        else:
            err = failure.error
            future.set_exception(RemoteError(err.code, err.message, err.data))

    def _unknown_reply(self, request_id: int | str | None) -> None:
        self.skipped_lines += 1
        self._log.warning("skipped a reply with unknown or expired id %r", request_id)

    def _fail_pending(self, request_id: int | str, reason: str) -> None:
        entry = self._take(request_id)
        if entry is not None and not entry[1].done():
            entry[1].set_exception(ProtocolError(f"{self.name} {reason} to {entry[0]}"))

    def _notified(self, method: str, params: Params) -> Awaitable[Any] | None:
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

    def _requested(self, request_id: int | str, method: str, params: Params) -> None:
        inline = self._inline.get(method)
        if inline is not None:
            self._answer_inline(inline, request_id, method, params)
            return
        handler = self._requests.get(method)
        if handler is None:
            self._put_answer(self._encode(_method_not_found(request_id, method)))
            return
        serial = self._serial = self._serial + 1
        self._handler_tasks[serial] = self._new_task(
            self._serve(handler, request_id, method, params, serial)
        )
        self._answers_due = True

    def _discard_oversized(self, head: bytes) -> None:
        self.skipped_lines += 1
        self._log.warning(
            "discarded a line over the %d-byte limit (starts %r)",
            self._limit,
            head[:_LOG_EXCERPT],
        )
        match = _ID_PATTERN.search(head[:_ID_SNIFF_BYTES])
        if match is None:
            return
        raw = match.group(1)
        request_id: int | str = int(raw) if raw[:1] != b'"' else raw[1:-1].decode(errors="replace")
        entry = self._take(request_id)
        if entry is not None and not entry[1].done():
            entry[1].set_exception(
                MessageTooLargeError(
                    f"{self.name}: reply to {entry[0]} exceeded the {self._limit}-byte limit"
                )
            )
        elif entry is None and b'"method"' in head[:_ID_SNIFF_BYTES]:
            self._put_answer(
                self._encode(
                    error_payload(
                        request_id,
                        codes.MESSAGE_TOO_LARGE,
                        codes.DESCRIPTIONS[codes.MESSAGE_TOO_LARGE],
                    )
                )
            )

    # -- reading: what is held behind an awaitable --------------------------------

    def _hold_behind(self, first: Awaitable[Any]) -> None:
        """Hold what is read next until `first` is done, and stop reading meanwhile."""
        self._held = deque()
        self._pause_transport()
        loop = self._loop or asyncio.get_running_loop()
        self._held_task = loop.create_task(self._release(first))

    async def _release(self, first: Awaitable[Any]) -> None:
        waiting: Awaitable[Any] | None = first
        try:
            while waiting is not None:
                try:
                    await waiting
                except Exception:
                    self._log.exception("failed to process input")
                waiting = None
                held = self._held
                while held and waiting is None:
                    item = held.popleft()
                    if isinstance(item, bytes):
                        waiting = self._dispatch_safely(item)
                    elif isinstance(item, _Oversized):
                        self._discard_oversized(item.head)
                    else:
                        self._shut("end of stream" if item is _EOF else str(item))
        finally:
            self._held = None
            self._held_task = None
            self._resume_transport()
            if self._answers_due:
                self._answers_due = False
                self._hold_writes()

    def _pause_transport(self) -> None:
        transport = getattr(self._reader, "_transport", None)
        if transport is not None and not self._paused:
            self._paused = True
            transport.pause_reading()

    def _resume_transport(self) -> None:
        transport = getattr(self._reader, "_transport", None)
        if transport is not None and (self._paused or getattr(self._reader, "_paused", False)):
            self._paused = False
            transport.resume_reading()

    # -- answering ----------------------------------------------------------------

    async def _serve(
        self,
        handler: RequestHandler,
        request_id: int | str,
        method: str,
        params: Params,
        serial: int,
    ) -> None:
        """One request's task: run its handler, write its answer."""
        try:
            try:
                result = await handler(params)
                if type(result) not in _JSON_TYPES:
                    result = _plain(result)
            except Exception as exc:
                payload = self._answer_failure(exc, request_id, method)
            else:
                payload = {"jsonrpc": "2.0", "id": request_id, "result": result}
            try:
                self._put_payload(payload)
                if self._out is None and (self._unsent is None or self._unsent()):
                    await self._drain()
            except ConnectionClosedError:
                self._log.debug("could not answer %s: stream closed", method)
        finally:
            del self._handler_tasks[serial]

    async def _answer(
        self, handler: RequestHandler | None, request_id: int | str, method: str, params: Params
    ) -> dict[str, Any]:
        """Run the handler (for a batch); its answer, as `_serve` makes it."""
        if handler is None:
            return _method_not_found(request_id, method)
        try:
            result = _plain(await handler(params))
        except Exception as exc:
            return self._answer_failure(exc, request_id, method)
        return result_payload(request_id, result)

    def _answer_inline(
        self, handler: InlineHandler, request_id: int | str, method: str, params: Params
    ) -> None:
        try:
            result = handler(params)
            if type(result) not in _JSON_TYPES:
                result = _plain(result)
        except Exception as exc:
            payload = self._answer_failure(exc, request_id, method)
        else:
            payload = {"jsonrpc": "2.0", "id": request_id, "result": result}
        try:
            self._put_payload(payload)
        except ConnectionClosedError:
            self._log.debug("could not answer %s: stream closed", method)

    def _put_payload(self, payload: dict[str, Any]) -> None:
        """Write an answer: the common case directly, anything unusual (unencodable, over
        the limit) through `_encode`, which answers the error instead."""
        try:
            data = messages.dumps(payload)
        except (TypeError, ValueError, RecursionError):
            data = self._encode(payload)
        if len(data) > self.line_limit:
            data = self._encode(payload)
        self._put(data)

    def _answer_failure(self, exc: Exception, request_id: int | str, method: str) -> dict[str, Any]:
        """The one place where a handler's exception becomes a wire error."""
        if isinstance(exc, MethodError):
            return error_payload(request_id, exc.code, exc.message, exc.data)
        fields = _validation_fields(exc)
        if fields is not None:
            return error_payload(
                request_id,
                codes.INVALID_PARAMS,
                codes.STANDARD_MESSAGES[codes.INVALID_PARAMS],
                {"fields": fields},
            )
        self._log.exception("handler for %s failed", method)
        return _internal_error(request_id)

    def _encode(self, payload: dict[str, Any]) -> bytes:
        """An answer as a line: one that cannot be encoded, or is over the limit, is
        replaced by the error saying so."""
        request_id = payload.get("id")
        try:
            data = messages.dumps(payload)
        except (TypeError, ValueError, RecursionError):
            self._log.exception("could not encode the answer to request %r", request_id)
            return messages.dumps(_internal_error(request_id))
        if len(data) > self.line_limit:
            self._log.error("%s", self._too_large(data))
            return messages.dumps(
                error_payload(
                    request_id, codes.MESSAGE_TOO_LARGE, codes.DESCRIPTIONS[codes.MESSAGE_TOO_LARGE]
                )
            )
        return data

    def _put_answer(self, data: bytes) -> None:
        try:
            self._put(data)
        except ConnectionClosedError:
            self._log.debug("could not send: stream closed")

    def _batch(self, items: list[Any], line: bytes) -> Awaitable[None]:
        return self._handle_batch(items, line)

    async def _handle_batch(self, items: list[Any], line: bytes) -> None:
        # Notifications and replies are handled now, in order; requests run
        # concurrently in one task whose answers go back as a single array.
        immediate: list[bytes] = []
        requests: list[Request] = []
        for item in items:
            if isinstance(item, Request):
                requests.append(item)
            elif isinstance(item, Notification):
                outcome = self._notified(item.method, item.params)
                if outcome is not None:
                    await outcome
            elif isinstance(item, Response):
                self._resolve(item.id, item.result, None)
            elif isinstance(item, ErrorResponse):
                self._resolve(item.id, None, item)
            else:
                reply = self._skip_invalid(item, line)
                if reply is not None:
                    immediate.append(self._encode(reply))
        if requests:
            serial = self._serial = self._serial + 1
            self._handler_tasks[serial] = self._new_task(
                self._answer_batch(requests, immediate, serial)
            )
        elif immediate:
            self._send_batch(immediate)

    async def _answer_batch(
        self, requests: list[Request], answers: list[bytes], serial: int
    ) -> None:
        try:
            replies = await asyncio.gather(
                *(
                    self._answer(self._requests.get(r.method), r.id, r.method, r.params)
                    for r in requests
                )
            )
            answers.extend(self._encode(reply) for reply in replies)
            self._send_batch(answers)
        finally:
            del self._handler_tasks[serial]

    def _send_batch(self, answers: list[bytes]) -> None:
        data = b"[" + b",".join(answer[:-1] for answer in answers) + b"]\n"
        if len(data) > self.line_limit:
            self._log.error("%s", self._too_large(data))
            data = messages.dumps(
                error_payload(
                    None, codes.MESSAGE_TOO_LARGE, codes.DESCRIPTIONS[codes.MESSAGE_TOO_LARGE]
                )
            )
        self._put_answer(data)


async def _guarded(outcome: Awaitable[Any], logger: logging.Logger, method: str) -> None:
    try:
        await outcome
    except Exception:
        logger.exception("notification handler for %s failed", method)


def _method_not_found(request_id: int | str, method: str) -> dict[str, Any]:
    return error_payload(
        request_id,
        codes.METHOD_NOT_FOUND,
        codes.STANDARD_MESSAGES[codes.METHOD_NOT_FOUND],
        {"method": method},
    )


def _internal_error(request_id: int | str | None) -> dict[str, Any]:
    return error_payload(
        request_id, codes.INTERNAL_ERROR, codes.STANDARD_MESSAGES[codes.INTERNAL_ERROR]
    )


_JSON_TYPES = (dict, list, str, int, float, bool, type(None))


def _as_coroutine(handler: InlineHandler) -> RequestHandler:
    async def run(params: Params) -> Any:
        return handler(params)

    return run


def _plain(value: Any) -> Any:
    """Pydantic models go on the wire as their JSON form; everything else as given."""
    if type(value) in _JSON_TYPES:
        return value
    # No model exists unless pydantic is loaded; the peer never loads it itself.
    main = sys.modules.get("pydantic.main")
    if main is not None and isinstance(value, main.BaseModel):
        return value.model_dump(mode="json")
    return value


def _validation_fields(exc: Exception) -> list[str] | None:
    """The fields a pydantic `ValidationError` names (never its values), else None."""
    core = sys.modules.get("pydantic_core")  # none exists unless pydantic is loaded
    if core is None or not isinstance(exc, core.ValidationError):
        return None
    errors = cast("ValidationError", exc).errors()
    return sorted({".".join(str(p) for p in e["loc"]) or "params" for e in errors})


class _FileWriter:
    """A blocking writer for a stdout that is a regular file (asyncio pipes refuse it)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._closed = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self._closed = True

    def is_closing(self) -> bool:
        return self._closed


async def open_stdio(limit: int = LINE_LIMIT) -> tuple[asyncio.StreamReader, LineWriter]:
    """This process's stdin/stdout as asyncio streams (the child side of the protocol).

    Pipes and sockets get non-blocking transports; a regular file (`< tasks.jsonl`,
    `> out.jsonl`) is read in a thread or written directly.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    if _pollable(sys.stdin.fileno()):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    else:
        # A regular file or /dev/null: epoll refuses them, so read in a thread.
        feeder = loop.create_task(_feed_from_file(reader, sys.stdin.buffer))
        _BACKGROUND.add(feeder)
        feeder.add_done_callback(_BACKGROUND.discard)
    writer: LineWriter
    if _pollable(sys.stdout.fileno()):
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, sys.stdout
        )
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    else:
        writer = _FileWriter(sys.stdout.fileno())
    return reader, writer


def _pollable(fd: int) -> bool:
    import stat

    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)


async def _feed_from_file(reader: asyncio.StreamReader, raw: Any) -> None:
    while True:
        chunk = await asyncio.to_thread(raw.read1, 65536)
        if not chunk:
            reader.feed_eof()
            return
        reader.feed_data(chunk)
