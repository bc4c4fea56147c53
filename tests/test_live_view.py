"""The live table shows the results the run updates."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import re
from pathlib import Path
from typing import Any

from rich.console import Console

from aiswitch.cli.live import LiveView
from aiswitch.coordinator.coordinator import Coordinator
from aiswitch.coordinator.request import BatchItem, RunRequest
from aiswitch.coordinator.results import TaskStatus
from aiswitch.coordinator.specs import parse_specs
from aiswitch.home import Home
from aiswitch.tokens.usage import Usage


def test_the_live_table_shows_status_tokens_and_the_last_line(home: Home) -> None:
    console = Console(file=io.StringIO(), width=160)
    coordinator = Coordinator(home, parent_env=dict(os.environ))
    run = coordinator.new_run(RunRequest(mode="single", specs=parse_specs("mock"), prompt="x"))
    (result,) = run.result.results
    view = LiveView(console, run)
    result.status = TaskStatus.RUNNING
    result.usage = Usage(input_tokens=42)
    view.event("progress", result, "step 1/3: reading")
    console.print(view.render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "running" in text
    assert "42 in" in text
    assert "step 1/3: reading" in text
    assert "0/1 done · 1 running · 0 waiting" in text


def test_a_batch_is_shown_as_progress_figures_not_one_row_per_task(home: Home) -> None:
    console = Console(file=io.StringIO(), width=200)
    coordinator = Coordinator(home, parent_env=dict(os.environ))
    items = [BatchItem(prompt=f"task {n}") for n in range(40)]
    run = coordinator.new_run(
        RunRequest(mode="batch", specs=parse_specs("mock"), prompt="", batch=items)
    )
    for result in run.result.results[:10]:
        result.status = TaskStatus.OK
    run.result.results[10].status = TaskStatus.FAILED
    run.result.results[11].status = TaskStatus.RUNNING
    view = LiveView(console, run)
    console.print(view.render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "11/40 done · 1 running · 28 waiting · 1 failed" in text
    assert "task 5" not in text


async def test_a_run_updates_the_results_its_plan_handed_out(home: Home) -> None:
    env = {**os.environ, "MOCK_LATENCY": "0", "MOCK_STEPS": "0"}
    coordinator = Coordinator(home, parent_env=env)
    request = RunRequest(mode="parallel", specs=parse_specs("mock,mock"), prompt="x")
    planned = coordinator.plan(request)
    async with asyncio.timeout(30):
        run = await coordinator.run(request, planned)
    assert [r.status for r in planned.results] == ["ok", "ok"]
    assert all(a is b for a, b in zip(run.results, planned.results, strict=True))


async def test_a_batchs_progress_counts_are_the_runs_own_and_agree_with_its_results(
    home: Home,
) -> None:
    from aiswitch.cli.live import StatusLines, counts
    from aiswitch.coordinator.request import RunEvent

    env = {**os.environ, "MOCK_LATENCY": "0", "MOCK_STEPS": "0", "MOCK_FAIL": "0"}
    coordinator = Coordinator(home, parent_env=env)
    items = [BatchItem(prompt=f"task {n}") for n in range(30)]
    items[7] = BatchItem(prompt="task 7", options={"fail": True})
    request = RunRequest(
        mode="batch", specs=parse_specs("mock"), prompt="", batch=items, concurrency=4
    )
    console = Console(file=io.StringIO(), width=300)
    lines = StatusLines(console)
    checked = 0

    def on_event(event: RunEvent) -> None:
        nonlocal checked
        if event.kind != "status":
            return
        results = run.result.results
        # The running counts, against a recount of every result (what they replace).
        done, failed, _ = counts(run)
        assert done == sum(1 for r in results if r.final)
        assert failed == sum(1 for r in results if r.final and r.status != "ok")
        checked += 1
        lines.status(event.result)

    run = coordinator.new_run(request, coordinator.plan(request), on_event=on_event)
    lines.watch(run)
    async with asyncio.timeout(60):
        await run.execute()
    assert checked >= 60
    text = console.file.getvalue()  # type: ignore[attr-defined]
    # A line each time the batch passes a tenth (finals are told at the end of their loop
    # turn, so one turn may pass two tenths: one line then), in order, up to the end.
    done_counts = [int(line.split("/")[0]) for line in re.findall(r"aiswitch: (\d+/30)", text)]
    assert 5 <= len(done_counts) <= 10
    assert done_counts == sorted(set(done_counts)) and done_counts[-1] == 30
    assert all(n * 10 // 30 > m * 10 // 30 for m, n in itertools.pairwise([0, *done_counts]))
    assert "30/30 done · 0 running · 0 waiting · 1 failed" in text


def plan_run(home: Home, tmp_path: Path, tasks: int) -> Any:
    from aiswitch.coordinator.plan_check import read_plan

    path = tmp_path / "plan.yaml"
    lines = ["defaults: {agent: mock}", "tasks:"]
    lines += [f"  - {{id: t{n}, prompt: task {n}}}" for n in range(tasks)]
    path.write_text("\n".join(lines) + "\n")
    coordinator = Coordinator(home, parent_env=dict(os.environ))
    request = RunRequest(mode="plan", specs=[], prompt="plan", plan=read_plan(path))
    return coordinator.new_run(request)


def test_a_plans_view_shows_its_tasks_by_id_and_by_state(home: Home, tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=200)
    run = plan_run(home, tmp_path, 3)
    first, second, _ = run.result.results
    first.status, second.status = TaskStatus.OK, TaskStatus.SKIPPED
    view = LiveView(console, run)
    console.print(view.render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "t0" in text and "t2" in text
    assert "1 pending · 1 ok · 1 skipped" in text


def test_a_big_plans_view_lists_the_running_tasks_with_their_agent_and_last_line(
    home: Home, tmp_path: Path
) -> None:
    console = Console(file=io.StringIO(), width=200)
    run = plan_run(home, tmp_path, 30)
    results = run.result.results
    for result in results[:20]:
        result.status = TaskStatus.OK
    results[20].status = TaskStatus.RUNNING
    view = LiveView(console, run)
    view.event("progress", results[20], "step 2/3: thinking")
    console.print(view.render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "9 pending · 1 running · 20 ok" in text
    assert "t20  mock#1  step 2/3: thinking" in text
    assert "t5 " not in text


def test_the_live_table_shows_a_tasks_changes_and_its_check(home: Home) -> None:
    from aiswitch.workspace.model import Changes, CheckResult, Workspace

    console = Console(file=io.StringIO(), width=200)
    coordinator = Coordinator(home, parent_env=dict(os.environ))
    run = coordinator.new_run(RunRequest(mode="single", specs=parse_specs("mock"), prompt="x"))
    (result,) = run.result.results
    view = LiveView(console, run)
    result.status = TaskStatus.OK
    result.workspace = Workspace(
        mode="worktree",
        run_id=run.run_id,
        name="mock-1",
        root="/w",
        cwd="/w",
        source="/r",
        changes=Changes(files=3, insertions=10, deletions=2),
        check=CheckResult(command="pytest -q", passed=False, exit_code=1),
    )
    view.event("status", result, None)
    console.print(view.render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "3 files +10 -2 · check failed" in text
