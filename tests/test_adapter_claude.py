"""The claude adapter's translation of claude's stream-json, replayed from the captured
streams in tests/fixtures/cli/ (docs/cli-events.md), and the command and environment it
builds. No network and no real CLI: tests/test_real_agents_e2e.py runs the real one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiswitch_adapters._drive import (
    Exit,
    Progress,
    Report,
    RunningUsage,
)
from aiswitch_adapters._usage import UsageReport
from aiswitch_adapters.claude import ClaudeTranslator, build_argv, build_env, stdin_message
from test_adapter_common import make_ctx

from aiswitch.adapter_sdk import TaskFailed
from aiswitch.testing.fake_script import FakeUsage
from aiswitch.tokens.usage import Usage

FIXTURES = Path(__file__).parent / "fixtures" / "cli"
SCRIPTED_TEXT = "Scripted answer: the parser now has three new tests."
# What tests/test_real_cli_smoke.py scripted when it captured the fixtures.
SCRIPTED_USAGE = FakeUsage(
    input_tokens=1200,
    output_tokens=340,
    cache_read_tokens=560,
    cache_write_tokens=78,
    reasoning_tokens=90,
)


def events(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def replay(name: str) -> tuple[ClaudeTranslator, list[Report]]:
    translator = ClaudeTranslator()
    reports: list[Report] = []
    for event in events(name):
        reports += translator.feed(event)
    return translator, reports


def usage_reports(reports: list[Report]) -> list[UsageReport]:
    return [r for r in reports if isinstance(r, UsageReport)]


def progress(reports: list[Report], kind: str | None = None) -> list[str]:
    return [r.text for r in reports if isinstance(r, Progress) and kind in (None, r.kind)]


def anthropic_normalised(usage: FakeUsage, times: int = 1) -> Usage:
    # Anthropic's wire has no reasoning count: it stays 0.
    return Usage(
        input_tokens=usage.input_tokens * times,
        output_tokens=usage.output_tokens * times,
        cache_read_tokens=usage.cache_read_tokens * times,
        cache_write_tokens=usage.cache_write_tokens * times,
    )


def test_a_text_answer_becomes_progress_one_usage_event_and_the_output() -> None:
    translator, reports = replay("claude-text")

    assert progress(reports, "text") == [SCRIPTED_TEXT]
    (usage,) = usage_reports(reports)
    assert usage.usage == anthropic_normalised(SCRIPTED_USAGE)
    assert usage.model == "claude-opus-4-8"  # without claude's "[1m]" context tag
    assert usage.cost_usd == pytest.approx(0.0152675)
    assert (usage.message_id, usage.request_id) == ("msg_fake000002", "req_fake000002")
    outcome = translator.finish(Exit(0))
    assert outcome.output == SCRIPTED_TEXT
    assert outcome.session_id == "479744e8-863b-4352-98aa-557e14bd3923"
    assert outcome.usage == usage.usage
    assert outcome.cost_usd == pytest.approx(0.0152675)


def test_the_partial_usage_on_assistant_events_is_never_counted() -> None:
    _, reports = replay("claude-tool")
    (usage,) = usage_reports(reports)
    # Two requests: the result's totals, not 2 x the snapshot with output_tokens=1.
    assert usage.usage == anthropic_normalised(SCRIPTED_USAGE, times=2)
    # Two messages in one record: no single message id to deduplicate on.
    assert usage.message_id is None and usage.request_id is None


def test_each_requests_snapshot_adds_to_the_running_totals_shown_before_the_result() -> None:
    _, reports = replay("claude-tool")
    running = [r.usage for r in reports if isinstance(r, RunningUsage)]
    # The snapshot of each request as claude shows it at the message's start (output 1).
    snapshot = Usage(
        input_tokens=SCRIPTED_USAGE.input_tokens,
        output_tokens=1,
        cache_read_tokens=SCRIPTED_USAGE.cache_read_tokens,
        cache_write_tokens=SCRIPTED_USAGE.cache_write_tokens,
    )
    assert running == [snapshot, snapshot + snapshot]
    # Both before any usage that counts, and below it: the result's exact figures.
    first_report = next(i for i, r in enumerate(reports) if isinstance(r, UsageReport))
    last_running = max(i for i, r in enumerate(reports) if isinstance(r, RunningUsage))
    assert last_running < first_report
    (usage,) = usage_reports(reports)
    assert running[-1].total_tokens < usage.usage.total_tokens


def test_tool_calls_and_their_results_become_tool_progress() -> None:
    translator, reports = replay("claude-tool")
    tools = progress(reports, "tool")
    assert tools == ["Bash: echo tool-output-7f3a", "tool result: tool-output-7f3a"]
    assert translator.finish(Exit(0)).output == SCRIPTED_TEXT


def test_an_api_error_fails_the_task_with_claudes_message_and_reports_no_usage() -> None:
    translator, reports = replay("claude-error-429")
    assert usage_reports(reports) == []
    with pytest.raises(TaskFailed) as caught:
        translator.finish(Exit(1))
    assert caught.value.message == "claude: API Error: Request rejected (429) · slow down, fake"


def test_max_turns_fails_the_task_with_claudes_reason_and_keeps_the_usage() -> None:
    translator = ClaudeTranslator()
    result = {
        "type": "result",
        "subtype": "error_max_turns",
        "is_error": True,
        "num_turns": 2,
        "session_id": "s",
        "total_cost_usd": 0.0017,
        "usage": {"input_tokens": 120, "output_tokens": 42},
        "modelUsage": {
            "claude-opus-4-8[1m]": {"inputTokens": 120, "outputTokens": 42, "costUSD": 0.0017}
        },
        "errors": ["Reached maximum number of turns (1)"],
    }
    reports = translator.feed(result)
    assert usage_reports(reports)[0].usage == Usage(input_tokens=120, output_tokens=42)
    with pytest.raises(TaskFailed, match=r"claude: Reached maximum number of turns \(1\)"):
        translator.finish(Exit(1))


def test_a_claude_that_exits_before_its_result_fails_with_its_last_stderr_line() -> None:
    translator = ClaudeTranslator()
    translator.feed(events("claude-text")[0])
    with pytest.raises(TaskFailed) as caught:
        translator.finish(Exit(1, "Error: Invalid API key"))
    assert caught.value.message == "claude exited with code 1: Error: Invalid API key"
    with pytest.raises(TaskFailed, match="killed by signal 9"):
        translator.finish(Exit(-9))


def test_usage_is_split_per_model_with_each_models_cost_when_it_adds_up() -> None:
    translator = ClaudeTranslator()
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "ok",
        "total_cost_usd": 0.5,
        "usage": {"input_tokens": 110, "output_tokens": 22, "cache_read_input_tokens": 5},
        "modelUsage": {
            "claude-opus-4-8[1m]": {
                "inputTokens": 100,
                "outputTokens": 20,
                "cacheReadInputTokens": 5,
                "costUSD": 0.45,
            },
            "claude-haiku-4-5": {"inputTokens": 10, "outputTokens": 2, "costUSD": 0.05},
        },
    }
    reports = usage_reports(translator.feed(result))
    assert [(r.model, r.cost_usd) for r in reports] == [
        ("claude-opus-4-8", 0.45),
        ("claude-haiku-4-5", 0.05),
    ]
    assert reports[0].usage + reports[1].usage == Usage(
        input_tokens=110, output_tokens=22, cache_read_tokens=5
    )

    mismatched = {**result, "usage": {"input_tokens": 999, "output_tokens": 22}}
    (single,) = usage_reports(ClaudeTranslator().feed(mismatched))
    assert single.usage == Usage(input_tokens=999, output_tokens=22)
    assert single.cost_usd == 0.5


# -- the command and its environment --------------------------------------------------


def test_the_command_is_headless_stream_json_with_the_prompt_on_stdin() -> None:
    ctx = make_ctx(prompt="add tests")
    argv = build_argv("/bin/claude", ctx, "edit")
    assert argv[:7] == [
        "/bin/claude",
        "-p",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose",
    ]
    assert argv[7:] == ["--permission-mode", "acceptEdits"]
    message = json.loads(stdin_message("add tests"))
    assert message["message"]["content"] == [{"type": "text", "text": "add tests"}]


@pytest.mark.parametrize(
    ("level", "mode"),
    [("read-only", "dontAsk"), ("edit", "acceptEdits"), ("full", "bypassPermissions")],
)
def test_each_permission_level_is_a_claude_permission_mode(level: str, mode: str) -> None:
    argv = build_argv("claude", make_ctx(), level)  # type: ignore[arg-type]
    assert argv[argv.index("--permission-mode") + 1] == mode


def test_model_turns_prompts_tools_and_resume_come_from_config_and_task_options() -> None:
    ctx = make_ctx(
        config={
            "model": "claude-sonnet-4-5",
            "max_turns": 3,
            "allowed_tools": ["Read", "Bash(git:*)"],
        },
        options={"model": "claude-opus-4-8", "append_system_prompt": "Be brief."},
        session_id="0d02f0e7-cbf0-4cb8-ba34-f7adbdcc8ca1",
    )
    argv = build_argv("claude", ctx, "edit")
    joined = " ".join(argv)
    assert "--model claude-opus-4-8" in joined
    assert "--max-turns 3" in joined
    assert "--append-system-prompt Be brief." in joined
    assert argv[argv.index("--allowedTools") + 1] == "Read,Bash(git:*)"
    assert argv[-2:] == ["--resume", "0d02f0e7-cbf0-4cb8-ba34-f7adbdcc8ca1"]


def test_the_environment_allows_only_provider_traffic_and_fast_errors(tmp_path: Path) -> None:
    ctx = make_ctx(env={"AISWITCH_HOME": str(tmp_path), "PATH": "/bin"})
    env = build_env(ctx, "edit")
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["CLAUDE_CODE_MAX_RETRIES"] == "0"
    assert "CLAUDE_CONFIG_DIR" not in env  # no preset: claude's own home
    assert "IS_SANDBOX" not in env
    retrying = build_env(
        make_ctx(env={"AISWITCH_HOME": str(tmp_path)}, config={"max_retries": 2}), "edit"
    )
    assert retrying["CLAUDE_CODE_MAX_RETRIES"] == "2"


def test_an_api_key_preset_gets_its_own_claude_config_dir(tmp_path: Path) -> None:
    ctx = make_ctx(env={"AISWITCH_HOME": str(tmp_path), "AISWITCH_PRESET": "kimi"})
    env = build_env(ctx, "edit")
    assert env["CLAUDE_CONFIG_DIR"] == str(tmp_path / "homes" / "claude" / "kimi")
    assert Path(env["CLAUDE_CONFIG_DIR"]).is_dir()


@pytest.mark.skipif(os.geteuid() != 0, reason="the rule is about root")
def test_root_with_full_permissions_declares_the_sandbox_claude_asks_for(tmp_path: Path) -> None:
    env = build_env(make_ctx(env={"AISWITCH_HOME": str(tmp_path)}), "full")
    assert env["IS_SANDBOX"] == "1"
