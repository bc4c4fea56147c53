"""The coordinator: a run of one task over several agents, parallel or sequential.

Contract:
- Everything that can be checked before a process starts is checked first (empty
  task, unknown agent, missing CLI, unknown preset): such errors raise and start
  nothing.
- Parallel: every agent gets the same task at once. Sequential: each agent gets the
  task plus the previous agent's output, through a handoff template (placeholders
  `{task}`, `{previous_output}`, `{previous_agent}`; replaced literally, so braces in
  a prompt are safe). A failed step hands on the last successful output.
- A child that fails to start, crashes, or runs past the timeout fails only its own
  result; the run returns partial results. Every usage notification goes to the
  ledger as it arrives.
- Cancelling `run()` (Ctrl-C) cancels the tasks, stops every child, records the run
  as `cancelled`, and re-raises; the recorded run is in `self.run_result`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aiswitch.agents import AgentDef, AgentRegistry
from aiswitch.coordinator.results import AgentResult, RunMode, RunResult
from aiswitch.coordinator.specs import AgentSpec, agent_ids
from aiswitch.errors import AgentStartError, UsageError
from aiswitch.home import Home
from aiswitch.protocol.models import AssignParams, ProgressParams, UsageParams
from aiswitch.state.processes import ProcessTable
from aiswitch.state.runs import RunStore, new_run_id
from aiswitch.state.store import StateStore
from aiswitch.supervisor.env import ChildEnvRequest, build_child_env
from aiswitch.supervisor.process import AgentProcess
from aiswitch.tokens.ledger import LedgerWriter
from aiswitch.tokens.records import LedgerRecord

DEFAULT_HANDOFF_TEMPLATE = (
    "{task}\n\n--- Output of the previous agent ({previous_agent}) ---\n{previous_output}\n"
)


@dataclass(frozen=True)
class ResolvedPreset:
    name: str | None
    variables: Mapping[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()


class PresetResolver(Protocol):
    def __call__(self, spec: AgentSpec, agent: AgentDef) -> ResolvedPreset: ...


def builtin_resolver(spec: AgentSpec, agent: AgentDef) -> ResolvedPreset:
    """The core's resolver: only the spec's `@PRESET`, from the built-in presets."""
    if spec.preset is None:
        return ResolvedPreset(None)
    from aiswitch.errors import PresetError
    from aiswitch.presets.builtin import builtin_presets

    preset = builtin_presets().get(spec.preset)
    if preset is None:
        raise PresetError(f"unknown preset {spec.preset!r}")
    return ResolvedPreset(preset.name, dict(preset.variables), tuple(preset.unset))


@dataclass
class RunRequest:
    mode: RunMode
    specs: list[AgentSpec]
    prompt: str
    timeout_s: float | None = None
    cwd: str | None = None
    handoff_template: str = DEFAULT_HANDOFF_TEMPLATE
    task_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunEvent:
    kind: Literal["status", "progress", "usage"]
    result: AgentResult
    text: str | None = None


@dataclass
class _Slot:
    spec: AgentSpec
    agent: AgentDef
    preset: ResolvedPreset
    result: AgentResult
    started: float = 0.0


class Coordinator:
    def __init__(
        self,
        home: Home | None = None,
        *,
        registry: AgentRegistry | None = None,
        resolve_preset: PresetResolver = builtin_resolver,
        parent_env: Mapping[str, str] | None = None,
        on_event: Callable[[RunEvent], None] | None = None,
        price: Callable[[LedgerRecord], LedgerRecord] | None = None,
    ) -> None:
        self.home = home or Home.current()
        self.store = StateStore(self.home)
        self.registry = registry or AgentRegistry.load(self.home)
        self.resolve_preset = resolve_preset
        self.parent_env = dict(os.environ if parent_env is None else parent_env)
        self.on_event = on_event
        self.runs = RunStore(self.store)
        self.table = ProcessTable(self.store)
        self.price = price
        self.run_result: RunResult | None = None

    def plan(self, request: RunRequest) -> list[_Slot]:
        """Check everything that can be checked before a process starts."""
        if not request.prompt.strip():
            raise UsageError(
                "the task is empty", hint="pass the task as an argument, or - for stdin"
            )
        if not request.specs:
            raise UsageError("no agents given", hint="use --agent, --parallel or --sequential")
        if request.timeout_s is not None and request.timeout_s <= 0:
            raise UsageError("--timeout must be a positive number of seconds")
        if request.cwd is not None and not os.path.isdir(request.cwd):
            raise UsageError(f"--cwd {request.cwd!r} is not a directory")
        slots = []
        for spec, agent_id in zip(request.specs, agent_ids(request.specs), strict=True):
            agent = self.registry.get(spec.name)
            agent.check_available()
            preset = self.resolve_preset(spec, agent)
            result = AgentResult(
                agent=spec.name, agent_id=agent_id, preset=preset.name, task_id=agent_id
            )
            slots.append(_Slot(spec, agent, preset, result))
        return slots

    async def run(self, request: RunRequest) -> RunResult:
        slots = self.plan(request)
        run = RunResult(
            run_id=new_run_id(),
            mode=request.mode,
            prompt=request.prompt,
            cwd=request.cwd,
            results=[s.result for s in slots],
        )
        for index, slot in enumerate(slots, start=1):
            slot.result.task_id = f"{run.run_id}/{index}"
        self.run_result = run
        await asyncio.to_thread(self._begin, run)
        ledger = LedgerWriter(self.store, price=self.price)
        try:
            if request.mode == "parallel":
                await asyncio.gather(
                    *(self._run_slot(run, s, request.prompt, request, ledger) for s in slots)
                )
            else:
                await self._sequential(run, slots, request, ledger)
        except asyncio.CancelledError:
            run.status = "cancelled"
            for slot in slots:
                if slot.result.status not in ("ok", "failed", "timeout"):
                    slot.result.status = "cancelled"
                    slot.result.error = slot.result.error or "cancelled"
            raise
        finally:
            await ledger.close()
            run.settle()
            await asyncio.to_thread(self.runs.finished, run)
        return run

    def _begin(self, run: RunResult) -> None:
        self.table.reap_orphans()
        self.runs.started(run)

    async def _sequential(
        self, run: RunResult, slots: list[_Slot], request: RunRequest, ledger: LedgerWriter
    ) -> None:
        previous: AgentResult | None = None
        for slot in slots:
            prompt = request.prompt
            if previous is not None:
                prompt = (
                    request.handoff_template.replace("{previous_output}", previous.output)
                    .replace("{previous_agent}", previous.agent_id)
                    .replace("{task}", request.prompt)
                )
            await self._run_slot(run, slot, prompt, request, ledger)
            if slot.result.status == "ok":
                previous = slot.result

    async def _run_slot(
        self,
        run: RunResult,
        slot: _Slot,
        prompt: str,
        request: RunRequest,
        ledger: LedgerWriter,
    ) -> None:
        result = slot.result
        slot.started = time.monotonic()
        self._status(run, slot, "starting")
        env = build_child_env(
            ChildEnvRequest(
                parent=self.parent_env,
                agent_env=slot.agent.env,
                preset=slot.preset.name,
                preset_vars=slot.preset.variables,
                preset_unset=slot.preset.unset,
                agent_id=result.agent_id,
                run_id=run.run_id,
                home=str(self.home.root),
            )
        )
        proc = AgentProcess(
            slot.agent,
            result.agent_id,
            home=self.home,
            run_id=run.run_id,
            env=env,
            cwd=request.cwd,
            on_progress=lambda p: self._progress(slot, p),
            on_usage=lambda u: self._usage(run, slot, u, ledger),
        )
        key = f"{run.run_id}/{result.agent_id}"
        try:
            try:
                await proc.start()
            except AgentStartError as exc:
                result.status, result.error = "failed", exc.message
                return
            await asyncio.to_thread(self.table.add, key, proc.table_entry())
            self._status(run, slot, "running")
            await self._assign(proc, slot, prompt, request)
        except asyncio.CancelledError:
            await proc.cancel(result.task_id, "run cancelled")
            raise
        finally:
            await proc.stop("task finished")
            if proc.pid is not None:
                await asyncio.to_thread(self.table.remove, key)
            result.duration_s = round(time.monotonic() - slot.started, 3)
            await ledger.flush()
            if result.status in ("starting", "running"):
                result.status = "cancelled"
            self._emit(RunEvent("status", result))
            await asyncio.to_thread(self.runs.save, run)

    async def _assign(
        self, proc: AgentProcess, slot: _Slot, prompt: str, request: RunRequest
    ) -> None:
        result = slot.result
        params = AssignParams(
            task_id=result.task_id,
            prompt=prompt,
            cwd=request.cwd,
            timeout_s=request.timeout_s,
            options=request.task_options,
        )
        try:
            async with asyncio.timeout(request.timeout_s):
                reply = await proc.assign(params)
        except TimeoutError:
            await proc.cancel(result.task_id, "timeout")
            result.status = "timeout"
            result.error = f"timed out after {request.timeout_s:g}s"
            return
        result.status = reply.status
        result.output = reply.output
        result.error = reply.error
        if reply.usage.total_tokens:
            result.usage = reply.usage
        result.model = reply.model or result.model
        result.session_id = reply.session_id or result.session_id
        if reply.cost_usd is not None:
            result.cost_usd = reply.cost_usd
        # A timeout reported by the adapter itself is still a timeout.
        if reply.status == "failed" and reply.error and reply.error.startswith("timed out"):
            result.status = "timeout"

    # -- notifications ----------------------------------------------------------------

    def _progress(self, slot: _Slot, params: ProgressParams) -> None:
        self._emit(RunEvent("progress", slot.result, params.text))

    def _usage(
        self, run: RunResult, slot: _Slot, params: UsageParams, ledger: LedgerWriter
    ) -> None:
        result = slot.result
        record = ledger.add(
            LedgerRecord(
                run_id=run.run_id,
                task_id=result.task_id,
                agent=result.agent,
                agent_id=result.agent_id,
                preset=result.preset,
                provider=params.provider,
                model=params.model,
                session_id=params.session_id,
                message_id=params.message_id,
                request_id=params.request_id,
                input_tokens=params.usage.input_tokens,
                output_tokens=params.usage.output_tokens,
                cache_read_tokens=params.usage.cache_read_tokens,
                cache_write_tokens=params.usage.cache_write_tokens,
                reasoning_tokens=params.usage.reasoning_tokens,
                cost_usd=params.cost_usd,
                cost_source="reported" if params.cost_usd is not None else "unpriced",
            )
        )
        result.usage = result.usage + params.usage
        result.model = params.model or result.model
        result.session_id = params.session_id or result.session_id
        if record.cost_usd is not None:
            result.cost_usd = round((result.cost_usd or 0.0) + record.cost_usd, 6)
        self._emit(RunEvent("usage", result))

    def _status(self, run: RunResult, slot: _Slot, status: Any) -> None:
        slot.result.status = status
        self._emit(RunEvent("status", slot.result))

    def _emit(self, event: RunEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)
