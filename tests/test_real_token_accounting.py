"""Token accounting with the real claude, codex and gemini CLIs: every request once.

Each CLI runs through `aiswitch run` on the API-key preset `fake` (its files in aiswitch's
preset home), against the fake provider, scripted so that the first task uses a tool (two
API requests) and a second task resumes the session (`run --resume`, one more request).
Then the ledger, `tokens report --source <cli>` (the CLI's own log, found in the preset home
without any variable set) and `tokens report --source all` (both, without what they share)
must each hold exactly what the fake's request log says it sent, request by request.

Before issue 12 each failed: claude's two requests were one ledger line without ids (so
`all` counted them twice), codex's and gemini's records had no ids at all, codex's resumed
turn was recorded as the thread's running total, and `--source <cli>` never looked in the
preset homes.
"""

from __future__ import annotations

from typing import Any

import pytest
import test_real_agents_e2e as e2e
from test_real_agents_e2e import (
    AGENT_API,
    FAKE_PRESET,
    Sandbox,
    normalised,
    results_by_agent,
    run_cli,
)

from aiswitch.testing.fake_script import (
    ApiKind,
    FakeUsage,
    RecordedRequest,
    TextReply,
    ToolCallReply,
)

pytestmark = [pytest.mark.realcli, pytest.mark.slow, pytest.mark.timeout(180)]
# The e2e tests' fixtures, under these names here (`_pinned_clis` is autouse).
_sandbox = e2e.sandbox
_pinned_clis = e2e.pinned_clis


@pytest.fixture
def box(_sandbox: Sandbox) -> Sandbox:
    return _sandbox


COUNTERS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
# Distinct numbers per request, so a request counted twice or dropped shows in every sum.
TOOL_TURN = FakeUsage(
    input_tokens=1000, output_tokens=200, cache_read_tokens=300, cache_write_tokens=40
)
ANSWER_TURN = FakeUsage(input_tokens=500, output_tokens=70, cache_read_tokens=600)
RESUMED_TURN = FakeUsage(input_tokens=90, output_tokens=11, cache_read_tokens=1300)
NOTE = "notes.txt"


def tool_call(agent: str, box: Sandbox) -> ToolCallReply:
    """A harmless tool each CLI runs without asking: read a file of the work folder."""
    path = str(box.work / NOTE)
    return {
        "claude": ToolCallReply("Read", {"file_path": path}, usage=TOOL_TURN, call_id="toolu_1"),
        "codex": ToolCallReply("exec_command", {"cmd": f"cat {NOTE}"}, usage=TOOL_TURN),
        "gemini": ToolCallReply("read_file", {"file_path": path}, usage=TOOL_TURN),
    }[agent]


def sent(requests: list[RecordedRequest], api: ApiKind) -> dict[str, int]:
    """What the fake sent on `api`'s wire, summed, in aiswitch's normalised meaning."""
    total = dict.fromkeys(COUNTERS, 0)
    for request in requests:
        reply = request.reply
        assert isinstance(reply, TextReply | ToolCallReply), request
        for name, value in normalised(api, reply.usage).items():
            if name in total:
                total[name] += value
    return total


def counts(record: dict[str, Any]) -> dict[str, int]:
    return {name: int(record.get(name, 0)) for name in COUNTERS}


def summed(records: list[dict[str, Any]]) -> dict[str, int]:
    total = dict.fromkeys(COUNTERS, 0)
    for record in records:
        for name, value in counts(record).items():
            total[name] += value
    return total


def report(box: Sandbox, source: str) -> dict[str, Any]:
    out = run_cli(
        "tokens", "report", "--source", source, "--json", "--no-cache", "-v",
        env=box.env(), cwd=box.work,
    )  # fmt: skip
    assert out.code == 0, out.stderr
    document: dict[str, Any] = out.json()
    document["stderr"] = out.stderr
    return document


@pytest.mark.parametrize("agent", ["claude", "codex", "gemini"])
def test_a_tool_using_task_and_its_resumed_session_count_each_request_once_everywhere(
    box: Sandbox, agent: str
) -> None:
    api = AGENT_API[agent]
    box.add_preset()
    (box.work / NOTE).write_text("heliotrope\n", encoding="utf-8")
    script = box.fake.script
    script.add(tool_call(agent, box), api=api, times=1)
    script.add(TextReply("Read it: heliotrope.", usage=ANSWER_TURN), api=api, times=1)
    script.add(TextReply("The word was heliotrope.", usage=RESUMED_TURN), api=api, times=1)
    target = f"{agent}@{FAKE_PRESET}"

    first = box.run("--agent", target, "--permissions", "full", f"Read {NOTE}", "--json")
    result = results_by_agent(first)[agent]
    assert result["status"] == "ok", (result, first.stderr)
    served = box.fake.requests_for(api)
    assert len(served) == 2, served  # the tool call, then the answer

    again = box.run("--agent", target, "--resume", result["session_id"], "Which word?", "--json")
    resumed = results_by_agent(again)[agent]
    assert resumed["status"] == "ok", (resumed, again.stderr)
    served = box.fake.requests_for(api)
    assert len(served) == 3, served
    expected = sent(served, api)

    ledger = [record for record in box.ledger() if record.get("agent") == agent]
    # One ledger line per request the provider served, each with the CLI's ids.
    assert len(ledger) == 3, ledger
    assert all(record.get("message_id") and record.get("request_id") for record in ledger)
    assert summed(ledger) == expected
    # The resumed task's result holds that turn's usage only, not the thread's.
    assert counts(resumed["usage"]) == sent(served[2:], api)

    for source in ("aiswitch", agent, "all"):
        document = report(box, source)
        assert counts(document["totals"]) == expected, (source, document)
        assert document["totals"]["requests"] == 3, (source, document)
    # `-v` names the preset home the CLI's logs were read from.
    home = box.ais / "homes" / agent / FAKE_PRESET
    assert str(home) in report(box, agent)["stderr"]
