"""Batches (`run --tasks`), --jsonl, and the defects the runtime fixed: a malformed reply
fails one task, usage has one source of truth, a budget stop keeps finished results."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from support.cli import assert_one_error_line, run_cli
from support.hand_agent import hand_agent

from aiswitch.coordinator.coordinator import Coordinator
from aiswitch.coordinator.request import BatchItem, RunRequest
from aiswitch.coordinator.specs import parse_specs
from aiswitch.errors import StateError
from aiswitch.home import Home
from aiswitch.tokens.records import LedgerRecord


def ledger(home: Home) -> list[LedgerRecord]:
    if not home.ledger.exists():
        return []
    return [LedgerRecord.model_validate_json(line) for line in home.ledger.read_text().splitlines()]


def jsonl(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_a_batch_prints_one_line_per_task_as_it_ends_then_the_run(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.txt"
    tasks.write_text(
        "# a comment, then a blank line\n\n"
        "first task\n"
        '{"id": "b", "prompt": "second task", "priority": 5, "options": {"output_tokens": 7}}\n'
        '{"prompt": "third task", "timeout": 30}\n'
    )
    out = run_cli("run", "--agent", "mock", "--tasks", str(tasks), "--jsonl", env=env)
    assert out.code == 0, out.stderr
    lines = jsonl(out.stdout)
    task_lines = [line for line in lines if line["type"] == "task"]
    assert lines[-1]["type"] == "run"
    assert sorted(str(line["id"]) for line in task_lines) == ["b", "line-3", "line-5"]
    assert all(line["status"] == "ok" and line["attempts"] == 1 for line in task_lines)
    (b,) = [line for line in task_lines if line["id"] == "b"]
    assert b["usage"]["output_tokens"] == 7  # type: ignore[index]
    run = lines[-1]
    assert run["status"] == "ok" and run["tasks"] == 3 and run["ok"] == 3
    total = sum(r.input_tokens + r.output_tokens for r in ledger(home))
    assert run["usage"]["input_tokens"] + run["usage"]["output_tokens"] == total  # type: ignore[index]
    index = json.loads((home.state / "tasks.json").read_text())["runs"]
    assert index[-1]["mode"] == "batch" and index[-1]["tasks"] == 3
    # The journal (what a resume reads): one whole line per final result, however many
    # ended in one loop turn (they are written together).
    journal = (home.runs / f"{run['run_id']}.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in journal) == ["b", "line-3", "line-5"]


def test_a_batch_from_stdin_runs_every_task_on_each_parallel_agent(env: dict[str, str]) -> None:
    out = run_cli(
        "run",
        "--parallel",
        "mock,mock@fast",
        "--tasks",
        "-",
        "--json",
        env=env,
        input="one\ntwo\n",
    )
    assert out.code == 0, out.stderr
    doc = out.json()
    pairs = sorted((r["id"], r["agent_id"]) for r in doc["results"])
    assert pairs == [
        ("line-1", "mock#1"),
        ("line-1", "mock#2"),
        ("line-2", "mock#1"),
        ("line-2", "mock#2"),
    ]
    assert doc["figures"]["operations"] == 4 and doc["figures"]["success_rate"] == 1.0


def test_invalid_batch_lines_are_reported_with_their_numbers_before_anything_starts(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.txt"
    tasks.write_text(
        'fine\n{"prompt": ""}\n{not json\n{"prompt": "x", "colour": "red"}\n'
        '{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n'
    )
    out = run_cli("run", "--agent", "mock", "--tasks", str(tasks), "--json", env=env)
    assert_one_error_line(
        out, "line 2", "line 3", "line 4", "'colour'", "line 6", "also on line 5", code=2
    )
    assert not (home.state / "tasks.json").exists()


def test_run_agent_is_recorded_as_a_single_run(env: dict[str, str]) -> None:
    out = run_cli("run", "--agent", "mock", "hi", "--json", env=env)
    assert out.json()["mode"] == "single"


# A child that speaks the protocol but breaks it: usage for a task id it was never given,
# an invalid usage notification, a valid one, then a malformed task.assign reply.
ROGUE = """
send('{"jsonrpc": "2.0", "method": "tokens.usage", '
     '"params": {"task_id": "nobody", "usage": {"input_tokens": 11}}}')
send('{"jsonrpc": "2.0", "method": "tokens.usage", '
     '"params": {"task_id": %s, "usage": {"input_tokens": -5}}}' % tid)
send('{"jsonrpc": "2.0", "method": "tokens.usage", '
     '"params": {"task_id": %s, "usage": {"input_tokens": 3}}}' % tid)
result = '{"task_id": %s, "status": "weird"}' % tid
"""


def test_a_malformed_task_reply_fails_that_task_only_and_stray_usage_is_counted_once(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    hand_agent(home, tmp_path, "rogue", ROGUE)
    out = run_cli("run", "--parallel", "rogue,mock", "x", "--json", env=env)
    assert out.code == 7, out.stderr  # partial
    assert "Traceback" not in out.stderr
    doc = out.json()
    rogue, mock = doc["results"]
    assert rogue["status"] == "failed"
    assert "task.assign" in rogue["error"] and "status" in rogue["error"]
    assert mock["status"] == "ok"
    # The valid notification is the rogue task's; the stray one the run's; the invalid one
    # is dropped (and logged). Ledger and run totals agree.
    assert rogue["usage"]["input_tokens"] == 3
    records = ledger(home)
    assert sorted(r.input_tokens for r in records if r.agent == "rogue") == [3, 11]
    assert doc["usage"]["input_tokens"] == sum(r.input_tokens for r in records)


def test_a_budget_stop_keeps_the_results_of_tasks_that_had_finished(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    # One at a time, by priority: "quick" finishes, "spender" crosses the budget with the
    # usage it reports just before its result, "later" must not start.
    tasks = tmp_path / "tasks.txt"
    tasks.write_text(
        '{"id": "quick", "prompt": "a", "priority": 9, "options": {"input_tokens": 5}}\n'
        '{"id": "spender", "prompt": "b", "priority": 5, "options": {"input_tokens": 1000}}\n'
        '{"id": "later", "prompt": "c"}\n'
    )
    out = run_cli(
        "run",
        "--agent",
        "mock",
        "--tasks",
        str(tasks),
        "--concurrency",
        "1",
        "--budget-tokens",
        "500",
        "--json",
        env=env,
    )
    doc = out.json()
    assert doc["status"] == "budget_exceeded", out.stderr
    results = {r["id"]: r for r in doc["results"]}
    assert results["quick"]["status"] == "ok" and results["quick"]["output"]
    assert results["spender"]["status"] == "ok" and results["spender"]["output"]
    assert results["later"]["status"] == "cancelled"
    assert "budget" in results["later"]["error"]
    assert results["later"]["attempts"] == 0
    assert out.code == 8


# A well-behaved child whose result's own usage disagrees with its notifications, or which
# reports usage only in its result.
HONEST_BUT_ODD = """
if os.environ["ODD_MODE"] == "disagree":
    send('{"jsonrpc": "2.0", "method": "tokens.usage", '
         '"params": {"task_id": %s, "usage": {"input_tokens": 3}}}' % tid)
result = ('{"task_id": %s, "status": "ok", "output": "done", '
          '"usage": {"input_tokens": 50}}' % tid)
"""


@pytest.mark.parametrize(("mode", "expected"), [("disagree", 3), ("result-only", 50)])
def test_usage_has_one_source_of_truth_for_the_result_and_the_ledger(
    env: dict[str, str], home: Home, tmp_path: Path, mode: str, expected: int
) -> None:
    hand_agent(home, tmp_path, "odd", HONEST_BUT_ODD, env={"ODD_MODE": mode})
    out = run_cli("run", "--agent", "odd", "x", "--json", env=env)
    assert out.code == 0, out.stderr
    (result,) = out.json()["results"]
    # Notifications are the truth when there are any; a result's own usage fills a gap,
    # recorded once. Either way the result, the run and the ledger say the same.
    assert result["usage"]["input_tokens"] == expected
    assert out.json()["usage"]["input_tokens"] == expected
    assert [r.input_tokens for r in ledger(home)] == [expected]


def _full_disk_ledger(self: object) -> None:
    raise StateError("cannot append to tokens.jsonl: No space left on device")


def _full_disk_journal(self: object, line: bytes) -> None:
    raise StateError("cannot append to RUN.jsonl: No space left on device")


@pytest.mark.parametrize(
    ("target", "replacement"),
    [
        ("aiswitch.tokens.ledger.LedgerWriter.write_queued", _full_disk_ledger),
        ("aiswitch.state.runs.RunJournal.append", _full_disk_journal),
    ],
)
async def test_a_state_file_that_cannot_be_written_stops_the_run_with_that_error(
    home: Home, monkeypatch: pytest.MonkeyPatch, target: str, replacement: object
) -> None:
    # The ledger (usage as it arrives) and the journal (each final result) are written
    # from callbacks: a full disk there must end the run with its one error, not hang it
    # or lose the error in a callback's traceback.
    monkeypatch.setattr(target, replacement)
    env = {**os.environ, "MOCK_LATENCY": "0", "MOCK_STEPS": "0"}
    coordinator = Coordinator(home, parent_env=env)
    items = [BatchItem(prompt=f"task {n}") for n in range(10)]
    run = coordinator.new_run(
        RunRequest(mode="batch", specs=parse_specs("mock"), prompt="", batch=items, concurrency=1)
    )
    async with asyncio.timeout(60):
        with pytest.raises(StateError, match="No space left"):
            await run.execute()
    # The first task's write failed (at the end of its loop turn): nothing more ran. An
    # attempt the scheduler had begun in that same turn ends before reaching a process.
    first, *rest = run.result.results
    assert first.attempts == 1
    assert all("No space left" in (r.error or "") for r in rest)
    begun = [r for r in rest if r.attempts]
    assert len(begun) <= 1
    assert all(r.status == "cancelled" and "before it started" in (r.error or "") for r in begun)


async def test_a_cancel_while_the_run_file_is_written_ends_the_run_cancelled(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C in a run's first moment (its run file and index being written in a thread): the
    # file is written whole, then the run ends cancelled like any other; it stayed `running`
    # (and `aiswitch run` exited 1) before.
    import threading

    from aiswitch.coordinator.run import Run

    begin = Run._begin
    entered, release = asyncio.Event(), threading.Event()
    loop = asyncio.get_running_loop()

    def held_begin(self: Run) -> None:
        loop.call_soon_threadsafe(entered.set)
        release.wait(30)
        begin(self)

    monkeypatch.setattr(Run, "_begin", held_begin)
    env = {**os.environ, "MOCK_LATENCY": "0", "MOCK_STEPS": "0"}
    coordinator = Coordinator(home, parent_env=env)
    request = RunRequest(mode="parallel", specs=parse_specs("mock,mock"), prompt="x")
    run = coordinator.new_run(request, coordinator.plan(request))
    async with asyncio.timeout(60):
        running = asyncio.create_task(run.execute())
        await entered.wait()
        running.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert str(run.result.status) == "cancelled"
    assert [str(r.status) for r in run.result.results] == ["cancelled", "cancelled"]
    saved = json.loads((home.runs / f"{run.run_id}.json").read_text())
    assert saved["status"] == "cancelled"
    assert [r["status"] for r in saved["results"]] == ["cancelled", "cancelled"]
    assert json.loads((home.state / "agents.json").read_text())["agents"] == {}
