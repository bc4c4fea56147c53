"""The live table shows the results the run updates."""

from __future__ import annotations

import asyncio
import io
import os

from rich.console import Console

from aiswitch.cli.live import LiveView
from aiswitch.coordinator.results import AgentResult
from aiswitch.coordinator.run import Coordinator, RunRequest
from aiswitch.coordinator.specs import parse_specs
from aiswitch.home import Home
from aiswitch.tokens.usage import Usage


def test_the_live_table_shows_status_tokens_and_the_last_line() -> None:
    console = Console(file=io.StringIO(), width=120)
    result = AgentResult(agent="mock", agent_id="mock#1", task_id="t")
    view = LiveView(console, [result])
    result.status = "running"
    result.usage = Usage(input_tokens=42)
    view.event("progress", result, "step 1/3: reading")
    console.print(view.render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "running" in text
    assert "42 in" in text
    assert "step 1/3: reading" in text


async def test_a_run_updates_the_results_its_plan_handed_out(home: Home) -> None:
    env = {**os.environ, "MOCK_LATENCY": "0", "MOCK_STEPS": "0"}
    coordinator = Coordinator(home, parent_env=env)
    request = RunRequest(mode="parallel", specs=parse_specs("mock,mock"), prompt="x")
    planned = coordinator.plan(request)
    async with asyncio.timeout(30):
        run = await coordinator.run(request, planned)
    assert [r.status for r in (p.result for p in planned)] == ["ok", "ok"]
    assert all(a is p.result for a, p in zip(run.results, planned, strict=True))
