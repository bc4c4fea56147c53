"""The scheduler and its pure rules: ordering, limits, retries, dependencies, stops.

The executor is a fake at the process seam: each attempt waits for the test to end it,
so the tests decide exactly when each attempt ends, with no clock and no sleep.
"""

from __future__ import annotations

import asyncio

import pytest

from aiswitch.agents import AgentDef
from aiswitch.coordinator.results import AgentResult, TaskStatus
from aiswitch.coordinator.scheduler import Limits, Scheduler
from aiswitch.coordinator.tasks import (
    RETRY_BACKOFF_BASE_S,
    Attempt,
    End,
    Lane,
    StopSignal,
    Task,
    pick_lane,
    retry_after,
)
from aiswitch.presets.resolve import ResolvedPreset
from aiswitch.rates import RateLimit, parse_rate

STEP_S = 5.0


def lane(agent: str = "a", preset: str | None = None) -> Lane:
    return Lane(AgentDef(name=agent, command=["true"]), ResolvedPreset(preset))


def make_task(index: int, on: Lane, priority: int = 0, depends_on: tuple[int, ...] = ()) -> Task:
    result = AgentResult(agent=on.agent.name, agent_id=f"{on.agent.name}#1", task_id=str(index))
    return Task(index, on, result, prompt=f"p{index}", priority=priority, depends_on=depends_on)


class FakeExecutor:
    """Attempts that end when the test says so; records what started, in order."""

    def __init__(self) -> None:
        self.started: list[tuple[int, int]] = []
        self.pending: dict[tuple[int, int], asyncio.Future[End]] = {}
        self.changed = asyncio.Event()

    async def execute(self, task: Task, attempt: Attempt, stop: StopSignal) -> None:
        key = (task.index, attempt.number)
        self.started.append(key)
        future: asyncio.Future[End] = asyncio.get_running_loop().create_future()
        self.pending[key] = future
        self.changed.set()
        attempt.end = await future

    def end(self, index: int, number: int, end: End = End.OK) -> None:
        self.pending.pop((index, number)).set_result(end)

    async def until_started(self, count: int) -> None:
        while len(self.started) < count:
            self.changed.clear()
            await self.changed.wait()


def final_status(task: Task) -> None:
    last = task.attempts[-1] if task.attempts else None
    if last is not None:
        task.result.status = TaskStatus.OK if last.end is End.OK else TaskStatus.FAILED


def test_the_ready_queue_takes_priority_first_then_submission_order() -> None:
    heads = [("a", 0, 1), ("b", 5, 7), ("c", 5, 3)]
    assert pick_lane(heads, set()) == "c"
    assert pick_lane(heads, {"c"}) == "b"
    assert pick_lane(heads, {"b", "c"}) == "a"
    assert pick_lane(heads, {"a", "b", "c"}) is None


def test_retries_follow_the_kind_of_end_never_its_text() -> None:
    for end in (End.CRASHED, End.HUNG, End.START_FAILED):
        assert retry_after(end, attempts=1, retries=2, retry_failed=False) == RETRY_BACKOFF_BASE_S
        assert retry_after(end, attempts=3, retries=2, retry_failed=False) is None
    assert retry_after(End.FAILED, 1, 2, retry_failed=False) is None
    assert retry_after(End.FAILED, 1, 2, retry_failed=True) == RETRY_BACKOFF_BASE_S
    for end in (End.OK, End.TIMEOUT, End.CANCELLED, End.INVALID):
        assert retry_after(end, 1, 5, retry_failed=True) is None
    assert retry_after(End.CRASHED, 2, 5, False) == 2 * RETRY_BACKOFF_BASE_S


def test_a_rate_limit_is_a_token_bucket_on_the_callers_clock() -> None:
    rate = parse_rate("2/s")
    assert rate.available(0.0)
    rate.take(0.0)
    rate.take(0.0)
    assert not rate.available(0.0)
    assert rate.wait_s(0.0) == pytest.approx(0.5)
    assert rate.available(0.5)
    with pytest.raises(ValueError, match="COUNT/min"):
        parse_rate("3/fortnight")
    assert parse_rate("30/min") == RateLimit(30, 60.0)


async def test_tasks_start_by_priority_under_the_global_limit() -> None:
    fake = FakeExecutor()
    finals: list[int] = []
    scheduler = Scheduler(
        fake.execute,
        limits=Limits(concurrency=2),
        on_final=lambda t: finals.append(t.index),
    )
    on = lane()
    tasks = [make_task(1, on), make_task(2, on, priority=9), make_task(3, on, priority=5)]
    async with asyncio.timeout(STEP_S):
        scheduler.submit(tasks)
        runner = asyncio.ensure_future(scheduler.run())
        await fake.until_started(2)
        assert fake.started == [(2, 1), (3, 1)]  # 1 waits: two in flight at most
        fake.end(3, 1)
        await fake.until_started(3)
        assert fake.started[2] == (1, 1)
        assert scheduler.figures.peak_running == 2
        fake.end(2, 1)
        fake.end(1, 1)
        await runner
    assert sorted(finals) == [1, 2, 3]


async def test_a_lane_at_its_agents_limit_never_holds_back_another_lane() -> None:
    fake = FakeExecutor()
    scheduler = Scheduler(fake.execute, limits=Limits(per_agent={"slow": 1}))
    slow, other = lane("slow"), lane("other")
    tasks = [
        make_task(1, slow, priority=9),
        make_task(2, slow, priority=9),
        make_task(3, other, priority=0),
    ]
    async with asyncio.timeout(STEP_S):
        scheduler.submit(tasks)
        runner = asyncio.ensure_future(scheduler.run())
        await fake.until_started(2)
        assert fake.started == [(1, 1), (3, 1)]
        fake.end(1, 1)
        await fake.until_started(3)
        fake.end(2, 1)
        fake.end(3, 1)
        await runner


async def test_a_crashed_attempt_is_retried_and_the_task_is_final_exactly_once() -> None:
    fake = FakeExecutor()
    finals: list[int] = []

    def on_final(task: Task) -> None:
        final_status(task)
        finals.append(task.index)

    scheduler = Scheduler(fake.execute, retries=2, on_final=on_final)
    task = make_task(1, lane())
    async with asyncio.timeout(STEP_S):
        scheduler.submit([task])
        runner = asyncio.ensure_future(scheduler.run())
        await fake.until_started(1)
        fake.end(1, 1, End.CRASHED)
        await fake.until_started(2)  # after the retry backoff, a second attempt
        fake.end(1, 2, End.HUNG)
        await fake.until_started(3)
        fake.end(1, 3, End.CRASHED)  # retries spent: final
        await runner
    assert [a.id for a in task.attempts] == ["1.1", "1.2", "1.3"]
    assert finals == [1]
    assert task.result.status == TaskStatus.FAILED
    assert scheduler.figures.retried == 2


async def test_a_dependent_task_is_prepared_when_its_dependency_is_final() -> None:
    fake = FakeExecutor()
    prepared: list[int] = []

    def prepare(task: Task) -> bool:
        prepared.append(task.index)
        return True

    scheduler = Scheduler(fake.execute, prepare=prepare)
    on = lane()
    first, second = make_task(1, on), make_task(2, on, depends_on=(1,))
    async with asyncio.timeout(STEP_S):
        scheduler.submit([first, second])
        runner = asyncio.ensure_future(scheduler.run())
        await fake.until_started(1)
        assert prepared == [1]
        fake.end(1, 1)
        await fake.until_started(2)
        assert prepared == [1, 2]
        fake.end(2, 1)
        await runner


async def test_stop_new_ends_queued_and_waiting_tasks_at_once_and_keeps_running_ones() -> None:
    fake = FakeExecutor()
    finals: list[int] = []
    scheduler = Scheduler(
        fake.execute, limits=Limits(concurrency=1), on_final=lambda t: finals.append(t.index)
    )
    on = lane()
    tasks = [make_task(1, on), make_task(2, on), make_task(3, on, depends_on=(2,))]
    async with asyncio.timeout(STEP_S):
        scheduler.submit(tasks)
        runner = asyncio.ensure_future(scheduler.run())
        await fake.until_started(1)
        scheduler.stop_new("the run's budget was exceeded")
        assert sorted(finals) == [2, 3]
        assert tasks[1].result.status == TaskStatus.CANCELLED
        assert tasks[1].result.error == "not started: the run's budget was exceeded"
        assert scheduler.stop.is_set()
        fake.end(1, 1)  # the running attempt ends as it will; no more start
        await runner
    assert fake.started == [(1, 1)]
    assert sorted(finals) == [1, 2, 3]


async def test_an_attempts_task_runs_the_next_attempts_and_a_new_task_never_takes_its_slot() -> (
    None
):
    fake = FakeExecutor()
    jobs: list[asyncio.Task[object] | None] = []

    async def execute(task: Task, attempt: Attempt, stop: StopSignal) -> None:
        jobs.append(asyncio.current_task())
        await fake.execute(task, attempt, stop)

    finals: list[int] = []
    scheduler = Scheduler(
        execute, limits=Limits(concurrency=2), on_final=lambda t: finals.append(t.index)
    )
    on = lane()
    async with asyncio.timeout(STEP_S):
        scheduler.submit([make_task(n, on) for n in range(1, 7)])
        runner = asyncio.ensure_future(scheduler.run())
        await fake.until_started(2)
        for first in (1, 3, 5):
            # Both attempts end in one turn: each one's task takes the next attempt (the
            # first to go on must not start a new task in the other's slot).
            fake.end(first, 1)
            fake.end(first + 1, 1)
            if first < 5:
                await fake.until_started(first + 3)
                assert scheduler.figures.running == 2
        await runner
    assert finals == [1, 2, 3, 4, 5, 6]
    assert fake.started == [(n, 1) for n in range(1, 7)]
    # Two slots: two asyncio tasks ran all six attempts, each its slot's, in turn.
    assert len(set(map(id, jobs))) == 2
    assert [jobs[n] is jobs[n % 2] for n in range(6)] == [True] * 6
