"""The ledger records a run makes of the usage its agents report.

Contract: `UsageRecords(run_id, price)` makes one ledger record per `tokens.usage`
notification, priced (`price`, `aiswitch.tokens.pricing.record_pricer`), as its line:
`for_attempt` for usage of a task's attempt (its task id, attempt number, agent, preset,
the workspace branch when there is one), `stray` for usage whose task id no attempt of the
run owns (recorded against the run). Each record carries the base URL host its requests
went to (the lane's preset, else its agent's env, else the parent's environment; the CLI's
vendor when none sets one; never a key), worked out once per lane, and the run's caller
(the MCP client that asked for it, when one did).

The line is made from the record's field values without building a `LedgerRecord`
(`aiswitch.tokens.ledger.values_line`, held to the model's own line by tests): every value
comes from the run or from the notification, which the protocol's `UsageParams` has checked
(counts in range, a finite cost), so the model would check nothing new. Where the fast
line cannot be made, the model makes it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from aiswitch.tokens.ledger import ledger_line, values_line
from aiswitch.tokens.records import LedgerRecord

if TYPE_CHECKING:
    from aiswitch.coordinator.results import AgentResult
    from aiswitch.coordinator.tasks import Lane
    from aiswitch.protocol.models import UsageParams


class UsageLine(NamedTuple):
    """One priced record: its ledger line (no newline) and its cost (None: unpriced)."""

    line: bytes
    cost_usd: float | None


class UsageRecords:
    def __init__(
        self,
        run_id: str,
        price: Callable[[dict[str, Any]], None] | None = None,
        *,
        caller: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.price = price
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
    ) -> UsageLine:
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

    def stray(self, handle: Any, params: UsageParams) -> UsageLine:
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
    ) -> UsageLine:
        usage = params.usage
        values: dict[str, Any] = {
            "ts": datetime.now(UTC),
            "agent": agent,
            "preset": preset,
            "provider": params.provider,
            "model": params.model,
            "run_id": self.run_id,
            "session_id": params.session_id,
            "message_id": params.message_id,
            "request_id": params.request_id,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "cost_usd": params.cost_usd,
            "host": host,
            "branch": branch,
            "caller": self.caller,
            "requests": params.requests,
            "task_id": task_id,
            "attempt": attempt,
            "agent_id": agent_id,
        }
        if self.price is not None:
            self.price(values)
        line = values_line(values)
        if line is None:
            line = ledger_line(LedgerRecord(**values))
        return UsageLine(line, values.get("cost_usd"))
