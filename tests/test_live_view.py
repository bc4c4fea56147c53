"""The live table follows the result objects that events carry."""

from __future__ import annotations

import io

from rich.console import Console

from aiswitch.cli.live import LiveView
from aiswitch.coordinator.results import AgentResult
from aiswitch.tokens.usage import Usage


def test_the_live_table_shows_the_status_and_tokens_that_events_carry() -> None:
    console = Console(file=io.StringIO(), width=120)
    planned = [AgentResult(agent="mock", agent_id="mock#1", task_id="t")]
    view = LiveView(console, planned)
    live = AgentResult(
        agent="mock", agent_id="mock#1", task_id="t", status="running", usage=Usage(input_tokens=42)
    )
    view.event("progress", live, "step 1/3: reading")
    console.print(view.render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "running" in text
    assert "42 in" in text
    assert "step 1/3: reading" in text
