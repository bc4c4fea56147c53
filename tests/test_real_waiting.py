"""A permission the real codex or gemini CLI refused is told as `waiting` (`--notify`).

Neither CLI can wait for an approval headless: `codex exec` runs with approval policy
`never` and gives a refusal back to the model as the tool's output (its `--json` stream
shows nothing of it, its rollout does); `gemini -p` turns every "ask the user" into a
denial (a withheld tool, a failed `tool_result`). The adapters tell each refusal as a
`task.progress` of kind `waiting`, and `aiswitch run --notify` hands it to the user's
command as a `waiting` notice before the task's `finished` one. The fake provider scripts
the tool calls; the pinned CLIs run offline against it (the sandbox fixture of
test_real_agents_e2e checks that nothing else was reached and no process is left).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_real_agents_e2e import (  # the sandbox fixture and what it checks
    FAKE_PRESET,
    Sandbox,
    pinned_clis,
    results_by_agent,
    sandbox,
)

from aiswitch.testing.fake_script import ApiKind, Reply, TextReply, ToolCallReply

pytestmark = [pytest.mark.realcli, pytest.mark.slow, pytest.mark.timeout(120)]
__all__ = ["pinned_clis", "sandbox"]

AGENTS = f"codex@{FAKE_PRESET},gemini@{FAKE_PRESET}"
ANSWERS = {ApiKind.OPENAI: "Codex is done.", ApiKind.GEMINI: "Gemini is done."}


def patch_adding(path: str) -> str:
    return f"*** Begin Patch\n*** Add File: {path}\n+hello\n*** End Patch\n"


def script(box: Sandbox, calls: dict[ApiKind, list[Reply]]) -> None:
    """Each API's tool calls in turn (one per request), then its answer."""
    for api, replies in calls.items():
        for reply in replies:
            box.fake.script.add(reply, api=api, times=1)
        box.fake.script.add(TextReply(ANSWERS[api]), api=api)


def run_notified(box: Sandbox, permissions: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`aiswitch run --notify` of codex and gemini: the results, and the notices told."""
    box.add_preset()
    sink = box.root / "notices.jsonl"
    config = box.ais / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "coordination.yaml").write_text(f"notify:\n  command: 'cat >> {sink}'\n")
    out = box.run("-p", AGENTS, "Make the file", "--permissions", permissions, "--notify", "--json")
    results = results_by_agent(out)
    for agent in ("codex", "gemini"):
        assert results[agent]["status"] == "ok", (results[agent], out.stderr)
    told = [json.loads(line) for line in sink.read_text().splitlines()] if sink.exists() else []
    return results, told


def events_of(told: list[dict[str, Any]], agent: str) -> list[tuple[str, str]]:
    """An agent's notices, `waiting` ones (sorted) before the rest. Each notice's command
    runs on its own, so the sink's line order is theirs, not the run's: the run's order
    shows in the notices' time stamps, checked here (waiting never after finished)."""
    mine = [n for n in told if n.get("agent_id") == f"{agent}#1"]
    waiting = [n for n in mine if n["event"] == "waiting"]
    rest = [n for n in mine if n["event"] != "waiting"]
    assert all(w["ts"] <= n["ts"] for w in waiting for n in rest), mine
    return sorted((n["event"], n["text"]) for n in waiting) + [
        (n["event"], n["text"]) for n in rest
    ]


def test_what_codex_and_gemini_refuse_at_read_only_is_told_as_waiting_before_finished(
    sandbox: Sandbox,
) -> None:
    script(
        sandbox,
        {
            ApiKind.OPENAI: [
                ToolCallReply("apply_patch", freeform=patch_adding("made.txt"), call_id="c1"),
                ToolCallReply("exec_command", {"cmd": "touch made.txt"}, call_id="c2"),
            ],
            ApiKind.GEMINI: [
                ToolCallReply("write_file", {"file_path": "made.txt", "content": "x"})
            ],
        },
    )

    _, told = run_notified(sandbox, "read-only")

    assert events_of(told, "codex") == [
        (
            "waiting",
            "permission denied: apply_patch made.txt (writing is blocked by read-only sandbox)",
        ),
        (
            "waiting",
            "permission denied: touch made.txt (the read-only sandbox: "
            "touch: cannot touch 'made.txt': Read-only file system)",
        ),
        ("finished", ANSWERS[ApiKind.OPENAI]),
    ]
    assert events_of(told, "gemini") == [
        (
            "waiting",
            "permission denied: write_file made.txt "
            "(gemini -p does not offer it at --approval-mode default)",
        ),
        ("finished", ANSWERS[ApiKind.GEMINI]),
    ]
    assert all(n["status"] == "running" for n in told if n["event"] == "waiting")
    assert not (sandbox.work / "made.txt").exists()


def test_what_codex_and_gemini_refuse_at_edit_is_told_as_waiting(sandbox: Sandbox) -> None:
    outside = sandbox.root / "outside.txt"
    escalated = {
        "cmd": "touch made.txt",
        "sandbox_permissions": "require_escalated",
        "justification": "make the file",
    }
    script(
        sandbox,
        {
            ApiKind.OPENAI: [
                ToolCallReply("apply_patch", freeform=patch_adding(str(outside)), call_id="c1"),
                ToolCallReply("exec_command", escalated, call_id="c2"),
            ],
            ApiKind.GEMINI: [ToolCallReply("run_shell_command", {"command": "touch made.txt"})],
        },
    )

    _, told = run_notified(sandbox, "edit")

    assert events_of(told, "codex") == [
        ("waiting", f"permission denied: apply_patch {outside} (writing outside of the project)"),
        (
            "waiting",
            "permission denied: touch made.txt (outside the sandbox: approval policy is never)",
        ),
        ("finished", ANSWERS[ApiKind.OPENAI]),
    ]
    assert events_of(told, "gemini") == [
        (
            "waiting",
            "permission denied: run_shell_command touch made.txt "
            "(gemini -p does not offer it at --approval-mode auto_edit)",
        ),
        ("finished", ANSWERS[ApiKind.GEMINI]),
    ]
    assert not outside.exists() and not (sandbox.work / "made.txt").exists()


def test_at_full_the_same_calls_run_and_nothing_is_told_as_waiting(sandbox: Sandbox) -> None:
    script(
        sandbox,
        {
            ApiKind.OPENAI: [
                ToolCallReply("apply_patch", freeform=patch_adding("by-codex.txt"), call_id="c1"),
                ToolCallReply("exec_command", {"cmd": "touch by-codex-too.txt"}, call_id="c2"),
            ],
            ApiKind.GEMINI: [
                ToolCallReply("run_shell_command", {"command": "touch by-gemini.txt"})
            ],
        },
    )

    _, told = run_notified(sandbox, "full")

    assert events_of(told, "codex") == [("finished", ANSWERS[ApiKind.OPENAI])]
    assert events_of(told, "gemini") == [("finished", ANSWERS[ApiKind.GEMINI])]
    made = sorted(p.name for p in sandbox.work.iterdir())
    assert made == ["by-codex-too.txt", "by-codex.txt", "by-gemini.txt"]
