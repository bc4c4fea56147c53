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
import signal
import sys
import threading
import zlib
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from aiswitch.testing.fake_script import (
    ApiKind,
    ErrorReply,
    HangReply,
    RecordedRequest,
    Script,
    TextReply,
)
from aiswitch.testing.fake_wire import (
    Ids,
    SseStream,
    StopReply,
    anthropic_json,
    classify,
    error_body,
    extract_prompt,
    gemini_chunks,
    gemini_json,
    model_of,
    stream_anthropic,
    stream_openai,
)

HOST = "127.0.0.1"
# How often the serving loop checks for shutdown; stop() waits up to this long, and
# tests start and stop a provider each, so the stdlib's 0.5 s would dominate them.
SERVE_POLL_SECONDS = 0.02
# How long stop() waits for the serving thread to notice shutdown.
STOP_JOIN_TIMEOUT_SECONDS = 5.0
# Largest request body read; the CLIs' prompts with tool schemas are ~100 KB.
MAX_BODY_BYTES = 64 * 1024 * 1024


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
            model=model_of(api, split.path, body),
            prompt=extract_prompt(api, body),
        )
        request.stream = self._wants_stream(request)
        provider._record(request)
        try:
            self._dispatch(provider, request)
        except StopReply:
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
            SseStream(self, provider._closing, 0).hang()
        model = request.model or "fake-model"
        if not request.stream:
            if isinstance(reply, HangReply):
                SseStream(self, provider._closing, 0).hang()
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

    def _common_headers(self, ids: Ids) -> None:
        self.send_header("request-id", ids.request)
        self.send_header("x-request-id", ids.request)

    def _send_json(
        self,
        request: RecordedRequest,
        status: int,
        payload: Any,
        ids: Ids,
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
        self, request: RecordedRequest, ids: Ids, delay: float, closing: threading.Event
    ) -> SseStream:
        request.status = HTTPStatus.OK
        self.send_response(HTTPStatus.OK)
        self._common_headers(ids)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        return SseStream(self, closing, delay)

    def _count_tokens(self, request: RecordedRequest, ids: Ids) -> None:
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

    def _new_ids(self) -> Ids:
        n = next(self._counter)
        return Ids(
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
