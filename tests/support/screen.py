"""A real `aiswitch` process on a pseudo-terminal of a given size, and what a user sees.

The process's output goes through pyte (a VT terminal emulator), so assertions are on the
screen's lines as they stand, cursor moves and redraws applied, not on escape sequences.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyte

from support.cli import aiswitch_bin

# Only stops a hung test: every wait below ends on what the screen shows, or an exit.
WAIT_S = 60.0


class Terminal:
    """`aiswitch ARGS` with stdin, stdout and stderr on one pty of `cols` x `rows`.

    A thread reads the pty all along (a process whose terminal is not read blocks once
    the pty's buffer is full), feeding the emulator; waits are on what it has fed."""

    def __init__(
        self, *args: str, env: dict[str, str], cols: int, rows: int = 40, cwd: Path | None = None
    ) -> None:
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.changed = threading.Condition()
        self.closed = False
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
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every writer has closed the pty
                data = b""
            with self.changed:
                if not data:
                    self.closed = True
                    self.changed.notify_all()
                    return
                self.raw += data
                self.stream.feed(data)
                self.changed.notify_all()

    def lines(self) -> list[str]:
        """The screen now, each line without trailing spaces."""
        with self.changed:
            return [line.rstrip() for line in self.screen.display]

    def text(self) -> str:
        return "\n".join(self.lines()).rstrip("\n")

    def wait_for(self, seen: Callable[[list[str]], bool]) -> list[str]:
        """Wait until the screen satisfies `seen`; the screen then."""
        deadline = time.monotonic() + WAIT_S
        with self.changed:
            while not seen(lines := [line.rstrip() for line in self.screen.display]):
                assert not self.closed, "process ended before the screen showed it:\n" + "\n".join(
                    lines
                )
                left = deadline - time.monotonic()
                assert left > 0, "screen never showed what was awaited:\n" + "\n".join(lines)
                self.changed.wait(left)
            return lines

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def finish(self) -> int:
        """Wait until the process has exited and its output is all read; its exit code."""
        code = self.proc.wait(timeout=WAIT_S)
        self.reader.join(timeout=WAIT_S)
        assert not self.reader.is_alive(), "the pty never closed"
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT_S)
        self.reader.join(timeout=WAIT_S)
        with contextlib.suppress(OSError):
            os.close(self.master)
