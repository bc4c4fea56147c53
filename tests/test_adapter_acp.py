"""The acp adapter against a scripted ACP agent (tests/agents/acp_scripted.py, written with
the `agent-client-protocol` package): a real child process speaking ACP on stdio, driven
by `AcpAdapter.run_task` in this process (the SDK's wire is tested elsewhere)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from aiswitch_adapters.acp import AcpAdapter
from aiswitch_adapters.acp_client import decide
from aiswitch_adapters.acp_updates import MalformedUpdate, TurnTranslator, normalised_usage
from test_adapter_common import make_ctx

from aiswitch.adapter_sdk import TaskFailed
from aiswitch.rpc.errors import MethodError
from aiswitch.tokens.usage import Usage

pytestmark = pytest.mark.timeout(60)

AGENT = Path(__file__).parent / "agents" / "acp_scripted.py"
# One task with a Python ACP agent takes well under a second; this only ends a hang.
STEP_S = 30.0


async def adapter() -> AcpAdapter:
    acp = AcpAdapter()
    await acp.setup(SimpleNamespace(config={"acp_command": [sys.executable, str(AGENT)]}))
    return acp


def script(tmp_path: Path, steps: list[dict[str, Any]], **more: list[dict[str, Any]]) -> Path:
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"*": steps, **more}))
    return path


async def run(
    tmp_path: Path,
    steps: list[dict[str, Any]],
    *,
    permissions: str = "edit",
    extra_env: dict[str, str] | None = None,
    **params: Any,
) -> tuple[Any, list[tuple[str, Any]]]:
    """Run one task; returns (outcome or the TaskFailed, what was notified)."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    env = {**os.environ, "ACP_TEST_SCRIPT": str(script(tmp_path, steps)), **(extra_env or {})}
    ctx = make_ctx(env=env, cwd=str(work), permissions=permissions, **params)
    acp = await adapter()
    try:
        async with asyncio.timeout(STEP_S):
            outcome: Any = await acp.run_task(ctx)
    except TaskFailed as exc:
        outcome = exc
    return outcome, ctx._server.peer.sent  # type: ignore[attr-defined]


def progress(sent: list[tuple[str, Any]]) -> list[str]:
    return [params.text for method, params in sent if method == "task.progress"]


def usage_events(sent: list[tuple[str, Any]]) -> list[Any]:
    return [params for method, params in sent if method == "tokens.usage"]


# -- a turn ---------------------------------------------------------------------------


async def test_a_turn_becomes_progress_an_answer_usage_and_cost(tmp_path: Path) -> None:
    outcome, sent = await run(
        tmp_path,
        [
            {"think": "let me see\n"},
            {"plan": ["read", "answer"]},
            {"say": "looking first\n"},
            {"tool": "t1", "title": "Read main.py", "kind": "read"},
            {"say": "the answer: "},
            {"say": "{prompt}"},
            {"usage": {"used": 900, "size": 1000, "cost": 0.25}},
            {
                "tokens": {
                    "inputTokens": 1000,
                    "outputTokens": 200,
                    "cachedReadTokens": 300,
                    "thoughtTokens": 50,
                    "totalTokens": 1200,
                }
            },
        ],
        prompt="forty-two",
    )
    assert outcome.output == "the answer: forty-two"
    lines = progress(sent)
    assert "let me see" in lines
    assert "plan: [ ] read; [ ] answer" in lines
    assert "Read main.py (read): pending" in lines
    assert "Read main.py: completed" in lines
    assert lines[-1] == "the answer: forty-two"
    # totalTokens = input + output: input held the cached tokens, output the thoughts.
    expected = Usage(
        input_tokens=700, output_tokens=200, cache_read_tokens=300, reasoning_tokens=50
    )
    assert outcome.usage == expected
    assert [event.usage for event in usage_events(sent)] == [expected]
    assert outcome.cost_usd == 0.25
    assert outcome.session_id


async def test_a_refusal_or_max_tokens_stop_fails_the_task_with_the_reason(tmp_path: Path) -> None:
    for reason in ("refusal", "max_tokens"):
        outcome, _ = await run(tmp_path, [{"say": "no"}, {"stop": reason}])
        assert isinstance(outcome, TaskFailed)
        assert f"stopped: {reason}" in outcome.message


async def test_resuming_loads_the_session_and_counts_only_this_tasks_cost(tmp_path: Path) -> None:
    session = "0b0b0b0b-1111-2222-3333-444444444444"
    outcome, sent = await run(
        tmp_path,
        [{"say": "again"}, {"usage": {"used": 9, "size": 100, "cost": 1.5}}],
        session_id=session,
    )
    assert outcome.session_id == session
    # The replayed history is not this task's answer; the cost before it is not its cost.
    assert outcome.output == "again"
    assert "old answer" not in progress(sent)
    assert outcome.cost_usd == 0.5


# -- the client side: files, permissions, terminals ----------------------------------


async def test_a_write_inside_the_workspace_lands_at_edit(tmp_path: Path) -> None:
    outcome, _sent = await run(tmp_path, [{"write": "sub/new.txt", "content": "hello"}])
    assert (tmp_path / "work" / "sub" / "new.txt").read_text() == "hello"
    assert outcome.output.startswith("wrote sub/new.txt")


async def test_a_write_is_refused_at_read_only_and_recorded(tmp_path: Path) -> None:
    outcome, sent = await run(
        tmp_path, [{"write": "new.txt", "content": "x"}], permissions="read-only"
    )
    assert not (tmp_path / "work" / "new.txt").exists()
    assert "write refused" in outcome.output
    assert any(line.startswith("denied: fs/write_text_file") for line in progress(sent))


async def test_files_outside_the_workspace_are_refused_and_logged_even_at_full(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "link").symlink_to(tmp_path)
    outcome, sent = await run(
        tmp_path,
        [
            {"write": str(tmp_path / "escape.txt"), "content": "x"},
            {"write": "../escape2.txt", "content": "x"},
            {"write": "link/escape3.txt", "content": "x"},
            {"read": str(outside)},
        ],
        permissions="full",
    )
    assert not any((tmp_path / name).exists() for name in ("escape.txt", "escape2.txt"))
    assert not (tmp_path / "escape3.txt").exists()
    assert outcome.output.count("write refused") == 3
    assert "read refused" in outcome.output and "secret" not in outcome.output
    denied = [line for line in progress(sent) if line.startswith("denied:")]
    assert len(denied) == 4 and all("outside the task's workspace" in d for d in denied)


async def test_permission_requests_are_answered_from_the_level_and_recorded(
    tmp_path: Path,
) -> None:
    steps = [
        {"permission": "read", "title": "read"},
        {"permission": "edit", "title": "edit-in", "path": "a.py"},
        {"permission": "edit", "title": "edit-out", "path": "/etc/passwd"},
        {"permission": "execute", "title": "run-in"},
        {"permission": "execute", "title": "run-out", "cwd": "/"},
    ]
    answers = {}
    for level in ("read-only", "edit", "full"):
        outcome, sent = await run(tmp_path, steps, permissions=level)
        answers[level] = [line.split(": ")[1] for line in outcome.output.splitlines()]
        recorded = [
            line
            for line in progress(sent)
            if line.startswith(("permission granted", "permission refused"))
        ]
        assert len(recorded) == 5
    assert answers == {
        "read-only": ["yes", "no", "no", "no", "no"],
        "edit": ["yes", "yes", "no", "yes", "no"],
        "full": ["yes", "yes", "yes", "yes", "yes"],
    }


async def test_terminals_run_in_the_task_env_and_cwd_and_not_at_read_only(
    tmp_path: Path,
) -> None:
    steps = [{"run": 'echo "$ACP_TEST_MARK in $(pwd)"'}]
    outcome, _ = await run(tmp_path, steps, extra_env={"ACP_TEST_MARK": "marked"})
    assert f"ran: marked in {(tmp_path / 'work').resolve()} (exit 0)" in outcome.output
    outcome, sent = await run(tmp_path, steps, permissions="read-only")
    assert "terminal refused" in outcome.output
    assert any(line.startswith("denied: terminal/create") for line in progress(sent))


async def test_a_request_the_client_did_not_advertise_gets_an_error_not_a_hang(
    tmp_path: Path,
) -> None:
    outcome, _ = await run(tmp_path, [{"ask": "elicitation/create"}])
    assert "asked: error -32601" in outcome.output


# -- bad agents ---------------------------------------------------------------------


async def test_an_agent_that_exits_before_initialize_fails_with_its_message(tmp_path: Path) -> None:
    outcome, _ = await run(tmp_path, [], extra_env={"ACP_TEST_EXIT_EARLY": "1"})
    assert isinstance(outcome, TaskFailed)
    assert "exited with code 7: scripted agent: no API key configured" in outcome.message
    assert "during initialize" in outcome.message


async def test_an_agent_of_another_protocol_version_fails_clearly(tmp_path: Path) -> None:
    outcome, _ = await run(tmp_path, [], extra_env={"ACP_TEST_VERSION": "2"})
    assert isinstance(outcome, TaskFailed)
    assert "speaks ACP protocol version 2; aiswitch speaks 1" in outcome.message


async def test_a_crash_mid_turn_fails_with_the_exit_code_and_last_stderr_line(
    tmp_path: Path,
) -> None:
    outcome, _ = await run(tmp_path, [{"say": "starting\n"}, {"crash": 3}])
    assert isinstance(outcome, TaskFailed)
    assert "exited with code 3: scripted agent: crashing as told" in outcome.message


async def test_a_malformed_update_fails_the_task_without_waiting(tmp_path: Path) -> None:
    outcome, _ = await run(tmp_path, [{"malformed": True}, {"hang": True}])
    assert isinstance(outcome, TaskFailed)
    assert "malformed session/update: agent_message_chunk without a content block" in (
        outcome.message
    )


@pytest.mark.parametrize("step", ["hang", "deaf"])
async def test_a_cancelled_turn_ends_the_agent_and_its_terminals(tmp_path: Path, step: str) -> None:
    """`hang` ends its turn on session/cancel; `deaf` ignores it and is killed."""
    pid_file = tmp_path / "pids"
    steps = [{"spawn": f"echo $$ >> {pid_file}; exec sleep 300"}, {step: True}]
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "ACP_TEST_SCRIPT": str(script(tmp_path, steps))}
    ctx = make_ctx(env=env, cwd=str(work))
    acp = await adapter()
    task = asyncio.ensure_future(acp.run_task(ctx))
    peer = ctx._server.peer  # type: ignore[attr-defined]
    async with asyncio.timeout(STEP_S):
        await peer.until(lambda sent: any("$ echo" in text for text in progress(sent)))
        # The terminal's shell writes its pid just after: a file, so it is looked at.
        while not pid_file.exists() or not pid_file.read_text().strip():
            await asyncio.sleep(0.05)
    terminal_pid = int(pid_file.read_text().split()[0])
    agent_pids = [p.pid for p in psutil.Process().children() if str(AGENT) in " ".join(p.cmdline())]
    assert len(agent_pids) == 1
    task.cancel()
    async with asyncio.timeout(STEP_S):
        with pytest.raises(asyncio.CancelledError):
            await task
    for pid in (terminal_pid, agent_pids[0]):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_setup_names_the_missing_binary_and_what_to_install() -> None:
    acp = AcpAdapter()
    config = {"acp_command": ["no-such-acp-agent"], "acp_install": "npm install -g x@1"}
    with pytest.raises(MethodError) as caught:
        await acp.setup(SimpleNamespace(config=config))
    assert "'no-such-acp-agent' is not on PATH: install it with `npm install -g x@1`" in (
        caught.value.message
    )


# -- the pure parts -------------------------------------------------------------------


def test_updates_of_a_known_kind_without_their_fields_are_malformed() -> None:
    translator = TurnTranslator(session_id="s", prompt_sent=True)
    for update in (
        {"sessionUpdate": "agent_message_chunk"},
        {"sessionUpdate": "agent_message_chunk", "content": {"type": "text"}},
        {"sessionUpdate": "tool_call", "title": "x"},
        {"sessionUpdate": "plan", "entries": "x"},
        {"sessionUpdate": "usage_update", "used": -1, "size": 3},
    ):
        with pytest.raises(MalformedUpdate):
            translator.update({"sessionId": "s", "update": update})
    # Unknown kinds and other sessions' updates are skipped.
    assert translator.update({"sessionId": "s", "update": {"sessionUpdate": "new_kind"}}) == []
    assert translator.update({"sessionId": "t", "update": {"sessionUpdate": "plan"}}) == []


def test_usage_without_a_total_keeps_the_schemas_plain_meaning() -> None:
    assert normalised_usage(
        {"inputTokens": 10, "outputTokens": 5, "cachedReadTokens": 4, "thoughtTokens": 2}
    ) == Usage(input_tokens=10, output_tokens=5, cache_read_tokens=4, reasoning_tokens=2)
    # Thoughts counted apart from output (in the total) are added to it.
    assert normalised_usage(
        {"inputTokens": 10, "outputTokens": 5, "thoughtTokens": 2, "totalTokens": 17}
    ) == Usage(input_tokens=10, output_tokens=7, reasoning_tokens=2)


def test_permission_decisions_at_edit_follow_the_paths(tmp_path: Path) -> None:
    inside = {"kind": "move", "locations": [{"path": str(tmp_path / "a")}]}
    outside = {"kind": "delete", "locations": [{"path": "/etc/hosts"}]}
    assert decide("edit", inside, tmp_path).allow
    assert not decide("edit", outside, tmp_path).allow
    assert not decide("edit", {"kind": "switch_mode"}, tmp_path).allow
    assert decide("full", outside, tmp_path).allow


def test_a_tool_input_naming_a_file_outside_is_refused_at_edit(tmp_path: Path) -> None:
    # claude-code-acp sends no kind and no locations: its tool's input names the file.
    outside = {"title": "Write /etc/hosts", "rawInput": {"file_path": "/etc/hosts"}}
    inside = {"title": "Write a", "rawInput": {"file_path": str(tmp_path / "a")}}
    assert not decide("edit", outside, tmp_path).allow
    assert decide("edit", inside, tmp_path).allow
    assert not decide("read-only", inside, tmp_path).allow


async def test_the_model_option_reaches_the_cli_behind_a_known_agent(tmp_path: Path) -> None:
    acp = AcpAdapter()
    acp.cli = "gemini"
    env = {"AISWITCH_HOME": str(tmp_path / "ais"), "HOME": str(tmp_path)}
    ctx = make_ctx(env=env, options={"model": "gemini-2.5-flash"})
    assert acp.build_env(ctx, "edit")["GEMINI_MODEL"] == "gemini-2.5-flash"
    acp.cli = None
    assert "GEMINI_MODEL" not in acp.build_env(ctx, "edit")
