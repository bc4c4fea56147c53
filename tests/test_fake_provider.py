"""The fake LLM provider, exercised over real HTTP on 127.0.0.1.

These pin the wire shapes the real CLIs depend on (tests/test_real_cli_smoke.py runs
the CLIs themselves) and the test-facing API: scripts, markers, the request log,
redaction, concurrency and stopping.
"""

from __future__ import annotations

import gzip
import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from aiswitch.testing.fake_provider import FakeProvider
from aiswitch.testing.fake_script import (
    DEFAULT_USAGE,
    ApiKind,
    ErrorReply,
    FakeUsage,
    HangReply,
    Script,
    TextReply,
    ToolCallReply,
    anthropic_usage,
    anthropic_wire_usage,
    default_reply_text,
    gemini_usage,
    openai_usage,
)

# Every request here is local and small; a stuck one is a bug, not a slow machine.
HTTP_TIMEOUT_SECONDS = 10
STARTUP_TIMEOUT_SECONDS = 20
USAGE = FakeUsage(
    input_tokens=11, output_tokens=22, cache_read_tokens=33, cache_write_tokens=44,
    reasoning_tokens=5,
)  # fmt: skip


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def sse(self) -> list[tuple[str | None, dict[str, Any]]]:
        """(event name, data) pairs of a text/event-stream body."""
        events = []
        for block in self.body.decode().split("\n\n"):
            if not block.strip():
                continue
            name = None
            data = None
            for line in block.splitlines():
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    data = json.loads(line[len("data: ") :])
            assert data is not None, block
            events.append((name, data))
        return events


def call(
    url: str,
    body: Any = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Response:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as reply:
            return Response(reply.status, dict(reply.headers.items()), reply.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, dict(error.headers.items()), error.read())


def anthropic_body(prompt: str, stream: bool = True) -> dict[str, Any]:
    return {
        "model": "claude-test",
        "stream": stream,
        "max_tokens": 100,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>today</system-reminder>"},
                    {"type": "text", "text": prompt},
                ],
            }
        ],
    }


def openai_body(prompt: str) -> dict[str, Any]:
    def message(role: str, text: str) -> dict[str, Any]:
        return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}

    return {
        "model": "gpt-test",
        "stream": True,
        "input": [message("developer", "be brief"), message("user", prompt)],
    }


def gemini_body(prompt: str) -> dict[str, Any]:
    return {
        "contents": [
            {"role": "user", "parts": [{"text": "<session_context>ctx</session_context>"}]},
            {"role": "user", "parts": [{"text": prompt}]},
        ]
    }


def gemini_stream_url(fake: FakeProvider, model: str = "gem-test") -> str:
    return f"{fake.url}/v1beta/models/{model}:streamGenerateContent?alt=sse"


def anthropic_text(events: list[tuple[str | None, dict[str, Any]]]) -> str:
    return "".join(
        d["delta"]["text"]
        for _, d in events
        if d["type"] == "content_block_delta" and d["delta"]["type"] == "text_delta"
    )


# --- basics ----------------------------------------------------------------------------


def test_the_provider_binds_loopback_on_a_free_port_and_reports_it(fake: FakeProvider) -> None:
    assert fake.port > 0
    assert fake.url == f"http://127.0.0.1:{fake.port}"


def test_head_and_get_on_the_root_answer_200_and_are_logged_as_probes(fake: FakeProvider) -> None:
    assert call(f"{fake.url}/", method="HEAD").status == 200
    assert call(f"{fake.url}/", method="GET").json()["ok"] is True

    assert [(r.method, r.api) for r in fake.requests] == [
        ("HEAD", ApiKind.PROBE),
        ("GET", ApiKind.PROBE),
    ]


def test_an_unknown_path_gets_a_json_404_and_is_listed_as_unexpected(fake: FakeProvider) -> None:
    reply = call(f"{fake.url}/v1/models", method="GET")

    assert reply.status == 404
    assert "GET /v1/models" in reply.json()["error"]["message"]
    assert [(r.method, r.path) for r in fake.unexpected_requests()] == [("GET", "/v1/models")]


def test_a_body_that_is_not_json_gets_a_400_in_the_providers_shape(fake: FakeProvider) -> None:
    reply = call(f"{fake.url}/v1/messages", raw=b"{not json")

    assert reply.status == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"


# --- Anthropic -------------------------------------------------------------------------


def test_an_anthropic_stream_sends_the_text_as_deltas_and_the_final_usage_in_message_delta(
    fake: FakeProvider,
) -> None:
    fake.script.default = TextReply("Hello from the fake Anthropic stream.", usage=USAGE)

    reply = call(f"{fake.url}/v1/messages?beta=true", anthropic_body("hi"))

    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.headers["request-id"].startswith("req_")
    events = reply.sse()
    assert [name for name, _ in events] == [d["type"] for _, d in events]
    kinds = [d["type"] for _, d in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert kinds.count("content_block_delta") > 1
    assert anthropic_text(events) == "Hello from the fake Anthropic stream."
    start = events[0][1]["message"]
    assert start["model"] == "claude-test"
    assert start["usage"]["input_tokens"] == USAGE.input_tokens
    assert start["usage"]["cache_read_input_tokens"] == USAGE.cache_read_tokens
    delta = next(d for _, d in events if d["type"] == "message_delta")
    assert delta["usage"] == anthropic_wire_usage(USAGE)
    assert delta["delta"]["stop_reason"] == "end_turn"


def test_an_anthropic_request_without_stream_gets_one_json_message(fake: FakeProvider) -> None:
    fake.script.default = TextReply("plain", usage=USAGE)

    reply = call(f"{fake.url}/v1/messages", anthropic_body("hi", stream=False))

    assert reply.status == 200
    message = reply.json()
    assert message["content"] == [{"type": "text", "text": "plain"}]
    assert message["usage"] == anthropic_wire_usage(USAGE)
    assert fake.requests[0].stream is False


def test_anthropic_count_tokens_answers_a_positive_count_without_using_the_script(
    fake: FakeProvider,
) -> None:
    rule = fake.script.add(ErrorReply(500))

    reply = call(f"{fake.url}/v1/messages/count_tokens", anthropic_body("count me"))

    assert reply.status == 200
    assert reply.json()["input_tokens"] > 0
    assert rule.hits == 0


def test_the_prompt_is_the_users_own_text_without_injected_context(fake: FakeProvider) -> None:
    call(f"{fake.url}/v1/messages", anthropic_body("Fix the parser"))
    call(f"{fake.url}/v1/responses", openai_body("Fix the lexer"))
    call(gemini_stream_url(fake), gemini_body("Fix the printer"))

    assert [r.prompt for r in fake.requests] == [
        "Fix the parser",
        "Fix the lexer",
        "Fix the printer",
    ]
    assert [r.model for r in fake.requests] == ["claude-test", "gpt-test", "gem-test"]


# --- OpenAI ----------------------------------------------------------------------------


def test_an_openai_stream_ends_with_response_completed_carrying_cached_and_reasoning_tokens(
    fake: FakeProvider,
) -> None:
    fake.script.default = TextReply("Hello from the fake Responses stream.", usage=USAGE)

    reply = call(f"{fake.url}/v1/responses", openai_body("hi"))

    assert reply.status == 200
    events = reply.sse()
    kinds = [d["type"] for _, d in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-2:] == ["response.output_item.done", "response.completed"]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    text = "".join(d["delta"] for _, d in events if d["type"] == "response.output_text.delta")
    assert text == "Hello from the fake Responses stream."
    usage = events[-1][1]["response"]["usage"]
    assert usage == openai_usage(USAGE)
    assert usage["input_tokens_details"]["cached_tokens"] == USAGE.cache_read_tokens
    assert usage["output_tokens_details"]["reasoning_tokens"] == USAGE.reasoning_tokens
    # OpenAI counts cached input inside input_tokens.
    assert usage["input_tokens"] == (
        USAGE.input_tokens + USAGE.cache_read_tokens + USAGE.cache_write_tokens
    )


# --- Gemini ----------------------------------------------------------------------------


def test_a_gemini_stream_puts_the_full_usage_metadata_on_its_last_chunk_only(
    fake: FakeProvider,
) -> None:
    fake.script.default = TextReply("Hello from the fake Gemini stream.", usage=USAGE)

    reply = call(gemini_stream_url(fake), gemini_body("hi"))

    assert reply.status == 200
    chunks = [data for name, data in reply.sse()]
    assert len(chunks) > 1
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert text == "Hello from the fake Gemini stream."
    assert [c["candidates"][0].get("finishReason") for c in chunks][-1] == "STOP"
    assert all("candidatesTokenCount" not in c["usageMetadata"] for c in chunks[:-1])
    last = chunks[-1]["usageMetadata"]
    assert last == gemini_usage(USAGE)
    # Gemini reports thoughts apart from candidates: output = candidates + thoughts.
    assert last["candidatesTokenCount"] + last["thoughtsTokenCount"] == USAGE.output_tokens
    assert last["cachedContentTokenCount"] == USAGE.cache_read_tokens


def test_gemini_generate_content_answers_one_json_response(fake: FakeProvider) -> None:
    fake.script.default = TextReply("one shot", usage=USAGE)

    reply = call(f"{fake.url}/v1beta/models/gem-test:generateContent", gemini_body("hi"))

    assert reply.status == 200
    body = reply.json()
    assert body["candidates"][0]["content"]["parts"] == [{"text": "one shot"}]
    assert body["usageMetadata"] == gemini_usage(USAGE)


def test_gemini_count_tokens_answers_total_tokens(fake: FakeProvider) -> None:
    reply = call(f"{fake.url}/v1beta/models/gem-test:countTokens", gemini_body("hi"))

    assert reply.status == 200
    assert reply.json()["totalTokens"] > 0


# --- replies and scripts ---------------------------------------------------------------


def test_the_default_reply_is_derived_from_the_prompt_with_the_default_usage(
    fake: FakeProvider,
) -> None:
    first = call(f"{fake.url}/v1/messages", anthropic_body("alpha")).sse()
    again = call(f"{fake.url}/v1/messages", anthropic_body("alpha")).sse()
    other = call(f"{fake.url}/v1/messages", anthropic_body("beta")).sse()

    assert anthropic_text(first) == default_reply_text("alpha")
    assert anthropic_text(again) == anthropic_text(first)
    assert anthropic_text(other) == default_reply_text("beta") != anthropic_text(first)
    assert first[-2][1]["usage"] == anthropic_wire_usage(DEFAULT_USAGE)


@pytest.mark.parametrize(
    ("path", "body", "check"),
    [
        (
            "/v1/messages",
            anthropic_body("go [[error:429]]"),
            lambda e: e["type"] == "error" and e["error"]["type"] == "rate_limit_error",
        ),
        (
            "/v1/responses",
            openai_body("go [[error:429]]"),
            lambda e: e["error"]["code"] == "rate_limit_exceeded",
        ),
        (
            "/v1beta/models/g:streamGenerateContent?alt=sse",
            gemini_body("go [[error:429]]"),
            lambda e: e["error"]["code"] == 429 and e["error"]["status"] == "RESOURCE_EXHAUSTED",
        ),
    ],
    ids=["anthropic", "openai", "gemini"],
)
def test_an_error_marker_in_the_prompt_answers_that_status_in_the_providers_error_shape(
    fake: FakeProvider, path: str, body: dict[str, Any], check: Any
) -> None:
    reply = call(f"{fake.url}{path}", body)

    assert reply.status == 429
    assert check(reply.json()), reply.json()
    assert fake.requests[0].status == 429
    assert isinstance(fake.requests[0].reply, ErrorReply)


def test_an_error_reply_carries_its_message_and_retry_after(fake: FakeProvider) -> None:
    fake.script.add(ErrorReply(529, "overloaded, fake", retry_after=0.5))

    reply = call(f"{fake.url}/v1/messages", anthropic_body("x"))

    assert reply.status == 529
    assert reply.headers["retry-after"] == "0.5"
    assert reply.json()["error"] == {"type": "overloaded_error", "message": "overloaded, fake"}


def test_a_rule_limited_to_one_use_answers_once_then_the_default_answers(
    fake: FakeProvider,
) -> None:
    rule = fake.script.add(ErrorReply(500), times=1)

    first = call(f"{fake.url}/v1/messages", anthropic_body("x"))
    second = call(f"{fake.url}/v1/messages", anthropic_body("x"))

    assert (first.status, second.status) == (500, 200)
    assert rule.hits == 1


def test_a_rule_answers_only_its_api_and_only_prompts_containing_its_text(
    fake: FakeProvider,
) -> None:
    fake.script.add(TextReply("matched"), api=ApiKind.OPENAI, contains="needle")

    other_api = call(f"{fake.url}/v1/messages", anthropic_body("needle"))
    other_prompt = call(f"{fake.url}/v1/responses", openai_body("haystack"))
    matched = call(f"{fake.url}/v1/responses", openai_body("a needle here"))

    assert anthropic_text(other_api.sse()) == default_reply_text("needle")
    assert "matched" not in other_prompt.body.decode()
    deltas = [d["delta"] for _, d in matched.sse() if d["type"] == "response.output_text.delta"]
    assert "".join(deltas) == "matched"


def test_a_script_given_at_construction_is_used() -> None:
    with FakeProvider(Script(default=TextReply("from the script"))) as scripted:
        reply = call(f"{scripted.url}/v1/messages", anthropic_body("x"))

    assert anthropic_text(reply.sse()) == "from the script"


def test_a_tool_call_is_sent_in_each_providers_own_shape(fake: FakeProvider) -> None:
    fake.script.add(ToolCallReply("Bash", {"command": "ls"}, call_id="toolu_1"))

    anthropic = call(f"{fake.url}/v1/messages", anthropic_body("x")).sse()
    openai = call(f"{fake.url}/v1/responses", openai_body("x")).sse()
    gemini = call(gemini_stream_url(fake), gemini_body("x")).sse()

    block = next(d for _, d in anthropic if d["type"] == "content_block_start")["content_block"]
    assert block == {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}
    partial = next(d for _, d in anthropic if d["type"] == "content_block_delta")["delta"]
    assert json.loads(partial["partial_json"]) == {"command": "ls"}
    assert (
        next(d for _, d in anthropic if d["type"] == "message_delta")["delta"]["stop_reason"]
        == "tool_use"
    )
    item = next(d for _, d in openai if d["type"] == "response.output_item.done")["item"]
    assert (item["type"], item["name"], item["call_id"]) == ("function_call", "Bash", "toolu_1")
    assert json.loads(item["arguments"]) == {"command": "ls"}
    (chunk,) = [d for _, d in gemini]
    part = chunk["candidates"][0]["content"]["parts"][0]
    assert part == {"functionCall": {"name": "Bash", "args": {"command": "ls"}}}


def test_a_slow_marker_spaces_the_chunks_by_its_delay(fake: FakeProvider) -> None:
    delay = 0.05
    started = time.monotonic()

    reply = call(f"{fake.url}/v1/messages", anthropic_body("slowly [[slow:50]]"))

    elapsed = time.monotonic() - started
    events = reply.sse()
    assert anthropic_text(events) == default_reply_text("slowly ")
    assert elapsed >= delay * (len(events) - 1)


# --- concurrency, hanging and stopping -------------------------------------------------


def open_stream(fake: FakeProvider, prompt: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=HTTP_TIMEOUT_SECONDS)
    conn.request(
        "POST",
        "/v1/messages",
        body=json.dumps(anthropic_body(prompt)),
        headers={"content-type": "application/json"},
    )
    return conn.getresponse()


def test_a_hanging_stream_does_not_block_other_requests(fake: FakeProvider) -> None:
    hanging = open_stream(fake, "wait [[hang]]")
    assert hanging.status == 200
    first_line = hanging.readline()

    other = call(f"{fake.url}/v1/messages", anthropic_body("meanwhile"))

    assert first_line == b"event: message_start\n"
    assert anthropic_text(other.sse()) == default_reply_text("meanwhile")
    assert isinstance(fake.requests[0].reply, HangReply)


def test_stopping_the_provider_ends_a_hanging_stream_at_once(fake: FakeProvider) -> None:
    hanging = open_stream(fake, "wait [[hang]]")
    read_first_delta = b""
    while b"content_block_delta" not in read_first_delta:
        read_first_delta += hanging.readline()
    started = time.monotonic()

    fake.stop()
    try:
        rest = hanging.read()
    except http.client.IncompleteRead as cut:  # the stream ends without its last chunk
        rest = cut.partial

    assert time.monotonic() - started < HTTP_TIMEOUT_SECONDS / 2
    assert b"message_stop" not in rest


def test_a_hang_before_headers_sends_nothing_until_stopped(fake: FakeProvider) -> None:
    fake.script.add(HangReply(send_headers=False))
    outcome: list[BaseException | int] = []

    def request() -> None:
        try:
            outcome.append(open_stream(fake, "x").status)
        except (OSError, http.client.HTTPException) as error:
            outcome.append(error)

    worker = threading.Thread(target=request)
    worker.start()
    fake.wait_for_requests(1, timeout=HTTP_TIMEOUT_SECONDS, api=ApiKind.ANTHROPIC)
    assert outcome == []  # still waiting for headers

    fake.stop()
    worker.join(HTTP_TIMEOUT_SECONDS)

    assert not worker.is_alive()
    assert len(outcome) == 1
    assert not isinstance(outcome[0], int)


def test_many_streams_are_served_concurrently(fake: FakeProvider) -> None:
    prompts = [f"parallel {i} [[slow:20]]" for i in range(8)]
    texts: dict[str, str] = {}

    def fetch(prompt: str) -> None:
        texts[prompt] = anthropic_text(
            call(f"{fake.url}/v1/messages", anthropic_body(prompt)).sse()
        )

    workers = [threading.Thread(target=fetch, args=(p,)) for p in prompts]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(HTTP_TIMEOUT_SECONDS)

    assert texts == {p: default_reply_text(p.replace(" [[slow:20]]", "")) for p in prompts}
    assert len(fake.requests_for(ApiKind.ANTHROPIC)) == len(prompts)


def test_wait_for_requests_raises_a_timeout_that_lists_what_did_arrive(
    fake: FakeProvider,
) -> None:
    call(f"{fake.url}/", method="HEAD")

    with pytest.raises(TimeoutError, match=r"HEAD / \[probe\]"):
        fake.wait_for_requests(2, timeout=0.05)


# --- the request log -------------------------------------------------------------------


def test_logged_requests_keep_headers_and_body_but_redact_secrets_when_printed(
    fake: FakeProvider,
) -> None:
    call(
        f"{fake.url}/v1/messages",
        anthropic_body("x"),
        headers={"x-api-key": "sk-ant-very-secret", "authorization": "Bearer tok-secret"},
    )

    (logged,) = fake.requests
    assert logged.headers["x-api-key"] == "sk-ant-very-secret"
    assert logged.body["model"] == "claude-test"
    printed = repr(logged) + logged.summary()
    assert "sk-ant-very-secret" not in printed
    assert "tok-secret" not in printed
    assert "'x-api-key': '***'" in printed


def test_a_gzip_request_body_is_decoded(fake: FakeProvider) -> None:
    raw = gzip.compress(json.dumps(anthropic_body("zipped")).encode())

    reply = call(f"{fake.url}/v1/messages", raw=raw, headers={"content-encoding": "gzip"})

    assert reply.status == 200
    assert fake.requests[0].prompt == "zipped"


def test_clear_empties_the_log(fake: FakeProvider) -> None:
    call(f"{fake.url}/", method="HEAD")

    fake.clear()

    assert fake.requests == []


# --- usage mapping ---------------------------------------------------------------------


def test_reasoning_tokens_cannot_exceed_output_tokens() -> None:
    with pytest.raises(ValueError, match="reasoning_tokens"):
        FakeUsage(output_tokens=1, reasoning_tokens=2)


def test_every_providers_usage_adds_up_to_the_same_total() -> None:
    total = USAGE.input_tokens + USAGE.cache_read_tokens + USAGE.cache_write_tokens
    total += USAGE.output_tokens

    assert sum(anthropic_usage(USAGE).values()) == total
    assert openai_usage(USAGE)["total_tokens"] == total
    assert gemini_usage(USAGE)["totalTokenCount"] == total


# --- as a program ----------------------------------------------------------------------


def test_the_module_runs_as_a_program_that_prints_its_url_and_serves() -> None:
    program = subprocess.Popen(
        [sys.executable, "-m", "aiswitch.testing.fake_provider", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert program.stdout is not None
        url = program.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        reply = call(f"{url}/v1/messages", anthropic_body("hello program"))
        assert anthropic_text(reply.sse()) == default_reply_text("hello program")
    finally:
        program.terminate()
        program.wait(STARTUP_TIMEOUT_SECONDS)
    assert program.returncode == 0
    assert program.stderr is not None
    assert "RuntimeWarning" not in program.stderr.read()
