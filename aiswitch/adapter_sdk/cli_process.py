"""Running a real CLI for one task: its own process group, JSON events, a sure kill.

Contract:
- `CliRun` starts the CLI with `create_subprocess_exec` (no shell) in a new session, with
  SIGKILL as its parent-death signal on Linux, so it cannot outlive the adapter.
- `events()` yields each stdout line that parses as a JSON object; other lines are
  logged (as the CLI's, at most a short excerpt) and skipped, counted in `skipped`.
- stderr is kept in a bounded tail (`stderr_tail()`) for error messages, and copied to
  the adapter's own stderr (the agent log), each line redacted first: the secret values
  of the CLI's environment and of this process (`masking.redact_text`) never reach
  either, however the CLI prints them.
- Leaving the `async with` block — normally, by an exception, or by cancellation
  (`task.cancel`, a timeout, shutdown) — ends the CLI's whole process group: SIGTERM,
  a short wait, then SIGKILL, and waits for the exit. No CLI process outlives its task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from aiswitch.masking import redact_text, remember_env_secrets
from aiswitch.process_group import death_signal, signal_group

# CLI events can carry whole files (tool results); a bound keeps a runaway line finite.
EVENT_LINE_LIMIT = 64 * 1024 * 1024
# After SIGTERM, how long the CLI may take to exit before SIGKILL.
TERM_GRACE_S = 2.0
# How much of the CLI's stderr is kept for error messages.
STDERR_TAIL_LINES = 40
_EXCERPT = 200

log = logging.getLogger("aiswitch.cli_process")


# SIGKILL: a CLI must never outlive its adapter, whatever state it is in.
_PREEXEC = death_signal(signal.SIGKILL)


class CliRun:
    """One run of a CLI; use as `async with CliRun(argv, env=…) as run:`."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None = None,
        stdin_data: bytes | None = None,
        name: str = "cli",
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.stdin_data = stdin_data
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.skipped = 0
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._stderr_task: asyncio.Task[None] | None = None
        # What the adapter added (a key it resolved itself) is masked like the rest.
        remember_env_secrets(self.env)

    async def __aenter__(self) -> CliRun:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE
            if self.stdin_data is not None
            else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            limit=EVENT_LINE_LIMIT,
            preexec_fn=_PREEXEC,
        )
        self._stderr_task = asyncio.get_running_loop().create_task(self._pump_stderr())
        if self.stdin_data is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(self.stdin_data)
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.drain()
            self.proc.stdin.close()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Shielded: a cancelled task must still take its CLI down with it.
        await asyncio.shield(self.terminate())

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        while True:
            try:
                line = await stdout.readline()
            except ValueError:  # a line over the limit: skip the rest of it
                self.skipped += 1
                continue
            if not line:
                return
            text = line.strip()
            if not text:
                continue
            try:
                event = json.loads(text)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                self.skipped += 1
                log.info("%s: skipped a non-JSON line: %r", self.name, text[:_EXCERPT])
                continue
            yield event

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task
        return code

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    def last_stderr_line(self) -> str:
        lines = [line for line in self._stderr if line.strip()]
        return lines[-1].strip() if lines else ""

    async def terminate(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), TERM_GRACE_S)
            except TimeoutError:
                self._signal(signal.SIGKILL)
                await proc.wait()
        # Whatever the CLI started in its group (node workers, tools) goes with it.
        self._signal(signal.SIGKILL)
        if self._stderr_task is not None and not self._stderr_task.done():
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is not None:
            signal_group(self.proc.pid, sig)

    async def _pump_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while True:
            try:
                line = await self.proc.stderr.readline()
            except ValueError:
                continue
            if not line:
                return
            text = redact_text(line.decode(errors="replace").rstrip("\n"))
            self._stderr.append(text)
            sys.stderr.write(f"[{self.name}] {text}\n")
