"""What the fake provider answers: the API kinds it speaks, usage given once (`FakeUsage`)
and written in each provider's shape, the replies a test can script (`TextReply`,
`ToolCallReply`, `ErrorReply`, `HangReply`), the `Script` of rules that picks one, the
prompt markers (`[[error:429]]`, `[[hang]]`, `[[slow:250]]`), and the record of each
request (`RecordedRequest`, secrets redacted). Standard library only; the server that
uses them is `aiswitch.testing.fake_provider`."""

from __future__ import annotations

import enum
import hashlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

REDACTED = "***"
_SECRET_HEADER_PARTS = ("key", "auth", "token", "cookie", "secret", "signature")
_MARKER = re.compile(r"\[\[(error|hang|slow)(?::([^\]]*))?\]\]")


class ApiKind(enum.StrEnum):
    """Which API a request was addressed to."""

    PROBE = "probe"  # HEAD / or GET /: connectivity checks
    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    GEMINI = "gemini"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class FakeUsage:
    """Token counts in aiswitch's normalised meaning (see aiswitch.tokens.usage).

    `input_tokens` excludes cached tokens; `reasoning_tokens` is part of `output_tokens`.
    Anthropic has no separate reasoning count, so it never sees `reasoning_tokens`.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning_tokens is part of output_tokens and cannot exceed it")


# Distinct numbers, so a test that mixes two fields up fails.
DEFAULT_USAGE = FakeUsage(
    input_tokens=120,
    output_tokens=42,
    cache_read_tokens=30,
    cache_write_tokens=7,
    reasoning_tokens=5,
)


def anthropic_usage(usage: FakeUsage) -> dict[str, int]:
    """Anthropic reports cache reads and writes apart from input."""
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
    }


def anthropic_wire_usage(usage: FakeUsage) -> dict[str, Any]:
    """`anthropic_usage` as the API sends it: with the cache writes' TTL breakdown (all
    five-minute writes here), which Claude Code copies into its log and ccusage counts."""
    return {
        **anthropic_usage(usage),
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_write_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
    }


def openai_usage(usage: FakeUsage) -> dict[str, Any]:
    """OpenAI counts cached tokens inside input_tokens; it has no cache-write count."""
    input_total = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return {
        "input_tokens": input_total,
        "input_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": input_total + usage.output_tokens,
    }


def gemini_usage(usage: FakeUsage) -> dict[str, int]:
    """Gemini counts cached tokens inside the prompt and thoughts apart from candidates."""
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": usage.output_tokens - usage.reasoning_tokens,
        "cachedContentTokenCount": usage.cache_read_tokens,
        "thoughtsTokenCount": usage.reasoning_tokens,
        "totalTokenCount": prompt + usage.output_tokens,
    }


def default_reply_text(prompt: str) -> str:
    """The reply to a prompt no rule matched: stable for equal prompts, distinct otherwise."""
    digest = hashlib.sha256(prompt.strip().encode()).hexdigest()[:12]
    return f"Fake reply {digest}: the task is done."


# --- replies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TextReply:
    """A normal assistant message; `chunk_delay` seconds between streamed chunks."""

    text: str
    usage: FakeUsage = DEFAULT_USAGE
    chunk_delay: float = 0.0


@dataclass(frozen=True)
class ToolCallReply:
    """The model asks for one tool call (tool_use / function_call / functionCall).

    `freeform`: on the OpenAI Responses API, a call of a freeform tool instead (a
    `custom_tool_call` whose input is this text, as codex's `apply_patch` takes its patch);
    `arguments` is then unused."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    usage: FakeUsage = DEFAULT_USAGE
    call_id: str = "call_fake_1"
    freeform: str | None = None


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error with the provider's own error body; `retry_after` sets the header."""

    status: int
    message: str = ""
    retry_after: float | None = None


@dataclass(frozen=True)
class HangReply:
    """Send the first chunk of `text` (or, with `send_headers=False`, nothing at all),
    then hold the connection open until the server stops."""

    text: str = "Thinking"
    send_headers: bool = True


Reply = TextReply | ToolCallReply | ErrorReply | HangReply
ReplyMaker = Callable[["RecordedRequest"], Reply]


# --- recorded requests -------------------------------------------------------------------


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers with every secret-looking value replaced, for printing."""
    return {
        name: (REDACTED if any(part in name.lower() for part in _SECRET_HEADER_PARTS) else value)
        for name, value in headers.items()
    }


@dataclass
class RecordedRequest:
    """One request as the fake saw it. `headers` keys are lower-case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    api: ApiKind
    model: str | None = None
    stream: bool = False
    prompt: str = ""
    status: int = 0
    reply: Reply | None = None
    received_at: float = field(default_factory=time.time)

    def __repr__(self) -> str:
        return (
            f"RecordedRequest(method={self.method!r}, path={self.path!r}, api={self.api.value!r}, "
            f"model={self.model!r}, status={self.status}, prompt={self.prompt[:60]!r}, "
            f"headers={redact_headers(self.headers)!r})"
        )

    def summary(self) -> str:
        """One line for logs; holds no secrets."""
        return f"{self.method} {self.path} [{self.api.value}] -> {self.status}"


# --- the script ------------------------------------------------------------------------


@dataclass
class Rule:
    """Reply with `reply` to requests matching every given condition.

    `api`: only this API; `contains`: the prompt text contains this string;
    `times`: at most this many uses (None = unlimited). `hits` counts uses. `reply` may be
    a function of the request (a tool call naming a path only the request tells).
    """

    reply: Reply | ReplyMaker
    api: ApiKind | None = None
    contains: str | None = None
    times: int | None = None
    hits: int = 0

    def matches(self, request: RecordedRequest) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.api is not None and request.api is not self.api:
            return False
        return self.contains is None or self.contains in request.prompt


class Script:
    """Chooses the reply for each request. Thread-safe; rules are tried in order."""

    def __init__(self, rules: Sequence[Rule] = (), default: Reply | None = None) -> None:
        self._rules = list(rules)
        self.default = default
        self._lock = threading.Lock()

    def add(
        self,
        reply: Reply | ReplyMaker,
        *,
        api: ApiKind | None = None,
        contains: str | None = None,
        times: int | None = None,
    ) -> Rule:
        rule = Rule(reply=reply, api=api, contains=contains, times=times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def reply_for(self, request: RecordedRequest) -> Reply:
        chosen: Reply | ReplyMaker | None = None
        with self._lock:
            for rule in self._rules:
                if rule.matches(request):
                    rule.hits += 1
                    chosen = rule.reply
                    break
        if chosen is not None:
            # Outside the lock: a maker may wait (a test holding a reply back) while other
            # requests are answered.
            return chosen(request) if callable(chosen) else chosen
        marked = reply_from_markers(request.prompt)
        if marked is not None:
            return marked
        if self.default is not None:
            return self.default
        return TextReply(default_reply_text(request.prompt))


def reply_from_markers(prompt: str) -> Reply | None:
    """`[[error:CODE]]`, `[[hang]]` or `[[slow:MS]]` in the prompt pick the reply."""
    match = _MARKER.search(prompt)
    if match is None:
        return None
    kind, arg = match.group(1), match.group(2)
    clean = _MARKER.sub("", prompt)
    if kind == "error":
        return ErrorReply(status=int(arg or HTTPStatus.INTERNAL_SERVER_ERROR))
    if kind == "hang":
        return HangReply()
    return TextReply(default_reply_text(clean), chunk_delay=int(arg or 100) / 1000)


# --- request parsing -------------------------------------------------------------------
