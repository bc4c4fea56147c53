"""The real Claude Code CLI delegates to the real codex CLI through `aiswitch mcp`.

`aiswitch run --agent claude@fake` runs Claude Code against the fake provider with
`--mcp-config` naming `aiswitch mcp`; the fake scripts Claude's model to call
`mcp__aiswitch__run` with `codex@fake`, and the server runs the real codex CLI against the same
fake. Claude receives codex's output as the tool's result; the ledger holds Claude's usage and
codex's once each, codex's attributed to the caller by the name Claude Code gives in its MCP
`clientInfo`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from support.cli import aiswitch_bin, run_cli
from support.clis import CLAUDE_VERSION
from test_real_agents_e2e import (
    USAGES,
    Sandbox,
    ledger_usage,
    normalised,
    pinned_clis,
    sandbox,
)

from aiswitch.testing.fake_script import ApiKind, RecordedRequest, TextReply, ToolCallReply

pytestmark = [pytest.mark.realcli, pytest.mark.timeout(240)]
__all__ = ["pinned_clis", "sandbox"]  # the e2e module's fixtures, used here

# Claude Code starts, starts `aiswitch mcp`, which starts the codex adapter and codex: on
# two loaded cores this only ends a hung test.
RUN_TIMEOUT_S = 180.0
CALL_ID = "toolu_mcp_1"
CODEX_TEXT = "Codex's review through aiswitch: the parser is fine."
FINAL_TEXT = "Codex reviewed it and found nothing to fix."
DELEGATED = "Review the parser for off-by-one errors."
# Claude Code connects MCP servers in the background; a model that calls a server's tool too
# early is told to call this one first.
WAIT_TOOL = "WaitForMcpServers"


def claude_turn(request: RecordedRequest) -> TextReply | ToolCallReply:
    """Claude's model: call aiswitch's run tool (first waiting for the MCP server, as Claude
    Code itself suggests, when its tools are not listed yet), then answer with its result."""
    if CALL_ID in json.dumps(request.body):
        return TextReply(FINAL_TEXT, usage=USAGES[ApiKind.ANTHROPIC])
    tools = {tool.get("name") for tool in request.body.get("tools", [])}
    if "mcp__aiswitch__run" not in tools:
        assert WAIT_TOOL in tools, sorted(tools)
        waits = json.dumps(request.body).count('"name": "WaitForMcpServers"')
        return ToolCallReply(
            WAIT_TOOL, {}, usage=USAGES[ApiKind.ANTHROPIC], call_id=f"toolu_wait_{waits}"
        )
    return ToolCallReply(
        "mcp__aiswitch__run",
        {"task": DELEGATED, "agents": ["codex@fake"]},
        usage=USAGES[ApiKind.ANTHROPIC],
        call_id=CALL_ID,
    )


def tool_result_text(body: Any) -> str:
    """The text of the tool_result block answering CALL_ID in an Anthropic request."""
    for message in body.get("messages", []):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for block in content:
            if block.get("type") == "tool_result" and block.get("tool_use_id") == CALL_ID:
                inner = block.get("content")
                if isinstance(inner, str):
                    return inner
                return "".join(part.get("text", "") for part in inner or [])
    raise AssertionError("no tool_result for the aiswitch call in claude's request")


def test_claude_delegates_to_codex_through_aiswitch_mcp(sandbox: Sandbox) -> None:
    sandbox.add_preset()
    mcp_config = sandbox.root / "mcp.json"
    server = {"command": aiswitch_bin(), "args": ["mcp", "--agents", "codex@fake"]}
    mcp_config.write_text(json.dumps({"mcpServers": {"aiswitch": server}}))
    agents = {
        "claude": {
            "options": {
                "extra_args": ["--mcp-config", str(mcp_config)],
                "allowed_tools": ["mcp__aiswitch__run"],
            }
        }
    }
    config = sandbox.ais / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "agents.yaml").write_text(yaml.safe_dump({"agents": agents}), encoding="utf-8")
    sandbox.fake.script.add(claude_turn, api=ApiKind.ANTHROPIC)
    sandbox.fake.script.add(TextReply(CODEX_TEXT, usage=USAGES[ApiKind.OPENAI]), api=ApiKind.OPENAI)

    out = run_cli(
        "run",
        "--agent",
        "claude@fake",
        "Ask codex to review the parser.",
        "--json",
        env=sandbox.env(),
        cwd=sandbox.work,
        timeout=RUN_TIMEOUT_S,
    )

    assert out.code == 0, out.stderr + out.stdout
    (claude,) = out.json()["results"]
    assert claude["status"] == "ok", claude
    assert claude["output"].strip() == FINAL_TEXT
    # Claude's model got codex's output back as the tool's result.
    answered = [
        r for r in sandbox.fake.requests_for(ApiKind.ANTHROPIC) if CALL_ID in json.dumps(r.body)
    ]
    assert answered, "claude never sent the tool's result back"
    assert CODEX_TEXT in tool_result_text(answered[0].body)
    # codex ran once, through the server, against the fake.
    (codex_request,) = sandbox.fake.requests_for(ApiKind.OPENAI)
    assert DELEGATED in codex_request.prompt

    ledger = sandbox.ledger()
    claude_records = [r for r in ledger if r.get("agent") == "claude"]
    codex_records = [r for r in ledger if r.get("agent") == "codex"]
    assert len(claude_records) + len(codex_records) == len(ledger)
    # Claude's: one record per request it made, each once.
    assert len(claude_records) == len(sandbox.fake.requests_for(ApiKind.ANTHROPIC))
    keys = [(r.get("message_id"), r.get("request_id")) for r in claude_records]
    assert len(set(keys)) == len(keys)
    assert all("caller" not in r for r in claude_records)  # `aiswitch run` from a terminal
    # codex's: once, the fake's numbers, attributed to Claude Code's clientInfo.
    (codex_record,) = codex_records
    assert ledger_usage(codex_record) == normalised(ApiKind.OPENAI, USAGES[ApiKind.OPENAI])
    caller = codex_record["caller"]
    assert caller.startswith("claude-code/") and caller.endswith(CLAUDE_VERSION), caller
    assert codex_record["run_id"] != claude_records[0]["run_id"]
    # And the report groups them so.
    report = run_cli("tokens", "report", "--by", "caller,agent", "--json", env=sandbox.env())
    rows = {(row["caller"], row["agent"]): row["requests"] for row in report.json()["rows"]}
    assert rows == {(None, "claude"): len(claude_records), (caller, "codex"): 1}
