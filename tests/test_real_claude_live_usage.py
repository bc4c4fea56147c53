"""Usage shows while a real claude task runs, and the ledger still counts each request once.

claude's adapter records a task's usage per API request from claude's own log once claude
has exited; while it runs, it reports the running totals claude's stream shows
(`task.progress` with `usage`, provisional). Here the real claude CLI runs one task of two
API requests (a tool call, then the answer) against the fake provider, and each reply waits
on the test: with the first answered and the second held, the run's event stream
(`runs watch`), the live table (a real pty) and `aiswitch ps` must each show tokens while
the task runs; once it ends, the ledger, `tokens report --source all` and the result hold
exactly what the fake sent, once.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import test_real_agents_e2e as e2e
from support.cli import aiswitch_bin, run_cli
from support.screen import Terminal
from test_real_agents_e2e import FAKE_PRESET, Sandbox
from test_real_token_accounting import ANSWER_TURN, NOTE, TOOL_TURN, counts, report, sent, summed

from aiswitch.testing.fake_script import ApiKind, RecordedRequest, TextReply, ToolCallReply

pytestmark = [pytest.mark.realcli, pytest.mark.slow, pytest.mark.timeout(240)]
_sandbox = e2e.sandbox
_pinned_clis = e2e.pinned_clis

# Only stops a hung test: every wait below ends on an event (a request, a line, a screen).
WAIT_S = 90.0


class Held:
    """A reply the fake gives only once the test lets it (`release`); `arrived` is set
    when the request for it came."""

    def __init__(self, reply: TextReply | ToolCallReply) -> None:
        self.reply = reply
        self.arrived = threading.Event()
        self.gate = threading.Event()

    def __call__(self, request: RecordedRequest) -> TextReply | ToolCallReply:
        self.arrived.set()
        self.gate.wait(WAIT_S)
        return self.reply

    def release(self) -> None:
        self.gate.set()


def watch_lines(proc: subprocess.Popen[str]) -> Iterator[dict[str, Any]]:
    assert proc.stdout is not None
    for line in proc.stdout:
        yield json.loads(line)


def test_a_claude_tasks_tokens_show_while_it_runs_and_the_ledger_counts_them_once(
    _sandbox: Sandbox,
) -> None:
    box = _sandbox
    box.add_preset()
    (box.work / NOTE).write_text("heliotrope\n", encoding="utf-8")
    tool = Held(
        ToolCallReply("Read", {"file_path": str(box.work / NOTE)}, usage=TOOL_TURN, call_id="t1")
    )
    answer = Held(TextReply("Read it: heliotrope.", usage=ANSWER_TURN))
    box.fake.script.add(tool, api=ApiKind.ANTHROPIC, times=1)
    box.fake.script.add(answer, api=ApiKind.ANTHROPIC, times=1)
    term = Terminal(
        "run", "--agent", f"claude@{FAKE_PRESET}", "--permissions", "full", f"Read {NOTE}",
        env=box.env(), cols=160, rows=30, cwd=box.work,
    )  # fmt: skip
    watcher: subprocess.Popen[str] | None = None
    try:
        assert tool.arrived.wait(WAIT_S), "claude never asked the provider"
        listed = run_cli("runs", "list", "--status", "running", "--json", env=box.env())
        (entry,) = listed.json()["runs"]
        run_id = entry["run_id"]
        watcher = subprocess.Popen(
            [aiswitch_bin(), "runs", "watch", run_id, "--jsonl"],
            env=box.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        events = watch_lines(watcher)
        assert next(events)["kind"] == "run"  # attached: what follows is live
        tool.release()

        # The event stream: provisional running totals, while the task runs.
        provisional = next(e for e in events if e["kind"] == "usage" and e.get("provisional"))
        assert provisional["status"] == "running"
        floor = TOOL_TURN.input_tokens + TOOL_TURN.cache_read_tokens + TOOL_TURN.cache_write_tokens
        assert provisional["total_tokens"] >= floor
        assert answer.arrived.wait(WAIT_S)  # the second request waits: the task runs on

        # The live table: the same figures, marked as provisional (~).
        def shows_tokens(screen: list[str]) -> bool:
            row = next((line for line in screen if line.startswith("claude#1 ")), "")
            return "▶ running" in row and f"~{TOOL_TURN.input_tokens:,} in · " in row

        term.wait_for(shows_tokens)
        # `aiswitch ps`: the claude process has spent them.
        (process,) = run_cli("ps", "--json", env=box.env()).json()["processes"]
        assert process["agent"] == "claude" and process["tokens"] >= floor
        assert box.ledger() == []  # provisional usage is never recorded

        answer.release()
        assert term.finish() == 0
        rest = list(events)
        watcher.wait(timeout=WAIT_S)
    finally:
        tool.release()
        answer.release()
        term.close()
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
            watcher.wait(timeout=WAIT_S)

    served = box.fake.requests_for(ApiKind.ANTHROPIC)
    assert len(served) == 2, served
    expected = sent(served, ApiKind.ANTHROPIC)
    total = sum(expected.values())
    # The ledger: one line per request, with claude's ids, adding up to what was sent.
    ledger = [record for record in box.ledger() if record.get("agent") == "claude"]
    assert len(ledger) == 2, ledger
    assert all(record.get("message_id") and record.get("request_id") for record in ledger)
    assert summed(ledger) == expected
    for source in ("aiswitch", "all"):
        document = report(box, source)
        assert counts(document["totals"]) == expected, (source, document)
        assert document["totals"]["requests"] == 2, (source, document)
    # The stream's last word on the task is the exact figure, not the provisional one.
    final = [e for e in rest if e["kind"] == "status" and e["status"] == "ok"]
    assert final and final[-1]["total_tokens"] == total, rest
    assert not [e for e in rest if e.get("provisional") and e["total_tokens"] > total]
    assert f"{expected['input_tokens']:,} in · {expected['output_tokens']:,} out" in term.text()
