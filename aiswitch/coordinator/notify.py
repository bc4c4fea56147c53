"""Notifications: tell the user when a task finished, failed, or waits for them.

Contract:
- Events: `waiting` (an agent needs the user: a permission its headless CLI could not ask
  for, reported as `task.progress` of kind `waiting`), `finished` (a task ended ok),
  `failed` (a task ended failed or timed out; a task cancelled by the user is not told)
  and `run` (the run ended, with its status). "Waiting" and "finished" are different
  events, and each task's end is told once.
- Each notice is a JSON object: `event`, `run_id`, `task_id`, `id`, `agent_id`, `preset`,
  `status`, `text` (the progress line, the error, or the last line of the output, masked
  and at most `TEXT_CHARS`), `ts`. It never carries a secret: the text goes through
  `redact_text` and the output itself is never sent.
- On a terminal, `ring(notice)` (the CLI's `terminal_ring`: a bell or an OSC 9 desktop
  notification, per `notify.terminal`, only when the stream is a tty).
- `notify.command` runs with `sh -c`, detached (its own session, no terminal), with the
  notice as JSON on its stdin and `AISWITCH_NOTIFY_EVENT` set to the event. It is killed
  (its whole group) after `notify.timeout` seconds. Its failure or timeout is a warning
  in the coordinator log; the run never waits for it and never fails because of it.
  `close()` (at the run's end) waits for the commands still running, at most until
  their timeouts.
- Settings: `notify:` in config/coordination.yaml (`load_settings`); `aiswitch run
  --notify` turns them on for one run, `notify.always: true` for every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from aiswitch.coordinator.request import RunEvent
from aiswitch.coordinator.results import AgentResult, RunResult
from aiswitch.masking import redact_text

Event = Literal["waiting", "finished", "failed", "run"]
EVENTS: Final[tuple[Event, ...]] = ("waiting", "finished", "failed", "run")
# Enough for a line of error or output in a desktop notification; never a whole reply.
TEXT_CHARS: Final = 200
# A notifier (notify-send, curl to a webhook) answers in well under a second; ten seconds
# covers a slow network without letting a hung one pile up.
DEFAULT_TIMEOUT_S: Final = 10.0

log = logging.getLogger("aiswitch.notify")


class NotifySettings(BaseModel):
    """`notify:` in config/coordination.yaml."""

    model_config = ConfigDict(extra="forbid")

    always: bool = Field(False, description="Notify for every run, without --notify.")
    terminal: Literal["bell", "osc9", "none"] = Field(
        "bell", description="On a terminal: a bell, an OSC 9 desktop notification, or nothing."
    )
    command: str | None = Field(None, description="Run by sh -c with the event JSON on stdin.")
    events: list[Event] = Field(default_factory=lambda: list(EVENTS))
    timeout: float = Field(DEFAULT_TIMEOUT_S, gt=0, description="Seconds before it is killed.")


def load_settings(config_dir: Path) -> NotifySettings:
    """The `notify:` section of `config_dir/coordination.yaml` (defaults when absent)."""
    from aiswitch.agents import coordination_section

    return coordination_section(config_dir, "notify", NotifySettings)


def _short(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if len(last) > TEXT_CHARS:
        last = last[: TEXT_CHARS - 1] + "…"
    return redact_text(last)


def notice(
    event: Event, run_id: str, result: AgentResult | None, text: str | None
) -> dict[str, Any]:
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    body: dict[str, Any] = {"event": event, "run_id": run_id}
    if result is not None:
        body.update(
            task_id=result.task_id,
            id=result.id,
            agent_id=result.agent_id,
            preset=result.preset,
            status=str(result.status),
        )
    body.update(text=_short(text), ts=stamp)
    return body


class Notifier:
    def __init__(
        self,
        settings: NotifySettings,
        run_id: str,
        *,
        ring: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.run_id = run_id
        # The terminal's signal, the CLI's (aiswitch.cli.terminal.terminal_ring).
        self.ring = ring
        self.sent: list[dict[str, Any]] = []
        self._told: set[str] = set()
        self._pending: set[asyncio.Task[None]] = set()

    def on_event(self, event: RunEvent) -> None:
        result = event.result
        if event.kind == "waiting":
            self._tell("waiting", result, event.text)
        elif event.kind == "status" and result.final and result.task_id not in self._told:
            self._told.add(result.task_id)
            status = str(result.status)
            if status == "ok":
                self._tell("finished", result, result.output)
            elif status != "cancelled":
                self._tell("failed", result, result.error)

    def on_run_end(self, run: RunResult) -> None:
        self._tell("run", None, f"run {run.run_id} {run.status}", status=str(run.status))

    def _tell(
        self, event: Event, result: AgentResult | None, text: str | None, **extra: Any
    ) -> None:
        if event not in self.settings.events:
            return
        body = {**notice(event, self.run_id, result, text), **extra}
        self.sent.append(body)
        if self.ring is not None:
            self.ring(body)
        if self.settings.command:
            task = asyncio.get_running_loop().create_task(self._run_command(body))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _run_command(self, body: dict[str, Any]) -> None:
        command = self.settings.command
        assert command is not None
        data = json.dumps(body, ensure_ascii=False).encode() + b"\n"
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                env={**os.environ, "AISWITCH_NOTIFY_EVENT": body["event"]},
            )  # fmt: skip
        except OSError as exc:
            log.warning("notify command could not start: %s", exc.strerror)
            return
        try:
            async with asyncio.timeout(self.settings.timeout):
                _, err = await proc.communicate(data)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            log.warning(
                "notify command killed after %gs (%s event)", self.settings.timeout, body["event"]
            )
            return
        except (BrokenPipeError, ConnectionResetError):
            err = b""
            await proc.wait()
        if proc.returncode != 0:
            last = _short(err.decode(errors="replace"))
            log.warning(
                "notify command exited with %s (%s event)%s",
                proc.returncode,
                body["event"],
                f": {last}" if last else "",
            )

    async def close(self) -> None:
        """Wait for the commands still running (each ends by its timeout at the latest)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
