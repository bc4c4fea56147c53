"""A fake LLM provider on 127.0.0.1 for running the real agent CLIs offline.

Contract:

- Listens on 127.0.0.1 only (never another interface), port 0 by default; `.url` gives
  the bound address. Each request is served on its own thread, so any number of
  streaming replies run at once. Standard library only.
- Speaks three wire formats, chosen by path:
  Anthropic ``POST /v1/messages`` (``?beta=true`` accepted; SSE when ``stream`` is true,
  JSON otherwise) and ``POST /v1/messages/count_tokens``; OpenAI ``POST /v1/responses``
  (SSE); Gemini ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse``,
  ``:generateContent`` and ``:countTokens``. ``HEAD /`` and ``GET /`` answer 200 (the
  CLIs probe the base URL). Any other path gets 404 with a JSON body and is logged as
  `ApiKind.UNKNOWN`, so a test can assert that no unexpected call was made.
- Every request is logged (`FakeProvider.requests`) with method, path, query, headers,
  parsed JSON body, API kind and the reply it got. Secrets (API keys, bearer tokens)
  are redacted in every ``repr`` and in anything printed; the raw values stay available
  to assertions through ``headers``.
- The reply is chosen by a `Script`: the first matching `Rule` with uses left, else a
  marker in the prompt (``[[error:429]]``, ``[[hang]]``, ``[[slow:250]]`` = 250 ms
  between chunks), else the script's default, else a deterministic text
  (`default_reply_text`) with `DEFAULT_USAGE`.
- Usage is given once, normalised (`FakeUsage`, aiswitch's meaning: input excludes
  cache, reasoning is part of output), and written in each provider's own shape
  (`anthropic_usage`, `openai_usage`, `gemini_usage`) so tests can check that adapters
  normalise it back to the same numbers.
- `stop()` ends hanging and slow streams at once (their sockets are closed).

Run standalone: ``python -m aiswitch.testing.fake_provider --port 8123`` prints its URL on
one line, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import re
import signal
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, NoReturn, Self
from urllib.parse import parse_qs, urlsplit

from aiswitch.testing.fake_script import (
    DEFAULT_USAGE,
    ApiKind,
    ErrorReply,
    FakeUsage,
    HangReply,
    RecordedRequest,
    Script,
    TextReply,
    ToolCallReply,
    anthropic_wire_usage,
    gemini_usage,
    openai_usage,
)

HOST = "127.0.0.1"
# The longest a "hang" reply holds its connection open when nobody stops the server,
# so a forgotten fake can never keep a test process alive for ever.
MAX_HANG_SECONDS = 600.0
# How often the serving loop checks for shutdown; stop() waits up to this long, and
# tests start and stop a provider each, so the stdlib's 0.5 s would dominate them.
SERVE_POLL_SECONDS = 0.02
# How long stop() waits for the serving thread to notice shutdown.
STOP_JOIN_TIMEOUT_SECONDS = 5.0
# Largest request body read; the CLIs' prompts with tool schemas are ~100 KB.
MAX_BODY_BYTES = 64 * 1024 * 1024
# Characters per streamed text chunk: small enough that every reply spans several
# deltas, so clients' delta assembly is exercised.
TEXT_CHUNK_CHARS = 16


_GEMINI_PATH = re.compile(r"^/v1(?:beta|alpha)?/models/(?P<model>[^/:]+):(?P<method>\w+)$")
_ANTHROPIC_PATHS = ("/v1/messages", "/v1/messages/count_tokens")
_OPENAI_PATHS = ("/v1/responses", "/responses")


def classify(method: str, path: str) -> ApiKind:
    if path == "/" and method in ("HEAD", "GET"):
        return ApiKind.PROBE
    if method != "POST":
        return ApiKind.UNKNOWN
    if path in _ANTHROPIC_PATHS:
        return ApiKind.ANTHROPIC
    if path in _OPENAI_PATHS:
        return ApiKind.OPENAI
    if _GEMINI_PATH.match(path):
        return ApiKind.GEMINI
    return ApiKind.UNKNOWN


def _text_of(content: Any, text_types: tuple[str, ...]) -> list[str]:
    """Text pieces of a message content, which is a string or a list of typed parts."""
    if isinstance(content, str):
        return [content]
    pieces: list[str] = []
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            text = part.get("text")
            if isinstance(text, str) and part.get("type", "text") in text_types:
                pieces.append(text)
    return pieces


def _user_texts(api: ApiKind, body: Any) -> list[str]:
    """Text parts of the last user message, in order."""
    if not isinstance(body, dict):
        return []
    if api is ApiKind.ANTHROPIC:
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        users = [m for m in messages if m.get("role") == "user"]
        return _text_of(users[-1].get("content"), ("text",)) if users else []
    if api is ApiKind.OPENAI:
        items = body.get("input")
        if isinstance(items, str):
            return [items]
        users = [m for m in items or [] if isinstance(m, dict) and m.get("role") == "user"]
        return _text_of(users[-1].get("content"), ("input_text", "text")) if users else []
    if api is ApiKind.GEMINI:
        contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]
        users = [c for c in contents if c.get("role", "user") == "user"]
        # Gemini's function responses also travel as role "user"; they have no text.
        for content in reversed(users):
            texts = _text_of(content.get("parts"), ("text",))
            if texts:
                return texts
            if any(isinstance(p, dict) and "functionResponse" in p for p in content["parts"]):
                return []
    return []


def extract_prompt(api: ApiKind, body: Any) -> str:
    """The user's prompt: the last user message's text, minus context blocks the CLIs
    inject (Claude's ``<system-reminder>``, Codex's ``<environment_context>`` and the
    like), so that the default reply depends on what the test asked only."""
    texts = _user_texts(api, body)
    own = [t for t in texts if not t.lstrip().startswith("<")]
    return "\n".join(own or texts)


def _model_of(api: ApiKind, path: str, body: Any) -> str | None:
    if api is ApiKind.GEMINI:
        match = _GEMINI_PATH.match(path)
        return match.group("model") if match else None
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        return str(body["model"])
    return None


# --- wire writers ---------------------------------------------------------------------


def _chunks(text: str) -> list[str]:
    return [text[i : i + TEXT_CHUNK_CHARS] for i in range(0, len(text), TEXT_CHUNK_CHARS)] or [""]


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", "server_error"),
    503: ("server_error", "server_is_overloaded"),
}
_GEMINI_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(api: ApiKind, status: int, message: str, request_id: str) -> dict[str, Any]:
    """The provider's own error body for an HTTP error."""
    text = message or f"Fake provider error {status}"
    if api is ApiKind.ANTHROPIC:
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {
            "type": "error",
            "error": {"type": kind, "message": text},
            "request_id": request_id,
        }
    if api is ApiKind.OPENAI:
        kind, code = _OPENAI_ERROR_TYPES.get(status, ("server_error", "server_error"))
        return {"error": {"message": text, "type": kind, "param": None, "code": code}}
    if api is ApiKind.GEMINI:
        return {
            "error": {
                "code": status,
                "message": text,
                "status": _GEMINI_STATUSES.get(status, "UNKNOWN"),
            }
        }
    return {"error": {"code": status, "message": text}}


class _Stop(Exception):
    """The server is stopping or the client went away: end this reply quietly."""


class _Stream:
    """Writes one chunked HTTP/1.1 SSE response, pausing between events on request."""

    def __init__(self, handler: _Handler, closing: threading.Event, delay: float) -> None:
        self._handler = handler
        self._closing = closing
        self._delay = delay
        self._sent = 0

    def event(self, data: Any, name: str | None = None) -> None:
        if self._sent and self._delay and self._closing.wait(self._delay):
            raise _Stop
        if self._closing.is_set():
            raise _Stop
        text = f"event: {name}\n" if name else ""
        text += f"data: {json.dumps(data, separators=(',', ':'))}\n\n"
        self._write_chunk(text.encode())
        self._sent += 1

    def hang(self) -> NoReturn:
        self._closing.wait(MAX_HANG_SECONDS)
        raise _Stop

    def finish(self) -> None:
        self._write_chunk(b"")

    def _write_chunk(self, payload: bytes) -> None:
        try:
            self._handler.wfile.write(f"{len(payload):X}\r\n".encode() + payload + b"\r\n")
            self._handler.wfile.flush()
        except OSError as exc:  # client hung up, e.g. it timed out on a slow stream
            raise _Stop from exc


def _anthropic_message(
    ids: _Ids, model: str, content: list[dict[str, Any]], stop_reason: str | None, usage: FakeUsage
) -> dict[str, Any]:
    return {
        "id": ids.message,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": anthropic_wire_usage(usage),
    }


@dataclass(frozen=True)
class _Ids:
    message: str
    request: str
    response: str


def stream_anthropic(
    out: _Stream, reply: TextReply | ToolCallReply | HangReply, model: str, ids: _Ids
) -> None:
    usage = reply.usage if not isinstance(reply, HangReply) else DEFAULT_USAGE
    start_usage = {**anthropic_wire_usage(usage), "output_tokens": 1}
    message = _anthropic_message(ids, model, [], None, usage)
    out.event(
        {"type": "message_start", "message": {**message, "usage": start_usage}}, "message_start"
    )
    if isinstance(reply, ToolCallReply):
        block = {"type": "tool_use", "id": reply.call_id, "name": reply.name, "input": {}}
        out.event(
            {"type": "content_block_start", "index": 0, "content_block": block},
            "content_block_start",
        )
        args = json.dumps(reply.arguments)
        out.event(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": args},
            },
            "content_block_delta",
        )
        stop_reason = "tool_use"
    else:
        out.event(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        )
        for piece in _chunks(reply.text):
            out.event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
                "content_block_delta",
            )
            if isinstance(reply, HangReply):
                out.hang()
        stop_reason = "end_turn"
    out.event({"type": "content_block_stop", "index": 0}, "content_block_stop")
    out.event(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": anthropic_wire_usage(usage),
        },
        "message_delta",
    )
    out.event({"type": "message_stop"}, "message_stop")


def anthropic_json(reply: TextReply | ToolCallReply, model: str, ids: _Ids) -> dict[str, Any]:
    if isinstance(reply, ToolCallReply):
        content = [
            {"type": "tool_use", "id": reply.call_id, "name": reply.name, "input": reply.arguments}
        ]
        return _anthropic_message(ids, model, content, "tool_use", reply.usage)
    return _anthropic_message(
        ids, model, [{"type": "text", "text": reply.text}], "end_turn", reply.usage
    )


def stream_openai(
    out: _Stream, reply: TextReply | ToolCallReply | HangReply, model: str, ids: _Ids
) -> None:
    seq = itertools.count()
    response: dict[str, Any] = {
        "id": ids.response,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "model": model,
        "output": [],
        "usage": None,
    }

    def send(kind: str, **fields: Any) -> None:
        out.event({"type": kind, "sequence_number": next(seq), **fields}, kind)

    send("response.created", response=response)
    send("response.in_progress", response=response)
    if isinstance(reply, ToolCallReply):
        args = json.dumps(reply.arguments)
        item: dict[str, Any] = {
            "id": f"fc_{ids.message}",
            "type": "function_call",
            "status": "in_progress",
            "call_id": reply.call_id,
            "name": reply.name,
            "arguments": "",
        }
        send("response.output_item.added", output_index=0, item=item)
        send(
            "response.function_call_arguments.delta", item_id=item["id"], output_index=0, delta=args
        )
        send(
            "response.function_call_arguments.done",
            item_id=item["id"],
            output_index=0,
            arguments=args,
        )
        item = {**item, "status": "completed", "arguments": args}
    else:
        item = {
            "id": ids.message,
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        send("response.output_item.added", output_index=0, item=item)
        part = {"type": "output_text", "text": "", "annotations": []}
        send(
            "response.content_part.added",
            item_id=ids.message,
            output_index=0,
            content_index=0,
            part=part,
        )
        for piece in _chunks(reply.text):
            send(
                "response.output_text.delta",
                item_id=ids.message,
                output_index=0,
                content_index=0,
                delta=piece,
            )
            if isinstance(reply, HangReply):
                out.hang()
        part = {**part, "text": reply.text}
        send(
            "response.output_text.done",
            item_id=ids.message,
            output_index=0,
            content_index=0,
            text=reply.text,
        )
        send(
            "response.content_part.done",
            item_id=ids.message,
            output_index=0,
            content_index=0,
            part=part,
        )
        item = {**item, "status": "completed", "content": [part]}
    send("response.output_item.done", output_index=0, item=item)
    usage = reply.usage if not isinstance(reply, HangReply) else DEFAULT_USAGE
    send(
        "response.completed",
        response={
            **response,
            "status": "completed",
            "output": [item],
            "usage": openai_usage(usage),
        },
    )


def _gemini_chunk(
    parts: list[dict[str, Any]], model: str, ids: _Ids, usage: dict[str, int], finish: bool
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = "STOP"
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": ids.response,
    }


def gemini_chunks(
    reply: TextReply | ToolCallReply | HangReply, model: str, ids: _Ids
) -> Iterator[dict[str, Any]]:
    """The streamGenerateContent chunks; the last one carries the full usage."""
    usage = reply.usage if not isinstance(reply, HangReply) else DEFAULT_USAGE
    full = gemini_usage(usage)
    # Like the real API, interim chunks count the prompt only.
    interim = {
        "promptTokenCount": full["promptTokenCount"],
        "totalTokenCount": full["promptTokenCount"],
    }
    if isinstance(reply, ToolCallReply):
        call = {"functionCall": {"name": reply.name, "args": reply.arguments}}
        yield _gemini_chunk([call], model, ids, full, finish=True)
        return
    pieces = _chunks(reply.text)
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1 and not isinstance(reply, HangReply)
        yield _gemini_chunk([{"text": piece}], model, ids, full if last else interim, last)


def gemini_json(reply: TextReply | ToolCallReply, model: str, ids: _Ids) -> dict[str, Any]:
    if isinstance(reply, ToolCallReply):
        parts: list[dict[str, Any]] = [
            {"functionCall": {"name": reply.name, "args": reply.arguments}}
        ]
    else:
        parts = [{"text": reply.text}]
    return _gemini_chunk(parts, model, ids, gemini_usage(reply.usage), finish=True)


# --- the server ------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # stop() must not wait for hanging handlers; they end when `closing` is set.
    block_on_close = False
    provider: FakeProvider


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        # The provider logs requests itself, redacted; the stdlib's line is noise.
        return

    def do_HEAD(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
                if len(data) > MAX_BODY_BYTES:
                    raise ValueError("request body too large")
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length else b""

    def _decode(self, raw: bytes) -> Any:
        encoding = self.headers.get("content-encoding", "").lower()
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        elif encoding:
            return None  # e.g. zstd, which the stdlib cannot read: logged unparsed
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _serve(self) -> None:
        provider = self.server.provider
        split = urlsplit(self.path)
        api = classify(self.command, split.path)
        raw = self._read_body()
        body = self._decode(raw)
        request = RecordedRequest(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            api=api,
            model=_model_of(api, split.path, body),
            prompt=extract_prompt(api, body),
        )
        request.stream = self._wants_stream(request)
        provider._record(request)
        try:
            self._dispatch(provider, request)
        except _Stop:
            self.close_connection = True
        finally:
            provider._served(request)

    @staticmethod
    def _wants_stream(request: RecordedRequest) -> bool:
        if request.api is ApiKind.GEMINI:
            return request.path.endswith(":streamGenerateContent")
        if request.api is ApiKind.OPENAI:
            return True  # codex only streams; a non-stream request gets SSE too
        return isinstance(request.body, dict) and bool(request.body.get("stream"))

    def _dispatch(self, provider: FakeProvider, request: RecordedRequest) -> None:
        ids = provider._new_ids()
        if request.api is ApiKind.PROBE:
            self._send_json(request, HTTPStatus.OK, {"ok": True, "fake": "aiswitch"}, ids)
            return
        if request.api is ApiKind.UNKNOWN:
            self._send_json(
                request,
                HTTPStatus.NOT_FOUND,
                error_body(
                    ApiKind.UNKNOWN,
                    404,
                    f"fake provider has no {request.method} {request.path}",
                    ids.request,
                ),
                ids,
            )
            return
        if request.body is None or not isinstance(request.body, dict):
            self._send_json(
                request,
                HTTPStatus.BAD_REQUEST,
                error_body(request.api, 400, "request body is not a JSON object", ids.request),
                ids,
            )
            return
        if request.path.endswith("count_tokens") or request.path.endswith(":countTokens"):
            self._count_tokens(request, ids)
            return
        reply = provider.script.reply_for(request)
        request.reply = reply
        if isinstance(reply, ErrorReply):
            self._send_json(
                request,
                reply.status,
                error_body(request.api, reply.status, reply.message, ids.request),
                ids,
                retry_after=reply.retry_after,
            )
            return
        if isinstance(reply, HangReply) and not reply.send_headers:
            request.status = 0
            _Stream(self, provider._closing, 0).hang()
        model = request.model or "fake-model"
        if not request.stream:
            if isinstance(reply, HangReply):
                _Stream(self, provider._closing, 0).hang()
            if request.api is ApiKind.GEMINI:
                self._send_json(request, HTTPStatus.OK, gemini_json(reply, model, ids), ids)
            else:
                self._send_json(request, HTTPStatus.OK, anthropic_json(reply, model, ids), ids)
            return
        delay = reply.chunk_delay if isinstance(reply, TextReply) else 0.0
        out = self._start_stream(request, ids, delay, provider._closing)
        if request.api is ApiKind.ANTHROPIC:
            stream_anthropic(out, reply, model, ids)
        elif request.api is ApiKind.OPENAI:
            stream_openai(out, reply, model, ids)
        else:
            for index, chunk in enumerate(gemini_chunks(reply, model, ids)):
                out.event(chunk)
                if index == 0 and isinstance(reply, HangReply):
                    out.hang()
        out.finish()

    def _common_headers(self, ids: _Ids) -> None:
        self.send_header("request-id", ids.request)
        self.send_header("x-request-id", ids.request)

    def _send_json(
        self,
        request: RecordedRequest,
        status: int,
        payload: Any,
        ids: _Ids,
        retry_after: float | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        request.status = int(status)
        self.send_response(status)
        self._common_headers(ids)
        if retry_after is not None:
            self.send_header("retry-after", f"{retry_after:g}")
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _start_stream(
        self, request: RecordedRequest, ids: _Ids, delay: float, closing: threading.Event
    ) -> _Stream:
        request.status = HTTPStatus.OK
        self.send_response(HTTPStatus.OK)
        self._common_headers(ids)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        return _Stream(self, closing, delay)

    def _count_tokens(self, request: RecordedRequest, ids: _Ids) -> None:
        # A stable, plausible count: about four characters per token.
        tokens = max(1, len(json.dumps(request.body)) // 4)
        payload: dict[str, Any] = (
            {"totalTokens": tokens} if request.api is ApiKind.GEMINI else {"input_tokens": tokens}
        )
        self._send_json(request, HTTPStatus.OK, payload, ids)


class FakeProvider:
    """The fake provider server. Use as a context manager, or call start()/stop().

    `script` may be replaced or extended at any time; requests are logged in
    `requests` (a snapshot copy) in arrival order.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        port: int = 0,
        on_request: Callable[[RecordedRequest], None] | None = None,
    ) -> None:
        self.script = script if script is not None else Script()
        self._port = port
        self._on_request = on_request
        self._requests: list[RecordedRequest] = []
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._counter = itertools.count(1)

    # lifecycle

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("FakeProvider is already running")
        self._closing.clear()
        server = _Server((HOST, self._port), _Handler)
        server.provider = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            args=(SERVE_POLL_SECONDS,),
            name="fake-provider",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._closing.set()  # ends hanging and slow streams
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(STOP_JOIN_TIMEOUT_SECONDS)
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # addresses

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeProvider is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{HOST}:{self.port}"

    # the request log

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    def requests_for(self, api: ApiKind) -> list[RecordedRequest]:
        return [r for r in self.requests if r.api is api]

    def unexpected_requests(self) -> list[RecordedRequest]:
        """Requests to paths the fake does not serve."""
        return self.requests_for(ApiKind.UNKNOWN)

    def clear(self) -> None:
        with self._cond:
            self._requests.clear()

    def wait_for_requests(
        self, count: int, timeout: float, api: ApiKind | None = None
    ) -> list[RecordedRequest]:
        """Block until at least `count` requests (of `api`, if given) have arrived."""

        def matching() -> list[RecordedRequest]:
            return [r for r in self._requests if api is None or r.api is api]

        with self._cond:
            if not self._cond.wait_for(lambda: len(matching()) >= count, timeout):
                raise TimeoutError(
                    f"{len(matching())} of {count} expected requests after {timeout}s: "
                    f"{[r.summary() for r in self._requests]}"
                )
            return matching()

    # called by handlers

    def _record(self, request: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()

    def _served(self, request: RecordedRequest) -> None:
        if self._on_request is not None:
            self._on_request(request)

    def _new_ids(self) -> _Ids:
        n = next(self._counter)
        return _Ids(
            message=f"msg_fake{n:06d}", request=f"req_fake{n:06d}", response=f"resp_fake{n:06d}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aiswitch.testing.fake_provider",
        description="Serve a fake Anthropic/OpenAI/Gemini API on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    parser.add_argument("--text", help="reply with this text to every prompt")
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    args = parser.parse_args(argv)

    def log(request: RecordedRequest) -> None:
        print(request.summary(), file=sys.stderr, flush=True)

    script = Script(default=TextReply(args.text) if args.text else None)
    provider = FakeProvider(script, port=args.port, on_request=None if args.quiet else log)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with provider:
        print(provider.url, flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
