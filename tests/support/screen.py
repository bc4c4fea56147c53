"""A real `aiswitch` process on a pseudo-terminal of a given size, and what a user sees.

The process's output goes through pyte (a VT terminal emulator), so assertions are on the
screen's lines as they stand, cursor moves and redraws applied, not on escape sequences.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pyte

from support.cli import aiswitch_bin

# Only stops a hung test: every wait below ends on what the screen shows, or an exit.
WAIT_S = 60.0


class Terminal:
    """`aiswitch ARGS` with stdin, stdout and stderr on one pty of `cols` x `rows`."""

    def __init__(
        self, *args: str, env: dict[str, str], cols: int, rows: int = 40, cwd: Path | None = None
    ) -> None:
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.master = master
        self.proc = subprocess.Popen(
            [aiswitch_bin(), *args],
            env={**env, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)},
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            start_new_session=True,
        )
        os.close(slave)
        self.history: list[list[str]] = []

    def lines(self) -> list[str]:
        """The screen now, each line without trailing spaces."""
        return [line.rstrip() for line in self.screen.display]

    def text(self) -> str:
        return "\n".join(self.lines()).rstrip("\n")

    def _pump(self, timeout: float) -> bool:
        """Feed what the process wrote within `timeout`; False once it closed the pty."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every writer has closed the pty
            return False
        if not data:
            return False
        self.raw += data
        self.stream.feed(data)
        self.history.append(self.lines())
        return True

    def wait_for(self, seen: Callable[[list[str]], bool]) -> list[str]:
        """Feed output until the screen satisfies `seen`; the screen then."""
        deadline = time.monotonic() + WAIT_S
        while not seen(self.lines()):
            left = deadline - time.monotonic()
            assert left > 0, "screen never showed what was awaited:\n" + self.text()
            assert self._pump(left), "process ended before the screen showed it:\n" + self.text()
        return self.lines()

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def finish(self) -> int:
        """Feed everything until the process exits; its exit code."""
        deadline = time.monotonic() + WAIT_S
        while self._pump(max(0.0, deadline - time.monotonic())):
            assert time.monotonic() < deadline, "process never ended:\n" + self.text()
        code = self.proc.wait(timeout=WAIT_S)
        os.close(self.master)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT_S)
        with contextlib.suppress(OSError):
            os.close(self.master)
