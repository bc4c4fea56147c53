"""What runs on a Ray node: one actor per node and agent kind, owning a local pool of
adapter processes (the `ray` backend, docs/ray.md).

Contract:
- `NodeAgents(kind, run_id, node_tag, settings)` is made by the driver (wrapped with
  `ray.remote` there; this module never imports Ray). It runs attempts with the local
  executor, so a child is started, supervised and spoken to over stdio JSON-RPC exactly
  as on the driver's machine; its processes are named `AGENT.NODE.pN`.
- `submit(orders)` starts attempts (the driver sends those of one loop turn in one call);
  `events()` is one stream per actor of every attempt's events, as `(attempt id, event)`
  pairs in batches (what came in since the last batch), events being plain tuples:
  `("assigned", process, provides, processes)`, `("progress", params)`, `("usage",
  params)`, and last `("end", end, error, reply, patch)`. Few calls and stream items per
  task: each costs a round trip through Ray. The actor writes no ledger and no state
  file: the driver alone does.
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
from aiswitch.coordinator.tasks import Attempt, End, Lane, StopSignal, Task
from aiswitch.home import Home
from aiswitch.supervisor.env import BASE_NAMES, BASE_PREFIXES

if TYPE_CHECKING:
    from aiswitch.agents import AgentDef
    from aiswitch.presets.resolve import ResolvedPreset
    from aiswitch.protocol.models import ProgressParams, UsageParams
    from aiswitch.supervisor.handle import AgentHandle
    from aiswitch.supervisor.policy import Supervision
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
        self._outbox: list[tuple[str, Event]] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._attempts: dict[str, asyncio.Task[None]] = {}
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

    def _send(self, attempt_id: str, event: Event) -> None:
        self._outbox.append((attempt_id, event))
        self._wake.set()

    def _progress(self, task: Task, attempt: Attempt, params: ProgressParams) -> None:
        self._send(attempt.id, ("progress", params.model_dump(mode="json")))

    def _usage(self, task: Task, attempt: Attempt, params: UsageParams) -> None:
        self._send(attempt.id, ("usage", params.model_dump(mode="json")))

    def _assigned(self, task: Task, attempt: Attempt) -> None:
        handle = next((h for h in self.executor.handles() if h.agent_id == attempt.process), None)
        provides = tuple(handle.provides) if handle is not None else ()
        processes = self.executor.process_count()
        self._send(attempt.id, ("assigned", attempt.process, provides, processes))

    def _stray(self, handle: Any, params: UsageParams) -> None:
        self._strays.append(
            (handle.agent.name, handle.agent_id, handle.preset, params.model_dump(mode="json"))
        )

    # -- the driver's calls --------------------------------------------------------------

    async def events(self) -> AsyncIterator[list[tuple[str, Event]]]:
        """Every attempt's events, in the order they came, in batches (all that came in
        since the last batch): one stream per actor, until `close()`."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._outbox = self._outbox, []
            if batch:
                yield batch
            if self._closed and not self._outbox:
                return

    async def submit(self, orders: list[AttemptOrder]) -> None:
        """Start these attempts (their events come through `events`)."""
        loop = asyncio.get_running_loop()
        for order in orders:
            stop = StopSignal()
            self._stops[order.attempt_id] = stop
            self._attempts[order.attempt_id] = loop.create_task(self._run(order, stop))

    async def _run(self, order: AttemptOrder, stop: StopSignal) -> None:
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
        checkout = None
        patch = None
        try:
            if order.workspace is not None:
                from aiswitch.workspace import remote

                # A reference into Ray's object store: fetched here, once per attempt.
                tree = await order.workspace.tree
                where = self.home.root / "workspaces"
                checkout = await asyncio.to_thread(
                    remote.checkout, order.workspace, tree, where, attempt.id
                )
                attempt.cwd = str(checkout.cwd)
            await self.executor.execute(task, attempt, stop)
            if checkout is not None:
                from aiswitch.workspace import remote

                patch = await asyncio.to_thread(remote.changes, checkout)
        except Exception as exc:
            # A failure here (a checkout that cannot be made) fails this attempt only.
            attempt.end, attempt.error = End.FAILED, f"on its Ray node: {exc}"
        finally:
            self._stops.pop(attempt.id, None)
            self._attempts.pop(attempt.id, None)
            if checkout is not None:
                shutil.rmtree(checkout.root, ignore_errors=True)
        reply = attempt.reply.model_dump(mode="json") if attempt.reply is not None else None
        end = attempt.end.value if attempt.end is not None else None
        self._send(attempt.id, ("end", end, attempt.error, reply, patch))

    def cancel(self, attempt_id: str, why: str) -> None:
        stop = self._stops.get(attempt_id)
        if stop is not None and not stop.is_set():
            stop.reason = why
            stop.set()

    async def close(self) -> dict[str, Any]:
        """Stop every process and end the event stream; what this actor saw that no
        attempt owned."""
        peak = self.executor.peak_processes()
        for job in list(self._attempts.values()):
            job.cancel()
        await self.executor.close()
        # The agents' logs stay in this node's home; the checkouts are gone already.
        self._closed = True
        self._wake.set()
        return {"strays": self._strays, "peak_processes": peak}
