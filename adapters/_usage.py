"""What a CLI reported it used, as the adapters record it: one `UsageReport` per report
(with the provider's message and request ids when the CLI's own log names them), the
running `UsageTotals` of a task, and the per-request reports read back from a CLI's log
(`reports_from_rows`), used only when they add up to the stream's (`accounts_for`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiswitch.tokens.usage import Usage


@dataclass(frozen=True)
class UsageReport:
    usage: Usage
    model: str | None = None
    cost_usd: float | None = None
    message_id: str | None = None
    request_id: str | None = None
    # How many API requests `usage` covers (more than 1: a task's sums, without ids).
    requests: int = 1


@dataclass
class UsageTotals:
    """What was reported so far, for the outcome."""

    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    model: str | None = None

    def add(self, report: UsageReport) -> None:
        self.usage = self.usage + report.usage
        if report.cost_usd is not None:
            self.cost_usd = round((self.cost_usd or 0.0) + report.cost_usd, 10)
        self.model = self.model or report.model


# What an adapter gives `drive` to turn the stream's usage into the task's requests: called
# once the CLI has exited, with the translator and the stream's usage reports; returns the
# requests from the CLI's own log, or None to keep the stream's reports.
PerRequest = Callable[[Any, list[UsageReport]], list[UsageReport] | None]


def sum_usage(reports: Iterable[UsageReport]) -> Usage:
    total = Usage()
    for report in reports:
        total = total + report.usage
    return total


def reports_from_rows(
    rows: Iterable[Sequence[Any]], cost_by_model: Mapping[str | None, float] | None = None
) -> list[UsageReport]:
    """Report rows of a CLI's log (`aiswitch.tokens.report.Row`) as usage reports with their
    ids. `cost_by_model`: the CLI's own cost per model, shared among that model's requests in
    proportion to their tokens (the last takes what rounding left), so the sum stays the
    CLI's figure."""
    from aiswitch.tokens.rows import (
        R_CACHE_READ,
        R_CACHE_WRITE,
        R_INPUT,
        R_MESSAGE,
        R_MODEL,
        R_OUTPUT,
        R_REASONING,
        R_REQUEST,
    )

    reports = [
        UsageReport(
            Usage(
                input_tokens=row[R_INPUT],
                output_tokens=row[R_OUTPUT],
                cache_read_tokens=row[R_CACHE_READ],
                cache_write_tokens=row[R_CACHE_WRITE],
                reasoning_tokens=row[R_REASONING],
            ),
            model=row[R_MODEL],
            message_id=row[R_MESSAGE],
            request_id=row[R_REQUEST],
        )
        for row in rows
    ]
    if not cost_by_model:
        return reports
    for model, cost in cost_by_model.items():
        mine = [index for index, r in enumerate(reports) if r.model == model]
        tokens = sum(reports[index].usage.total_tokens for index in mine) or 1
        left = cost
        for count, index in enumerate(mine):
            share = reports[index].usage.total_tokens * cost / tokens
            if count == len(mine) - 1:
                share = left
            left -= share
            reports[index] = replace(reports[index], cost_usd=round(share, 12))
    return reports


def accounts_for(requests: Sequence[UsageReport], stream: Sequence[UsageReport]) -> bool:
    """Whether the log's requests add up to the stream's usage, model by model."""
    if not requests:
        return False
    models = {r.model for r in stream}
    if len(models) > 1 and models != {r.model for r in requests}:
        return False
    if len(models) > 1:
        return all(
            sum_usage(r for r in requests if r.model == model)
            == sum_usage(r for r in stream if r.model == model)
            for model in models
        )
    return sum_usage(requests) == sum_usage(stream)
