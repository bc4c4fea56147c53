"""The Ray executor: a run's attempts on the actors of a Ray cluster (docs/ray.md).

Contract:
- `start()` connects to the cluster (`address`: Ray's own forms; None starts a local
  instance). Ray is imported here only, when the `ray` backend is chosen.
- One actor per node and agent kind (`aiswitch.coordinator.ray_node.NodeAgents`), made
  when the run first needs that kind, on every live node that offers the custom resource
  `agent:KIND`; the actor takes all of the node's `agent:KIND` and runs that many attempts
  at once. An attempt goes to the actor of its kind with the most free slots (waiting,
  in order, when all are busy). Actors are never restarted by Ray (`max_restarts=0`):
  the scheduler decides what runs again. The orders of one loop turn go to an actor in
  one call, and each actor streams every attempt's events back in one stream (a reader
  task per actor): a Ray call or stream item costs a round trip, so there are few per task.
- The child's environment is built here, on the driver, with the lane's resolved preset,
  and travels in the attempt's arguments (never in a runtime environment).
- Progress and usage stream back as the attempt runs and go to the run's hooks at once:
  the driver alone writes the ledger and the state files. Usage received before a node
  was lost stays recorded, once, as that attempt's.
- A lost node or actor ends the attempt `crashed` (the scheduler retries it per the
  task's retries, on another actor); that actor is not used again. A task with a
  workspace works in a fresh checkout on the node for every attempt, made from the
  driver's bundle of the base commit plus the driver's workspace as it stands; what the
  attempt changed comes back as a patch, applied to the driver's workspace, so `diff`,
  `compare` and `apply` work as for local runs.
- `close()` stops every actor (their processes with them) and records the usage the
  actors saw that no attempt owned; it disconnects from Ray when `start()` connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aiswitch.coordinator.executor import TaskSettings, stop_reason
from aiswitch.coordinator.executors import ExecutorHooks
from aiswitch.coordinator.tasks import Attempt, End, StopSignal, Task, provider_refused
from aiswitch.errors import ExecutorError, UsageError
from aiswitch.masking import redact_text
from aiswitch.protocol.models import ProgressParams, TaskResult, UsageParams
from aiswitch.supervisor.process import CANCEL_REPLY_TIMEOUT_S

if TYPE_CHECKING:
    from aiswitch.agents import AgentDef
    from aiswitch.home import Home
    from aiswitch.supervisor.handle import AgentHandle

log = logging.getLogger("aiswitch.coordinator")

# A local Ray instance (no --address) offers this many attempts at once per agent kind.
LOCAL_SLOTS_PER_KIND: Final = 32
# Making the actors of a kind (a worker process each) takes seconds on a busy machine.
ACTOR_READY_TIMEOUT_S: Final = 120.0
# After a cancel, the node's own cancel bound plus this for the answer to travel back.
CANCEL_TRAVEL_S: Final = 5.0
# Ray retries an unreachable cluster for a long while; a plain TCP connect says at once.
CONNECT_PROBE_TIMEOUT_S: Final = 5.0
# Stopping the actors at the run's end: their processes' stop sequence, then Ray's kill.
CLOSE_TIMEOUT_S: Final = 30.0


def _probe(address: str) -> None:
    """Raise `ConnectionError` when `HOST:PORT` (or `ray://HOST:PORT`) does not answer."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit():
        return  # `auto`, or a form Ray checks itself
    import socket

    with socket.create_connection((host, int(port)), timeout=CONNECT_PROBE_TIMEOUT_S):
        pass


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--backend ray needs Ray, which is not installed",
            hint="pip install 'aiswitch[ray]'",
        ) from None
    return ray


@dataclass
class _Slot:
    """One actor: its node, its capacity and the attempts it runs now."""

    actor: Any
    node: str
    capacity: int
    running: int = 0
    alive: bool = True
    # Orders of this loop turn, sent together (`_flush`).
    pending: list[Any] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @property
    def free(self) -> int:
        return self.capacity - self.running


@dataclass
class _Kind:
    slots: list[_Slot] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


@dataclass
class _Live:
    """An attempt in flight on an actor; `done` when its end came (or its actor was lost)."""

    slot: _Slot
    task: Task
    attempt: Attempt
    done: asyncio.Future[None]


@dataclass(frozen=True)
class _Origin:
    """A process on a node, as the ledger names the origin of usage no attempt owned."""

    agent: AgentDef
    agent_id: str
    preset: str | None
    env: Mapping[str, str]


class RayExecutor:
    def __init__(
        self,
        *,
        address: str | None,
        home: Home,
        run_id: str,
        parent_env: Mapping[str, str],
        settings: TaskSettings,
        hooks: ExecutorHooks,
    ) -> None:
        self.address = address
        self.home = home
        self.run_id = run_id
        self.parent_env = parent_env
        self.settings = settings
        self.hooks = hooks
        self._ray: Any = None
        self._connected_here = False
        self._kinds: dict[str, _Kind] = {}
        self._making: dict[str, asyncio.Task[_Kind]] = {}
        self._live: dict[str, _Live] = {}
        self._lanes: dict[str, tuple[AgentDef, str | None, Mapping[str, str]]] = {}
        self._processes: dict[str, int] = {}
        self._peak = 0
        self._watched: set[StopSignal] = set()
        self._watchers: set[asyncio.Task[None]] = set()
        self._workspaces: Any = None

    # -- the cluster -------------------------------------------------------------------

    async def start(self) -> None:
        ray = import_ray()
        self._ray = ray
        if ray.is_initialized():
            return
        try:
            await asyncio.to_thread(self._connect, ray)
        except (OSError, RuntimeError, ValueError) as exc:
            where = self.address or "a local Ray instance"
            raise ExecutorError(
                f"cannot reach the Ray cluster at {where}: {redact_text(str(exc)).splitlines()[0]}",
                hint="start one with `ray start --head` (docs/ray.md) or check --address",
            ) from None
        self._connected_here = True

    def _connect(self, ray: Any) -> None:
        if self.address is not None:
            _probe(self.address)
        options: dict[str, Any] = {
            "namespace": "aiswitch",
            "log_to_driver": False,
            # Not its notices on the user's terminal (a SIGTERM handler it cannot set
            # from this thread: aiswitch keeps its own).
            "logging_level": logging.ERROR,
            "include_dashboard": False,
        }
        if self.address is None:
            kinds = ("mock", "claude", "codex", "gemini")
            options["resources"] = {f"agent:{k}": LOCAL_SLOTS_PER_KIND for k in kinds}
        else:
            options["address"] = self.address
            # Options of a new local instance only: Ray refuses them when connecting.
            del options["include_dashboard"]
        # Ray puts the driver's working directory on its workers' import path: a folder
        # holding another `aiswitch` (a checkout of it) would shadow the nodes' own.
        here = os.getcwd()
        os.chdir(self.home.root)
        try:
            ray.init(**options)
        finally:
            os.chdir(here)

    async def _kind(self, agent: AgentDef) -> _Kind:
        kind = self._kinds.get(agent.name)
        if kind is not None:
            return kind
        making = self._making.get(agent.name)
        if making is None:
            making = asyncio.ensure_future(self._make_kind(agent.name))
            self._making[agent.name] = making
        try:
            return await asyncio.shield(making)
        finally:
            if making.done():
                self._making.pop(agent.name, None)

    async def _make_kind(self, name: str) -> _Kind:
        """One actor on every live node that offers `agent:NAME`."""
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from aiswitch.coordinator.ray_node import NodeAgents

        resource = f"agent:{name}"
        nodes = await asyncio.to_thread(ray.nodes)
        offering = [
            (n["NodeID"], int(n["Resources"][resource]))
            for n in nodes
            if n.get("Alive") and n.get("Resources", {}).get(resource, 0) >= 1
        ]
        if not offering:
            raise ExecutorError(
                f"no node of the Ray cluster offers {resource}",
                hint=f"start nodes with --resources '{{\"{resource}\": 8}}' (docs/ray.md)",
            )
        remote = ray.remote(NodeAgents)
        slots = []
        for node_id, capacity in offering:
            actor = remote.options(
                num_cpus=0,
                resources={resource: capacity},
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                max_restarts=0,
                max_task_retries=0,
                # Its attempts, plus room for cancels and the close.
                max_concurrency=capacity + 16,
            ).remote(name, self.run_id, node_id[:6], self.settings)
            slots.append(_Slot(actor, node_id, capacity))
        ready = [slot.actor.__ray_ready__.remote() for slot in slots]
        try:
            await asyncio.wait_for(asyncio.gather(*ready), ACTOR_READY_TIMEOUT_S)
        except (TimeoutError, ray.exceptions.RayError) as exc:
            for slot in slots:
                ray.kill(slot.actor, no_restart=True)
            raise ExecutorError(
                f"the Ray actors for {resource} did not start: {type(exc).__name__}",
                hint="see the Ray cluster's logs (docs/ray.md)",
            ) from None
        kind = _Kind(slots)
        self._kinds[name] = kind
        for slot in slots:
            slot.reader = asyncio.get_running_loop().create_task(self._read(slot))
        return kind

    async def _acquire(self, kind: _Kind, stop: StopSignal) -> _Slot | None:
        while True:
            alive = [slot for slot in kind.slots if slot.alive]
            if not alive:
                raise ExecutorError("every Ray node that ran this agent was lost")
            best = max(alive, key=lambda slot: slot.free)
            if best.free > 0:
                best.running += 1
                return best
            waiter = asyncio.get_running_loop().create_future()
            kind.waiters.append(waiter)
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({waiter, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                if waiter in kind.waiters:
                    kind.waiters.remove(waiter)
            if stop.is_set():
                return None

    @staticmethod
    def _release(kind: _Kind, slot: _Slot) -> None:
        slot.running -= 1
        while kind.waiters:
            waiter = kind.waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    # -- attempts ----------------------------------------------------------------------

    async def execute(self, task: Task, attempt: Attempt, stop: StopSignal) -> None:
        agent = task.lane.agent
        try:
            kind = await self._kind(agent)
            slot = None if stop.is_set() else await self._acquire(kind, stop)
        except ExecutorError as exc:
            attempt.end, attempt.error = End.START_FAILED, exc.one_line()
            return
        if slot is None:
            attempt.end = End.CANCELLED
            attempt.error = f"cancelled before it started: {stop_reason(stop)}"
            return
        self._watch(stop)
        live = _Live(slot, task, attempt, asyncio.get_running_loop().create_future())
        self._live[attempt.id] = live
        try:
            if attempt.cwd is not None and task.result.workspace is not None:
                order = await asyncio.to_thread(self._order, task, attempt)
            else:
                order = self._order(task, attempt)
            self._submit(slot, order)
            try:
                await asyncio.shield(live.done)
            except asyncio.CancelledError:
                await asyncio.shield(self._cancel_and_wait(live))
                attempt.end, attempt.error = End.CANCELLED, "cancelled"
                raise
        finally:
            self._live.pop(attempt.id, None)
            self._release(kind, slot)

    def _submit(self, slot: _Slot, order: Any) -> None:
        """Send `order` with the others of this loop turn: one actor call for them all."""
        slot.pending.append(order)
        if len(slot.pending) == 1:
            asyncio.get_running_loop().call_soon(self._flush, slot)

    def _flush(self, slot: _Slot) -> None:
        orders, slot.pending = slot.pending, []
        if orders and slot.alive:
            # Its failure (the actor lost) reaches the attempts through the event stream.
            slot.actor.submit.remote(orders)

    async def _read(self, slot: _Slot) -> None:
        """The actor's event stream, handed to the attempts it names, until it ends."""
        ray = self._ray
        why = "its Ray actor ended without a result"
        try:
            async for ref in slot.actor.events.remote():
                for attempt_id, event in await ref:
                    live = self._live.get(attempt_id)
                    if live is None or live.done.done():
                        continue
                    try:
                        ended = self._event(live.task, live.attempt, event)
                    except Exception:
                        # A bug here must fail this attempt, not leave the others waiting.
                        log.exception("attempt %s: event %r", attempt_id, event[0])
                        attempt = live.attempt
                        attempt.end, attempt.error = End.FAILED, "internal error"
                        ended = True
                    if ended:
                        live.done.set_result(None)
        except ray.exceptions.RayError as exc:
            why = f"its Ray node or actor was lost ({type(exc).__name__})"
            log.warning("the actor on node %s: %s", slot.node[:6], why)
        slot.alive = False
        for live in list(self._live.values()):
            if live.slot is slot and not live.done.done():
                live.attempt.end, live.attempt.error = End.CRASHED, why
                live.done.set_result(None)

    def _order(self, task: Task, attempt: Attempt) -> Any:
        from aiswitch.coordinator.executor import LocalExecutor
        from aiswitch.coordinator.ray_node import AttemptOrder

        lane = task.lane
        known = self._lanes.get(lane.key)
        if known is None:
            # Built once per lane, here: the preset's secrets travel in the arguments.
            env = LocalExecutor.lane_env(
                self.home, self.parent_env, self.run_id, lane, task.result.agent_id
            )
            known = (lane.agent, lane.preset.name, env)
            self._lanes[lane.key] = known
        assert task.prompt is not None
        workspace = None
        if attempt.cwd is not None and task.result.workspace is not None:
            workspace = self._remote_workspace(task, attempt)
        return AttemptOrder(
            task_id=task.id,
            agent_id=task.result.agent_id,
            attempt_id=attempt.id,
            number=attempt.number,
            agent=lane.agent,
            preset=lane.preset,
            env=known[2],
            prompt=task.prompt,
            timeout_s=task.timeout_s,
            options={**task.options, "attempt": attempt.number, "attempt_id": attempt.id},
            cwd=attempt.cwd or task.cwd or self.settings.cwd,
            workspace=workspace,
        )

    def _remote_workspace(self, task: Task, attempt: Attempt) -> Any:
        from aiswitch.workspace import remote

        ws = task.result.workspace
        assert ws is not None and attempt.cwd is not None
        if ws.mode == "shared" or ws.base is None:
            return None
        if self._workspaces is None:
            self._workspaces = remote.Bundles(self._ray.put)
        return self._workspaces.order(ws, attempt.cwd)

    def _event(self, task: Task, attempt: Attempt, event: tuple[Any, ...]) -> bool:
        """Take one event of the stream; True for the last one."""
        kind = event[0]
        hooks = self.hooks
        if kind == "usage":
            if hooks.on_usage is not None:
                hooks.on_usage(task, attempt, UsageParams.model_validate(event[1]))
        elif kind == "progress":
            if hooks.on_progress is not None:
                hooks.on_progress(task, attempt, ProgressParams.model_validate(event[1]))
        elif kind == "assigned":
            _, process, provides, processes = event
            attempt.process = process
            self._processes[process.rpartition(".")[0]] = processes
            self._peak = max(self._peak, self.process_count())
            if provides and hooks.on_provides is not None:
                hooks.on_provides(task.lane.agent.name, tuple(provides))
            if hooks.on_assigned is not None:
                hooks.on_assigned(task, attempt)
        elif kind == "end":
            _, end, error, reply, patch = event
            attempt.end = End(end) if end is not None else End.FAILED
            attempt.error = error
            if reply is not None:
                attempt.reply = TaskResult.model_validate(reply)
                if attempt.end is End.FAILED and provider_refused(attempt.reply.provider_status):
                    attempt.end = End.PROVIDER
            if patch:
                self._take_patch(task, attempt, patch)
            return True
        return False

    def _take_patch(self, task: Task, attempt: Attempt, patch: bytes) -> None:
        from aiswitch.workspace import remote

        ws = task.result.workspace
        if ws is None:
            return
        try:
            remote.apply_patch(ws, patch)
        except remote.PatchError as exc:
            attempt.end = End.FAILED
            attempt.error = f"its changes could not be applied here: {exc}"

    async def _cancel_and_wait(self, live: _Live) -> None:
        with contextlib.suppress(Exception):
            live.slot.actor.cancel.remote(live.attempt.id, "run cancelled")
            await asyncio.wait({live.done}, timeout=CANCEL_REPLY_TIMEOUT_S + CANCEL_TRAVEL_S)

    def cancel_attempt(self, attempt: Attempt, why: str) -> None:
        live = self._live.get(attempt.id)
        if live is not None:
            live.slot.actor.cancel.remote(attempt.id, why)

    def _watch(self, stop: StopSignal) -> None:
        """When `stop` is set, every attempt in flight is told to stop (one task per run)."""
        if stop in self._watched:
            return
        self._watched.add(stop)

        async def watch() -> None:
            await stop.wait()
            for live in list(self._live.values()):
                with contextlib.suppress(Exception):
                    live.slot.actor.cancel.remote(live.attempt.id, stop_reason(stop))

        job = asyncio.get_running_loop().create_task(watch())
        self._watchers.add(job)

    # -- figures and the end ------------------------------------------------------------

    def handles(self) -> list[AgentHandle]:
        """None: the processes are on the nodes, out of `agents stop|restart` reach."""
        return []

    def process_count(self) -> int:
        return sum(self._processes.values())

    def peak_processes(self) -> int:
        return self._peak

    async def close(self, reason: str = "run finished") -> None:
        for job in self._watchers:
            job.cancel()
        self._watchers.clear()
        for making in self._making.values():
            making.cancel()
        slots = [slot for kind in self._kinds.values() for slot in kind.slots if slot.alive]
        if slots:
            closing = [slot.actor.close.remote() for slot in slots]
            done = await asyncio.gather(
                *(asyncio.wait_for(c, CLOSE_TIMEOUT_S) for c in closing), return_exceptions=True
            )
            for outcome in done:
                if isinstance(outcome, dict):
                    self._take_strays(outcome["strays"])
            for slot in slots:
                with contextlib.suppress(Exception):
                    self._ray.kill(slot.actor, no_restart=True)
        readers = [
            slot.reader for kind in self._kinds.values() for slot in kind.slots if slot.reader
        ]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        self._kinds.clear()
        if self._connected_here:
            self._connected_here = False
            await asyncio.to_thread(self._ray.shutdown)

    def _take_strays(self, strays: list[Any]) -> None:
        hook = self.hooks.on_stray_usage
        for agent_name, agent_id, preset, params in strays:
            lane = next(
                (known for known in self._lanes.values() if known[0].name == agent_name),
                None,
            )
            if lane is None or hook is None:
                continue
            hook(_Origin(lane[0], agent_id, preset, lane[2]), UsageParams.model_validate(params))
