"""The scheduler: one ready queue under every run, its limits, retries and dependencies.

Contract:
- Every run is a graph of tasks. A task is ready when every task it depends on is final;
  then `prepare(task)` may fill in its prompt (a sequential step takes the previous
  output) or say it must not run (it is then final, as `prepare` set it).
- Ready tasks start in priority order (higher first), then submission order, under a
  global `concurrency` limit, a per-agent limit (tasks in flight across the agent's
  processes) and optional rate limits (`RateLimit`, per agent or per `agent@preset`).
  A lane held back by its limit never holds back another lane.
- An attempt runs through `execute(task, attempt, stop)`, which sets `attempt.end`. The
  pure rule `tasks.retry_after` decides whether the task gets another attempt (after a
  backoff) or is final. `on_final(task)` is called exactly once per task.
- After an attempt that did not end ok, `reroute(task, attempt)` may move the task to
  another lane (a failover); it then gets its next attempt there at once.
- `stop_new(reason)`: nothing more starts; queued and not-yet-ready tasks are final at once
  (`on_final`; their result `cancelled` with "not started: REASON"), a waiting retry is
  final with its last attempt's end. Running attempts see `stop` set and wind down.
- Nothing polls: the queue moves when a task is submitted, ends, becomes ready, or a
  rate-limit token or retry backoff comes due (timers).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiswitch.coordinator.results import TaskStatus
from aiswitch.coordinator.tasks import (
    Attempt,
    End,
    Lane,
    StopSignal,
    Task,
    pick_lane,
    retry_after,
)
from aiswitch.rates import RateLimit

Execute = Callable[[Task, Attempt, StopSignal], Awaitable[None]]
# No lane is held back (no per-agent limit and no rate anywhere: nothing to look at).
_NONE_BLOCKED: frozenset[str] = frozenset()


@dataclass
class Limits:
    concurrency: int | None = None
    per_agent: dict[str, int] = field(default_factory=dict)
    # Keyed by agent name or by lane key (`agent@preset`); both apply to a lane.
    rates: dict[str, RateLimit] = field(default_factory=dict)


@dataclass
class Figures:
    """Live counts for the progress view."""

    submitted: int = 0
    running: int = 0
    done: int = 0
    ok: int = 0
    failed: int = 0
    retried: int = 0
    peak_running: int = 0


class Scheduler:
    def __init__(
        self,
        execute: Execute,
        *,
        limits: Limits | None = None,
        retries: int = 0,
        retry_failed: bool = False,
        on_final: Callable[[Task], None] | None = None,
        on_start: Callable[[Task, Attempt], None] | None = None,
        prepare: Callable[[Task], bool] | None = None,
        reroute: Callable[[Task, Attempt], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.execute = execute
        self.limits = limits or Limits()
        self.retries = retries
        self.retry_failed = retry_failed
        self.on_final = on_final
        self.on_start = on_start
        self.prepare = prepare
        self.reroute = reroute
        self.clock = clock
        self.figures = Figures()
        self.stop = StopSignal()
        self._serial = itertools.count()
        self._lanes: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        self._tasks: dict[int, Task] = {}
        self._waiting_on: dict[int, set[int]] = {}
        self._dependents: dict[int, list[int]] = defaultdict(list)
        self._agent_running: dict[str, int] = defaultdict(int)
        self._running: dict[int, asyncio.Task[None]] = {}
        # Attempt tasks between one attempt and their next (`_attempts`): each holds the
        # slot its last attempt left, so that no new task takes it meanwhile.
        self._resting = 0
        self._retrying: dict[int, asyncio.TimerHandle] = {}
        self._rate_timer: asyncio.TimerHandle | None = None
        self._remaining = 0
        self._all_final = asyncio.Event()
        self._all_final.set()

    # -- submitting ----------------------------------------------------------------

    def submit(self, tasks: list[Task]) -> None:
        """Add `tasks`; those already final (a resumed run's) are known, not run."""
        for task in tasks:
            self._tasks[task.index] = task
        tasks = [t for t in tasks if not t.final]
        self._remaining += len(tasks)
        self.figures.submitted += len(tasks)
        if tasks:
            self._all_final.clear()
        for task in tasks:
            waiting = {d for d in task.depends_on if not self._tasks[d].final}
            for dep in waiting:
                self._dependents[dep].append(task.index)
            if waiting:
                self._waiting_on[task.index] = waiting
            else:
                self._ready(task)
        self._pump()

    def _ready(self, task: Task) -> None:
        if self.stop.is_set():
            self._final(task, f"not started: {self.stop.reason}")
            return
        if self.prepare is not None and not self.prepare(task):
            self._final(task)
            return
        heapq.heappush(self._lanes[task.lane.key], (-task.priority, next(self._serial), task.index))

    def load(self, lane: Lane) -> int:
        """Tasks running on `lane`'s agent and waiting in `lane`'s queue (routing picks
        the least loaded)."""
        return self._agent_running[lane.agent.name] + len(self._lanes.get(lane.key, ()))

    async def run(self) -> None:
        """Until every submitted task is final."""
        await self._all_final.wait()

    # -- the queue -----------------------------------------------------------------

    def _blocked(self, now: float) -> set[str]:
        blocked: set[str] = set()
        soonest: float | None = None
        for key, heap in self._lanes.items():
            if not heap:
                continue
            task = self._tasks[heap[0][2]]
            agent = task.lane.agent.name
            limit = self.limits.per_agent.get(agent)
            if limit is not None and self._agent_running[agent] >= limit:
                blocked.add(key)
                continue
            for rate_key in (agent, key):
                rate = self.limits.rates.get(rate_key)
                if rate is not None and not rate.available(now):
                    blocked.add(key)
                    wait = rate.wait_s(now)
                    soonest = wait if soonest is None else min(soonest, wait)
        if soonest is not None and self._rate_timer is None:
            self._rate_timer = asyncio.get_running_loop().call_later(soonest, self._rate_due)
        return blocked

    def _rate_due(self) -> None:
        self._rate_timer = None
        self._pump()

    def _pump(self) -> None:
        """Start what may start now, each attempt in a task of its own."""
        loop = asyncio.get_running_loop()
        while (picked := self._next()) is not None:
            task, attempt = picked
            self._started(task, loop.create_task(self._attempts(task, attempt)))

    def _next(self) -> tuple[Task, Attempt] | None:
        """The next attempt that may start now, its task taken off the queue; None when
        nothing may (stopped, at a limit, or nothing ready)."""
        limit = self.limits.concurrency
        if self.stop.is_set() or (
            limit is not None and len(self._running) + self._resting >= limit
        ):
            return None
        rates = self.limits.rates
        limited = rates or self.limits.per_agent
        now = self.clock() if rates else 0.0
        blocked = self._blocked(now) if limited else _NONE_BLOCKED
        heads = ((key, -heap[0][0], heap[0][1]) for key, heap in self._lanes.items() if heap)
        key = pick_lane(heads, blocked)
        if key is None:
            return None
        _, _, index = heapq.heappop(self._lanes[key])
        task = self._tasks[index]
        agent = task.lane.agent.name
        if rates:
            for rate_key in (agent, key):
                rate = rates.get(rate_key)
                if rate is not None:
                    rate.take(now)
        self._agent_running[agent] += 1
        return task, task.new_attempt()

    def _started(self, task: Task, job: asyncio.Task[None]) -> None:
        self._running[task.index] = job
        running = len(self._running)
        self.figures.running = running
        if running > self.figures.peak_running:
            self.figures.peak_running = running

    async def _attempts(self, task: Task, attempt: Attempt) -> None:
        """Run `attempt`; then, as long as the queue has a next one that may start, run it
        in this same asyncio task (no task made per attempt). The next one starts in the
        next loop turn, as a new task's would: after this turn's writes, whose failure
        stops the run before anything more reaches a process."""
        job = asyncio.current_task()
        assert job is not None
        while True:
            await self._run_attempt(task, attempt)
            # Its slot stays its own meanwhile (`_next` counts it taken).
            self._resting += 1
            try:
                await asyncio.sleep(0)
            finally:
                self._resting -= 1
            picked = self._next()
            if picked is None:
                return
            task, attempt = picked
            self._started(task, job)
            # Anything else that may start now (a limit lifted by this end) starts too.
            self._pump()

    async def _run_attempt(self, task: Task, attempt: Attempt) -> None:
        attempt.started = self.clock()
        if self.on_start is not None:
            self.on_start(task, attempt)
        try:
            await self.execute(task, attempt, self.stop)
        except asyncio.CancelledError:
            attempt.end = attempt.end or End.CANCELLED
            attempt.error = attempt.error or "cancelled"
            raise
        except Exception as exc:
            # A bug below must fail this task, not the run; its traceback goes to the log.
            import logging

            logging.getLogger("aiswitch.coordinator").exception("attempt %s", attempt.id)
            attempt.end, attempt.error = End.FAILED, f"internal error: {type(exc).__name__}"
        finally:
            attempt.ended = self.clock()
            self._running.pop(task.index, None)
            self._agent_running[task.lane.agent.name] -= 1
            self.figures.running = len(self._running)
        end = attempt.end or End.FAILED
        delay = None
        if self.stop.is_set() or task.halted:
            pass
        elif end is not End.OK and self.reroute is not None and self.reroute(task, attempt):
            # Moved to another agent (a failover): that one's first try, at once.
            delay = 0.0
        else:
            retries = self.retries if task.retries is None else task.retries
            delay = retry_after(end, attempt.number, retries, self.retry_failed)
        if delay is None:
            self._final(task)
        else:
            self.figures.retried += 1
            self._retrying[task.index] = asyncio.get_running_loop().call_later(
                delay, self._retry, task
            )

    def _retry(self, task: Task) -> None:
        self._retrying.pop(task.index, None)
        if self.stop.is_set():
            self._final(task)
            return
        heapq.heappush(self._lanes[task.lane.key], (-task.priority, next(self._serial), task.index))
        self._pump()

    # -- ends ----------------------------------------------------------------------

    def _final(self, task: Task, not_started: str | None = None) -> None:
        if task.final:
            return
        task.final = True
        if not_started is not None and not task.attempts:
            task.result.status = TaskStatus.CANCELLED
            task.result.error = not_started
        self._remaining -= 1
        self.figures.done += 1
        if self.on_final is not None:
            self.on_final(task)
        if task.result.status == "ok":
            self.figures.ok += 1
        else:
            self.figures.failed += 1
        for dependent in self._dependents.pop(task.index, []):
            waiting = self._waiting_on.get(dependent)
            if waiting is None:
                continue
            waiting.discard(task.index)
            if not waiting:
                del self._waiting_on[dependent]
                self._ready(self._tasks[dependent])
        if self._remaining == 0:
            self._all_final.set()

    def stop_new(self, reason: str) -> None:
        """Start nothing more; see the module docstring."""
        if self.stop.is_set():
            return
        self.stop.reason = reason
        self.stop.set()
        not_started = f"not started: {reason}"
        for heap in self._lanes.values():
            while heap:
                self._final(self._tasks[heapq.heappop(heap)[2]], not_started)
        for index, timer in list(self._retrying.items()):
            timer.cancel()
            self._retrying.pop(index, None)
            self._final(self._tasks[index])
        for index in list(self._waiting_on):
            self._waiting_on.pop(index, None)
            self._final(self._tasks[index], not_started)
        if self._rate_timer is not None:
            self._rate_timer.cancel()
            self._rate_timer = None

    async def cancel(self) -> None:
        """Cancel everything (Ctrl-C): running attempts are cancelled and awaited."""
        self.stop_new("cancelled")
        running = list(self._running.values())
        for job in running:
            job.cancel()
        for job in running:
            with contextlib.suppress(asyncio.CancelledError):
                await job
        for task in self._tasks.values():
            self._final(task, "not started: cancelled")
