"""AgentHandle and AgentPool against real child processes (the mock adapter).

Each step awaits the event it is about (a state change announced to `on_change`, fed into
a queue) under a bound that starts at that event; nothing sleeps. Policies use small
backoffs, windows and heartbeats so that the slow paths take a fraction of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import psutil
import pytest

from aiswitch.agents import AgentRegistry
from aiswitch.errors import AgentDiedError, AgentStartError
from aiswitch.home import Home
from aiswitch.protocol.models import AssignParams, TaskResult
from aiswitch.state.processes import ProcessTable
from aiswitch.state.store import StateStore
from aiswitch.supervisor.handle import AgentHandle
from aiswitch.supervisor.policy import Restart, RestartPolicy, Supervision
from aiswitch.supervisor.pool import AgentPool, PoolConfig, PoolKey
from aiswitch.supervisor.states import ProcessState, StateChange

S = ProcessState

# A bound that only stops a hung test; each step it guards takes milliseconds.
STEP_S = 15.0
# Small enough that backoffs and idle timers cost the suite next to nothing.
QUICK_S = 0.05
# Heartbeats for the hang test: a wedged child is found within INTERVAL + TIMEOUT; a
# second is far more than an answer takes even on a loaded machine (no false kill).
HEARTBEAT_INTERVAL_S = 0.2
HEARTBEAT_TIMEOUT_S = 1.0
# Tasks in the pool tests last this long, so that the 50 of them really wait.
TASK_LATENCY = "0.05"


class Changes:
    """The state changes announced to `on_change`, awaited one at a time."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[StateChange] = asyncio.Queue()
        self.seen: list[StateChange] = []

    def __call__(self, change: StateChange) -> None:
        self._queue.put_nowait(change)

    async def until(
        self, state: ProcessState, *, agent_id: str | None = None, within: float = STEP_S
    ) -> StateChange:
        """The next change to `state` (of `agent_id`, when given), within `within` s from now."""
        async with asyncio.timeout(within):
            while True:
                change = await self._queue.get()
                self.seen.append(change)
                if change.new is state and agent_id in (None, change.agent_id):
                    return change

    def path(self) -> list[ProcessState]:
        return [change.new for change in self.seen]


def mock_env(**env: str) -> dict[str, str]:
    return {**os.environ, "MOCK_LATENCY": "0", "MOCK_STEPS": "1", **env}


def make_handle(
    home: Home,
    agent_id: str = "mock#1",
    *,
    supervision: Supervision | None = None,
    on_change: Callable[[StateChange], None] | None = None,
    table: ProcessTable | None = None,
    clock: Callable[[], float] | None = None,
    **env: str,
) -> AgentHandle:
    home.ensure()
    agent = AgentRegistry.load(home).get("mock")
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    return AgentHandle(
        agent,
        agent_id,
        home=home,
        run_id="test-run",
        env=mock_env(**env),
        supervision=supervision,
        table=table,
        on_change=on_change,
        **extra,
    )


def make_pool(
    home: Home,
    config: PoolConfig,
    *,
    changes: Changes,
    supervision: Supervision | None = None,
    table: ProcessTable | None = None,
    **env: str,
) -> AgentPool:
    def handle(agent_id: str) -> AgentHandle:
        return make_handle(home, agent_id, supervision=supervision, table=table, **env)

    return AgentPool(PoolKey("mock"), config, handle, on_change=changes)


def quick(**policy: Any) -> Supervision:
    """Supervision with quick backoffs and no heartbeats (unless a test asks)."""
    return Supervision(
        policy=RestartPolicy(**{"backoff_base_s": QUICK_S, **policy}),
        heartbeat_interval_s=None,
    )


def task(task_id: str, **options: Any) -> AssignParams:
    return AssignParams(task_id=task_id, prompt="work", options=options)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    # Only zombies left (not yet reaped) count as gone too.
    return all(gone(p.pid) for p in psutil.process_iter() if _pgid(p.pid) == pgid)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


# -- the handle ------------------------------------------------------------------------


async def test_a_crash_fails_the_task_in_flight_and_the_handle_restarts_for_the_next(
    home: Home,
) -> None:
    changes = Changes()
    handle = make_handle(home, supervision=quick(), on_change=changes)
    try:
        async with asyncio.timeout(STEP_S):
            await handle.start()
        first_pid = handle.pid
        async with asyncio.timeout(STEP_S):
            with pytest.raises(AgentDiedError) as caught:
                await handle.assign(task("t1", crash=True))
        assert "exited with code 3" in caught.value.message
        assert not caught.value.hung
        # Whoever got the error and asks again is not offered the dead process.
        assert handle.state is not S.RUNNING
        await changes.until(S.EXITED)
        await changes.until(S.RUNNING)
        assert changes.path() == [S.STARTING, S.RUNNING, S.EXITED, S.STARTING, S.RUNNING]
        assert handle.restarts == 1
        assert handle.pid != first_pid
        assert first_pid is not None and gone(first_pid)
        async with asyncio.timeout(STEP_S):
            result = await handle.assign(task("t2"))
        assert result.status == "ok"
    finally:
        await handle.stop()


async def test_a_hung_process_is_killed_as_a_group_after_its_heartbeat_timeout_and_replaced(
    home: Home,
) -> None:
    changes = Changes()
    supervision = Supervision(
        policy=RestartPolicy(backoff_base_s=QUICK_S),
        heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
        heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
    )
    handle = make_handle(home, supervision=supervision, on_change=changes)
    started = asyncio.Event()
    handle.on_progress = lambda h, p: started.set()
    in_flight: asyncio.Task[TaskResult] | None = None
    try:
        async with asyncio.timeout(STEP_S):
            await handle.start()
        hung_pid = handle.pid
        assert hung_pid is not None
        in_flight = asyncio.create_task(handle.assign(task("t1", hang=True)))
        async with asyncio.timeout(STEP_S):
            await started.wait()
        # Still the first process: heartbeats so far were answered.
        assert handle.pid == hung_pid and handle.state is S.RUNNING
        os.kill(hung_pid, signal.SIGSTOP)
        # Found by the next heartbeat that goes unanswered, measured from the SIGSTOP.
        exited = await changes.until(
            S.EXITED, within=HEARTBEAT_INTERVAL_S + HEARTBEAT_TIMEOUT_S + STEP_S
        )
        assert "no heartbeat" in exited.reason
        async with asyncio.timeout(STEP_S):
            with pytest.raises(AgentDiedError) as caught:
                await in_flight
        assert caught.value.hung
        assert "stopped answering" in caught.value.message
        await changes.until(S.RUNNING)
        assert handle.pid is not None and handle.pid != hung_pid
        assert handle.restarts == 1
        assert group_gone(hung_pid)
    finally:
        await handle.stop()
        if in_flight is not None:
            await asyncio.gather(in_flight, return_exceptions=True)


async def test_a_process_that_keeps_failing_to_start_turns_fatal_with_its_reason(
    home: Home,
) -> None:
    changes = Changes()
    handle = make_handle(
        home, supervision=quick(start_retries=2), on_change=changes, MOCK_EXIT_AT_START="7"
    )
    try:
        async with asyncio.timeout(STEP_S):
            with pytest.raises(AgentStartError) as caught:
                await handle.start()
        assert "exited with code 7" in caught.value.message
        assert "gave up after 3 starts" in caught.value.message
        assert handle.state is S.FATAL
        assert handle.reason == caught.value.message
        await changes.until(S.FATAL)
        assert changes.path() == [
            S.STARTING,
            S.BACKOFF,
            S.STARTING,
            S.BACKOFF,
            S.STARTING,
            S.FATAL,
        ]
        with pytest.raises(AgentStartError):
            await handle.wait_running()
    finally:
        await handle.stop()
    assert handle.state is S.STOPPED


async def test_a_stop_during_a_start_backoff_leaves_the_handle_stopped(home: Home) -> None:
    changes = Changes()
    # The backoff is long: only the stop can end it.
    supervision = Supervision(policy=RestartPolicy(backoff_base_s=STEP_S * 4))
    handle = make_handle(home, supervision=supervision, on_change=changes, MOCK_EXIT_AT_START="7")
    starting = asyncio.create_task(handle.start())
    try:
        await changes.until(S.BACKOFF)
        async with asyncio.timeout(STEP_S):
            await handle.stop()
            with pytest.raises(AgentStartError):
                await starting
        assert handle.state is S.STOPPED
        await changes.until(S.STOPPED)
        assert changes.path() == [S.STARTING, S.BACKOFF, S.STOPPED]
    finally:
        starting.cancel()
        with contextlib.suppress(BaseException):
            await starting
        await handle.stop()


async def test_restart_never_leaves_a_crashed_process_exited(home: Home) -> None:
    changes = Changes()
    handle = make_handle(home, supervision=quick(restart=Restart.NEVER), on_change=changes)
    try:
        async with asyncio.timeout(STEP_S):
            await handle.start()
            with pytest.raises(AgentDiedError):
                await handle.assign(task("t1", crash=True))
        await changes.until(S.EXITED)
        assert handle.state is S.EXITED
        assert not handle.will_restart
        assert handle.restarts == 0
        with pytest.raises(AgentDiedError):
            await handle.assign(task("t2"))
    finally:
        await handle.stop()
    await changes.until(S.STOPPED)
    assert changes.path() == [S.STARTING, S.RUNNING, S.EXITED, S.STOPPED]


async def test_an_exit_during_a_requested_stop_is_never_a_crash(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The child ignores EOF and SIGTERM, so the stop ends it with SIGKILL: a non-zero
    # exit that would be a crash had nobody asked for it.
    monkeypatch.setattr("aiswitch.supervisor.process.EXIT_AFTER_EOF_S", 0.2)
    monkeypatch.setattr("aiswitch.supervisor.process.EXIT_AFTER_SIGTERM_S", 0.2)
    changes = Changes()
    handle = make_handle(
        home,
        supervision=quick(restart=Restart.ALWAYS),
        on_change=changes,
        MOCK_IGNORE_EOF="1",
        MOCK_IGNORE_SIGTERM="1",
    )
    async with asyncio.timeout(STEP_S):
        await handle.start()
        pid = handle.pid
        await handle.stop()
    await changes.until(S.STOPPED)
    assert changes.path() == [S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED]
    assert handle.state is S.STOPPED
    assert handle.restarts == 0
    assert pid is not None and gone(pid)


async def test_crashes_beyond_the_budget_within_the_window_back_off_as_flapping(
    home: Home,
) -> None:
    window_s = 0.3
    now = [1000.0]
    changes = Changes()
    handle = make_handle(
        home,
        supervision=quick(crash_budget=1, crash_window_s=window_s),
        on_change=changes,
        clock=lambda: now[0],
    )
    try:
        async with asyncio.timeout(STEP_S):
            await handle.start()
            # The first crash is within the budget: restarted at once.
            with pytest.raises(AgentDiedError):
                await handle.assign(task("t1", crash=True))
        await changes.until(S.EXITED)
        assert (await changes.until(S.RUNNING)).old is S.STARTING
        assert changes.path()[-3:] == [S.EXITED, S.STARTING, S.RUNNING]
        # The second, at the same instant, is one too many: back off for the window.
        async with asyncio.timeout(STEP_S):
            with pytest.raises(AgentDiedError):
                await handle.assign(task("t2", crash=True))
        await changes.until(S.EXITED)
        backoff = await changes.until(S.BACKOFF)
        assert backoff.reason.startswith("flapping: 2 crashes within 0.3s")
        await changes.until(S.RUNNING, within=window_s + STEP_S)
        assert handle.restarts == 2
        # Once the window has passed (on the injected clock), a crash restarts at once.
        now[0] += window_s * 2
        async with asyncio.timeout(STEP_S):
            with pytest.raises(AgentDiedError):
                await handle.assign(task("t3", crash=True))
        await changes.until(S.EXITED)
        await changes.until(S.RUNNING)
        assert changes.path()[-3:] == [S.EXITED, S.STARTING, S.RUNNING]
        assert handle.restarts == 3
        async with asyncio.timeout(STEP_S):
            result = await handle.assign(task("t4"))
        assert result.status == "ok"
    finally:
        await handle.stop()


async def test_a_handle_mirrors_its_process_in_agents_json(home: Home) -> None:
    table = ProcessTable(StateStore(home))
    changes = Changes()
    handle = make_handle(home, supervision=quick(), on_change=changes, table=table)
    try:
        async with asyncio.timeout(STEP_S):
            await handle.start()
        # Written before the handle was announced running.
        [(key, entry)] = table.entries().items()
        assert key == "test-run/mock#1"
        assert entry["pid"] == handle.pid
    finally:
        await handle.stop()
    assert table.entries() == {}


class TableThatWaitsInAdd(ProcessTable):
    """Holds the entry's write (in its worker thread) until the test lets it go."""

    def __init__(self, store: StateStore) -> None:
        super().__init__(store)
        self.adding = threading.Event()
        self.go_on = threading.Event()
        self.added = threading.Event()

    def add(self, key: str, entry: dict[str, Any]) -> None:
        self.adding.set()
        assert self.go_on.wait(STEP_S)
        super().add(key, entry)
        self.added.set()


async def test_a_stop_while_the_entry_is_written_leaves_no_entry_behind(home: Home) -> None:
    # The pool's close() stops a process that is still starting: the entry's removal must come
    # after its write, whichever thread runs first (a run's agents.json kept `mock.p2`).
    table = TableThatWaitsInAdd(StateStore(home))
    changes = Changes()
    handle = make_handle(home, supervision=quick(), on_change=changes, table=table)
    start = asyncio.create_task(handle.start())
    async with asyncio.timeout(STEP_S):
        await asyncio.to_thread(table.adding.wait, STEP_S)
    stop = asyncio.create_task(handle.stop("closing"))
    await changes.until(ProcessState.STOPPED)  # the process is gone; its entry not yet written
    table.go_on.set()
    async with asyncio.timeout(STEP_S):
        await stop
        with contextlib.suppress(AgentStartError, AgentDiedError):
            await start
        assert await asyncio.to_thread(table.added.wait, STEP_S)
    assert table.entries() == {}


async def test_a_stop_while_the_child_is_spawned_stops_it_and_leaves_no_entry_behind(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pool's close() stops a handle whose restart is still spawning its child (a spawn
    # takes a while on a loaded machine): the stop waits for that child and takes it down,
    # and no entry is written after it (a 500-task batch's agents.json kept `mock.p1`).
    from aiswitch.supervisor import process as process_module

    real_spawn = process_module.spawn
    spawning, go_on = asyncio.Event(), asyncio.Event()
    spawned: list[int] = []

    async def held_spawn(*args: Any, **kwargs: Any) -> Any:
        spawning.set()
        await go_on.wait()
        child = await real_spawn(*args, **kwargs)
        spawned.append(child.pid)
        return child

    monkeypatch.setattr(process_module, "spawn", held_spawn)
    table = ProcessTable(StateStore(home))
    changes = Changes()
    handle = make_handle(home, supervision=quick(), on_change=changes, table=table)
    start = asyncio.create_task(handle.start())
    async with asyncio.timeout(STEP_S):
        await spawning.wait()
    stop = asyncio.create_task(handle.stop("closing"))
    await changes.until(S.STOPPING)
    go_on.set()
    async with asyncio.timeout(STEP_S):
        await stop
        with pytest.raises(AgentStartError):
            await start
    (pid,) = spawned
    assert gone(pid)
    assert handle.state is S.STOPPED
    assert table.entries() == {}


class TableThatKillsTheFirstChild(ProcessTable):
    """Kills the child while its entry is written: between its handshake and `running`.

    `add()` runs in a worker thread; it returns once the loop has seen the exit."""

    def __init__(self, store: StateStore, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(store)
        self.loop = loop
        self.handle: AgentHandle | None = None
        self.killed: int | None = None

    def add(self, key: str, entry: dict[str, Any]) -> None:
        super().add(key, entry)
        if self.killed is None and self.handle is not None:
            process = self.handle._process
            assert process is not None
            self.killed = entry["pid"]
            os.kill(entry["pid"], signal.SIGKILL)
            exited = process.wait_exit(STEP_S)
            asyncio.run_coroutine_threadsafe(exited, self.loop).result(STEP_S)


async def test_a_process_that_exits_before_it_is_running_is_a_failed_start(home: Home) -> None:
    table = TableThatKillsTheFirstChild(StateStore(home), asyncio.get_running_loop())
    changes = Changes()
    handle = make_handle(home, supervision=quick(), on_change=changes, table=table)
    table.handle = handle
    try:
        async with asyncio.timeout(STEP_S):
            await handle.start()
        backoff = await changes.until(S.BACKOFF)
        assert "right after its handshake" in backoff.reason
        await changes.until(S.RUNNING)
        assert changes.path() == [S.STARTING, S.BACKOFF, S.STARTING, S.RUNNING]
        assert handle.restarts == 0
        assert table.killed is not None and handle.pid != table.killed
        assert [e["pid"] for e in table.entries().values()] == [handle.pid]
        async with asyncio.timeout(STEP_S):
            result = await handle.assign(task("t1"))
        assert result.status == "ok"
    finally:
        await handle.stop()
    assert table.entries() == {}


# -- the pool --------------------------------------------------------------------------


async def test_a_pool_grows_from_zero_to_its_max_and_serves_fifty_waiting_tasks(
    home: Home,
) -> None:
    config = PoolConfig(min=0, max=3, idle_timeout_s=STEP_S)
    changes = Changes()
    pool = make_pool(
        home,
        config,
        changes=changes,
        supervision=quick(),
        MOCK_MAX_CONCURRENT="2",
        MOCK_LATENCY=TASK_LATENCY,
    )
    me = psutil.Process()
    children_seen: list[int] = []
    in_flight: Counter[str] = Counter()
    peak_in_flight: Counter[str] = Counter()
    sizes: list[int] = []

    def pool_children() -> int:
        """This pool's live children, as the OS sees them (other tests' may be around)."""
        found = 0
        for child in me.children():
            try:
                if child.environ().get("AISWITCH_HOME") == str(home.root):
                    found += child.status() != psutil.STATUS_ZOMBIE
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    def count(change: StateChange) -> None:
        changes(change)
        sizes.append(pool.size)
        children_seen.append(pool_children())

    pool._on_change = count  # the pool's own hook, wrapped to take figures
    assert pool.size == 0

    async def one(i: int) -> TaskResult:
        handle = await pool.acquire()
        sizes.append(pool.size)
        in_flight[handle.agent_id] += 1
        peak_in_flight[handle.agent_id] = max(
            peak_in_flight[handle.agent_id], in_flight[handle.agent_id]
        )
        try:
            return await handle.assign(task(f"t{i}"))
        finally:
            in_flight[handle.agent_id] -= 1
            pool.release(handle)

    try:
        async with asyncio.timeout(STEP_S * 2):
            results = await asyncio.gather(*(one(i) for i in range(50)))
        assert [r.status for r in results] == ["ok"] * 50
        assert pool.peak_processes == config.max
        assert max(sizes) <= config.max
        assert 0 < max(children_seen) <= config.max
        assert max(peak_in_flight.values()) <= 2
        assert len(peak_in_flight) == config.max
        assert pool.waiting == 0 and pool.busy == 0
    finally:
        async with asyncio.timeout(STEP_S):
            await pool.close()


async def test_a_pool_shrinks_back_to_its_min_after_the_idle_timeout(home: Home) -> None:
    idle_s = 0.2
    config = PoolConfig(min=1, max=3, idle_timeout_s=idle_s)
    changes = Changes()
    pool = make_pool(
        home,
        config,
        changes=changes,
        supervision=quick(),
        MOCK_MAX_CONCURRENT="1",
        MOCK_LATENCY=TASK_LATENCY,
    )
    pool.start()
    try:
        await changes.until(S.RUNNING)
        assert pool.size == 1

        async def one(i: int) -> TaskResult:
            handle = await pool.acquire()
            try:
                return await handle.assign(task(f"t{i}"))
            finally:
                pool.release(handle)

        async with asyncio.timeout(STEP_S):
            results = await asyncio.gather(*(one(i) for i in range(12)))
        assert all(r.status == "ok" for r in results)
        assert pool.peak_processes == 3
        # Both extra processes stop within the idle timeout of the last release.
        for _ in range(pool.peak_processes - config.min):
            await changes.until(S.STOPPED, within=idle_s + STEP_S)
        assert pool.size == config.min
        assert [h.state for h in pool.handles] == [S.RUNNING]
    finally:
        async with asyncio.timeout(STEP_S):
            await pool.close()


async def test_a_pool_whose_processes_all_fail_to_start_is_fatal_for_every_waiter(
    home: Home,
) -> None:
    changes = Changes()
    pool = make_pool(
        home,
        PoolConfig(min=0, max=2),
        changes=changes,
        supervision=quick(start_retries=1),
        MOCK_EXIT_AT_START="5",
    )
    try:
        async with asyncio.timeout(STEP_S):
            outcomes = await asyncio.gather(
                *(pool.acquire() for _ in range(10)), return_exceptions=True
            )
        assert all(isinstance(o, AgentStartError) for o in outcomes), outcomes
        assert all("exited with code 5" in str(o) for o in outcomes)
        assert pool.size == 0
        assert pool.peak_processes == 2
        with pytest.raises(AgentStartError):
            await pool.acquire()
    finally:
        async with asyncio.timeout(STEP_S):
            await pool.close()


async def test_a_pool_replaces_a_process_that_exited_for_good(home: Home) -> None:
    changes = Changes()
    pool = make_pool(
        home, PoolConfig(min=0, max=1), changes=changes, supervision=quick(restart=Restart.NEVER)
    )
    try:
        async with asyncio.timeout(STEP_S):
            first = await pool.acquire()
            try:
                with pytest.raises(AgentDiedError):
                    await first.assign(task("t1", crash=True))
            finally:
                pool.release(first)
            second = await pool.acquire()
            try:
                result = await second.assign(task("t2"))
            finally:
                pool.release(second)
        assert result.status == "ok"
        assert second is not first
        assert pool.handles == [second]
    finally:
        async with asyncio.timeout(STEP_S):
            await pool.close()
    assert first.state is S.STOPPED


async def test_closing_a_pool_leaves_no_child_alive_and_agents_json_empty(home: Home) -> None:
    table = ProcessTable(StateStore(home))
    changes = Changes()
    pool = make_pool(
        home,
        PoolConfig(min=2, max=3),
        changes=changes,
        supervision=quick(),
        table=table,
        MOCK_MAX_CONCURRENT="1",
    )
    pool.start()
    hanging: asyncio.Task[TaskResult] | None = None
    try:
        await changes.until(S.RUNNING)
        await changes.until(S.RUNNING)
        handle = await pool.acquire()
        started = asyncio.Event()
        handle.on_progress = lambda h, p: started.set()
        hanging = asyncio.create_task(handle.assign(task("t1", hang=True)))
        async with asyncio.timeout(STEP_S):
            await started.wait()
        assert len(table.entries()) == 2
    finally:
        pids = [h.pid for h in pool.handles]
        async with asyncio.timeout(STEP_S):
            await pool.close()
            if hanging is not None:
                await asyncio.gather(hanging, return_exceptions=True)
    assert len(pids) == 2
    assert all(pid is not None and gone(pid) for pid in pids)
    assert not [c for c in psutil.Process().children(recursive=True) if c.pid in pids]
    assert table.entries() == {}
    assert all(h.state is S.STOPPED for h in pool.handles)
    with pytest.raises(AgentStartError):
        await pool.acquire()
