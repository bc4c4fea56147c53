"""An ACP agent's child process, for the `acp` adapter: spawned in its own process group
(killed with the adapter), its stderr copied to the agent log (redacted) with the last lines
kept for errors, and its stop sequence (EOF, SIGTERM, SIGKILL) applied to the whole group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiswitch.adapter_sdk import TaskFailed
from aiswitch.masking import redact_text
from aiswitch.process_group import signal_group, wait_group_exit
from aiswitch.rpc.child import Child, spawn

# After stdin closes and SIGTERM, how long the agent's group may take to exit.
TERM_GRACE_S: Final = 2.0
# After the agent itself exited on SIGTERM, how long the rest of its group (the CLI it runs,
# writing its session log) may take to exit before it is killed.
GROUP_GRACE_S: Final = 5.0
# After a turn that ended (its result is in), how long the agent may take to exit on the
# EOF of its stdin before its group is killed: it owes nothing more (its session log is
# written as the turn goes), and a node agent's SIGTERM exit costs ~0.5 s a task.
DONE_GRACE_S: Final = 0.05
# How long an agent whose stdout ended may take to report its exit code.
EXIT_WAIT_S: Final = 2.0
STDERR_TAIL_LINES: Final = 40
_DEATH = signal.SIGKILL


class StderrTail:
    """The agent's stderr: copied to the agent log (redacted), the last lines kept."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.done = asyncio.Event()
        self._partial = b""

    def feed(self, data: bytes) -> None:
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for raw in lines:
            self._line(raw)

    def end(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = b""
        self.done.set()

    def _line(self, raw: bytes) -> None:
        text = redact_text(raw.decode(errors="replace").rstrip("\r"))
        if not text.strip():
            return
        self.lines = [*self.lines[-(STDERR_TAIL_LINES - 1) :], text]
        sys.stderr.write(f"[{self.name}] {text}\n")

    def last_line(self) -> str:
        return self.lines[-1].strip() if self.lines else ""


class _StderrProtocol(asyncio.Protocol):
    def __init__(self, tail: StderrTail) -> None:
        self.tail = tail

    def data_received(self, data: bytes) -> None:
        self.tail.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.tail.end()


@dataclass
class AgentProcess:
    """One ACP agent child: its peer (not started), its stderr, its group."""

    child: Child
    stderr: StderrTail
    name: str
    _stderr_transport: asyncio.BaseTransport | None = None

    @classmethod
    async def start(
        cls, argv: Sequence[str], env: Mapping[str, str], cwd: str, name: str
    ) -> AgentProcess:
        read_fd, write_fd = os.pipe()
        try:
            child = await spawn(
                argv,
                env=env,
                cwd=cwd,
                stderr=write_fd,
                name=name,
                death=_DEATH,
            )
        except OSError as exc:
            os.close(read_fd)
            raise TaskFailed(f"cannot start {argv[0]}: {exc.strerror}") from None
        finally:
            os.close(write_fd)
        tail = StderrTail(name)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_read_pipe(
            lambda: _StderrProtocol(tail), os.fdopen(read_fd, "rb", buffering=0)
        )
        return cls(child, tail, name, transport)

    @property
    def peer(self) -> Any:
        return self.child.peer

    async def exit_code(self) -> int | None:
        """The exit code, if the agent exits within EXIT_WAIT_S."""
        try:
            return await asyncio.wait_for(self.child.wait(), EXIT_WAIT_S)
        except TimeoutError:
            return None

    async def end(self, *, done: bool) -> None:
        """Close stdin, SIGTERM the group, SIGKILL it after TERM_GRACE_S (or, when the agent
        exited in time, once the rest of its group has exited or GROUP_GRACE_S passed).
        `done`: the turn ended, so SIGKILL after DONE_GRACE_S instead."""
        self.child.close_stdin()
        pid = self.child.pid
        if done and self.child.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.child.wait(), DONE_GRACE_S)
            signal_group(pid, signal.SIGKILL)
        if self.child.returncode is None:
            signal_group(pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.child.wait(), TERM_GRACE_S)
            except TimeoutError:
                signal_group(pid, signal.SIGKILL)
                await self.child.wait()
            else:
                # The CLI behind the agent got the SIGTERM too and may still be writing its
                # session log (claude was caught mid-write: its session could not be resumed).
                await wait_group_exit(pid, GROUP_GRACE_S)
        # Whatever the agent started in its group (the CLI behind it, tools) goes too.
        signal_group(pid, signal.SIGKILL)
        await self.peer.close("the task ended")
        if self._stderr_transport is not None:
            self._stderr_transport.close()
