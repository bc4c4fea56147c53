"""The real claude, codex and gemini CLIs, run headless against the fake provider.

Each test runs one pinned CLI (scripts/setup/agent-clis.sh installs them) as a
subprocess with a hard timeout, its own temporary HOME and config folder, and an
environment built from scratch (PATH, HOME, TMPDIR and the provider's variables only),
pointed at `aiswitch.testing.fake_provider` on 127.0.0.1. They pin down what the
adapters rely on: the command line and env that run each CLI offline, the scripted
text arriving in its JSON event stream, the usage in its final event equal to what the
fake sent, exit codes, error events, and that the CLI calls only the endpoints we
expect (anything else would leave this machine or hit a path we do not serve).

docs/cli-events.md describes the streams; ``AISWITCH_RECORD_CLI_FIXTURES=1`` makes these
tests rewrite the captured streams in tests/fixtures/cli/ (scrubbed of temp paths and
ports).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.clis import cli_bin_dir, cli_path, node_bin_dir

from aiswitch.testing.fake_provider import FakeProvider
from aiswitch.testing.fake_script import (
    ApiKind,
    ErrorReply,
    FakeUsage,
    RecordedRequest,
    Script,
    TextReply,
    ToolCallReply,
    anthropic_usage,
    gemini_usage,
    openai_usage,
)

pytestmark = pytest.mark.realcli

# One run takes 1-3 s; the cap only ends a CLI that hangs (e.g. a retry loop).
CLI_TIMEOUT_SECONDS = 60
FIXTURES = Path(__file__).parent / "fixtures" / "cli"
RECORD_FIXTURES = os.environ.get("AISWITCH_RECORD_CLI_FIXTURES") == "1"

SCRIPTED_TEXT = "Scripted answer: the parser now has three new tests."
# Distinct numbers, so that a swapped or dropped field shows.
SCRIPTED_USAGE = FakeUsage(
    input_tokens=1200,
    output_tokens=340,
    cache_read_tokens=560,
    cache_write_tokens=78,
    reasoning_tokens=90,
)
# An explicit model keeps gemini off its model router (an extra generateContent call);
# a name it does not know keeps it off its built-in model fallback chain.
GEMINI_MODEL = "fake-gemini"
TOOL_MARKER = "tool-output-7f3a"


@dataclass
class CliRun:
    """What one CLI run printed."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON objects on stdout; the CLIs print nothing else there in JSON mode."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    def describe(self) -> str:
        tail = 4000  # enough to see the last events and a stack trace
        return (
            f"exit {self.returncode}\nstdout:\n{self.stdout[-tail:]}\n"
            f"stderr:\n{self.stderr[-tail:]}"
        )


@dataclass
class Sandbox:
    """A private HOME (with the CLI's config) and an empty working folder."""

    home: Path
    work: Path

    def env(self, **provider_vars: str) -> dict[str, str]:
        tmp = self.home / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        path = os.pathsep.join([str(cli_bin_dir()), str(node_bin_dir()), "/usr/bin", "/bin"])
        # TMPDIR keeps gemini's error reports (written to the temp dir) inside the sandbox.
        return {"PATH": path, "HOME": str(self.home), "TMPDIR": str(tmp), **provider_vars}


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    work = tmp_path / "work"
    work.mkdir()
    return Sandbox(home=tmp_path / "home", work=work)


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider(Script(default=TextReply(SCRIPTED_TEXT, usage=SCRIPTED_USAGE))) as fake:
        yield fake


def run(argv: Sequence[str], env: dict[str, str], cwd: Path) -> CliRun:
    # stdin is closed: codex reads a piped stdin as extra prompt and would wait on a tty.
    done = subprocess.run(
        list(argv),
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )
    return CliRun(done.returncode, done.stdout, done.stderr)


# --- how each CLI is started headless against the fake -----------------------------


def run_claude(provider: FakeProvider, box: Sandbox, prompt: str, *extra: str) -> CliRun:
    env = box.env(
        ANTHROPIC_BASE_URL=provider.url,
        ANTHROPIC_API_KEY="sk-ant-fake-key",
        CLAUDE_CONFIG_DIR=str(box.home / ".claude"),
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        # No retries: an error test must see the first failure, not wait out backoff.
        CLAUDE_CODE_MAX_RETRIES="0",
        # Root may use bypassPermissions only in a declared sandbox.
        IS_SANDBOX="1",
    )
    argv = [str(cli_path("claude")), "-p", prompt, "--output-format", "stream-json", "--verbose"]
    return run([*argv, *extra], env, box.work)


def codex_argv(provider: FakeProvider) -> list[str]:
    return [
        str(cli_path("codex")),
        "exec",
        "--json",
        "--skip-git-repo-check",
        # Plugins sync from github.com and analytics post to chatgpt.com; both off.
        "--disable",
        "plugins",
        "-c",
        "analytics.enabled=false",
        "-c",
        "model_provider=aiswitch",
        "-c",
        "model_providers.aiswitch.name=aiswitch",
        "-c",
        f"model_providers.aiswitch.base_url={provider.url}/v1",
        "-c",
        "model_providers.aiswitch.env_key=OPENAI_API_KEY",
        "-c",
        "model_providers.aiswitch.wire_api=responses",
        "-c",
        "model_providers.aiswitch.request_max_retries=0",
        "-c",
        "model_providers.aiswitch.stream_max_retries=0",
    ]


def run_codex(provider: FakeProvider, box: Sandbox, *args: str) -> CliRun:
    codex_home = box.home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    env = box.env(OPENAI_API_KEY="sk-fake-openai-key", CODEX_HOME=str(codex_home))
    return run([*codex_argv(provider), *args], env, box.work)


def run_gemini(provider: FakeProvider, box: Sandbox, prompt: str, *extra: str) -> CliRun:
    settings_dir = box.home / ".gemini"
    settings_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        # Without this, GOOGLE_GEMINI_BASE_URL + GEMINI_API_KEY exit 41 "Invalid auth method".
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        # Usage statistics go to play.googleapis.com.
        "privacy": {"usageStatisticsEnabled": False},
        "general": {"maxAttempts": 1, "enableAutoUpdate": False},
    }
    (settings_dir / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    env = box.env(
        GEMINI_API_KEY="fake-gemini-key",
        GEMINI_CLI_HOME=str(box.home),
        GOOGLE_GEMINI_BASE_URL=provider.url,
        GEMINI_CLI_TRUST_WORKSPACE="true",
    )
    argv = [str(cli_path("gemini")), "-p", prompt, "-o", "stream-json", "-m", GEMINI_MODEL]
    return run([*argv, *extra], env, box.work)


# --- shared checks -----------------------------------------------------------------


def endpoints(provider: FakeProvider) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in provider.requests]


def api_calls(provider: FakeProvider, api: ApiKind) -> list[RecordedRequest]:
    calls = provider.requests_for(api)
    assert not provider.unexpected_requests(), endpoints(provider)
    return calls


def record(name: str, result: CliRun, provider: FakeProvider, box: Sandbox) -> None:
    """Save a scrubbed copy of the stream as a fixture when asked to."""
    if not RECORD_FIXTURES:
        return
    text = result.stdout.replace(str(box.home), "$HOME").replace(str(box.work), "$WORK")
    text = text.replace(str(box.work.parent), "$TMP")
    # Claude names its per-project folder after the cwd with every non-alphanumeric as "-".
    text = text.replace(re.sub(r"[^A-Za-z0-9]", "-", str(box.work)), "-WORK")
    text = text.replace(provider.url, "http://127.0.0.1:PORT")
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / f"{name}.jsonl").write_text(text, encoding="utf-8")


# --- claude ------------------------------------------------------------------------


def test_claude_prints_the_scripted_text_and_the_fake_usage_in_its_result_event(
    provider: FakeProvider, sandbox: Sandbox
) -> None:
    result = run_claude(provider, sandbox, "Add tests for the parser")
    record("claude-text", result, provider, sandbox)

    assert result.returncode == 0, result.describe()
    init, *_ = result.of_type("system")
    assert init["subtype"] == "init"
    (final,) = result.of_type("result")
    assert final["subtype"] == "success"
    assert final["is_error"] is False
    assert final["result"] == SCRIPTED_TEXT
    assert final["session_id"] == init["session_id"]
    assert final["num_turns"] == 1
    assert {k: final["usage"][k] for k in anthropic_usage(SCRIPTED_USAGE)} == anthropic_usage(
        SCRIPTED_USAGE
    )
    texts = [
        block["text"]
        for event in result.of_type("assistant")
        for block in event["message"]["content"]
        if block["type"] == "text"
    ]
    assert texts == [SCRIPTED_TEXT]
    assert endpoints(provider) == [("HEAD", "/"), ("POST", "/v1/messages")]
    (call,) = api_calls(provider, ApiKind.ANTHROPIC)
    assert call.query == {"beta": ["true"]}
    assert call.headers["x-api-key"] == "sk-ant-fake-key"
    assert call.prompt == "Add tests for the parser"


def test_claude_reports_an_http_429_as_an_error_result_and_exits_1(
    provider: FakeProvider, sandbox: Sandbox
) -> None:
    provider.script.add(ErrorReply(429, "slow down, fake"), api=ApiKind.ANTHROPIC)

    result = run_claude(provider, sandbox, "Add tests for the parser")
    record("claude-error-429", result, provider, sandbox)

    assert result.returncode == 1, result.describe()
    (final,) = result.of_type("result")
    assert final["is_error"] is True
    assert final["api_error_status"] == 429
    assert "slow down, fake" in final["result"]
    (assistant,) = result.of_type("assistant")
    assert assistant["error"] == "rate_limit"
    assert assistant["message"]["model"] == "<synthetic>"
    # CLAUDE_CODE_MAX_RETRIES=0: exactly one attempt.
    assert len(api_calls(provider, ApiKind.ANTHROPIC)) == 1


def test_claude_runs_a_scripted_tool_call_and_adds_up_usage_over_both_requests(
    provider: FakeProvider, sandbox: Sandbox
) -> None:
    command = {"command": f"echo {TOOL_MARKER}", "description": "print a marker"}
    provider.script.add(ToolCallReply("Bash", command, usage=SCRIPTED_USAGE), times=1)

    result = run_claude(
        provider, sandbox, "Run the marker command", "--permission-mode", "bypassPermissions"
    )
    record("claude-tool", result, provider, sandbox)

    assert result.returncode == 0, result.describe()
    uses = [
        block
        for event in result.of_type("assistant")
        for block in event["message"]["content"]
        if block["type"] == "tool_use"
    ]
    assert [(u["name"], u["input"]) for u in uses] == [("Bash", command)]
    tool_results = [
        block
        for event in result.of_type("user")
        for block in event["message"]["content"]
        if block["type"] == "tool_result"
    ]
    assert [r["tool_use_id"] for r in tool_results] == [uses[0]["id"]]
    assert TOOL_MARKER in tool_results[0]["content"]
    (final,) = result.of_type("result")
    assert final["num_turns"] == 2
    assert final["usage"]["input_tokens"] == 2 * SCRIPTED_USAGE.input_tokens
    assert final["usage"]["output_tokens"] == 2 * SCRIPTED_USAGE.output_tokens
    assert len(api_calls(provider, ApiKind.ANTHROPIC)) == 2


def test_claude_resumes_a_session_by_id_and_sends_the_earlier_turn_again(
    provider: FakeProvider, sandbox: Sandbox
) -> None:
    first = run_claude(provider, sandbox, "Remember the word heliotrope")
    session_id = first.of_type("result")[0]["session_id"]

    second = run_claude(provider, sandbox, "Which word?", "--resume", session_id)

    assert second.returncode == 0, second.describe()
    assert second.of_type("result")[0]["session_id"] == session_id
    last_call = api_calls(provider, ApiKind.ANTHROPIC)[-1]
    history = json.dumps(last_call.body["messages"])
    assert "Remember the word heliotrope" in history
    assert SCRIPTED_TEXT in history


# --- codex -------------------------------------------------------------------------


def test_codex_prints_the_scripted_text_and_the_fake_usage_in_turn_completed(
    provider: FakeProvider, sandbox: Sandbox
) -> None:
    result = run_codex(provider, sandbox, "Add tests for the parser")
    record("codex-text", result, provider, sandbox)

    assert result.returncode == 0, result.describe()
    kinds = [e["type"] for e in result.events]
    assert kinds == ["thread.started", "turn.started", "item.completed", "turn.completed"]
    (message,) = result.of_type("item.completed")
    assert message["item"] == {"id": "item_0", "type": "agent_message", "text": SCRIPTED_TEXT}
    (done,) = result.of_type("turn.completed")
    wire = openai_usage(SCRIPTED_USAGE)
    assert done["usage"]["input_tokens"] == wire["input_tokens"]
    assert done["usage"]["cached_input_tokens"] == SCRIPTED_USAGE.cache_read_tokens
    assert done["usage"]["output_tokens"] == SCRIPTED_USAGE.output_tokens
    assert done["usage"]["reasoning_output_tokens"] == SCRIPTED_USAGE.reasoning_tokens
    assert endpoints(provider) == [("POST", "/v1/responses")]
    (call,) = api_calls(provider, ApiKind.OPENAI)
    assert call.headers["authorization"] == "Bearer sk-fake-openai-key"
    assert call.prompt == "Add tests for the parser"


def test_codex_reports_an_http_500_as_error_and_turn_failed_and_exits_1(
    provider: FakeProvider, sandbox: Sandbox
) -> None:
    provider.script.add(ErrorReply(500, "fake server exploded"), api=ApiKind.OPENAI)

    result = run_codex(provider, sandbox, "Add tests for the parser")
    record("codex-error-500", result, provider, sandbox)

    assert result.returncode == 1, result.describe()
    kinds = [e["type"] for e in result.events]
    assert kinds == ["thread.started", "turn.started", "error", "turn.failed"]
    (failed,) = result.of_type("turn.failed")
    assert failed["error"]["message"] == result.of_type("error")[0]["message"]
    # request_max_retries=0: exactly one attempt.
    assert len(api_calls(provider, ApiKind.OPENAI)) == 1


def test_codex_reports_an_http_401_with_the_status_and_the_providers_message(
    provider: FakeProvider, sandbox: Sandbox
) -> None:
    provider.script.add(ErrorReply(401, "fake key rejected"), api=ApiKind.OPENAI)

    result = run_codex(provider, sandbox, "Add tests for the parser")
    record("codex-error-401", result, provider, sandbox)

    assert result.returncode == 1, result.describe()
    (failed,) = result.of_type("turn.failed")
    assert "401 Unauthorized" in failed["error"]["message"]
    assert "fake key rejected" in failed["error"]["message"]


def test_codex_runs_a_scripted_exec_command_call_and_reports_a_command_execution_item(
    provider: FakeProvider, sandbox: Sandbox
) -> None:
    provider.script.add(ToolCallReply("exec_command", {"cmd": f"echo {TOOL_MARKER}"}), times=1)

    result = run_codex(provider, sandbox, "Run the marker command")
    record("codex-tool", result, provider, sandbox)

    assert result.returncode == 0, result.describe()
    (started,) = result.of_type("item.started")
    assert started["item"]["type"] == "command_execution"
    assert started["item"]["status"] == "in_progress"
    commands = [e["item"] for e in result.of_type("item.completed")]
    assert [c["type"] for c in commands] == ["command_execution", "agent_message"]
    assert commands[0]["id"] == started["item"]["id"]
    assert commands[0]["exit_code"] == 0
    assert TOOL_MARKER in commands[0]["aggregated_output"]
    second_call = api_calls(provider, ApiKind.OPENAI)[1]
    outputs = [i for i in second_call.body["input"] if i.get("type") == "function_call_output"]
    assert [o["call_id"] for o in outputs] == ["call_fake_1"]
    assert TOOL_MARKER in outputs[0]["output"]


def test_codex_resumes_a_thread_by_id_and_sends_the_earlier_turn_again(
    provider: FakeProvider, sandbox: Sandbox
) -> None:
    first = run_codex(provider, sandbox, "Remember the word heliotrope")
    thread_id = first.of_type("thread.started")[0]["thread_id"]

    second = run_codex(provider, sandbox, "resume", thread_id, "Which word?")

    assert second.returncode == 0, second.describe()
    assert second.of_type("thread.started")[0]["thread_id"] == thread_id
    last_call = api_calls(provider, ApiKind.OPENAI)[-1]
    history = json.dumps(last_call.body["input"])
    assert "Remember the word heliotrope" in history
    assert SCRIPTED_TEXT in history
    assert last_call.prompt == "Which word?"


# --- gemini ------------------------------------------------------------------------


def test_gemini_streams_the_scripted_text_and_the_fake_usage_in_its_result_stats(
    provider: FakeProvider, sandbox: Sandbox
) -> None:
    result = run_gemini(provider, sandbox, "Add tests for the parser")
    record("gemini-text", result, provider, sandbox)

    assert result.returncode == 0, result.describe()
    (init,) = result.of_type("init")
    assert init["model"] == GEMINI_MODEL
    deltas = [e for e in result.of_type("message") if e["role"] == "assistant"]
    assert all(e["delta"] is True for e in deltas)
    assert "".join(e["content"] for e in deltas) == SCRIPTED_TEXT
    (final,) = result.of_type("result")
    assert final["status"] == "success"
    wire = gemini_usage(SCRIPTED_USAGE)
    stats = final["stats"]
    assert stats["input_tokens"] == wire["promptTokenCount"]
    assert stats["cached"] == wire["cachedContentTokenCount"]
    assert stats["input"] == wire["promptTokenCount"] - wire["cachedContentTokenCount"]
    # Gemini's output_tokens are candidates only; thoughts show only in the total.
    assert stats["output_tokens"] == wire["candidatesTokenCount"]
    assert stats["total_tokens"] == wire["totalTokenCount"]
    assert stats["models"][GEMINI_MODEL]["input_tokens"] == wire["promptTokenCount"]
    assert endpoints(provider) == [("POST", f"/v1beta/models/{GEMINI_MODEL}:streamGenerateContent")]
    (call,) = api_calls(provider, ApiKind.GEMINI)
    assert call.query == {"alt": ["sse"]}
    assert call.headers["x-goog-api-key"] == "fake-gemini-key"
    assert call.prompt == "Add tests for the parser"


def test_gemini_reports_an_http_429_as_an_error_result_and_exits_with_the_status_mod_256(
    provider: FakeProvider, sandbox: Sandbox
) -> None:
    provider.script.add(ErrorReply(429, "fake quota gone"), api=ApiKind.GEMINI)

    result = run_gemini(provider, sandbox, "Add tests for the parser")
    record("gemini-error-429", result, provider, sandbox)

    # gemini exits with the HTTP status as its exit code, which the OS truncates to a byte.
    assert result.returncode == 429 % 256, result.describe()
    (final,) = result.of_type("result")
    assert final["status"] == "error"
    assert "fake quota gone" in final["error"]["message"]
    assert final["stats"]["total_tokens"] == 0
    # general.maxAttempts=1 and an unknown model name: exactly one attempt.
    assert len(api_calls(provider, ApiKind.GEMINI)) == 1


def test_gemini_runs_a_scripted_tool_call_and_reports_tool_use_and_tool_result(
    provider: FakeProvider, sandbox: Sandbox
) -> None:
    (sandbox.work / f"{TOOL_MARKER}.txt").write_text("x", encoding="utf-8")
    provider.script.add(ToolCallReply("list_directory", {"dir_path": "."}), times=1)

    result = run_gemini(provider, sandbox, "List the files")
    record("gemini-tool", result, provider, sandbox)

    assert result.returncode == 0, result.describe()
    (use,) = result.of_type("tool_use")
    assert (use["tool_name"], use["parameters"]) == ("list_directory", {"dir_path": "."})
    (tool_result,) = result.of_type("tool_result")
    assert tool_result["tool_id"] == use["tool_id"]
    assert tool_result["status"] == "success"
    assert result.of_type("result")[0]["stats"]["tool_calls"] == 1
    second_call = api_calls(provider, ApiKind.GEMINI)[1]
    assert TOOL_MARKER in json.dumps(second_call.body["contents"][-1])


def test_gemini_resumes_a_session_by_id_and_sends_the_earlier_turn_again(
    provider: FakeProvider, sandbox: Sandbox
) -> None:
    first = run_gemini(provider, sandbox, "Remember the word heliotrope")
    assert first.returncode == 0, first.describe()
    session_id = first.of_type("init")[0]["session_id"]

    second = run_gemini(provider, sandbox, "Which word?", "--resume", session_id)

    assert second.returncode == 0, second.describe()
    assert second.of_type("init")[0]["session_id"] == session_id
    last_call = api_calls(provider, ApiKind.GEMINI)[-1]
    history = json.dumps(last_call.body["contents"])
    assert "Remember the word heliotrope" in history
    assert SCRIPTED_TEXT in history
    assert last_call.prompt == "Which word?"
