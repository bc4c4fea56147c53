"""The local executor: runs an attempt on a process of the lane's pool on this machine.

It is the `local` backend of the executor seam (`aiswitch.coordinator.executors.Executor`).

Contract:
- One pool per lane key (agent + preset), made on first use from the agent's definition
  (`pool`, `restart`, `start_timeout`, `start_retries`, heartbeats); children get the
  environment `build_child_env` makes for the lane's preset.
- `execute(task, attempt, stop)` sets `attempt.end` (typed, `tasks.End`), `attempt.error`
  and `attempt.reply` (the agent's own result, when it sent one); it raises only
  `CancelledError`, after telling the agent to cancel.
- The task's timeout counts from the moment the task is assigned to a running process;
  start-up has its own bound (`start_timeout`). On timeout or `stop`, the agent gets
  `task.cancel` and a short while to answer; a task that finished before the cancel
  reached it keeps its own result. A failure the agent says its provider refused
  (`provider_status` 429, 5xx, 402) ends `PROVIDER`.
- The capabilities a process's adapter advertised go to `on_provides` (agent name).
- Notifications are matched to attempts by (process, attempt id), so usage is attributed
  to the attempt that spent it, whichever process it ran on; one that matches no attempt
  in flight goes to `on_stray_usage`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aiswitch.coordinator.tasks import Attempt, End, Lane, StopSignal, Task, provider_refused
from aiswitch.errors import AgentDiedError, AgentStartError, AiswitchError
from aiswitch.protocol.client import InvalidReplyError
from aiswitch.protocol.models import (
    AssignParams,
    ProgressParams,
    TaskResult,
    TaskState,
    UsageParams,
)
from aiswitch.supervisor.env import ChildEnvRequest, build_child_env
from aiswitch.supervisor.handle import AgentHandle
from aiswitch.supervisor.policy import Restart, RestartPolicy, Supervision
from aiswitch.supervisor.pool import AgentPool, PoolConfig, PoolKey
from aiswitch.supervisor.process import CANCEL_REPLY_TIMEOUT_S
from aiswitch.supervisor.states import ProcessState

if TYPE_CHECKING:
    from aiswitch.agents import AgentDef
    from aiswitch.coordinator.executors import ProcessRef
    from aiswitch.home import Home
    from aiswitch.state.processes import ProcessTable
    from aiswitch.supervisor.states import StateChange

_ENDS = {
    TaskState.OK: End.OK,
    TaskState.FAILED: End.FAILED,
    TaskState.CANCELLED: End.CANCELLED,
    TaskState.TIMEOUT: End.TIMEOUT,
}


@dataclass(frozen=True)
class TaskSettings:
    """What every task of a run is assigned with."""

    cwd: str | None = None
    permissions: Literal["read-only", "edit", "full"] | None = None
    session_id: str | None = None


def supervision_of(agent: AgentDef) -> tuple[Supervision, PoolConfig]:
    """The agent definition's supervision and pool settings, as the supervisor takes them."""
    policy = RestartPolicy(restart=Restart(agent.restart), start_retries=agent.start_retries)
    supervision = Supervision(
        policy=policy,
        start_timeout_s=agent.start_timeout,
        heartbeat_interval_s=agent.heartbeat_interval,
        heartbeat_timeout_s=agent.heartbeat_timeout,
    )
    pool = PoolConfig(
        min=agent.pool.min, max=agent.pool.max, idle_timeout_s=agent.pool.idle_timeout
    )
    return supervision, pool


ProgressSink = Callable[[Task, Attempt, ProgressParams], None]
UsageSink = Callable[[Task, Attempt, UsageParams], None]


class LocalExecutor:
    def __init__(
        self,
        *,
        home: Home,
        run_id: str,
        parent_env: Mapping[str, str],
        settings: TaskSettings,
        table: ProcessTable | None = None,
        on_progress: ProgressSink | None = None,
        on_usage: UsageSink | None = None,
        on_stray_usage: Callable[[ProcessRef, UsageParams], None] | None = None,
        on_change: Callable[[StateChange], None] | None = None,
        on_assigned: Callable[[Task, Attempt], None] | None = None,
        on_provides: Callable[[str, tuple[str, ...]], None] | None = None,
    ) -> None:
        self.home = home
        self.run_id = run_id
        self.parent_env = parent_env
        self.settings = settings
        self.table = table
        self.on_progress = on_progress
        self.on_usage = on_usage
        self.on_stray_usage = on_stray_usage
        self.on_change = on_change
        self.on_assigned = on_assigned
        self.on_provides = on_provides
        self.pools: dict[str, AgentPool] = {}
        self._live: dict[tuple[str, str], tuple[Task, Attempt]] = {}
        self._wakers: dict[StopSignal, set[Callable[[], None]]] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Nothing to reach: pools start with their first task."""

    # -- pools ---------------------------------------------------------------------

    def pool(self, lane: Lane) -> AgentPool:
        pool = self.pools.get(lane.key)
        if pool is None:
            supervision, config = supervision_of(lane.agent)
            pool = AgentPool(
                PoolKey(lane.agent.name, lane.preset.name),
                config,
                lambda agent_id: self._handle(lane, agent_id, supervision),
            )
            self.pools[lane.key] = pool
            pool.start()
        return pool

    def child_env(self, lane: Lane, agent_id: str) -> dict[str, str]:
        return self.lane_env(self.home, self.parent_env, self.run_id, lane, agent_id)

    @staticmethod
    def lane_env(
        home: Home, parent_env: Mapping[str, str], run_id: str, lane: Lane, agent_id: str
    ) -> dict[str, str]:
        """The environment a child of `lane` gets (`build_child_env`, the one way)."""
        preset = lane.preset
        return build_child_env(
            ChildEnvRequest(
                parent=parent_env,
                agent_env=lane.agent.env,
                cli=lane.agent.cli,
                passthrough=tuple(lane.agent.env_passthrough),
                preset=preset.name,
                preset_vars=preset.variables,
                preset_unset=preset.unset,
                preset_billing=preset.billing,
                agent_id=agent_id,
                run_id=run_id,
                home=str(home.root),
            )
        )

    def _handle(self, lane: Lane, agent_id: str, supervision: Supervision) -> AgentHandle:
        return AgentHandle(
            lane.agent,
            agent_id,
            home=self.home,
            run_id=self.run_id,
            env=self.child_env(lane, agent_id),
            cwd=self.settings.cwd,
            preset=lane.preset.name,
            supervision=supervision,
            table=self.table,
            on_change=self.on_change,
            on_progress=self._progress,
            on_usage=self._usage,
        )

    def handles(self) -> list[AgentHandle]:
        return [h for pool in self.pools.values() for h in pool.handles]

    def process_count(self) -> int:
        return sum(pool.size for pool in self.pools.values())

    def peak_processes(self) -> int:
        return sum(pool.peak_processes for pool in self.pools.values())

    # -- notifications ---------------------------------------------------------------

    def _progress(self, handle: AgentHandle, params: ProgressParams) -> None:
        found = self._live.get((handle.agent_id, params.task_id))
        if found is not None and self.on_progress is not None:
            self.on_progress(found[0], found[1], params)

    def _usage(self, handle: AgentHandle, params: UsageParams) -> None:
        found = self._live.get((handle.agent_id, params.task_id))
        if found is None:
            if self.on_stray_usage is not None:
                self.on_stray_usage(handle, params)
            return
        if self.on_usage is not None:
            self.on_usage(found[0], found[1], params)

    # -- attempts --------------------------------------------------------------------

    async def execute(self, task: Task, attempt: Attempt, stop: StopSignal) -> None:
        pool = self.pool(task.lane)
        while True:
            try:
                handle = None if stop.is_set() else pool.try_acquire()
                if handle is None:
                    handle = await _unless(pool.acquire(), stop)
            except AgentStartError as exc:
                attempt.end, attempt.error = End.START_FAILED, exc.one_line()
                return
            if handle is None:
                attempt.end = End.CANCELLED
                attempt.error = f"cancelled before it started: {stop_reason(stop)}"
                return
            if handle.state is ProcessState.RUNNING:
                break
            # It ended between the pool's answer and now: not this attempt's failure.
            pool.release(handle)
        attempt.process = handle.agent_id
        if handle.provides and self.on_provides is not None:
            self.on_provides(task.lane.agent.name, handle.provides)
        key = (handle.agent_id, attempt.id)
        self._live[key] = (task, attempt)
        if self.on_assigned is not None:
            self.on_assigned(task, attempt)
        try:
            await self._assign(handle, task, attempt, stop)
        finally:
            # Late notifications of this attempt (after its reply) still find it.
            asyncio.get_running_loop().call_soon(self._live.pop, key, None)
            pool.release(handle)

    async def _assign(
        self, handle: AgentHandle, task: Task, attempt: Attempt, stop: StopSignal
    ) -> None:
        assert task.prompt is not None
        settings = self.settings
        params = AssignParams(
            task_id=attempt.id,
            prompt=task.prompt,
            cwd=attempt.cwd or task.cwd or settings.cwd,
            timeout_s=task.timeout_s,
            permissions=settings.permissions,
            session_id=settings.session_id,
            options={**task.options, "attempt": attempt.number, "attempt_id": attempt.id},
        )
        # Woken by the reply or by `stop` (one watcher per run, not a task per attempt).
        woken = asyncio.get_running_loop().create_future()

        def wake(_: object = None) -> None:
            if not woken.done():
                woken.set_result(None)

        # No task per attempt: the request goes now, its reply is a future. The reply
        # wakes the attempt as it is read (a turn sooner than a callback on the future);
        # the callback wakes it when the call ends without one.
        call = handle.send_assign(params, on_reply=wake)
        assign = call.reply
        assign.add_done_callback(wake)
        wakers = self._stop_wakers(stop)
        wakers.add(wake)
        if stop.is_set():
            wake()
        timed_out = False
        try:
            try:
                if task.timeout_s is None:
                    await woken
                else:
                    async with asyncio.timeout(task.timeout_s):
                        await woken
            except TimeoutError:
                timed_out = True
        except asyncio.CancelledError:
            await asyncio.shield(self._cancel(handle, attempt, assign, "run cancelled"))
            attempt.end, attempt.error = End.CANCELLED, "cancelled"
            raise
        finally:
            wakers.discard(wake)
            assign.remove_done_callback(wake)
        if not assign.done():
            why = "timeout" if timed_out else stop_reason(stop)
            await self._cancel(handle, attempt, assign, why)
        reply_or_error = _outcome(assign)
        if isinstance(reply_or_error, BaseException):
            reply_or_error = await call.failure(reply_or_error)
        if isinstance(reply_or_error, TaskResult) and reply_or_error.status in (
            TaskState.OK,
            TaskState.FAILED,
        ):
            # It ended by itself, before or despite the cancel: its own outcome stands.
            self._take_reply(attempt, reply_or_error)
        elif timed_out:
            attempt.end = End.TIMEOUT
            attempt.error = f"timed out after {task.timeout_s:g}s"
            if isinstance(reply_or_error, TaskResult):
                attempt.reply = reply_or_error
        elif isinstance(reply_or_error, TaskResult):
            self._take_reply(attempt, reply_or_error)
            if stop.is_set() and reply_or_error.status == TaskState.CANCELLED:
                # Say why: the agent only knows it was asked to stop.
                attempt.error = f"cancelled: {stop_reason(stop)}"
        elif reply_or_error is None:
            attempt.end, attempt.error = End.CANCELLED, f"cancelled: {stop_reason(stop)}"
        else:
            attempt.end, attempt.error = _failure(reply_or_error)

    def cancel_attempt(self, attempt: Attempt, why: str) -> None:
        """Ask the process running `attempt` to cancel it (its reply ends the attempt)."""
        for pool in self.pools.values():
            for handle in pool.handles:
                if handle.agent_id == attempt.process:
                    job = asyncio.get_running_loop().create_task(handle.cancel(attempt.id, why))
                    self._watchers.add(job)
                    job.add_done_callback(self._watchers.discard)
                    return

    def _stop_wakers(self, stop: StopSignal) -> set[Callable[[], None]]:
        """The wake-ups of the attempts `stop` must end; one task watches `stop` for all."""
        wakers = self._wakers.get(stop)
        if wakers is None:
            found: set[Callable[[], None]] = set()
            self._wakers[stop] = wakers = found

            async def watch() -> None:
                await stop.wait()
                for wake in list(found):
                    wake()

            self._watchers.add(asyncio.get_running_loop().create_task(watch()))
        return wakers

    @staticmethod
    def _take_reply(attempt: Attempt, reply: TaskResult) -> None:
        attempt.reply = reply
        attempt.end = _ENDS[reply.status]
        attempt.error = reply.error
        if attempt.end is End.FAILED and provider_refused(reply.provider_status):
            attempt.end = End.PROVIDER

    async def _cancel(
        self, handle: AgentHandle, attempt: Attempt, assign: asyncio.Future[Any], why: str
    ) -> None:
        """Ask the agent to cancel, and give its reply a short while to come."""
        await handle.cancel(attempt.id, why)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait({assign}, timeout=CANCEL_REPLY_TIMEOUT_S)
        if not assign.done():
            assign.cancel()
            with contextlib.suppress(BaseException):
                await assign

    async def close(self, reason: str = "run finished") -> None:
        for watcher in self._watchers:
            watcher.cancel()
        self._watchers.clear()
        self._wakers.clear()
        pools = list(self.pools.values())
        if pools:
            await asyncio.gather(*(p.close(reason) for p in pools), return_exceptions=True)


def stop_reason(stop: StopSignal) -> str:
    return stop.reason or "the run stopped"


async def _unless(acquire: Any, stop: StopSignal) -> AgentHandle | None:
    """`acquire`'s handle, or None when `stop` is set first."""
    if stop.is_set():
        acquire.close()
        return None
    got = asyncio.ensure_future(acquire)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({got, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not got.done():
            got.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await got
    if got.cancelled():
        return None
    handle: AgentHandle = got.result()
    return handle


def _outcome(assign: asyncio.Future[Any]) -> TaskResult | BaseException | None:
    if not assign.done() or assign.cancelled():
        return None
    error = assign.exception()
    return error if error is not None else assign.result()


def _failure(error: BaseException) -> tuple[End, str]:
    if isinstance(error, AgentDiedError):
        return (End.HUNG if error.hung else End.CRASHED), error.one_line()
    if isinstance(error, InvalidReplyError):
        return End.INVALID, error.one_line()
    if isinstance(error, AiswitchError):
        return End.FAILED, error.one_line()
    raise error
