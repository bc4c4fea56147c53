"""The codex adapter's translation of `codex exec --json`, replayed from the captured
streams in tests/fixtures/cli/, and the command (custom provider, sandbox, resume) and
environment it builds. No network and no real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiswitch_adapters._drive import (
    Exit,
    Progress,
    Report,
)
from aiswitch_adapters._usage import UsageReport
from aiswitch_adapters.codex import (
    CodexTranslator,
    build_argv,
    build_env,
    normalise_usage,
    refusals,
    session_model_lookup,
)
from test_adapter_common import make_ctx

from aiswitch.adapter_sdk import TaskFailed
from aiswitch.tokens.usage import Usage

FIXTURES = Path(__file__).parent / "fixtures" / "cli"
SCRIPTED_TEXT = "Scripted answer: the parser now has three new tests."
# The fake's scripted usage (input 1200, cache read 560, cache write 78, output 340,
# reasoning 90) as OpenAI's wire carries it: cache writes fold into input.
SCRIPTED_NORMALISED = Usage(
    input_tokens=1200 + 78, output_tokens=340, cache_read_tokens=560, reasoning_tokens=90
)


def replay(name: str, **kwargs: Any) -> tuple[CodexTranslator, list[Report]]:
    translator = CodexTranslator(**kwargs)
    reports: list[Report] = []
    for line in (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            reports += translator.feed(json.loads(line))
    return translator, reports


def usage_reports(reports: list[Report]) -> list[UsageReport]:
    return [r for r in reports if isinstance(r, UsageReport)]


def progress(reports: list[Report], kind: str) -> list[str]:
    return [r.text for r in reports if isinstance(r, Progress) and r.kind == kind]


def test_a_text_answer_gives_the_output_the_thread_id_and_normalised_usage() -> None:
    translator, reports = replay("codex-text", model="gpt-6.1-sol")
    assert progress(reports, "text") == [SCRIPTED_TEXT]
    (usage,) = usage_reports(reports)
    # input_tokens 1838 on the wire includes the 560 cached ones.
    assert usage.usage == SCRIPTED_NORMALISED
    assert usage.model == "gpt-6.1-sol"
    outcome = translator.finish(Exit(0))
    assert outcome.output == SCRIPTED_TEXT
    assert outcome.session_id == "01a200ff-0332-7293-9314-2d4392a417a1"
    assert outcome.usage == SCRIPTED_NORMALISED


def test_a_command_run_becomes_tool_progress_and_the_answer_is_the_last_message() -> None:
    translator, reports = replay("codex-tool")
    assert progress(reports, "tool") == [
        "$ /bin/bash -lc 'echo tool-output-7f3a'",
        "exit 0: tool-output-7f3a",
    ]
    (usage,) = usage_reports(reports)
    assert usage.usage == Usage(
        input_tokens=1995 - 590, output_tokens=382, cache_read_tokens=590, reasoning_tokens=95
    )
    assert translator.finish(Exit(0)).output == SCRIPTED_TEXT


@pytest.mark.parametrize(
    ("fixture", "fragment"),
    [
        ("codex-error-500", "We’re currently experiencing high demand"),
        ("codex-error-401", "401 Unauthorized: fake key rejected"),
    ],
)
def test_a_failed_turn_fails_the_task_with_codexs_message(fixture: str, fragment: str) -> None:
    translator, reports = replay(fixture)
    assert usage_reports(reports) == []
    with pytest.raises(TaskFailed) as caught:
        translator.finish(Exit(1))
    assert caught.value.message.startswith("codex: ")
    assert fragment in caught.value.message


def test_a_codex_that_exits_without_completing_a_turn_fails() -> None:
    translator = CodexTranslator()
    translator.feed({"type": "thread.started", "thread_id": "t"})
    with pytest.raises(TaskFailed, match="codex exited with code 0 before its result"):
        translator.finish(Exit(0))
    with pytest.raises(TaskFailed, match="code 1: Error: no such model"):
        translator.finish(Exit(1, "Error: no such model"))


def test_cache_writes_are_taken_out_of_the_input_tokens_that_contain_them() -> None:
    raw = {
        "input_tokens": 1000,
        "cached_input_tokens": 300,
        "cache_write_input_tokens": 100,
        "output_tokens": 50,
        "reasoning_output_tokens": 10,
    }
    assert normalise_usage(raw) == Usage(
        input_tokens=600,
        cache_read_tokens=300,
        cache_write_tokens=100,
        output_tokens=50,
        reasoning_tokens=10,
    )


def test_the_model_comes_from_codexs_session_file_when_not_given(tmp_path: Path) -> None:
    day = tmp_path / "sessions" / "2026" / "11" / "22"
    day.mkdir(parents=True)
    thread = "01a200ff-0332-7293-9314-2d4392a417a1"
    records = [
        {"type": "session_meta", "payload": {"id": thread}},
        {"type": "turn_context", "payload": {"model": "gpt-6.1-sol"}},
    ]
    (day / f"rollout-2026-11-22T02-08-12-{thread}.jsonl").write_text(
        "\n".join(json.dumps(r) for r in records) + "\n"
    )
    _, reports = replay("codex-text", model_lookup=session_model_lookup(tmp_path))
    assert usage_reports(reports)[0].model == "gpt-6.1-sol"


# -- the command and its environment --------------------------------------------------


def test_a_base_url_gives_codex_the_aiswitch_provider_with_the_openai_key_variable() -> None:
    env = {"OPENAI_BASE_URL": "https://api.moonshot.ai/v1", "OPENAI_API_KEY": "sk-x"}
    argv = build_argv("codex", make_ctx(), env, "edit")
    settings = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-c"]
    assert 'model_provider="aiswitch"' in settings
    assert 'model_providers.aiswitch.base_url="https://api.moonshot.ai/v1"' in settings
    assert 'model_providers.aiswitch.env_key="OPENAI_API_KEY"' in settings
    assert 'model_providers.aiswitch.wire_api="responses"' in settings
    assert 'model_providers.aiswitch.name="moonshot"' in settings
    assert "model_providers.aiswitch.request_max_retries=0" in settings
    assert "model_providers.aiswitch.stream_max_retries=0" in settings
    assert "analytics.enabled=false" in settings
    assert argv[argv.index("--disable") + 1] == "plugins"


def test_without_a_base_url_codex_keeps_its_own_provider() -> None:
    argv = build_argv("codex", make_ctx(), {}, "edit")
    assert not any(arg.startswith("model_provider") for arg in argv)


@pytest.mark.parametrize(
    ("level", "flags"),
    [
        ("read-only", ["--sandbox", "read-only"]),
        ("edit", ["--sandbox", "workspace-write"]),
        ("full", ["--dangerously-bypass-approvals-and-sandbox"]),
    ],
)
def test_each_permission_level_is_a_codex_sandbox(level: str, flags: list[str]) -> None:
    argv = build_argv("codex", make_ctx(), {}, level)  # type: ignore[arg-type]
    start = argv.index(flags[0])
    assert argv[start : start + len(flags)] == flags


def test_resume_goes_after_the_options_and_the_prompt_comes_from_stdin() -> None:
    ctx = make_ctx(session_id="01a200ff-0332-7293-9314-2d4392a417a1")
    argv = build_argv("codex", ctx, {"OPENAI_MODEL": "gpt-5-codex"}, "edit")
    assert argv[-3:] == ["resume", "01a200ff-0332-7293-9314-2d4392a417a1", "-"]
    assert argv[argv.index("-m") + 1] == "gpt-5-codex"


def test_codex_home_is_per_preset_and_created(tmp_path: Path) -> None:
    env = build_env(make_ctx(env={"AISWITCH_HOME": str(tmp_path), "AISWITCH_PRESET": "ds"}))
    assert env["CODEX_HOME"] == str(tmp_path / "homes" / "codex" / "ds")
    assert Path(env["CODEX_HOME"]).is_dir()
    custom = tmp_path / "elsewhere" / "codex"
    own = build_env(make_ctx(env={"CODEX_HOME": str(custom)}))
    assert own["CODEX_HOME"] == str(custom) and custom.is_dir()


def rollout(*payloads: dict[str, Any]) -> list[bytes]:
    """Rollout lines as codex 0.169.0 writes them (only the fields the reader uses)."""
    return [json.dumps({"type": "response_item", "payload": p}).encode() for p in payloads]


def call(call_id: str, command: str) -> dict[str, Any]:
    arguments = json.dumps({"cmd": command})
    return {
        "type": "function_call",
        "name": "exec_command",
        "arguments": arguments,
        "call_id": call_id,
    }


def output(call_id: str, text: str, kind: str = "function_call_output") -> dict[str, Any]:
    return {"type": kind, "call_id": call_id, "output": text}


def ran(call_id: str) -> dict[str, Any]:
    return {"type": "item_completed", "item": {"type": "CommandExecution", "id": call_id}}


DENIED_OUTPUT = (
    "Chunk ID: 783cef\nWall time: 0.0000 seconds\nProcess exited with code 1\n"
    "Original token count: 14\nOutput:\ntouch: cannot touch 'made.txt': Read-only file system\n"
)


def test_what_codex_refused_in_the_last_turn_of_its_rollout_is_waiting() -> None:
    patch = "*** Begin Patch\n*** Add File: made.txt\n+hi\n*** End Patch\n"
    lines = rollout(
        call("old", "touch old.txt"),  # an earlier turn of a resumed thread
        output("old", DENIED_OUTPUT),
        {"type": "task_started"},
        {"type": "custom_tool_call", "name": "apply_patch", "input": patch, "call_id": "p1"},
        output(
            "p1",
            "patch rejected: writing is blocked by read-only sandbox; rejected by user "
            "approval settings",
            "custom_tool_call_output",
        ),
        call("c1", "touch made.txt"),
        output("c1", DENIED_OUTPUT),
        call("c2", "touch made.txt"),
        output(
            "c2",
            "approval policy is Never; reject command — you cannot ask for escalated "
            "permissions if the approval policy is Never",
        ),
        call("c3", "cat missing"),  # ran and failed, not for the sandbox
        ran("c3"),
        output("c3", "Process exited with code 1\nOutput:\ncat: missing: No such file\n"),
        call("c4", "touch b.txt"),  # refused by the sandbox, with an item this time
        ran("c4"),
        output("c4", DENIED_OUTPUT.replace("made.txt", "b.txt")),
        {"type": "function_call", "name": "request_user_input", "arguments": "{}", "call_id": "q"},
        output("q", "request_user_input is unavailable in Default mode"),
    )
    found = refusals(lines, "read-only")
    assert [(p.kind, p.text) for p in found] == [
        (
            "waiting",
            "permission denied: apply_patch made.txt (writing is blocked by read-only sandbox)",
        ),
        (
            "waiting",
            "permission denied: touch made.txt (the read-only sandbox: "
            "touch: cannot touch 'made.txt': Read-only file system)",
        ),
        (
            "waiting",
            "permission denied: touch made.txt (outside the sandbox: approval policy is never)",
        ),
        (
            "waiting",
            "permission denied: touch b.txt (the read-only sandbox: "
            "touch: cannot touch 'b.txt': Read-only file system)",
        ),
    ]


def test_without_a_sandbox_a_failed_command_is_no_refusal() -> None:
    lines = rollout(call("c1", "touch made.txt"), output("c1", DENIED_OUTPUT))
    assert refusals(lines, None) == []
    assert [p.kind for p in refusals(lines, "workspace-write")] == ["waiting"]
