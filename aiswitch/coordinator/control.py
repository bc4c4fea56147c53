"""Live control of one running `Run` from another terminal (`runs cancel`, `runs watch`,
`agents stop|restart|switch`): what each control request does, without a daemon.

Contract:
- `RunControl(run, cancel)` is made by whoever executes the run; `cancel()` is how that
  caller cancels the run (the same path as SIGTERM: tasks cancelled, children stopped,
  the run ends `cancelled`).
- Agent requests name a process of the run by its id (`mock.p1`, as `agents.json` and
  `status()` list them); an unknown id, a preset that does not resolve, a process that is
  not running: an `AiswitchError` saying so, and nothing changes.
- `watch(send)` registers `send`, called once per loop turn with the events of that turn
  (plain JSON values), until `unwatch(send)`; `event(e)` is fed every `RunEvent` of the
  run. With no watcher, `event` does nothing but one check.

The wire (socket, framing) is not this module's: the CLI serves these methods over
`aiswitch.rpc` (docs/protocol.md, "Run control").
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiswitch.coordinator.request import RunEvent
from aiswitch.errors import UnknownAgentError

if TYPE_CHECKING:
    from aiswitch.coordinator.run import Run
    from aiswitch.supervisor.handle import AgentHandle

EventSink = Callable[[list[dict[str, Any]]], None]


def event_json(event: RunEvent) -> dict[str, Any]:
    """One run event as `runs watch` shows it."""
    result = event.result
    out: dict[str, Any] = {
        "kind": event.kind,
        "task_id": result.task_id,
        "id": result.id,
        "agent_id": result.agent_id,
        "preset": result.preset,
        "status": str(result.status),
    }
    if event.kind in ("progress", "waiting"):
        out["text"] = event.text
    elif event.kind == "usage":
        # While it runs: its provisional running totals when they are ahead of the ledger's.
        out["total_tokens"] = result.shown_usage.total_tokens
        if result.provisional:
            out["provisional"] = True
    elif result.final:
        out.update(error=result.error, total_tokens=result.usage.total_tokens)
        out.update(cost_usd=result.cost_usd, duration_s=result.duration_s)
    return out


class RunControl:
    def __init__(self, run: Run, cancel: Callable[[], object]) -> None:
        self.run = run
        self._cancel = cancel
        self._sinks: list[EventSink] = []
        self._turn: list[dict[str, Any]] = []
        self._flush_due = False

    # -- the run -------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        run = self.run
        executor = run.executor
        handles = executor.handles() if executor is not None else []
        # Tokens per process: its attempts' usage (a process runs many tasks), a running
        # attempt's provisional totals when they are ahead.
        spent: dict[str, int] = {}
        for task in run.tasks:
            for attempt in task.attempts:
                if attempt.process is not None:
                    total = run.attempt_tokens(attempt)
                    spent[attempt.process] = spent.get(attempt.process, 0) + total
        return {
            "run_id": run.run_id,
            "status": str(run.result.status),
            "mode": run.result.mode,
            "tasks": len(run.tasks),
            "finished": run.finals,
            "failed": run.failures,
            "processes": [{**process_view(h), "tokens": spent.get(h.agent_id, 0)} for h in handles],
        }

    def cancel(self) -> dict[str, Any]:
        self._cancel()
        return {"run_id": self.run.run_id, "cancelling": True}

    # -- agents --------------------------------------------------------------------

    def handle(self, agent_id: str) -> AgentHandle:
        executor = self.run.executor
        for handle in executor.handles() if executor is not None else []:
            if handle.agent_id == agent_id:
                return handle
        known = ", ".join(h.agent_id for h in executor.handles()) if executor else ""
        raise UnknownAgentError(
            f"no agent process {agent_id!r} in run {self.run.run_id}",
            hint=f"its processes: {known}" if known else "it has no process now",
        )

    async def stop_agent(self, agent_id: str) -> dict[str, Any]:
        """Stop the process; its pool starts another if tasks wait (they are retried)."""
        handle = self.handle(agent_id)
        await handle.stop("stopped by `aiswitch agents stop`", abandon=True)
        return process_view(handle)

    async def restart_agent(self, agent_id: str) -> dict[str, Any]:
        handle = self.handle(agent_id)
        await handle.restart("restarted by `aiswitch agents restart`")
        return process_view(handle)

    async def switch_agent(self, agent_id: str, preset: str) -> dict[str, Any]:
        """`env.switch` on the live process: the preset applies from its next task."""
        handle = self.handle(agent_id)
        state = await self.run.coordinator.switch_preset(handle, preset)
        return {"agent_id": agent_id, "preset": preset, "env": state.model_dump(mode="json")}

    # -- events --------------------------------------------------------------------

    def watch(self, sink: EventSink) -> dict[str, Any]:
        self._sinks.append(sink)
        return self.status()

    def unwatch(self, sink: EventSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def event(self, event: RunEvent) -> None:
        if not self._sinks:
            return
        self._turn.append(event_json(event))
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Send the events gathered so far to every watcher."""
        self._flush_due = False
        if not self._turn:
            return
        events, self._turn = self._turn, []
        for sink in list(self._sinks):
            sink(events)


def process_view(handle: AgentHandle) -> dict[str, Any]:
    """What the control socket tells of an agent process (`agents stop|restart|switch`,
    a run's status for `ps`)."""
    return {
        "agent_id": handle.agent_id,
        "agent": handle.agent.name,
        "preset": handle.preset,
        "state": str(handle.state),
        "pid": handle.pid,
        "restarts": handle.restarts,
        "in_flight": len(handle.running),
        "capacity": handle.capacity,
        "tasks_done": handle.tasks_done,
        "reason": handle.reason,
        "parent_pid": os.getpid(),
    }
