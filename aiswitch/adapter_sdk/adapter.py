"""What an adapter implements and what its tasks get: `Adapter`, `TaskContext`,
`TaskOutcome`, `TaskFailed` (the contract is `aiswitch.adapter_sdk.server`'s, which
serves an adapter over stdio).

A task's context reports progress and usage through the server that runs it: usage is
on the pipe by the end of the loop turn it was reported in, in one write with the task's
answer when that follows in the same turn (the parent appends it to its ledger on
arrival), as
`task.progress` and `tokens.usage` notifications written without pydantic whenever every
value has its field's exact type (`aiswitch.adapter_sdk.wire`).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiswitch.adapter_sdk.wire import NO_USAGE, model_usage, progress_params, usage_params
from aiswitch.protocol import names
from aiswitch.rpc.errors import ConnectionClosedError

if TYPE_CHECKING:
    # Pydantic models, imported where used (the server's module docstring says why).
    from aiswitch.adapter_sdk.server import AdapterServer
    from aiswitch.protocol.models import AssignParams, InitializeParams
    from aiswitch.tokens.usage import Usage


class TaskFailed(Exception):
    """Raise from `run_task` to fail the task with this (wire-safe) message."""

    def __init__(
        self,
        message: str,
        *,
        output: str = "",
        usage: Usage | None = None,
        provider_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.output = output
        self.usage = usage
        # The HTTP status the provider refused the task with (429, 5xx), when known.
        self.provider_status = provider_status


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
    # No model until one is asked for (a `LightUsage` stands in for it).
    usage: Usage = field(default_factory=lambda: NO_USAGE)
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

    async def progress(self, text: str, kind: str = "text", usage: Usage | None = None) -> None:
        """Send one `task.progress`. `usage`: the task's running totals so far as its CLI
        shows them, provisional (shown while it runs, never recorded: `report_usage`
        records); with `text` empty, a report of those alone."""
        if text:
            self.last_progress = text
        params: Any = progress_params(self.task_id, kind, text, usage)
        if params is None:
            from aiswitch.protocol.models import ProgressParams

            params = ProgressParams(
                task_id=self.task_id,
                kind=kind,
                text=text,
                usage=None if usage is None else model_usage(usage),
            )
        with contextlib.suppress(ConnectionClosedError):
            await self._server.peer.notify(names.PROGRESS, params)

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
        requests: int = 1,
    ) -> None:
        """Send one `tokens.usage` event (the parent appends each to its ledger).
        `requests`: how many API requests `usage` covers (see `UsageParams.requests`)."""
        # Most tasks report once: their first report is their usage (no model to build).
        self.usage = usage if self.usage.is_empty else self.usage + usage
        self._server.add_metrics_usage(usage)
        params: Any = usage_params(
            self.task_id,
            usage,
            model,
            provider,
            cost_usd,
            session_id,
            message_id,
            request_id,
            requests,
        )
        if params is None:
            from aiswitch.protocol.models import UsageParams

            params = UsageParams(
                task_id=self.task_id,
                usage=model_usage(usage),
                model=model,
                provider=provider,
                cost_usd=cost_usd,
                session_id=session_id,
                message_id=message_id,
                request_id=request_id,
                requests=requests,
            )
        with contextlib.suppress(ConnectionClosedError):
            await self._server.peer.notify(
                names.USAGE,
                params,
                # Usage is money: on the pipe by the end of this loop turn (before this
                # process waits on anything; the parent writes it to the ledger on
                # arrival), in one write with the task's answer when that follows in the
                # same turn, as it mostly does: a pipe write is what a task costs most.
                hold=True,
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
    # Capabilities advertised in agent.initialize, for plans' `capability:` routing.
    provides: tuple[str, ...] = ()
    # Send `metrics.report` (the `metrics.query` figures) as each task ends, before its
    # reply: the parent merges the latest into `state/metrics.json`.
    report_metrics = False

    async def setup(self, params: InitializeParams) -> None:
        """Called once at `agent.initialize`; raise `MethodError(CLI_UNAVAILABLE, …)`
        when the underlying CLI cannot be used. `params` has the fields of
        `InitializeParams` (for a well-formed handshake it is a view that builds the
        model only if something other than its fields is asked of it)."""

    def cli_info(self) -> str | None:
        return None

    async def run_task(self, ctx: TaskContext) -> TaskOutcome:
        raise NotImplementedError
