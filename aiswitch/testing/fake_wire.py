"""The fake provider's wire: which API a request is for and what it asks (`classify`,
`extract_prompt`), and each API's own replies, streamed or whole, and error bodies
(Anthropic messages, OpenAI responses, Gemini generateContent). Standard library only."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from aiswitch.testing.fake_script import (
    DEFAULT_USAGE,
    ApiKind,
    FakeUsage,
    HangReply,
    TextReply,
    ToolCallReply,
    anthropic_wire_usage,
    gemini_usage,
    openai_usage,
)

if TYPE_CHECKING:
    from aiswitch.testing.fake_provider import _Handler

# Characters per streamed text chunk: small enough that every reply spans several
# deltas, so clients' delta assembly is exercised.
TEXT_CHUNK_CHARS = 16
# The longest a "hang" reply holds its connection open when nobody stops the server,
# so a forgotten fake can never keep a test process alive for ever.
MAX_HANG_SECONDS = 600.0


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


def model_of(api: ApiKind, path: str, body: Any) -> str | None:
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


class StopReply(Exception):
    """The server is stopping or the client went away: end this reply quietly."""


class SseStream:
    """Writes one chunked HTTP/1.1 SSE response, pausing between events on request."""

    def __init__(self, handler: _Handler, closing: threading.Event, delay: float) -> None:
        self._handler = handler
        self._closing = closing
        self._delay = delay
        self._sent = 0

    def event(self, data: Any, name: str | None = None) -> None:
        if self._sent and self._delay and self._closing.wait(self._delay):
            raise StopReply
        if self._closing.is_set():
            raise StopReply
        text = f"event: {name}\n" if name else ""
        text += f"data: {json.dumps(data, separators=(',', ':'))}\n\n"
        self._write_chunk(text.encode())
        self._sent += 1

    def hang(self) -> NoReturn:
        self._closing.wait(MAX_HANG_SECONDS)
        raise StopReply

    def finish(self) -> None:
        self._write_chunk(b"")

    def _write_chunk(self, payload: bytes) -> None:
        try:
            self._handler.wfile.write(f"{len(payload):X}\r\n".encode() + payload + b"\r\n")
            self._handler.wfile.flush()
        except OSError as exc:  # client hung up, e.g. it timed out on a slow stream
            raise StopReply from exc


def _anthropic_message(
    ids: Ids, model: str, content: list[dict[str, Any]], stop_reason: str | None, usage: FakeUsage
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
class Ids:
    message: str
    request: str
    response: str


def stream_anthropic(
    out: SseStream, reply: TextReply | ToolCallReply | HangReply, model: str, ids: Ids
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


def anthropic_json(reply: TextReply | ToolCallReply, model: str, ids: Ids) -> dict[str, Any]:
    if isinstance(reply, ToolCallReply):
        content = [
            {"type": "tool_use", "id": reply.call_id, "name": reply.name, "input": reply.arguments}
        ]
        return _anthropic_message(ids, model, content, "tool_use", reply.usage)
    return _anthropic_message(
        ids, model, [{"type": "text", "text": reply.text}], "end_turn", reply.usage
    )


def stream_openai(
    out: SseStream, reply: TextReply | ToolCallReply | HangReply, model: str, ids: Ids
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
    item: dict[str, Any]
    if isinstance(reply, ToolCallReply) and reply.freeform is not None:
        item = {
            "id": f"ctc_{ids.message}",
            "type": "custom_tool_call",
            "status": "in_progress",
            "call_id": reply.call_id,
            "name": reply.name,
            "input": "",
        }
        send("response.output_item.added", output_index=0, item=item)
        send(
            "response.custom_tool_call_input.delta",
            item_id=item["id"],
            output_index=0,
            delta=reply.freeform,
        )
        send(
            "response.custom_tool_call_input.done",
            item_id=item["id"],
            output_index=0,
            input=reply.freeform,
        )
        item = {**item, "status": "completed", "input": reply.freeform}
    elif isinstance(reply, ToolCallReply):
        args = json.dumps(reply.arguments)
        item = {
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
    parts: list[dict[str, Any]], model: str, ids: Ids, usage: dict[str, int], finish: bool
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
    reply: TextReply | ToolCallReply | HangReply, model: str, ids: Ids
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


def gemini_json(reply: TextReply | ToolCallReply, model: str, ids: Ids) -> dict[str, Any]:
    if isinstance(reply, ToolCallReply):
        parts: list[dict[str, Any]] = [
            {"functionCall": {"name": reply.name, "args": reply.arguments}}
        ]
    else:
        parts = [{"text": reply.text}]
    return _gemini_chunk(parts, model, ids, gemini_usage(reply.usage), finish=True)
