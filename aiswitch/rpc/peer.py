"""One JSON-RPC 2.0 peer over a pair of asyncio byte streams, used by both sides.

Contract:
- `request()` correlates replies by id, with a per-request timeout; a reply that comes
  after its request timed out (or with an id nobody asked for) is logged and skipped.
- `notify()` sends a notification; handlers registered with `on_notification` run in
  arrival order, inline in the reader (so progress events keep their order).
- Requests are answered by handlers registered with `on_request`, each in its own task
  (a long `task.assign` never blocks `task.status`). A handler's exception becomes a wire
  error in exactly one place, `_answer`: `MethodError` keeps its code and message, a
  pydantic `ValidationError` becomes -32602 naming only the fields, anything else
  becomes -32603 with no detail. No traceback or value ever goes on the wire.
- The reader survives invalid JSON, wrong shapes, unknown ids and late replies. Batches
  are handled as the spec says: each request answered, the answers sent as one array,
  notifications unanswered, an empty batch answered with a single -32600.
- A line longer than the reader's limit is discarded in bounded memory; when its first
  bytes carry the id of a pending request, that request fails with
  `MessageTooLargeError` at once instead of waiting for its timeout. Outgoing messages
  over the limit are refused before they are written.
- EOF, or a write to a closed stream, fails every pending request at once with
  `ConnectionClosedError`, and sets `closed`.

The streams must be created with `limit=LINE_LIMIT` (see `open_stdio`, and the
supervisor's `create_subprocess_exec(limit=...)`): that limit is what bounds a line.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from aiswitch.rpc import codes
from aiswitch.rpc.errors import (
    ConnectionClosedError,
    MessageTooLargeError,
    MethodError,
    ProtocolError,
    RemoteError,
    RequestTimeoutError,
)
from aiswitch.rpc.messages import (
    ErrorResponse,
    Invalid,
    Notification,
    Params,
    Request,
    Response,
    decode_line,
    dumps,
    error_payload,
    notification_payload,
    request_payload,
    result_payload,
)

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

RequestHandler = Callable[[Params], Awaitable[Any]]
NotificationHandler = Callable[[Params], Awaitable[None] | None]

log = logging.getLogger("aiswitch.rpc")
# Tasks that must not be garbage-collected while they run.
_BACKGROUND: set[asyncio.Task[None]] = set()


class LineWriter(Protocol):
    """What the peer needs from its output stream (asyncio.StreamWriter fits)."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    def is_closing(self) -> bool: ...


class Peer:
    """A JSON-RPC 2.0 endpoint over `reader`/`writer`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: LineWriter,
        *,
        name: str = "peer",
        line_limit: int = LINE_LIMIT,
    ) -> None:
        self.name = name
        self.line_limit = line_limit
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.skipped_lines = 0
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int | str, tuple[str, asyncio.Future[Any]]] = {}
        self._requests: dict[str, RequestHandler] = {}
        self._notifications: dict[str, NotificationHandler] = {}
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._reader_task: asyncio.Task[None] | None = None
        self._log = log.getChild(name)

    # -- registration -------------------------------------------------------------

    def on_request(self, method: str, handler: RequestHandler) -> None:
        self._requests[method] = handler

    def on_notification(self, method: str, handler: NotificationHandler) -> None:
        self._notifications[method] = handler

    # -- lifetime -----------------------------------------------------------------

    def start(self) -> None:
        if self._reader_task is None:
            self._reader_task = asyncio.get_running_loop().create_task(
                self._read_loop(), name=f"rpc-reader-{self.name}"
            )

    async def close(self, reason: str = "closed") -> None:
        """Stop reading, cancel running handlers, fail pending requests, close output."""
        self._shut(reason)
        tasks = [t for t in (self._reader_task, *self._handler_tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if not self._writer.is_closing():
            self._writer.close()

    async def wait_closed(self) -> None:
        await self.closed.wait()

    def _shut(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        pending, self._pending = self._pending, {}
        for method, future in pending.values():
            if not future.done():
                future.set_exception(
                    ConnectionClosedError(f"{self.name}: {reason} before replying to {method}")
                )

    # -- sending ------------------------------------------------------------------

    async def request(
        self,
        method: str,
        params: Params | BaseModel = None,
        *,
        timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
    ) -> Any:
        """Send a request and wait for its result; raise a typed `RpcError` otherwise."""
        if self.closed.is_set():
            raise ConnectionClosedError(f"{self.name}: {self.close_reason}; cannot send {method}")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (method, future)
        try:
            await self._send(request_payload(request_id, method, _plain(params)))
            if timeout is None:
                return await future
            # A timer on the future is cheaper than wait_for's extra task per request.
            timer = asyncio.get_running_loop().call_later(
                timeout, _expire, future, RequestTimeoutError(method, timeout)
            )
            try:
                return await future
            finally:
                timer.cancel()
        finally:
            self._pending.pop(request_id, None)

    async def notify(self, method: str, params: Params | BaseModel = None) -> None:
        await self._send(notification_payload(method, _plain(params)))

    async def _send(self, payload: Any) -> None:
        data = dumps(payload)
        if len(data) > self.line_limit:
            raise MessageTooLargeError(
                f"{self.name}: message of {len(data)} bytes exceeds the "
                f"{self.line_limit}-byte line limit"
            )
        await self._write(data)

    async def _write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionClosedError(f"{self.name}: output stream is closed")
        # write() is synchronous and whole, so lines never interleave; concurrent
        # drain() calls are supported by asyncio's flow control.
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, BrokenPipeError, RuntimeError) as exc:
            self._shut("output stream closed")
            raise ConnectionClosedError(f"{self.name}: output stream closed") from exc

    # -- reading ------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reason = "end of stream"
        try:
            while True:
                line = await self._read_line()
                if line is None:
                    break
                if line.strip():
                    await self._dispatch_line(line)
        except asyncio.CancelledError:
            reason = self.close_reason or "closed"
            raise
        except (ConnectionError, OSError) as exc:
            reason = f"input stream failed ({exc.__class__.__name__})"
        finally:
            self._shut(reason)

    async def _read_line(self) -> bytes | None:
        """The next line, or None at EOF; oversized lines are discarded here."""
        while True:
            try:
                return await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                return exc.partial or None
            except asyncio.LimitOverrunError as exc:
                await self._discard_oversized(exc.consumed)

    async def _discard_oversized(self, available: int) -> None:
        head = await self._reader.readexactly(available)
        self.skipped_lines += 1
        self._log.warning(
            "discarded a line over the %d-byte limit (starts %r)",
            self.line_limit,
            head[:_LOG_EXCERPT],
        )
        # Skip the rest of the line without holding it in memory.
        while True:
            try:
                await self._reader.readuntil(b"\n")
                break
            except asyncio.LimitOverrunError as exc:
                await self._reader.readexactly(exc.consumed)
            except asyncio.IncompleteReadError:
                break
        match = _ID_PATTERN.search(head[:_ID_SNIFF_BYTES])
        if match is None:
            return
        raw = match.group(1)
        request_id: int | str = int(raw) if raw[:1] != b'"' else raw[1:-1].decode(errors="replace")
        entry = self._pending.pop(request_id, None)
        if entry is not None and not entry[1].done():
            entry[1].set_exception(
                MessageTooLargeError(
                    f"{self.name}: reply to {entry[0]} exceeded the {self.line_limit}-byte limit"
                )
            )
        elif request_id is not None and entry is None and b'"method"' in head[:_ID_SNIFF_BYTES]:
            await self._try_send(
                error_payload(
                    request_id, codes.MESSAGE_TOO_LARGE, codes.DESCRIPTIONS[codes.MESSAGE_TOO_LARGE]
                )
            )

    async def _dispatch_line(self, line: bytes) -> None:
        decoded = decode_line(line)
        if not isinstance(decoded, list):
            if isinstance(decoded, Request):
                self._spawn(self._answer_and_send(decoded))
            else:
                reply = await self._dispatch(decoded, line)
                if reply is not None:
                    await self._try_send(reply)
            return
        # A batch: notifications and replies are handled now, in order; requests run
        # concurrently in one task whose answers go back as a single array.
        immediate: list[dict[str, Any]] = []
        requests: list[Request] = []
        for item in decoded:
            if isinstance(item, Request):
                requests.append(item)
            else:
                reply = await self._dispatch(item, line)
                if reply is not None:
                    immediate.append(reply)
        if requests:
            self._spawn(self._answer_batch(requests, immediate))
        elif immediate:
            await self._try_send(immediate)

    async def _dispatch(
        self, message: Invalid | Notification | Response | ErrorResponse, line: bytes
    ) -> dict[str, Any] | None:
        """Handle one message that is not a request; return the answer to send, if any."""
        if isinstance(message, Invalid):
            self.skipped_lines += 1
            self._log.warning("skipped a line: %s: %r", message.reason, line[:_LOG_EXCERPT])
            if message.response and message.id is not None:
                self._fail_pending(message.id, f"sent an invalid reply ({message.reason})")
            if message.answerable:
                return error_payload(
                    message.id, message.code, codes.STANDARD_MESSAGES[message.code], message.reason
                )
            return None
        if isinstance(message, Notification):
            await self._notify_handler(message)
            return None
        self._resolve(message)
        return None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    async def _answer_batch(self, requests: list[Request], answers: list[dict[str, Any]]) -> None:
        replies = await asyncio.gather(*(self._answer(r) for r in requests))
        answers.extend(r for r in replies if r is not None)
        if answers:
            await self._try_send(answers)

    def _resolve(self, message: Response | ErrorResponse) -> None:
        entry = self._pending.pop(message.id, None) if message.id is not None else None
        if entry is None:
            self.skipped_lines += 1
            self._log.warning("skipped a reply with unknown or expired id %r", message.id)
            return
        _method, future = entry
        if future.done():
            return
        if isinstance(message, Response):
            future.set_result(message.result)
        else:
            err = message.error
            future.set_exception(RemoteError(err.code, err.message, err.data))

    def _fail_pending(self, request_id: int | str, reason: str) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is not None and not entry[1].done():
            entry[1].set_exception(ProtocolError(f"{self.name} {reason} to {entry[0]}"))

    async def _notify_handler(self, message: Notification) -> None:
        handler = self._notifications.get(message.method)
        if handler is None:
            self._log.debug("no handler for notification %s", message.method)
            return
        try:
            outcome = handler(message.params)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            self._log.exception("notification handler for %s failed", message.method)

    async def _answer_and_send(self, message: Request) -> None:
        reply = await self._answer(message)
        if reply is not None:
            await self._try_send(reply)

    async def _answer(self, message: Request) -> dict[str, Any] | None:
        """Run the handler; the one place where exceptions become wire errors."""
        handler = self._requests.get(message.method)
        if handler is None:
            return error_payload(
                message.id,
                codes.METHOD_NOT_FOUND,
                codes.STANDARD_MESSAGES[codes.METHOD_NOT_FOUND],
                {"method": message.method},
            )
        try:
            result = await handler(message.params)
        except MethodError as exc:
            return error_payload(message.id, exc.code, exc.message, exc.data)
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in e["loc"]) or "params" for e in exc.errors()})
            return error_payload(
                message.id,
                codes.INVALID_PARAMS,
                codes.STANDARD_MESSAGES[codes.INVALID_PARAMS],
                {"fields": fields},
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            self._log.exception("handler for %s failed", message.method)
            return error_payload(
                message.id, codes.INTERNAL_ERROR, codes.STANDARD_MESSAGES[codes.INTERNAL_ERROR]
            )
        return result_payload(message.id, _plain(result))

    async def _try_send(self, payload: Any) -> None:
        try:
            await self._send(payload)
        except MessageTooLargeError as exc:
            self._log.error("%s", exc)
            request_id = payload.get("id") if isinstance(payload, dict) else None
            with contextlib.suppress(ConnectionClosedError):
                await self._send(
                    error_payload(
                        request_id,
                        codes.MESSAGE_TOO_LARGE,
                        codes.DESCRIPTIONS[codes.MESSAGE_TOO_LARGE],
                    )
                )
        except ConnectionClosedError:
            self._log.debug("could not send: stream closed")


def _expire(future: asyncio.Future[Any], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


def _plain(value: Any) -> Any:
    """Pydantic models go on the wire as their JSON form; everything else as given."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


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
    import sys

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
