"""The coordinator: a run of one task over several agents, parallel or sequential.

Contract:
- Everything that can be checked before a process starts is checked first (empty
  task, unknown agent, missing program, unknown preset, unresolved reference, quota):
  such errors raise and start nothing.
- Parallel: every agent gets the same task at once. Sequential: each agent gets the
  task plus the previous agent's output, through a handoff template (placeholders
  `{task}`, `{previous_output}`, `{previous_agent}`; replaced literally, so braces in
  a prompt are safe). A failed step hands on the last successful output. Steps of the
  same agent reuse its child process: the next step's preset is applied with
  `env.switch` (validated before it is sent) instead of a restart.
- A child that fails to start, crashes, or runs past the timeout fails only its own
  result; the run returns partial results. Every usage notification goes to the
  ledger as it arrives, priced (`aiswitch.tokens.pricing`).
- A budget (`budget_usd`, `budget_tokens`) is checked on every usage notification;
  when the run crosses it, running tasks get `task.cancel`, no further step starts,
  and the run ends `budget_exceeded` with what was spent recorded.
- Cancelling `run()` (Ctrl-C) cancels the tasks, stops every child, records the run
  as `cancelled`, and re-raises; the recorded run is in `self.run_result`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiswitch.agents import AgentDef, AgentRegistry
from aiswitch.coordinator.results import AgentResult, RunMode, RunResult
from aiswitch.coordinator.specs import AgentSpec, agent_ids
from aiswitch.errors import AgentStartError, UsageError
from aiswitch.home import Home
from aiswitch.presets.resolve import PresetResolver, ResolvedPreset
from aiswitch.protocol.models import AssignParams, EnvState, ProgressParams, UsageParams
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


QuotaCheck = Callable[[str, str | None], None]


@dataclass
class RunRequest:
    mode: RunMode
    specs: list[AgentSpec]
    prompt: str
    timeout_s: float | None = None
    cwd: str | None = None
    handoff_template: str = DEFAULT_HANDOFF_TEMPLATE
    task_options: dict[str, Any] = field(default_factory=dict)
    budget_usd: float | None = None
    budget_tokens: int | None = None
    permissions: Literal["read-only", "edit", "full"] | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class RunEvent:
    kind: Literal["status", "progress", "usage"]
    result: AgentResult
    text: str | None = None


@dataclass
class Planned:
    """One agent of a run, checked and ready to start (from `plan`)."""

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
        resolve_preset: PresetResolver | None = None,
        parent_env: Mapping[str, str] | None = None,
        on_event: Callable[[RunEvent], None] | None = None,
        check_quota: QuotaCheck | None = None,
    ) -> None:
        self.home = home or Home.current()
        self.store = StateStore(self.home)
        self.registry = registry or AgentRegistry.load(self.home)
        self.parent_env = dict(os.environ if parent_env is None else parent_env)
        if resolve_preset is None:
            # The preset store's resolution order (spec, shell, agent default, global).
            from aiswitch.presets.resolve import run_resolver

            resolve_preset = run_resolver(self.home, self.parent_env)
        self.resolve_preset = resolve_preset
        self.on_event = on_event
        self.check_quota = check_quota
        self.runs = RunStore(self.store)
        self.table = ProcessTable(self.store)
        self.run_result: RunResult | None = None
        self._slots: dict[str, Planned] = {}
        self._budget_hit = asyncio.Event()
        self._request: RunRequest | None = None

    # -- planning -----------------------------------------------------------------

    def plan(self, request: RunRequest) -> list[Planned]:
        """Check everything that can be checked before a process starts."""
        if not request.prompt.strip():
            raise UsageError(
                "the task is empty", hint="pass the task as an argument, or - for stdin"
            )
        if not request.specs:
            raise UsageError("no agents given", hint="use --agent, --parallel or --sequential")
        if request.timeout_s is not None and request.timeout_s <= 0:
            raise UsageError("--timeout must be a positive number of seconds")
        if request.budget_usd is not None and request.budget_usd <= 0:
            raise UsageError("--budget-usd must be a positive amount")
        if request.budget_tokens is not None and request.budget_tokens <= 0:
            raise UsageError("--budget-tokens must be a positive number")
        if request.session_id is not None and len(request.specs) != 1:
            raise UsageError("--resume continues one agent's session; use it with --agent")
        if request.cwd is not None and not Path(request.cwd).is_dir():
            raise UsageError(f"--cwd {request.cwd!r} is not a directory")
        slots = []
        for spec, agent_id in zip(request.specs, agent_ids(request.specs), strict=True):
            agent = self.registry.get(spec.name)
            agent.check_available()
            preset = self.resolve_preset(spec.preset, agent)
            if self.check_quota is not None:
                self.check_quota(spec.name, preset.name)
            result = AgentResult(
                agent=spec.name, agent_id=agent_id, preset=preset.name, task_id=agent_id
            )
            slots.append(Planned(spec, agent, preset, result))
        return slots

    # -- running ------------------------------------------------------------------

    async def run(self, request: RunRequest, planned: list[Planned] | None = None) -> RunResult:
        """Run `request`; `planned` is `plan(request)`'s result when the caller needed it
        first (to show the agents), so nothing is resolved twice."""
        slots = self.plan(request) if planned is None else planned
        self._request = request
        run = RunResult(
            run_id=new_run_id(),
            mode=request.mode,
            prompt=request.prompt,
            cwd=request.cwd,
            results=[s.result for s in slots],
        )
        for index, slot in enumerate(slots, start=1):
            slot.result.task_id = f"{run.run_id}/{index}"
            self._slots[slot.result.task_id] = slot
        self.run_result = run
        await asyncio.to_thread(self._begin, run)
        from aiswitch.tokens.pricing import record_pricer

        pricer = record_pricer(self.home, {s.preset.name: s.preset.prices for s in slots})
        ledger = LedgerWriter(self.store, price=pricer)
        procs: dict[str, AgentProcess] = {}
        try:
            if request.mode == "parallel":
                await asyncio.gather(
                    *(self._run_slot(run, s, request.prompt, ledger, procs, False) for s in slots)
                )
            else:
                await self._sequential(run, slots, ledger, procs)
        except asyncio.CancelledError:
            run.status = "cancelled"
            for slot in slots:
                if slot.result.status not in ("ok", "failed", "timeout"):
                    slot.result.status = "cancelled"
                    slot.result.error = slot.result.error or "cancelled"
            raise
        finally:
            await self._stop_all(run, procs)
            await ledger.close()
            if self._budget_hit.is_set() and run.status != "cancelled":
                run.status = "budget_exceeded"
            run.settle()
            await asyncio.to_thread(
                self.runs.record, run.run_id, run.json_document(), run.index_entry()
            )
        return run

    def _begin(self, run: RunResult) -> None:
        self.table.reap_orphans()
        self.runs.record(run.run_id, run.json_document(), run.index_entry())

    async def _sequential(
        self,
        run: RunResult,
        slots: list[Planned],
        ledger: LedgerWriter,
        procs: dict[str, AgentProcess],
    ) -> None:
        assert self._request is not None
        request = self._request
        previous: AgentResult | None = None
        for slot in slots:
            if self._budget_hit.is_set():
                slot.result.status = "cancelled"
                slot.result.error = "not started: the run's budget was exceeded"
                self._emit(RunEvent("status", slot.result))
                continue
            prompt = request.prompt
            if previous is not None:
                prompt = (
                    request.handoff_template.replace("{previous_output}", previous.output)
                    .replace("{previous_agent}", previous.agent_id)
                    .replace("{task}", request.prompt)
                )
            await self._run_slot(run, slot, prompt, ledger, procs, True)
            if slot.result.status == "ok":
                previous = slot.result

    def _child_env(self, run: RunResult, slot: Planned) -> dict[str, str]:
        return build_child_env(
            ChildEnvRequest(
                parent=self.parent_env,
                agent_env=slot.agent.env,
                preset=slot.preset.name,
                preset_vars=slot.preset.variables,
                preset_unset=slot.preset.unset,
                preset_billing=slot.preset.billing,
                agent_id=slot.result.agent_id,
                run_id=run.run_id,
                home=str(self.home.root),
            )
        )

    async def _run_slot(
        self,
        run: RunResult,
        slot: Planned,
        prompt: str,
        ledger: LedgerWriter,
        procs: dict[str, AgentProcess],
        reuse: bool,
    ) -> None:
        result = slot.result
        slot.started = time.monotonic()
        self._status(slot, "starting")
        env = self._child_env(run, slot)
        proc = procs.get(slot.agent.name) if reuse else None
        try:
            if proc is not None and proc.returncode is None:
                await proc.switch_env(env, slot.preset.name)
            else:
                proc = AgentProcess(
                    slot.agent,
                    result.agent_id,
                    home=self.home,
                    run_id=run.run_id,
                    env=env,
                    cwd=self._cwd(),
                    on_progress=self._progress,
                    on_usage=lambda u: self._usage(run, u, ledger),
                )
                procs[slot.agent.name if reuse else result.agent_id] = proc
                try:
                    await proc.start()
                except AgentStartError as exc:
                    result.status, result.error = "failed", exc.message
                    return
                key = self._table_key(run, proc)
                await asyncio.to_thread(self.table.add, key, proc.table_entry())
            self._status(slot, "running")
            await self._assign(proc, slot, prompt)
        except asyncio.CancelledError:
            if proc is not None:
                await proc.cancel(result.task_id, "run cancelled")
            raise
        except Exception as exc:
            # An RPC failure outside the task itself (a refused env.switch, a dead pipe):
            # this agent fails, the run goes on.
            from aiswitch.errors import AiswitchError

            if not isinstance(exc, AiswitchError):
                raise
            result.status, result.error = "failed", exc.one_line()
        finally:
            if not reuse and proc is not None:
                await self._stop(run, proc)
            result.duration_s = round(time.monotonic() - slot.started, 3)
            await ledger.flush()
            if result.status in ("starting", "running"):
                result.status = "cancelled"
            self._emit(RunEvent("status", result))
            await asyncio.to_thread(self.runs.save, run.run_id, run.json_document())

    def _cwd(self) -> str | None:
        return self._request.cwd if self._request else None

    def _table_key(self, run: RunResult, proc: AgentProcess) -> str:
        return f"{run.run_id}/{proc.agent_id}"

    async def _stop(self, run: RunResult, proc: AgentProcess) -> None:
        await proc.stop("task finished")
        if proc.create_time is not None:
            await asyncio.to_thread(self.table.remove, self._table_key(run, proc))

    async def _stop_all(self, run: RunResult, procs: dict[str, AgentProcess]) -> None:
        stops = [self._stop(run, p) for p in procs.values()]
        if stops:
            await asyncio.gather(*stops)

    async def _assign(self, proc: AgentProcess, slot: Planned, prompt: str) -> None:
        assert self._request is not None
        request = self._request
        result = slot.result
        params = AssignParams(
            task_id=result.task_id,
            prompt=prompt,
            cwd=request.cwd,
            timeout_s=request.timeout_s,
            permissions=request.permissions,
            session_id=request.session_id,
            options=request.task_options,
        )
        assign = asyncio.create_task(proc.assign(params))
        budget = asyncio.create_task(self._budget_hit.wait())
        try:
            async with asyncio.timeout(request.timeout_s):
                await asyncio.wait({assign, budget}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            await proc.cancel(result.task_id, "timeout")
            await self._settle(assign)
            result.status = "timeout"
            result.error = f"timed out after {request.timeout_s:g}s"
            return
        except asyncio.CancelledError:
            assign.cancel()
            raise
        finally:
            budget.cancel()
        if not assign.done():
            await proc.cancel(result.task_id, "budget exceeded")
            reply = await self._settle(assign)
            if reply is None or reply.status == "cancelled":
                result.status = "cancelled"
                result.error = "cancelled: the run's budget was exceeded"
                if reply is not None:
                    result.output = reply.output
                return
        else:
            reply = assign.result()
        # A task that ended before the cancel reached it keeps its own outcome.
        result.status = reply.status
        result.output = reply.output
        result.error = reply.error
        if reply.usage.total_tokens:
            result.usage = reply.usage
        result.model = reply.model or result.model
        result.session_id = reply.session_id or result.session_id
        if reply.cost_usd is not None:
            result.cost_usd = reply.cost_usd
        # A timeout enforced by the adapter itself is still a timeout.
        if reply.status == "failed" and reply.error and reply.error.startswith("timed out"):
            result.status = "timeout"

    async def _settle(self, assign: asyncio.Task[Any]) -> Any:
        """The task's reply after a cancel, if it comes within the cancel bound."""
        from aiswitch.supervisor.process import CANCEL_REPLY_TIMEOUT_S

        with contextlib.suppress(Exception):
            return await asyncio.wait_for(asyncio.shield(assign), CANCEL_REPLY_TIMEOUT_S)
        assign.cancel()
        return None

    # -- live agents ----------------------------------------------------------------

    async def switch_preset(self, proc: AgentProcess, preset: str | None) -> EnvState:
        """Give a running agent another preset from its next task on, without a restart.

        The preset is resolved first (unknown preset, unresolved reference: the error is
        raised and nothing is sent, so the agent keeps what it had)."""
        resolved = self.resolve_preset(preset, proc.agent) if preset else ResolvedPreset(None)
        target = build_child_env(
            ChildEnvRequest(
                parent=self.parent_env,
                agent_env=proc.agent.env,
                preset=resolved.name,
                preset_vars=resolved.variables,
                preset_unset=resolved.unset,
                preset_billing=resolved.billing,
                agent_id=proc.agent_id,
                run_id=proc.run_id,
                home=str(self.home.root),
            )
        )
        return await proc.switch_env(target, resolved.name)

    # -- notifications ------------------------------------------------------------

    def _progress(self, params: ProgressParams) -> None:
        slot = self._slots.get(params.task_id)
        if slot is not None:
            self._emit(RunEvent("progress", slot.result, params.text))

    def _usage(self, run: RunResult, params: UsageParams, ledger: LedgerWriter) -> None:
        slot = self._slots.get(params.task_id)
        if slot is None:
            return
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
            )
        )
        result.usage = result.usage + params.usage
        result.model = params.model or result.model
        result.session_id = params.session_id or result.session_id
        if record.cost_usd is not None:
            result.cost_usd = round((result.cost_usd or 0.0) + record.cost_usd, 8)
        self._check_budget(run)
        self._emit(RunEvent("usage", result))

    def _check_budget(self, run: RunResult) -> None:
        request = self._request
        if request is None or self._budget_hit.is_set():
            return
        run.totals()
        over_tokens = (
            request.budget_tokens is not None and run.usage.total_tokens >= request.budget_tokens
        )
        over_usd = (
            request.budget_usd is not None
            and run.cost_usd is not None
            and run.cost_usd >= request.budget_usd
        )
        if over_tokens or over_usd:
            self._budget_hit.set()

    def _status(self, slot: Planned, status: Any) -> None:
        slot.result.status = status
        self._emit(RunEvent("status", slot.result))

    def _emit(self, event: RunEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)
