"""Running a CLI for one task: its events in, the task's progress, usage and outcome out.

Contract:
- `Translator` turns one CLI's JSON events into `Progress`/`UsageReport` items and, at the
  end, a `TaskOutcome` or a `TaskFailed`; `drive` runs a CLI with `CliRun` and feeds it.
  Translators are pure (no I/O), so the tests replay captured streams through them.
- Usage per API request: a CLI's stream gives the task's usage in one sum (claude, gemini)
  or a sum that is cumulative over a resumed thread (codex). `drive` holds the stream's
  usage reports until the CLI exits, then asks the adapter's `PerRequest` for the task's
  requests as the CLI's own log holds them (read with the parser `tokens report --source
  <cli>` uses, so both carry the same message and request ids). The log's requests are
  recorded when they account for the stream's usage (`accounts_for`); otherwise the
  stream's reports are, as they came. Either way the ledger holds what the provider sent,
  once, and `--source all` can tell the ledger's requests from the log's. While the CLI
  runs, a translator may report the running totals its stream shows (`RunningUsage`,
  claude's `assistant` events): they go out as `task.progress` `usage`, provisional, shown
  live and never recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from aiswitch.adapter_sdk import TaskContext, TaskFailed, TaskOutcome
from aiswitch.adapter_sdk.cli_process import CliRun
from aiswitch.tokens.usage import Usage

from ._common import failure_text, log, log_usage
from ._usage import PerRequest, UsageReport, sum_usage


@dataclass(frozen=True)
class Progress:
    text: str
    kind: Literal["text", "tool", "status", "thinking", "waiting"] = "text"


@dataclass(frozen=True)
class RunningUsage:
    """The task's usage so far as the CLI's stream shows it while it runs: provisional
    (shown live, never recorded; the task's `UsageReport`s are what count)."""

    usage: Usage


Report = Progress | UsageReport | RunningUsage


@dataclass
class Exit:
    """How the CLI ended: its exit code and the last line it wrote to stderr."""

    code: int
    stderr_line: str = ""


class Translator(Protocol):
    """One task's worth of a CLI's events; no I/O, so tests can replay fixtures."""

    session_id: str | None

    def feed(self, event: dict[str, Any]) -> list[Report]: ...

    def finish(self, end: Exit) -> TaskOutcome:
        """The outcome once the CLI exited; raises `TaskFailed` with the CLI's message."""
        ...


def exit_failure(cli: str, end: Exit, detail: str | None = None) -> str:
    """'claude exited with code 1: <its last stderr line>' (or `detail` when known)."""
    if end.code < 0:
        how = f"{cli} was killed by signal {-end.code}"
    else:
        how = f"{cli} exited with code {end.code}"
    from aiswitch.adapter_sdk.rlimits import exit_note

    note = exit_note(end.code, end.stderr_line)
    if note is not None:
        how = f"{how} ({note})"
    reason = detail or end.stderr_line
    if reason:
        return f"{how}: {reason}"
    return f"{how} before its result"


# What an adapter gives `drive` for progress its CLI's stream does not carry: called once
# the CLI has exited, with the translator; returns what the CLI's own log tells (codex's
# refusals are only in its rollout).
AfterExit = Callable[[Any], Sequence[Progress]]


async def drive(
    ctx: TaskContext,
    argv: Sequence[str],
    env: Mapping[str, str],
    translator: Translator,
    *,
    name: str,
    provider: str,
    stdin_data: bytes | None = None,
    per_request: PerRequest | None = None,
    after_exit: AfterExit | None = None,
) -> TaskOutcome:
    """Run the CLI once, relay what the translator makes of its events, and end the task.

    With `per_request`, usage is held until the CLI exits and recorded per API request
    from the CLI's log when that log accounts for it (see the module docstring); the
    outcome's usage is then the requests' sum. With `after_exit`, the progress it finds
    in the CLI's log is relayed once the CLI has exited, before the usage and the result.
    Leaving this function any way (result, failure, cancellation, timeout) ends the CLI's
    whole process group (`CliRun`).
    """

    async def record(report: UsageReport) -> None:
        await ctx.report_usage(
            report.usage,
            model=report.model,
            provider=provider,
            cost_usd=report.cost_usd,
            session_id=translator.session_id,
            message_id=report.message_id,
            request_id=report.request_id,
            requests=report.requests,
        )

    held: list[UsageReport] = []
    async with CliRun(argv, env=env, cwd=ctx.params.cwd, stdin_data=stdin_data, name=name) as run:
        async for event in run.events():
            reports = translator.feed(event)
            # The running totals ride on the event's first line of progress (or go alone).
            running = next((r.usage for r in reports if isinstance(r, RunningUsage)), None)
            for report in reports:
                if isinstance(report, Progress):
                    await ctx.progress(report.text, report.kind, running)
                    running = None
                elif isinstance(report, RunningUsage):
                    continue
                elif per_request is not None:
                    held.append(report)
                else:
                    await record(report)
            if running is not None:
                await ctx.progress("", "status", running)
        code = await run.wait()
        end = Exit(code=code, stderr_line=run.last_stderr_line())
    if after_exit is not None:
        try:
            late = await asyncio.to_thread(after_exit, translator)
        except (OSError, ValueError) as exc:  # the log is a refinement, never a failure
            log.warning("%s: its log could not be read: %s", name, exc)
            late = ()
        for item in late:
            await ctx.progress(item.text, item.kind)
    requests = None
    if held:
        try:
            # A thread: a long session's log takes a while to parse, and the adapter's
            # other tasks keep reporting meanwhile.
            if per_request is not None:
                requests = await asyncio.to_thread(per_request, translator, held)
        except (OSError, ValueError) as exc:  # the log is a refinement, never a failure
            log_usage.warning("%s: usage kept as the stream gave it: %s", name, exc)
        for report in requests or held:
            await record(report)
    try:
        outcome = translator.finish(end)
    except TaskFailed as exc:
        raise TaskFailed(
            failure_text(exc.message, env),
            output=exc.output,
            provider_status=exc.provider_status,
        ) from None
    if requests:
        outcome = replace(outcome, usage=sum_usage(requests))
    return outcome
