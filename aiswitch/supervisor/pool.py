"""A pool of supervised processes of one agent with one preset.

Contract:
- A pool is keyed by agent + preset: processes with different presets never share one.
- `acquire()` returns a handle with a task slot reserved for the caller (each process
  runs up to the `max_concurrent_tasks` it advertised); `release(handle)` gives it back.
  Waiters are served in arrival order, as slots free up or processes come up: nothing
  polls.
- The pool grows while tasks wait (up to `max`, counting what starting processes are
  expected to take), keeps `min` processes, and stops a process above `min` that has been
  idle for `idle_timeout_s`. A process that exits for good (`restart: never`, a clean exit)
  leaves the pool and is replaced when tasks wait.
- A handle that turns fatal leaves the pool; when no other process of the pool is alive
  or coming, the pool is fatal too: every waiter, and every later `acquire()`, gets
  `AgentStartError` with the reason.
- `close()` stops every process (in parallel) and fails waiters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from aiswitch.errors import AgentStartError
from aiswitch.supervisor.handle import AgentHandle
from aiswitch.supervisor.limits import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_POOL_MAX, DEFAULT_POOL_MIN
from aiswitch.supervisor.states import ProcessState, StateChange

S = ProcessState

# States from which a handle is expected to be running soon.
_COMING: Final = frozenset({S.STARTING, S.BACKOFF})


@dataclass(frozen=True)
class PoolConfig:
    min: int = DEFAULT_POOL_MIN
    max: int = DEFAULT_POOL_MAX
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S


@dataclass(frozen=True)
class PoolKey:
    agent: str
    preset: str | None = None

    def __str__(self) -> str:
        return f"{self.agent}@{self.preset}" if self.preset else self.agent


class AgentPool:
    def __init__(
        self,
        key: PoolKey,
        config: PoolConfig,
        make_handle: Callable[[str], AgentHandle],
        *,
        on_change: Callable[[StateChange], None] | None = None,
    ) -> None:
        self.key = key
        self.config = config
        self._make_handle = make_handle
        self._on_change = on_change
        self.handles: list[AgentHandle] = []
        self._busy: dict[str, int] = {}
        self._waiters: deque[asyncio.Future[AgentHandle]] = deque()
        self._idle_timers: dict[str, asyncio.TimerHandle] = {}
        self._serial = 0
        self._capacity_hint = 1
        self._fatal: str | None = None
        self._closed = False
        self._starts: set[asyncio.Task[Any]] = set()
        self.peak_processes = 0

    # -- figures -----------------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self.handles)

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    @property
    def busy(self) -> int:
        return sum(self._busy.values())

    # -- slots -------------------------------------------------------------------------

    def start(self) -> None:
        """Bring the pool up to its `min` processes (in the background)."""
        while len(self.handles) < self.config.min:
            self._add()

    def try_acquire(self) -> AgentHandle | None:
        """`acquire()` when a slot is free now; None when it would have to wait.

        No coroutine, no task: the hot path of a big batch, where most slots are taken
        by a caller that has just released one. Raises as `acquire()` does."""
        if self._fatal is not None:
            raise AgentStartError(self._fatal)
        if self._closed:
            raise AgentStartError(f"the {self.key} pool is closed")
        if self._waiters:
            return None  # they came first
        handle = self._free_handle()
        if handle is not None:
            self._take(handle)
        return handle

    async def acquire(self) -> AgentHandle:
        handle = self.try_acquire()
        if handle is not None:
            return handle
        waiter: asyncio.Future[AgentHandle] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        # A free slot behind a waiter that gave up goes to the oldest waiter still here.
        self._dispatch()
        self._grow()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def release(self, handle: AgentHandle) -> None:
        busy = self._busy.get(handle.agent_id)
        if busy is None:
            return  # it left the pool meanwhile
        self._busy[handle.agent_id] = max(0, busy - 1)
        self._dispatch()
        if self._busy[handle.agent_id] == 0:
            self._arm_idle(handle)

    def _free_handle(self) -> AgentHandle | None:
        best: AgentHandle | None = None
        best_free = 0
        for handle in self.handles:
            if handle.state is not S.RUNNING:
                continue
            free = handle.capacity - self._busy.get(handle.agent_id, 0)
            # The fullest process with room: idle ones stay idle and can be let go.
            if free > 0 and (best is None or free < best_free):
                best, best_free = handle, free
        return best

    def _take(self, handle: AgentHandle) -> None:
        self._busy[handle.agent_id] = self._busy.get(handle.agent_id, 0) + 1
        timer = self._idle_timers.pop(handle.agent_id, None)
        if timer is not None:
            timer.cancel()

    def _dispatch(self) -> None:
        while self._waiters:
            handle = self._free_handle()
            if handle is None:
                return
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self._take(handle)
            waiter.set_result(handle)

    # -- size --------------------------------------------------------------------------

    def _grow(self) -> None:
        if self._closed or self._fatal is not None or len(self.handles) >= self.config.max:
            return
        expected = 0
        for handle in self.handles:
            if handle.state is S.RUNNING:
                expected += max(0, handle.capacity - self._busy.get(handle.agent_id, 0))
            elif handle.state in _COMING or handle.state is S.STOPPED:
                expected += self._capacity_hint
        waiting = self.waiting  # counted once: a batch queues a thousand waiters
        while waiting > expected and len(self.handles) < self.config.max:
            self._add()
            expected += self._capacity_hint

    def _add(self) -> None:
        self._serial += 1
        handle = self._make_handle(f"{self.key}.p{self._serial}")
        user_change = handle.on_change

        def changed(change: StateChange) -> None:
            if user_change is not None:
                user_change(change)
            self._changed(handle, change)

        handle.on_change = changed
        self.handles.append(handle)
        self._busy[handle.agent_id] = 0
        self.peak_processes = max(self.peak_processes, len(self.handles))
        task = asyncio.get_running_loop().create_task(self._start(handle))
        self._starts.add(task)
        task.add_done_callback(self._starts.discard)

    async def _start(self, handle: AgentHandle) -> None:
        with contextlib.suppress(AgentStartError):
            await handle.start()

    def _changed(self, handle: AgentHandle, change: StateChange) -> None:
        if self._on_change is not None:
            self._on_change(change)
        if change.new is S.RUNNING:
            self._capacity_hint = handle.capacity
            self._dispatch()
            self._grow()
            if self._busy.get(handle.agent_id, 0) == 0:
                self._arm_idle(handle)
        elif change.new is S.FATAL:
            self._drop(handle)
            alive = any(h.state in (S.RUNNING, *_COMING) for h in self.handles)
            if not alive and not self._closed:
                self._fatal = f"{handle.agent_id}: {change.reason}"
                self._fail_waiters(AgentStartError(self._fatal))
        elif change.new is S.EXITED:
            # Tasks in flight on it fail (the handle raises); the policy may restart it.
            self._busy[handle.agent_id] = 0
            if not handle.will_restart and not self._closed:
                # It stays exited: it leaves the pool (stopped, so that its entry in
                # agents.json goes) and its stop makes room for a replacement.
                self._drop(handle)
                self._retire(handle, "exited for good")
        elif change.new is S.STOPPED and not self._closed:
            self._drop(handle)
            self._grow()

    def _drop(self, handle: AgentHandle) -> None:
        if handle in self.handles:
            self.handles.remove(handle)
        self._busy.pop(handle.agent_id, None)
        timer = self._idle_timers.pop(handle.agent_id, None)
        if timer is not None:
            timer.cancel()

    def _arm_idle(self, handle: AgentHandle) -> None:
        if self._closed or handle.agent_id in self._idle_timers:
            return
        loop = asyncio.get_running_loop()
        self._idle_timers[handle.agent_id] = loop.call_later(
            self.config.idle_timeout_s, self._idle, handle
        )

    def _idle(self, handle: AgentHandle) -> None:
        self._idle_timers.pop(handle.agent_id, None)
        if (
            self._closed
            or handle not in self.handles
            or self._busy.get(handle.agent_id, 0)
            or len(self.handles) <= self.config.min
        ):
            return
        self._drop(handle)
        self._retire(handle, "idle")

    def _retire(self, handle: AgentHandle, reason: str) -> None:
        """Stop a handle that left the pool; `close()` waits for it."""
        task = asyncio.get_running_loop().create_task(handle.stop(reason))
        self._starts.add(task)
        task.add_done_callback(self._starts.discard)

    def _fail_waiters(self, error: Exception) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    # -- stop --------------------------------------------------------------------------

    async def close(self, reason: str = "pool closed") -> None:
        self._closed = True
        for timer in self._idle_timers.values():
            timer.cancel()
        self._idle_timers.clear()
        self._fail_waiters(AgentStartError(f"the {self.key} pool is closed"))
        handles = list(self.handles)
        if handles:
            await asyncio.gather(*(h.stop(reason) for h in handles), return_exceptions=True)
        for task in list(self._starts):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def snapshot(self) -> dict[str, Any]:
        return {
            "pool": str(self.key),
            "processes": self.size,
            "busy": self.busy,
            "waiting": self.waiting,
            "peak_processes": self.peak_processes,
        }
