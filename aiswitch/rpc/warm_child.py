"""A warm interpreter becoming a child: `become`, and its transport (aiswitch.rpc.warm has
the contract).

The transport shows its protocol what `loop.subprocess_exec`'s would: `connection_made`
once the child has taken its spec, then its stdout's data, the ends of its pipes and its
exit, which is awaited on a pidfd, never polled.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from aiswitch.rpc import warm

_STDIN, _STDOUT = 0, 1


async def become(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    cwd: str | None,
    stderr: int,
    rlimits: Sequence[tuple[int, int, int]],
    death: signal.Signals | None,
    start_new_session: bool,
    protocol: asyncio.SubprocessProtocol,
) -> asyncio.SubprocessTransport | None:
    """A waiting interpreter turned into the child `argv` (module contract), with
    `protocol` connected to it; None when none can be."""
    if not warm.waiting() or death != signal.SIGTERM or not start_new_session:
        return None
    if stderr < 0 and stderr != subprocess.DEVNULL:
        return None
    env = dict(os.environ if env is None else env)
    popen = warm.take(argv, env)
    if popen is None:
        return None
    spec = {
        "argv": list(argv),
        "env": env,
        "cwd": cwd,
        "stderr": None if stderr == subprocess.DEVNULL else stderr,
        "rlimits": [list(limit) for limit in rlimits],
    }
    transport = _WarmTransport(popen, protocol)
    try:
        await asyncio.wait_for(transport.connect(json.dumps(spec) + "\n"), warm.BECOME_TIMEOUT_S)
    except (OSError, TimeoutError, _NotTaken):
        transport.abandon()
        return None
    except BaseException:  # cancelled: as `subprocess_exec` would, no child is left
        transport.abandon()
        raise
    return transport


class _NotTaken(Exception):
    """The warm interpreter refused its spec, or ended before taking it."""


class _WarmTransport(asyncio.SubprocessTransport):
    """A warm interpreter as `loop.subprocess_exec`'s transport would show its child."""

    def __init__(self, popen: subprocess.Popen[bytes], protocol: asyncio.SubprocessProtocol):
        super().__init__()
        self._popen = popen
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._pipes: dict[int, Any] = {}
        self._taken: asyncio.Future[None] = self._loop.create_future()
        self._early = b""
        self._connected = False
        self._closed = False
        self._pidfd: int | None = None

    async def connect(self, spec: str) -> None:
        loop, popen = self._loop, self._popen
        self._pidfd = os.pidfd_open(popen.pid)
        loop.add_reader(self._pidfd, self._exited)
        stdin, _ = await loop.connect_write_pipe(lambda: _Pipe(self, _STDIN), popen.stdin)
        self._pipes[_STDIN] = stdin
        stdout, _ = await loop.connect_read_pipe(lambda: _Pipe(self, _STDOUT), popen.stdout)
        self._pipes[_STDOUT] = stdout
        stdin.write(spec.encode())
        await self._taken

    def abandon(self) -> None:
        """Given up before it took its spec: kill it and reap it."""
        self._closed = True
        for pipe in self._pipes.values():
            pipe.close()
        if self._popen.returncode is None:
            self._popen.kill()
        self._popen.wait()
        self._stop_watching()

    # -- what the pipes and the pidfd report --------------------------------------

    def _data(self, fd: int, data: bytes) -> None:
        if self._connected:
            self._protocol.pipe_data_received(fd, data)
            return
        if self._taken.done():
            return
        line, newline, rest = (self._early + data).partition(b"\n")
        if not newline:
            self._early = line
        elif line != b"ok":
            self._taken.set_exception(_NotTaken(line.decode(errors="replace")))
        else:
            # From here on it is the child: its protocol sees what `subprocess_exec` shows.
            self._connected = True
            self._protocol.connection_made(self)
            if rest:
                self._protocol.pipe_data_received(_STDOUT, rest)
            if self._popen.returncode is not None:
                self._protocol.process_exited()
            self._taken.set_result(None)

    def _pipe_lost(self, fd: int, exc: Exception | None) -> None:
        if self._connected:
            self._protocol.pipe_connection_lost(fd, exc)
        elif not self._taken.done():
            self._taken.set_exception(_NotTaken("ended before taking its spec"))

    def _writing(self, pause: bool) -> None:
        if self._connected:
            (self._protocol.pause_writing if pause else self._protocol.resume_writing)()

    def _exited(self) -> None:
        self._stop_watching()
        self._popen.wait()  # exited: this returns at once
        if self._connected:
            self._protocol.process_exited()

    def _stop_watching(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    # -- asyncio.SubprocessTransport ------------------------------------------------

    def get_pid(self) -> int:
        return self._popen.pid

    def get_returncode(self) -> int | None:
        return self._popen.returncode

    def get_pipe_transport(self, fd: int) -> Any:
        return self._pipes.get(fd)

    def send_signal(self, signal: int) -> None:
        self._popen.send_signal(signal)

    def terminate(self) -> None:
        self._popen.terminate()

    def kill(self) -> None:
        self._popen.kill()

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for pipe in self._pipes.values():
            pipe.close()
        # As asyncio's own: closing the transport of a running child kills it.
        if self._popen.returncode is None and self._popen.poll() is None:
            self._popen.kill()


class _Pipe(asyncio.Protocol):
    """One pipe of a warm child, reporting to its transport."""

    def __init__(self, owner: _WarmTransport, fd: int) -> None:
        self._owner = owner
        self._fd = fd

    def data_received(self, data: bytes) -> None:
        self._owner._data(self._fd, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._pipe_lost(self._fd, exc)

    def pause_writing(self) -> None:
        self._owner._writing(True)

    def resume_writing(self) -> None:
        self._owner._writing(False)
