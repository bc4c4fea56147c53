"""What runs on a Ray node: one actor per node and agent kind, owning a local pool of
adapter processes (the `ray` backend, docs/ray.md).

Contract:
- `NodeAgents(kind, run_id, node_tag, settings)` is made by the driver (wrapped with
  `ray.remote` there; this module never imports Ray). It runs attempts with the local
  executor, so a child is started, supervised and spoken to over stdio JSON-RPC exactly
  as on the driver's machine; its processes are named `AGENT.NODE.pN`.
- `run_attempt(order)` streams the attempt's events back to the driver, in lists of
  plain tuples (what came in since the last list):
  `("assigned", process, provides, processes)`, `("progress", params)`, `("usage",
  params)`, and last `("end", end, error, reply, patch)`. It writes no ledger and no
  state file: the driver alone does.
- The child's environment is the one the driver built (the preset's secrets travel in
  the order, the task's argument), with the machine's own basics (PATH, HOME, the user,
  locale, temporary folder, the CLIs' config folders) taken from this node, and this
  node's home (a scratch folder: agent logs stay on the node).
- `order.workspace`: the attempt works in a fresh checkout made here from the driver's
  bundle and patch (`aiswitch.workspace.remote`); what it changed comes back as a patch.
- `cancel(attempt_id, why)` ends an attempt as a stopped run does (the agent gets
  `task.cancel`); `close()` stops every process and returns the usage no attempt owned.
  The node's home (`$TMPDIR/aiswitch-ray/RUN-KIND-NODE`) keeps the agents' logs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiswitch.coordinator.executor import LocalExecutor, TaskSettings
from aiswitch.coordinator.results import AgentResult
from aiswitch.coordinator.tasks import Attempt, Lane, StopSignal, Task
from aiswitch.home import Home
from aiswitch.supervisor.env import BASE_NAMES, BASE_PREFIXES

if TYPE_CHECKING:
    from aiswitch.agents import AgentDef
    from aiswitch.presets.resolve import ResolvedPreset
    from aiswitch.protocol.models import ProgressParams, UsageParams
    from aiswitch.supervisor.handle import AgentHandle, Supervision
    from aiswitch.workspace.remote import RemoteWorkspace

Event = tuple[Any, ...]


@dataclass(frozen=True)
class AttemptOrder:
    """One attempt as it travels to a node: everything the node needs, secrets included
    (in the task's arguments, never in Ray's runtime environment)."""

    task_id: str
    agent_id: str
    attempt_id: str
    number: int
    agent: AgentDef
    preset: ResolvedPreset
    # The child's environment as the driver built it (`LocalExecutor.lane_env`).
    env: Mapping[str, str]
    prompt: str
    timeout_s: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    cwd: str | None = None
    workspace: RemoteWorkspace | None = None


def node_env(driver_env: Mapping[str, str], node: Mapping[str, str], home: Home) -> dict[str, str]:
    """The driver's child environment with this machine's basics (see the contract)."""
    env = {
        name: value
        for name, value in driver_env.items()
        if name not in BASE_NAMES and not name.startswith(BASE_PREFIXES)
    }
    env.update(
        (name, value)
        for name, value in node.items()
        if name in BASE_NAMES or name.startswith(BASE_PREFIXES)
    )
    env["AISWITCH_HOME"] = str(home.root)
    return env


class _NodeExecutor(LocalExecutor):
    """The local executor, with children named per node and given the driver's env."""

    node_tag = ""
    envs: dict[str, Mapping[str, str]]

    def child_env(self, lane: Lane, agent_id: str) -> dict[str, str]:
        env = node_env(self.envs[lane.key], os.environ, self.home)
        env["AISWITCH_AGENT_ID"] = agent_id
        return env

    def _handle(self, lane: Lane, agent_id: str, supervision: Supervision) -> AgentHandle:
        name, _, serial = agent_id.rpartition(".")
        return super()._handle(lane, f"{name}.{self.node_tag}.{serial}", supervision)


class NodeAgents:
    def __init__(self, kind: str, run_id: str, node_tag: str, settings: TaskSettings) -> None:
        self.kind = kind
        root = Path(tempfile.gettempdir()) / "aiswitch-ray" / f"{run_id}-{kind}-{node_tag}"
        self.home = Home(root)
        self.home.ensure()
        self._events: dict[str, asyncio.Queue[Event]] = {}
        self._stops: dict[str, StopSignal] = {}
        self._strays: list[tuple[str, str, str | None, dict[str, Any]]] = []
        executor = _NodeExecutor(
            home=self.home,
            run_id=run_id,
            parent_env=os.environ,
            settings=settings,
            on_progress=self._progress,
            on_usage=self._usage,
            on_stray_usage=self._stray,
            on_assigned=self._assigned,
        )
        executor.node_tag = node_tag
        executor.envs = {}
        self.executor = executor

    # -- what the local executor tells -------------------------------------------------

    def _put(self, attempt: Attempt, event: Event) -> None:
        queue = self._events.get(attempt.id)
        if queue is not None:
            queue.put_nowait(event)

    def _progress(self, task: Task, attempt: Attempt, params: ProgressParams) -> None:
        self._put(attempt, ("progress", params.model_dump(mode="json")))

    def _usage(self, task: Task, attempt: Attempt, params: UsageParams) -> None:
        self._put(attempt, ("usage", params.model_dump(mode="json")))

    def _assigned(self, task: Task, attempt: Attempt) -> None:
        handle = next((h for h in self.executor.handles() if h.agent_id == attempt.process), None)
        provides = tuple(handle.provides) if handle is not None else ()
        processes = self.executor.process_count()
        self._put(attempt, ("assigned", attempt.process, provides, processes))

    def _stray(self, handle: Any, params: UsageParams) -> None:
        self._strays.append(
            (handle.agent.name, handle.agent_id, handle.preset, params.model_dump(mode="json"))
        )

    # -- attempts ----------------------------------------------------------------------

    async def run_attempt(self, order: AttemptOrder) -> AsyncIterator[list[Event]]:
        lane = Lane(order.agent, order.preset)
        self.executor.envs.setdefault(lane.key, order.env)
        task = Task(
            index=0,
            lane=lane,
            result=AgentResult(
                agent=order.agent.name, agent_id=order.agent_id, task_id=order.task_id
            ),
            prompt=order.prompt,
            timeout_s=order.timeout_s,
            options=order.options,
        )
        attempt = Attempt(number=order.number, id=order.attempt_id, lane=lane.key, cwd=order.cwd)
        queue: asyncio.Queue[Event] = asyncio.Queue()
        stop = StopSignal()
        self._events[attempt.id] = queue
        self._stops[attempt.id] = stop
        checkout = None
        try:
            if order.workspace is not None:
                from aiswitch.workspace import remote

                # A reference into Ray's object store: fetched here, once per attempt.
                tree = await order.workspace.tree
                checkout = await asyncio.to_thread(
                    remote.checkout,
                    order.workspace,
                    tree,
                    self.home.root / "workspaces",
                    attempt.id,
                )
                attempt.cwd = str(checkout.cwd)
            run = asyncio.ensure_future(self.executor.execute(task, attempt, stop))
            # Events go in batches: all that came in since the last one (an item of a
            # stream costs a round trip; the reply's usage rides with the end).
            batch: list[Event] = []
            while True:
                getting = asyncio.ensure_future(queue.get())
                await asyncio.wait({run, getting}, return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    getting.cancel()
                    break
                batch.append(getting.result())
                while not queue.empty():
                    batch.append(queue.get_nowait())
                if run.done():
                    break
                yield batch
                batch = []
            await run
            while not queue.empty():
                batch.append(queue.get_nowait())
            patch = None
            if checkout is not None:
                from aiswitch.workspace import remote

                patch = await asyncio.to_thread(remote.changes, checkout)
            reply = attempt.reply.model_dump(mode="json") if attempt.reply is not None else None
            end = attempt.end.value if attempt.end is not None else None
            batch.append(("end", end, attempt.error, reply, patch))
            yield batch
        finally:
            self._events.pop(attempt.id, None)
            self._stops.pop(attempt.id, None)
            if checkout is not None:
                shutil.rmtree(checkout.root, ignore_errors=True)

    def cancel(self, attempt_id: str, why: str) -> None:
        stop = self._stops.get(attempt_id)
        if stop is not None and not stop.is_set():
            stop.reason = why
            stop.set()

    async def close(self) -> dict[str, Any]:
        """Stop every process; what this actor saw that no attempt owned."""
        peak = self.executor.peak_processes()
        await self.executor.close()
        # The agents' logs stay in this node's home; the checkouts are gone already.
        return {"strays": self._strays, "peak_processes": peak}
