"""The adapter side of the protocol: an `Adapter` served over this process's stdio.

Contract: `run_task` returns a `TaskOutcome` (ok), raises `TaskFailed` (failed with its
message), or is cancelled (`task.cancel`, shutdown, stdin EOF, parent gone). Any other
exception fails the task with a one-line message; its traceback goes to the log only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiswitch.adapter_sdk.environment import Environment
from aiswitch.protocol.models import (
    AgentInfo,
    AssignParams,
    CancelParams,
    CancelResult,
    Capabilities,
    EnvState,
    EnvSwitchParams,
    InitializeParams,
    InitializeResult,
    Metrics,
    ProgressParams,
    RollbackParams,
    ShutdownParams,
    ShutdownResult,
    SnapshotResult,
    StatusResult,
    TaskRef,
    TaskResult,
    TaskStatusResult,
    UsageParams,
)
from aiswitch.rpc import codes
from aiswitch.rpc.errors import ConnectionClosedError, MethodError
from aiswitch.rpc.messages import Params
from aiswitch.rpc.peer import Peer, open_stdio
from aiswitch.tokens.usage import Usage

# Finished results kept for `task.result`; older ones are forgotten first.
MAX_KEPT_RESULTS = 256
# After shutdown is asked for, running tasks get this long to clean up (kill CLIs).
SHUTDOWN_GRACE_S = 5.0
# An error message on the wire is one line of at most this many characters.
MAX_ERROR_CHARS = 2000

log = logging.getLogger("aiswitch.adapter")


class TaskFailed(Exception):
    """Raise from `run_task` to fail the task with this (wire-safe) message."""

    def __init__(self, message: str, *, output: str = "", usage: Usage | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.output = output
        self.usage = usage


@dataclass
class TaskOutcome:
    output: str
    usage: Usage | None = None
    model: str | None = None
    session_id: str | None = None
    cost_usd: float | None = None


@dataclass
class TaskContext:
    """What `run_task` gets: the task, its environment, and ways to report."""

    params: AssignParams
    env: dict[str, str]
    preset: str | None
    agent_id: str
    config: dict[str, Any]
    _server: AdapterServer
    started: float = field(default_factory=time.monotonic)
    usage: Usage = field(default_factory=Usage)
    last_progress: str | None = None

    @property
    def task_id(self) -> str:
        return self.params.task_id

    @property
    def prompt(self) -> str:
        return self.params.prompt

    @property
    def options(self) -> dict[str, Any]:
        return self.params.options

    async def progress(self, text: str, kind: str = "text") -> None:
        self.last_progress = text
        with contextlib.suppress(ConnectionClosedError):
            await self._server.peer.notify(
                "task.progress",
                ProgressParams(task_id=self.task_id, kind=kind, text=text),
            )

    async def report_usage(
        self,
        usage: Usage,
        *,
        model: str | None = None,
        provider: str | None = None,
        cost_usd: float | None = None,
        session_id: str | None = None,
        message_id: str | None = None,
        request_id: str | None = None,
    ) -> None:
        """Send one `tokens.usage` event (the parent appends each to its ledger)."""
        self.usage = self.usage + usage
        self._server.metrics_usage = self._server.metrics_usage + usage
        with contextlib.suppress(ConnectionClosedError):
            await self._server.peer.notify(
                "tokens.usage",
                UsageParams(
                    task_id=self.task_id,
                    usage=usage,
                    model=model,
                    provider=provider,
                    cost_usd=cost_usd,
                    session_id=session_id,
                    message_id=message_id,
                    request_id=request_id,
                ),
            )

    async def emit_raw(self, data: bytes) -> None:
        """Write bytes to stdout outside the protocol (test adapters simulate garbage)."""
        await self._server.peer._write(data)


class Adapter:
    """Subclass and implement `run_task`; set the class attributes that apply."""

    name = "adapter"
    version = ""
    max_concurrent_tasks = 1
    supports_resume = False

    async def setup(self, params: InitializeParams) -> None:
        """Called once at `agent.initialize`; raise `MethodError(CLI_UNAVAILABLE, …)`
        when the underlying CLI cannot be used."""

    def cli_info(self) -> str | None:
        return None

    async def run_task(self, ctx: TaskContext) -> TaskOutcome:
        raise NotImplementedError


@dataclass
class _Running:
    ctx: TaskContext
    task: asyncio.Task[TaskResult]


class AdapterServer:
    def __init__(self, adapter: Adapter, peer: Peer) -> None:
        self.adapter = adapter
        self.peer = peer
        self.env = Environment.from_process(os.environ)
        self.agent_id = ""
        self.config: dict[str, Any] = {}
        self.started = time.monotonic()
        self.stopping = False
        self.done = asyncio.Event()
        self.running: dict[str, _Running] = {}
        self.results: dict[str, TaskResult] = {}
        self.metrics_usage = Usage()
        self.counts = {"started": 0, "ok": 0, "failed": 0, "cancelled": 0}
        self._capacity = max(1, adapter.max_concurrent_tasks)
        routes: dict[str, Any] = {
            "agent.initialize": self._initialize,
            "agent.status": self._status,
            "agent.shutdown": self._shutdown,
            "task.assign": self._assign,
            "task.cancel": self._cancel,
            "task.status": self._task_status,
            "task.result": self._task_result,
            "env.switch": self._env_switch,
            "env.snapshot": self._env_snapshot,
            "env.rollback": self._env_rollback,
            "metrics.query": self._metrics,
        }
        for method, handler in routes.items():
            peer.on_request(method, handler)

    # -- agent.* ------------------------------------------------------------------

    async def _initialize(self, params: Params) -> InitializeResult:
        init = InitializeParams.model_validate(params or {})
        self.agent_id = init.agent_id
        self.config = init.config
        await self.adapter.setup(init)
        _watch_parent(init.parent_pid, self.done)
        return InitializeResult(
            agent=AgentInfo(name=self.adapter.name, version=self.adapter.version),
            capabilities=Capabilities(
                max_concurrent_tasks=self._capacity,
                resume=self.adapter.supports_resume,
                cli=self.adapter.cli_info(),
            ),
            pid=os.getpid(),
        )

    async def _status(self, params: Params) -> StatusResult:
        state = "stopping" if self.stopping else ("busy" if self.running else "ready")
        return StatusResult(
            state=state,
            running_tasks=list(self.running),
            completed_tasks=len(self.results),
            uptime_s=time.monotonic() - self.started,
            preset=self.env.preset,
        )

    async def _shutdown(self, params: Params) -> ShutdownResult:
        ShutdownParams.model_validate(params or {})
        await self.stop()
        return ShutdownResult()

    async def stop(self) -> None:
        """Cancel running tasks, wait (bounded) for them to clean up, then finish."""
        self.stopping = True
        tasks = [r.task for r in self.running.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)
        # Let the shutdown reply go out before the loop ends.
        asyncio.get_running_loop().call_soon(self.done.set)

    # -- task.* -------------------------------------------------------------------

    async def _assign(self, params: Params) -> TaskResult:
        assign = AssignParams.model_validate(params or {})
        if self.stopping:
            raise MethodError(codes.SHUTTING_DOWN, "the agent is shutting down")
        if assign.task_id in self.running or assign.task_id in self.results:
            raise MethodError(codes.TASK_EXISTS, f"task {assign.task_id!r} already exists")
        if len(self.running) >= self._capacity:
            raise MethodError(
                codes.AGENT_BUSY, f"the agent runs at most {self._capacity} task(s) at once"
            )
        ctx = TaskContext(
            params=assign,
            env=dict(self.env.env),
            preset=self.env.preset,
            agent_id=self.agent_id,
            config=self.config,
            _server=self,
        )
        task = asyncio.get_running_loop().create_task(self._run(ctx))
        self.running[assign.task_id] = _Running(ctx, task)
        self.counts["started"] += 1
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self.running.pop(assign.task_id, None)

    async def _run(self, ctx: TaskContext) -> TaskResult:
        status = "ok"
        output = ""
        error: str | None = None
        outcome = TaskOutcome(output="")
        try:
            if ctx.params.timeout_s is not None:
                async with asyncio.timeout(ctx.params.timeout_s):
                    outcome = await self.adapter.run_task(ctx)
            else:
                outcome = await self.adapter.run_task(ctx)
            output = outcome.output
        except TaskFailed as exc:
            status, error, output = "failed", _one_line(exc.message), exc.output
        except TimeoutError:
            status, error = "failed", f"timed out after {ctx.params.timeout_s:g}s"
        except asyncio.CancelledError:
            status, error = "cancelled", "cancelled"
        except Exception as exc:
            log.exception("task %s failed", ctx.task_id)
            status, error = "failed", _one_line(f"{exc.__class__.__name__}: {exc}")
        result = TaskResult(
            task_id=ctx.task_id,
            status=status,
            output=output,
            error=error,
            usage=outcome.usage if outcome.usage is not None else ctx.usage,
            cost_usd=outcome.cost_usd,
            model=outcome.model,
            session_id=outcome.session_id,
            duration_s=time.monotonic() - ctx.started,
        )
        self.counts[status] += 1
        self._keep(result)
        self.running.pop(ctx.task_id, None)
        return result

    def _keep(self, result: TaskResult) -> None:
        self.results[result.task_id] = result
        while len(self.results) > MAX_KEPT_RESULTS:
            self.results.pop(next(iter(self.results)))

    async def _cancel(self, params: Params) -> CancelResult:
        ref = CancelParams.model_validate(params or {})
        running = self.running.get(ref.task_id)
        if running is None:
            if ref.task_id in self.results:
                return CancelResult(task_id=ref.task_id, cancelled=False)
            raise MethodError(codes.UNKNOWN_TASK, f"no task {ref.task_id!r}")
        running.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({running.task}, timeout=SHUTDOWN_GRACE_S)
        return CancelResult(task_id=ref.task_id, cancelled=True)

    async def _task_status(self, params: Params) -> TaskStatusResult:
        ref = TaskRef.model_validate(params or {})
        running = self.running.get(ref.task_id)
        if running is not None:
            return TaskStatusResult(
                task_id=ref.task_id,
                state="running",
                elapsed_s=time.monotonic() - running.ctx.started,
                last_progress=running.ctx.last_progress,
            )
        result = self.results.get(ref.task_id)
        if result is None:
            raise MethodError(codes.UNKNOWN_TASK, f"no task {ref.task_id!r}")
        return TaskStatusResult(
            task_id=ref.task_id, state=result.status, elapsed_s=result.duration_s
        )

    async def _task_result(self, params: Params) -> TaskResult:
        ref = TaskRef.model_validate(params or {})
        result = self.results.get(ref.task_id)
        if result is None:
            code = codes.UNKNOWN_TASK
            detail = "is still running" if ref.task_id in self.running else "is unknown"
            raise MethodError(code, f"task {ref.task_id!r} {detail}")
        return result

    # -- env.* --------------------------------------------------------------------

    async def _env_switch(self, params: Params) -> EnvState:
        return self.env.switch(EnvSwitchParams.model_validate(params or {}))

    async def _env_snapshot(self, params: Params) -> SnapshotResult:
        snapshot_id = self.env.snapshot()
        return SnapshotResult(snapshot_id=snapshot_id, state=self.env.state())

    async def _env_rollback(self, params: Params) -> EnvState:
        return self.env.rollback(RollbackParams.model_validate(params or {}).snapshot_id)

    async def _metrics(self, params: Params) -> Metrics:
        return Metrics(
            tasks_started=self.counts["started"],
            tasks_ok=self.counts["ok"],
            tasks_failed=self.counts["failed"],
            tasks_cancelled=self.counts["cancelled"],
            running=len(self.running),
            usage=self.metrics_usage,
            uptime_s=time.monotonic() - self.started,
        )


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


def _watch_parent(parent_pid: int, done: asyncio.Event) -> None:
    """Set `done` when the parent process exits: an event (pidfd), not a poll."""
    if parent_pid <= 1 or not hasattr(os, "pidfd_open"):
        return
    try:
        fd = os.pidfd_open(parent_pid)
    except OSError:
        # Already gone (or not visible): the stdin EOF will end us anyway.
        done.set()
        return
    loop = asyncio.get_running_loop()

    def parent_exited() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        log.warning("parent process %d is gone; exiting", parent_pid)
        done.set()

    loop.add_reader(fd, parent_exited)


async def _serve(adapter: Adapter) -> None:
    reader, writer = await open_stdio()
    peer = Peer(reader, writer, name=adapter.name)
    server = AdapterServer(adapter, peer)
    loop = asyncio.get_running_loop()
    # SIGTERM (the supervisor's second step, and the parent-death signal) ends us
    # cleanly: running tasks are cancelled so they can kill the CLIs they started.
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        loop.add_signal_handler(signal.SIGTERM, server.done.set)
    peer.start()
    closed = asyncio.create_task(peer.closed.wait())
    done = asyncio.create_task(server.done.wait())
    await asyncio.wait({closed, done}, return_when=asyncio.FIRST_COMPLETED)
    if not server.stopping:
        await server.stop()
    with contextlib.suppress(Exception):
        await writer.drain()
    await peer.close("adapter exiting")
    for task in (closed, done):
        task.cancel()


def serve(adapter: Adapter) -> None:
    """Run `adapter` on stdin/stdout until stdin closes, shutdown, or the parent exits."""
    logging.basicConfig(
        level=os.environ.get("AISWITCH_LOG_LEVEL", "INFO").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(adapter))
