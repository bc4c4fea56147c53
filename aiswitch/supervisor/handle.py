"""An agent handle: one supervised agent process, and the typed way to use it.

The coordinator talks to handles only (`start`, `assign`, `cancel`, `status`,
`switch_env`, `stop`), never to processes, pids or pipes; that is the seam where an
executor on another machine plugs in.

Contract:
- Every state change goes through `states.transition` (checked, then announced to
  `on_change`) and is mirrored in `state/agents.json` (`ProcessTable`): an entry while the
  process may be alive, none after.
- `start()` spawns and handshakes; a failed start is retried after the policy's backoff,
  and after `start_retries` the handle is `fatal` and `start()` raises `AgentStartError`
  with the reason (so does a `start()` that a `stop()` ended first). `stop()` cancels a
  pending backoff too.
- An exit nobody asked for moves the handle to `exited`; the restart policy (a pure
  function, `policy.after_exit`) decides: restart at once, back off (flapping), or stay
  exited; `will_restart` tells which, from the moment `exited` is announced. Tasks in
  flight on the process that ended raise `AgentDiedError` (`hung` when the handle killed
  that process for a missed heartbeat).
- Heartbeats: `agent.status` every `heartbeat_interval_s`; no answer within
  `heartbeat_timeout_s` and the process group is killed (then restarted by the policy).
- `assign()` returns the agent's `TaskResult`; a reply that does not fit the protocol raises
  `InvalidReplyError` (that task fails, the process goes on).
- Progress and usage notifications reach `on_progress` / `on_usage` with the handle, so
  the caller can tell which process a task id came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiswitch.errors import AgentDiedError, AgentStartError, StateError
from aiswitch.protocol.client import AgentClient
from aiswitch.protocol.models import (
    ASSIGN,
    CANCEL,
    ENV_ROLLBACK,
    ENV_SNAPSHOT,
    ENV_SWITCH,
    METRICS_REPORT,
    PROGRESS,
    STATUS,
    USAGE,
    AssignParams,
    CancelParams,
    Empty,
    EnvState,
    EnvSwitchParams,
    Metrics,
    ProgressParams,
    RollbackParams,
    StatusResult,
    TaskResult,
    UsageParams,
)
from aiswitch.rpc.errors import ConnectionClosedError, RequestTimeoutError, RpcError
from aiswitch.supervisor import policy as restart_policy
from aiswitch.supervisor.policy import Supervision
from aiswitch.supervisor.process import CANCEL_REPLY_TIMEOUT_S, EXIT_AFTER_EOF_S, AgentProcess
from aiswitch.supervisor.states import LIVE, ProcessState, StateChange, transition
from aiswitch.supervisor.table_entry import TableEntry

if TYPE_CHECKING:
    from aiswitch.agents import AgentDef
    from aiswitch.home import Home
    from aiswitch.state.processes import ProcessTable

S = ProcessState

# A status query answers at once; this long covers a loaded machine.
STATUS_TIMEOUT_S = 10.0


ProgressSink = Callable[["AgentHandle", ProgressParams], None]
UsageSink = Callable[["AgentHandle", UsageParams], None]


class AgentHandle:
    def __init__(
        self,
        agent: AgentDef,
        agent_id: str,
        *,
        home: Home,
        run_id: str,
        env: dict[str, str],
        cwd: str | None = None,
        preset: str | None = None,
        supervision: Supervision | None = None,
        table: ProcessTable | None = None,
        on_change: Callable[[StateChange], None] | None = None,
        on_progress: ProgressSink | None = None,
        on_usage: UsageSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.agent = agent
        self.agent_id = agent_id
        self.home = home
        self.run_id = run_id
        self.env = env
        self.cwd = cwd
        self.preset = preset
        self.supervision = supervision or Supervision()
        self.table = table
        self.on_change = on_change
        self.on_progress = on_progress
        self.on_usage = on_usage
        # `metrics.report` notifications, the latest per process (pid) it ran.
        self.reported: dict[int, Metrics] = {}
        self.clock = clock
        self.state = S.STOPPED
        self.reason = ""
        self.capacity = 1
        # The capabilities its adapter advertised at the handshake.
        self.provides: tuple[str, ...] = ()
        self.running: set[str] = set()
        self.tasks_done = 0
        self.restarts = 0
        self.started_at: float | None = None
        self._process: AgentProcess | None = None
        self._client: AgentClient | None = None
        self._crashes: list[float] = []
        self._start_failures = 0
        self._stop_requested = False
        # The process the heartbeat killed as hung (not a flag: a restart must not clear
        # it before the tasks that died with that process have read it).
        self._hung_process: AgentProcess | None = None
        self._restart_pending = False
        self._running_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._starting: asyncio.Task[None] | None = None
        # Its entry in agents.json (`TableEntry`: one chain of writes).
        self._entry = TableEntry(table, f"{run_id}/{agent_id}") if table is not None else None
        self._snapshots: dict[str, tuple[dict[str, str], str | None]] = {}

    # -- what others may read -------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def will_restart(self) -> bool:
        """Whether the exited process is to be started again (the restart policy said so
        when the exit was announced); False once it stays exited."""
        return self.state is S.EXITED and self._restart_pending

    @property
    def free_slots(self) -> int:
        return self.capacity - len(self.running) if self.state is S.RUNNING else 0

    @property
    def log_path(self) -> Any:
        from aiswitch.supervisor.logs import agent_log_path

        return agent_log_path(self.home, self.agent_id, self.run_id)

    # -- state ---------------------------------------------------------------------

    def _set(self, new: ProcessState, reason: str = "") -> None:
        change = transition(self.agent_id, self.state, new, reason, self.pid)
        self.state = new
        self.reason = reason
        if new is S.RUNNING:
            self._running_event.set()
        else:
            self._running_event.clear()
        self._record(change)
        if self.on_change is not None:
            self.on_change(change)

    async def _register(self) -> None:
        """Put the new process in agents.json before anyone is told it runs."""
        process = self._process
        if self._entry is None or process is None:
            return
        entry = process.table_entry()
        entry.update(preset=self.preset, restarts=self.restarts)
        try:
            await self._entry.add(entry)
        except StateError as exc:
            # Unrecorded, a process could outlive a killed parent unseen: not started.
            await process.stop("agents.json cannot be written")
            raise AgentStartError(f"{self.agent_id}: {exc.one_line()}") from None
        if self._stop_requested:
            # A stop that came meanwhile may have dropped the entry before it was written.
            self._entry.remove()

    def _record(self, change: StateChange) -> None:
        """Drop the entry of a process that ended, in order with the other writes."""
        if self._entry is not None and change.new not in LIVE and change.old in LIVE:
            self._entry.remove()

    def _spawn_task(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- start ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the process (retrying per policy); returns once it is running."""
        if self.state is S.RUNNING:
            return
        if self._starting is None or self._starting.done():
            self._stop_requested = False
            self._start_failures = 0
            self._starting = self._spawn_task(self._start_loop("start"))
        await asyncio.shield(self._starting)
        if not self._running_event.is_set() and self.stop_requested():
            raise AgentStartError(f"{self.agent_id} was stopped before it was running")

    async def wait_running(self) -> None:
        """Until the process is running; raises AgentStartError once the handle is fatal."""
        while self.state is not S.RUNNING:
            if self.state is S.FATAL:
                raise AgentStartError(f"{self.agent_id}: {self.reason}")
            if self.state in (S.STOPPED, S.STOPPING):
                raise AgentStartError(f"{self.agent_id} is stopped")
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await waiter
            finally:
                waiter.cancel()

    def stop_requested(self) -> bool:
        # A method, not the attribute: other tasks change it while this one awaits.
        return self._stop_requested

    def _notify_waiters(self) -> None:
        self._wake.set()

    async def _start_loop(self, why: str) -> None:
        policy = self.supervision.policy
        while not self._stop_requested:
            self._set(S.STARTING, why)
            self._notify_waiters()
            try:
                await self._spawn()
                await self._register()
                await self._check_alive()
            except AgentStartError as exc:
                if self.stop_requested():
                    return
                self._start_failures += 1
                decision = restart_policy.after_start_failure(
                    policy, self._start_failures, exc.message
                )
                if decision.action is restart_policy.Action.FATAL:
                    self._set(S.FATAL, decision.reason)
                    self._notify_waiters()
                    raise AgentStartError(decision.reason) from None
                self._set(S.BACKOFF, f"{exc.message}; retrying in {decision.delay_s:g}s")
                self._notify_waiters()
                if not await self._pause(decision.delay_s):
                    return
                why = "retry"
                continue
            if self.stop_requested():
                return
            self._start_failures = 0
            self._set(S.RUNNING, why)
            self._notify_waiters()
            return
        if self.state not in (S.STOPPED, S.STOPPING):
            self._set(S.STOPPED, "stop requested")

    async def _pause(self, delay: float) -> bool:
        """Back off for `delay`; False when a stop came meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stop_signal()
        if self._stop_requested:
            # stop() may have got there first (it moves a backoff to stopped too).
            if self.state is S.BACKOFF:
                self._set(S.STOPPED, "stopped during backoff")
            self._notify_waiters()
            return False
        return True

    async def _stop_signal(self) -> None:
        while not self._stop_requested:
            self._wake.clear()
            await self._wake.wait()

    async def _spawn(self) -> None:
        process = AgentProcess(
            self.agent,
            self.agent_id,
            home=self.home,
            run_id=self.run_id,
            env=self.env,
            cwd=self.cwd,
        )
        self._process = process
        try:
            info = await process.start(self.supervision.start_timeout_s)
        except AgentStartError:
            await process.stop("failed start")
            raise
        except asyncio.CancelledError:
            await process.stop("start cancelled")
            raise
        client = process.client
        assert client is not None
        client.on(PROGRESS, self._progress)
        client.on(USAGE, self._usage)
        client.on(METRICS_REPORT, self._metrics_report)
        self._client = client
        self.capacity = info.capabilities.max_concurrent_tasks
        self.provides = tuple(info.capabilities.provides)
        self.started_at = self.clock()
        self._spawn_task(self._watch(process))
        if self.supervision.heartbeat_interval_s:
            self._spawn_task(self._heartbeat(process, client))

    async def _check_alive(self) -> None:
        """A process that ended before it was announced running is a failed start (its
        exit is not `_watch`'s: there is no running state to leave)."""
        process = self._process
        if process is None or process.returncode is None:
            return
        code = process.returncode
        await process.stop("exited during start")
        raise AgentStartError(
            f"{self.agent_id} exited with code {code} right after its handshake "
            f"(see {self.log_path})"
        )

    def _progress(self, params: ProgressParams) -> None:
        if self.on_progress is not None:
            self.on_progress(self, params)

    def _usage(self, params: UsageParams) -> None:
        if self.on_usage is not None:
            self.on_usage(self, params)

    def _metrics_report(self, params: Metrics) -> None:
        """The latest `metrics.report` of each of its processes (by pid): the figures
        are counters since that process started."""
        if self.pid is not None:
            self.reported[self.pid] = params

    # -- exits ---------------------------------------------------------------------

    async def _watch(self, process: AgentProcess) -> None:
        code = await process.wait_exit(None)
        if self._stopped_meanwhile(process):
            return
        hung = self._hung_process is process
        reason = (
            f"killed: no heartbeat within {self.supervision.heartbeat_timeout_s:g}s"
            if hung
            else f"exited with code {code}"
        )
        # Reap what is left of its group, and its pipes.
        await process.stop(reason)
        if self._stopped_meanwhile(process):
            return
        now = self.clock()
        decision = restart_policy.after_exit(
            self.supervision.policy,
            restart_policy.Exit(code, requested=False, reason=reason),
            self._crashes,
            now,
        )
        if restart_policy.is_crash(self.supervision.policy, restart_policy.Exit(code)) or hung:
            window = self.supervision.policy.crash_window_s
            self._crashes = [t for t in self._crashes if now - t < window] + [now]
        # Decided before the exit is announced: a pool told `exited` can tell whether the
        # process comes back (`will_restart`) or must be replaced.
        self._restart_pending = decision.action is not restart_policy.Action.STAY
        self._set(S.EXITED, reason)
        self._notify_waiters()
        if decision.action is restart_policy.Action.STAY:
            return
        self.restarts += 1
        if decision.action is restart_policy.Action.WAIT:
            self._set(S.BACKOFF, decision.reason)
            self._notify_waiters()
            if not await self._pause(decision.delay_s):
                return
        self._starting = self._spawn_task(self._start_loop("restart"))

    def _stopped_meanwhile(self, process: AgentProcess) -> bool:
        """Whether the exit of `process` is someone else's to handle: a stop was asked
        for, a newer process replaced it, or it never was announced running (the start
        loop counts that as a failed start)."""
        return self._stop_requested or process is not self._process or self.state is not S.RUNNING

    async def _heartbeat(self, process: AgentProcess, client: AgentClient) -> None:
        interval = self.supervision.heartbeat_interval_s
        assert interval is not None
        while process is self._process and process.returncode is None:
            await asyncio.sleep(interval)
            if self._stop_requested or process.returncode is not None:
                return
            try:
                await client.call(STATUS, Empty(), timeout=self.supervision.heartbeat_timeout_s)
            except RequestTimeoutError:
                self._hung_process = process
                if process.pid is not None:
                    from aiswitch.process_group import signal_group

                    signal_group(process.pid, signal.SIGKILL)
                return
            except RpcError:
                return

    # -- tasks ---------------------------------------------------------------------

    async def assign(self, params: AssignParams) -> TaskResult:
        """Run a task on the process; see the module docstring for what it raises."""
        call = self.send_assign(params)
        try:
            return await call.reply
        except ConnectionClosedError as exc:
            raise await call.failure(exc) from None

    def send_assign(
        self, params: AssignParams, on_reply: Callable[[], None] | None = None
    ) -> AssignCall:
        """`assign` without a coroutine or a task (a batch sends thousands): the request
        goes now; `reply` ends as `assign` would, except that a lost connection is a
        `ConnectionClosedError`, which `failure()` turns into the `AgentDiedError` that
        `assign` raises. Cancelling `reply` abandons the call. `on_reply`: called as the
        reply is read, before `reply` is resolved (`AgentClient.send`)."""
        client, process = self._client, self._process
        if self.state is not S.RUNNING or client is None or process is None:
            raise AgentDiedError(f"{self.agent_id} is not running ({self.state})")
        task_id = params.task_id
        self.running.add(task_id)
        try:
            reply = client.send(ASSIGN, params, timeout=None, on_reply=on_reply)
        except ConnectionClosedError as exc:
            # Its pipe closed before the request could go: the same as losing it after.
            reply = asyncio.get_running_loop().create_future()
            reply.set_exception(exc)

        def done(reply: asyncio.Future[TaskResult]) -> None:
            self.running.discard(task_id)
            if not reply.cancelled() and reply.exception() is None:
                self.tasks_done += 1

        reply.add_done_callback(done)
        return AssignCall(self, process, reply)

    async def _died(self, process: AgentProcess) -> str:
        code = await process.wait_exit(EXIT_AFTER_EOF_S)
        if code is not None:
            await self._moved_on(process)
        if self._hung_process is process:
            return (
                f"{self.agent_id} stopped answering (no heartbeat within "
                f"{self.supervision.heartbeat_timeout_s:g}s) and was killed"
            )
        return "the agent " + process.how_ended(code, "during the task")

    async def _moved_on(self, process: AgentProcess) -> None:
        """Until the handle is done with the exited `process` (its exit announced, or a
        stop or a newer process took over): whoever gets `AgentDiedError` and asks the
        pool again must not be handed the same dead process as still running."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(EXIT_AFTER_EOF_S):
                while self._process is process and self._running_event.is_set():
                    self._wake.clear()
                    await self._wake.wait()

    async def cancel(self, task_id: str, reason: str = "") -> None:
        client = self._client
        if client is None or client.peer.closed.is_set() or task_id not in self.running:
            return
        with contextlib.suppress(RpcError):
            await client.call(
                CANCEL, CancelParams(task_id=task_id, reason=reason), timeout=CANCEL_REPLY_TIMEOUT_S
            )

    async def status(self) -> StatusResult:
        return await self._running_client().call(STATUS, Empty(), timeout=STATUS_TIMEOUT_S)

    async def switch_env(self, target: dict[str, str], preset: str | None) -> EnvState:
        """Give the child `target` from its next task on (only the difference is sent)."""
        client = self._running_client()
        changed = {k: v for k, v in target.items() if self.env.get(k) != v}
        removed = sorted(k for k in self.env if k not in target)
        reply = await client.call(
            ENV_SWITCH,
            EnvSwitchParams(preset=preset, set=changed, unset=removed),
            timeout=STATUS_TIMEOUT_S,
        )
        # A restart gives the new process the same environment.
        self.env = dict(target)
        self.preset = preset
        return reply

    async def snapshot_env(self) -> str:
        """Remember the child's environment; returns the snapshot's id."""
        client = self._running_client()
        reply = await client.call(ENV_SNAPSHOT, Empty(), timeout=STATUS_TIMEOUT_S)
        self._snapshots[reply.snapshot_id] = (dict(self.env), self.preset)
        return reply.snapshot_id

    async def rollback_env(self, snapshot_id: str) -> EnvState:
        """Restore a snapshot exactly (a RemoteError -32006 when it is unknown)."""
        client = self._running_client()
        reply = await client.call(
            ENV_ROLLBACK, RollbackParams(snapshot_id=snapshot_id), timeout=STATUS_TIMEOUT_S
        )
        self.env, self.preset = self._snapshots.get(snapshot_id, (self.env, self.preset))
        return reply

    def _running_client(self) -> AgentClient:
        if self._client is None or self.state is not S.RUNNING:
            raise AgentDiedError(f"{self.agent_id} is not running ({self.state})")
        return self._client

    # -- stop ----------------------------------------------------------------------

    async def stop(self, reason: str = "stop", *, abandon: bool = False) -> None:
        """Stop the process (the full stop sequence) and any pending restart.
        `abandon`: its tasks in flight fail as on a crash (`AgentDiedError`, so they are
        retried elsewhere) instead of being cancelled by the agent's shutdown."""
        self._stop_requested = True
        self._notify_waiters()
        process = self._process
        if self.state in (S.RUNNING, S.STARTING):
            self._set(S.STOPPING, reason)
        if abandon:
            await _abandon(process, reason)
        if process is not None:
            await process.stop(reason)
        if self.state is S.STOPPING or self.state in (S.EXITED, S.BACKOFF, S.FATAL):
            self._set(S.STOPPED, reason)
        self._notify_waiters()
        current = asyncio.current_task()
        pending = [t for t in self._tasks if t is not current]
        for task in pending:
            if not task.done() and task is not self._starting:
                task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._entry is not None:
            # Not cancelled: agents.json must not keep the entry of a stopped process.
            await self._entry.settled()

    async def restart(self, reason: str = "restart requested") -> None:
        """Stop the process and start a new one on this handle (the supervisor's
        `agent.restart`: stop + start). Tasks in flight on the old process fail as on a
        crash (the scheduler retries them). Returns once the new process runs."""
        process = self._process
        if process is None or self.state is not S.RUNNING:
            raise AgentDiedError(f"{self.agent_id} is not running ({self.state})")
        # Announced as an exit that comes back (`will_restart`): the pool keeps the handle,
        # and the old process's watcher leaves it to us (the state is no longer running).
        self._restart_pending = True
        self._set(S.EXITED, reason)
        await _abandon(process, reason)
        await process.stop(reason)
        self.restarts += 1
        self._starting = self._spawn_task(self._start_loop("restart"))
        await asyncio.shield(self._starting)


async def _abandon(process: AgentProcess | None, reason: str) -> None:
    """Close the connection to `process` first: its calls in flight fail with a lost
    connection (`AssignCall.failure` makes that the `AgentDiedError` of a crash) rather
    than being answered `cancelled` by the shutdown that follows; closing its stdin is
    the first step of its stop sequence anyway."""
    peer = process.peer if process is not None else None
    if peer is not None:
        await peer.close(reason)


@dataclass
class AssignCall:
    """One `task.assign` in flight (`AgentHandle.send_assign`)."""

    handle: AgentHandle
    process: AgentProcess
    reply: asyncio.Future[TaskResult]

    async def failure(self, error: BaseException) -> BaseException:
        """What `assign` raises for the reply's `error`: a lost connection becomes the
        `AgentDiedError` saying how the process ended (waiting for its exit)."""
        if not isinstance(error, ConnectionClosedError):
            return error
        handle, process = self.handle, self.process
        message = await handle._died(process)
        return AgentDiedError(message, hung=handle._hung_process is process)
