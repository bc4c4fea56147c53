"""The adapter side of the protocol: an `Adapter` served over this process's stdio.

Contract: `run_task` returns a `TaskOutcome` (ok), raises `TaskFailed` (failed with its
message), or is cancelled (`task.cancel`, shutdown, stdin EOF, parent gone). Any other
exception fails the task with a one-line message; its traceback goes to the log only.

Start-up: `agent.initialize` is answered before any pydantic model is built (building
the protocol's models costs more than the rest of an adapter's start); the hand-made
checks, views and replies are `aiswitch.adapter_sdk.wire`'s. Well-formed
`InitializeParams` are checked by hand, with exactly the model's checks, and
`Adapter.setup` gets a view of them with the same fields (any other attribute, such as
`model_dump`, builds the model on first use); the reply is written as the
`InitializeResult` model would write it. tests/test_handshake_fast_path.py holds both
to the models. Anything else goes through the models as before. `agent.shutdown` is
answered the same way.

Tasks take the same kind of path (tests/test_task_fast_path.py holds it to the models):
well-formed `AssignParams` are checked by hand and `run_task` gets an `AssignView`; the
`TaskResult` reply and the `task.progress` and `tokens.usage` notifications are written
as the models would write them (`model_dump(mode="json")`), whenever every value has its
field's exact type. A `Usage` may be a `LightUsage` (see `light_usage`): the five counts,
checked as the model checks them, standing in for the model. So an adapter whose task
path builds no model itself (the mock) never imports pydantic; anything unusual goes
through the models, loaded then. orjson is loaded once a process has run enough tasks
to win back its import (`ORJSON_AFTER_TASKS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from aiswitch.adapter_sdk.adapter import Adapter, TaskContext, TaskFailed, TaskOutcome
from aiswitch.adapter_sdk.environment import Environment
from aiswitch.adapter_sdk.wire import (
    NO_USAGE,
    SHUTDOWN_RESULT,
    AssignView,
    InitializeView,
    LightUsage,
    assign_view,
    initialize_result,
    initialize_view,
    light_usage,
    model_usage,
    shutdown_params_ok,
    task_result,
)
from aiswitch.protocol import names
from aiswitch.rpc import codes, messages
from aiswitch.rpc.errors import ConnectionClosedError, MethodError
from aiswitch.rpc.messages import Params
from aiswitch.rpc.peer import Peer
from aiswitch.rpc.stdio import stdio_peer

if TYPE_CHECKING:
    # Imported where used: they are pydantic models (see the module docstring).
    from aiswitch.protocol.models import (
        AssignParams,
        CancelResult,
        EnvState,
        InitializeParams,
        Metrics,
        SnapshotResult,
        StatusResult,
        TaskStatusResult,
    )
    from aiswitch.tokens.usage import Usage

# Finished results kept for `task.result`; older ones are forgotten first.
MAX_KEPT_RESULTS = 256
# After shutdown is asked for, running tasks get this long to clean up (kill CLIs).
SHUTDOWN_GRACE_S = 5.0
# An error message on the wire is one line of at most this many characters.
MAX_ERROR_CHARS = 2000
# orjson's import (~5-15 ms) is won back by its faster lines after about this many tasks;
# a process that runs one task never pays it.
ORJSON_AFTER_TASKS = 500

log = logging.getLogger("aiswitch.adapter")


@dataclass
class _Running:
    ctx: TaskContext
    task: asyncio.Task[Any]


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
        # Finished tasks' replies, as written (`TaskResult` in its JSON form).
        self.results: dict[str, dict[str, Any]] = {}
        self._metrics_usage: Usage = NO_USAGE
        # The counts of the `LightUsage` reports not yet in `_metrics_usage` (summed as
        # ints: a model or a `LightUsage` per report cost more than the rest of it).
        self._light_counts = [0, 0, 0, 0, 0]
        self.counts = {"started": 0, "ok": 0, "failed": 0, "cancelled": 0, "timeout": 0}
        self._capacity = max(1, adapter.max_concurrent_tasks)
        waiting: dict[str, Any] = {
            names.INITIALIZE: self._initialize,
            names.SHUTDOWN: self._shutdown,
            names.ASSIGN: self._assign,
            names.CANCEL: self._cancel,
        }
        # These never wait: they are answered as their request is read, with no task.
        immediate: dict[str, Any] = {
            names.STATUS: self._status,
            names.TASK_STATUS: self._task_status,
            names.TASK_RESULT: self._task_result,
            names.ENV_SWITCH: self._env_switch,
            names.ENV_SNAPSHOT: self._env_snapshot,
            names.ENV_ROLLBACK: self._env_rollback,
            names.METRICS_QUERY: self._metrics,
        }
        for method, handler in waiting.items():
            peer.on_request(method, handler)
        for method, handler in immediate.items():
            peer.on_request_inline(method, handler)

    @property
    def metrics_usage(self) -> Usage:
        """Usage of every task since start (a `LightUsage` while the tasks' are)."""
        counts = self._light_counts
        if any(counts):
            self._metrics_usage = self._metrics_usage + light_usage(*counts)
            self._light_counts = [0, 0, 0, 0, 0]
        return self._metrics_usage

    @metrics_usage.setter
    def metrics_usage(self, usage: Usage) -> None:
        self._metrics_usage = usage
        self._light_counts = [0, 0, 0, 0, 0]

    def add_metrics_usage(self, usage: Usage) -> None:
        """Count a task's reported usage in `metrics_usage`."""
        light: Any = usage  # a `LightUsage` stands in for the model (module docstring)
        if type(light) is LightUsage:
            counts = self._light_counts
            counts[0] += light.input_tokens
            counts[1] += light.output_tokens
            counts[2] += light.cache_read_tokens
            counts[3] += light.cache_write_tokens
            counts[4] += light.reasoning_tokens
        else:
            self.metrics_usage = self.metrics_usage + usage

    # -- agent.* ------------------------------------------------------------------

    async def _initialize(self, params: Params) -> dict[str, Any]:
        init: InitializeView | InitializeParams | None = initialize_view(params)
        if init is None:
            from aiswitch.protocol.models import InitializeParams

            init = InitializeParams.model_validate(params or {})
        self.agent_id = init.agent_id
        self.config = init.config
        # A view stands in for the model (module docstring).
        await self.adapter.setup(cast("InitializeParams", init))
        _watch_parent(init.parent_pid, self.done)
        return initialize_result(self.adapter, self._capacity, os.getpid())

    def _status(self, params: Params) -> StatusResult:
        from aiswitch.protocol.models import StatusResult

        state = "stopping" if self.stopping else ("busy" if self.running else "ready")
        return StatusResult(
            state=state,
            running_tasks=list(self.running),
            completed_tasks=len(self.results),
            uptime_s=time.monotonic() - self.started,
            preset=self.env.preset,
        )

    async def _shutdown(self, params: Params) -> dict[str, Any]:
        if not shutdown_params_ok(params):
            from aiswitch.protocol.models import ShutdownParams

            ShutdownParams.model_validate(params or {})
        await self.stop()
        return dict(SHUTDOWN_RESULT)

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

    async def _assign(self, params: Params) -> dict[str, Any]:
        assign: AssignView | AssignParams | None = assign_view(params)
        if assign is None:
            from aiswitch.protocol.models import AssignParams

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
            # A view stands in for the model (module docstring).
            params=cast("AssignParams", assign),
            env=dict(self.env.env),
            preset=self.env.preset,
            agent_id=self.agent_id,
            config=self.config,
            _server=self,
        )
        # The task runs in this request's own task (the peer made one for it): cancelling
        # that (`task.cancel`, shutdown) cancels `run_task`, and `_run` answers with the
        # outcome it was given, `cancelled` included.
        task = asyncio.current_task()
        assert task is not None
        self.running[assign.task_id] = _Running(ctx, task)
        self.counts["started"] += 1
        if self.counts["started"] == ORJSON_AFTER_TASKS:
            # After this turn: the import blocks the loop for a few milliseconds.
            asyncio.get_running_loop().call_soon(messages.use_orjson)
        try:
            return await self._run(ctx)
        finally:
            self.running.pop(assign.task_id, None)

    async def _run(self, ctx: TaskContext) -> dict[str, Any]:
        status = "ok"
        output = ""
        error: str | None = None
        provider_status: int | None = None
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
            provider_status = exc.provider_status
        except TimeoutError:
            # Typed, so that the parent never reads an outcome from its text.
            status, error = "timeout", f"timed out after {ctx.params.timeout_s:g}s"
        except asyncio.CancelledError:
            status, error = "cancelled", "cancelled"
        except Exception as exc:
            log.exception("task %s failed", ctx.task_id)
            status, error = "failed", _one_line(f"{exc.__class__.__name__}: {exc}")
            from aiswitch.adapter_sdk.rlimits import exception_note

            note = exception_note(exc)
            if note is not None:
                error = f"{error} ({note})"
        usage = outcome.usage if outcome.usage is not None else ctx.usage
        duration_s = time.monotonic() - ctx.started
        result = task_result(
            ctx.task_id,
            status,
            output,
            error,
            usage,
            outcome.cost_usd,
            outcome.model,
            outcome.session_id,
            duration_s,
            provider_status,
        )
        if result is None:
            from aiswitch.protocol.models import TaskResult

            result = TaskResult(
                task_id=ctx.task_id,
                status=status,
                output=output,
                error=error,
                usage=model_usage(usage),
                cost_usd=outcome.cost_usd,
                model=outcome.model,
                session_id=outcome.session_id,
                duration_s=duration_s,
                provider_status=provider_status,
            ).model_dump(mode="json")
        self.counts[status] += 1
        self._keep(result)
        self.running.pop(ctx.task_id, None)
        if self.adapter.report_metrics:
            with contextlib.suppress(ConnectionClosedError):
                await self.peer.notify(names.METRICS_REPORT, self._metrics(None))
        return result

    def _keep(self, result: dict[str, Any]) -> None:
        self.results[result["task_id"]] = result
        while len(self.results) > MAX_KEPT_RESULTS:
            self.results.pop(next(iter(self.results)))

    async def _cancel(self, params: Params) -> CancelResult:
        from aiswitch.protocol.models import CancelParams, CancelResult

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

    def _task_status(self, params: Params) -> TaskStatusResult:
        from aiswitch.protocol.models import TaskRef, TaskStatusResult

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
            task_id=ref.task_id, state=result["status"], elapsed_s=result["duration_s"]
        )

    def _task_result(self, params: Params) -> dict[str, Any]:
        from aiswitch.protocol.models import TaskRef

        ref = TaskRef.model_validate(params or {})
        result = self.results.get(ref.task_id)
        if result is None:
            code = codes.UNKNOWN_TASK
            detail = "is still running" if ref.task_id in self.running else "is unknown"
            raise MethodError(code, f"task {ref.task_id!r} {detail}")
        return result

    # -- env.* --------------------------------------------------------------------

    def _env_switch(self, params: Params) -> EnvState:
        from aiswitch.protocol.models import EnvSwitchParams

        return self.env.switch(EnvSwitchParams.model_validate(params or {}))

    def _env_snapshot(self, params: Params) -> SnapshotResult:
        from aiswitch.protocol.models import SnapshotResult

        snapshot_id = self.env.snapshot()
        return SnapshotResult(snapshot_id=snapshot_id, state=self.env.state())

    def _env_rollback(self, params: Params) -> EnvState:
        from aiswitch.protocol.models import RollbackParams

        return self.env.rollback(RollbackParams.model_validate(params or {}).snapshot_id)

    def _metrics(self, params: Params) -> Metrics:
        from aiswitch.protocol.models import Metrics

        return Metrics(
            tasks_started=self.counts["started"],
            tasks_ok=self.counts["ok"],
            tasks_failed=self.counts["failed"] + self.counts["timeout"],
            tasks_cancelled=self.counts["cancelled"],
            running=len(self.running),
            usage=model_usage(self.metrics_usage),
            uptime_s=time.monotonic() - self.started,
        )


# -- the handshake without pydantic ---------------------------------------------------


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
    # orjson is loaded once enough tasks have run, not before (module docstring).
    peer = await stdio_peer(adapter.name, fast_json=False)
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
        await peer.drain()
    await peer.close("adapter exiting")
    for task in (closed, done):
        task.cancel()
    # All that is left is garbage at exit, and the parent waits for this exit: the
    # interpreter's final collection need not walk the modules' objects (~15 ms).
    gc.freeze()


class RedactingFormatter(logging.Formatter):
    """The agent log's formatter: every record, traceback included, leaves through
    `masking.redact_text`, so the environment's secret values (remembered by
    `Environment`) and anything key-shaped never reach `logs/agents/*/*.log`."""

    def format(self, record: logging.LogRecord) -> str:
        from aiswitch.masking import redact_text

        return redact_text(super().format(record))


def serve(adapter: Adapter) -> None:
    """Run `adapter` on stdin/stdout until stdin closes, shutdown, or the parent exits."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(
        level=os.environ.get("AISWITCH_LOG_LEVEL", "INFO").upper(), handlers=[handler]
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(adapter))
