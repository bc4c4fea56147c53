"""The ledger records a run makes of the usage its agents report.

Contract: `UsageRecords(run_id)` builds one `LedgerRecord` per `tokens.usage` notification:
`for_attempt` for usage of a task's attempt (its task id, attempt number, agent, preset,
the workspace branch when there is one), `stray` for usage whose task id no attempt of the
run owns (recorded against the run). Each record carries the base URL host its requests
went to (the lane's preset, else its agent's env, else the parent's environment; the CLI's
vendor when none sets one; never a key), worked out once per lane, and the run's caller
(the MCP client that asked for it, when one did).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aiswitch.tokens.records import LedgerRecord

if TYPE_CHECKING:
    from aiswitch.coordinator.results import AgentResult
    from aiswitch.coordinator.tasks import Lane
    from aiswitch.protocol.models import UsageParams


class UsageRecords:
    def __init__(self, run_id: str, *, caller: str | None = None) -> None:
        self.run_id = run_id
        self.caller = caller
        self._hosts: dict[str, str | None] = {}

    def for_attempt(
        self,
        result: AgentResult,
        attempt: int,
        lane: Lane,
        params: UsageParams,
        *,
        branch: str | None = None,
    ) -> LedgerRecord:
        return self._record(
            result.task_id,
            result.agent,
            result.agent_id,
            result.preset,
            attempt,
            params,
            host=self._host(lane),
            branch=branch,
        )

    def stray(self, handle: Any, params: UsageParams) -> LedgerRecord:
        from aiswitch.presets.hosts import base_url_host

        host = base_url_host(handle.agent.name, handle.env)
        return self._record(
            None, handle.agent.name, handle.agent_id, handle.preset, None, params, host=host
        )

    def _host(self, lane: Lane) -> str | None:
        key = lane.key
        if key not in self._hosts:
            from aiswitch.presets.hosts import base_url_host

            self._hosts[key] = base_url_host(
                lane.agent.name, lane.preset.variables, lane.agent.env or {}, os.environ
            )
        return self._hosts[key]

    def _record(
        self,
        task_id: str | None,
        agent: str,
        agent_id: str,
        preset: str | None,
        attempt: int | None,
        params: UsageParams,
        *,
        host: str | None = None,
        branch: str | None = None,
    ) -> LedgerRecord:
        return LedgerRecord(
            host=host,
            branch=branch,
            caller=self.caller,
            run_id=self.run_id,
            task_id=task_id,
            attempt=attempt,
            agent=agent,
            agent_id=agent_id,
            preset=preset,
            provider=params.provider,
            model=params.model,
            session_id=params.session_id,
            message_id=params.message_id,
            request_id=params.request_id,
            requests=params.requests,
            input_tokens=params.usage.input_tokens,
            output_tokens=params.usage.output_tokens,
            cache_read_tokens=params.usage.cache_read_tokens,
            cache_write_tokens=params.usage.cache_write_tokens,
            reasoning_tokens=params.usage.reasoning_tokens,
            cost_usd=params.cost_usd,
        )
