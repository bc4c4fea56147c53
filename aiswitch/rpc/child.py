"""The parent side of the protocol: a child process with a `Peer` on its stdin/stdout.

Contract:
- `spawn(argv, ...)` starts `argv` with `loop.subprocess_exec` (never a shell), stdin
  and stdout as pipes, stderr to the given descriptor, with the resource limits and the
  death signal asked for. It raises `OSError` as `asyncio.create_subprocess_exec` does
  when the program cannot be executed. A Python child (`argv` this interpreter `-m
  MODULE`) may instead be a warm interpreter that becomes it (`aiswitch.rpc.warm`), when
  one was started and can be that child.
- The `Child` it returns has a `peer` that is NOT started: register handlers, then call
  `child.peer.start()`. Until then what the child writes waits (stdout is paused) and is
  handled at `start()`, in order.
- The child's stdout feeds the peer through the public `asyncio.SubprocessProtocol`
  callbacks (`pipe_data_received`, `pipe_connection_lost`); the peer writes to the
  stdin pipe transport, with `pause_writing`/`resume_writing` as its flow control. EOF on
  stdout (the child exited, or closed it) ends the peer: pending requests fail with
  `ConnectionClosedError`.
- `wait()` awaits the exit (`process_exited`), no polling; `returncode` is None until
  then. At the exit stdin is closed; once stdout has ended too (`peer.wait_closed()`),
  the transport is closed. Stdout may end after the exit, or later still when another
  process inherited it: `wait()` does not wait for that.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from aiswitch.rpc import warm_child
from aiswitch.rpc.peer import LINE_LIMIT, Peer

_STDIN, _STDOUT = 0, 1


async def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    cwd: str | None,
    stderr: int,
    name: str,
    rlimits: Sequence[tuple[int, int, int]] = (),
    death: signal.Signals | None = None,
    start_new_session: bool = True,
    line_limit: int = LINE_LIMIT,
) -> Child:
    """Start `argv` as a child speaking the protocol on its stdin/stdout (module contract):
    `rlimits` are (resource, soft, hard) to set in it, `death` the signal it gets when this
    process dies (Linux)."""
    protocol = _ChildProtocol(name, line_limit)
    adopted = await warm_child.become(
        argv,
        env=env,
        cwd=cwd,
        stderr=stderr,
        rlimits=rlimits,
        death=death,
        start_new_session=start_new_session,
        protocol=protocol,
    )
    if adopted is not None:
        return Child(adopted, protocol)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.subprocess_exec(
        lambda: protocol,
        *argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        cwd=cwd,
        preexec_fn=_preexec(rlimits, death),
        start_new_session=start_new_session,
    )
    return Child(transport, protocol)


def _preexec(
    rlimits: Sequence[tuple[int, int, int]], death: signal.Signals | None
) -> Callable[[], None] | None:
    """What the forked child runs before it execs: its limits, then its death signal."""
    from aiswitch.process_group import death_signal

    then = death_signal(death) if death is not None else None
    if not rlimits:
        return then
    import resource

    setrlimit = resource.setrlimit

    def apply() -> None:
        for which, soft, hard in rlimits:
            setrlimit(which, (soft, hard))
        if then is not None:
            then()

    return apply


class Child:
    """A running child process and the peer that talks to it."""

    def __init__(self, transport: asyncio.SubprocessTransport, protocol: _ChildProtocol) -> None:
        assert protocol.peer is not None  # built in connection_made, before we get here
        self.peer: Peer = protocol.peer
        self.pid: int = transport.get_pid()
        self._transport = transport
        self._protocol = protocol

    @property
    def returncode(self) -> int | None:
        return self._transport.get_returncode()

    async def wait(self) -> int:
        """Wait for the child to exit; its exit code (negative: killed by that signal)."""
        await self._protocol.exited.wait()
        code = self._transport.get_returncode()
        assert code is not None
        return code

    def close_stdin(self) -> None:
        """Write what the peer holds, then close the child's stdin (its EOF)."""
        self.peer.close_output()


class _ChildProtocol(asyncio.SubprocessProtocol):
    """Feeds the child's stdout to its peer, and its stdin's flow control."""

    def __init__(self, name: str, line_limit: int) -> None:
        self._name = name
        self._line_limit = line_limit
        self.peer: Peer | None = None
        self.exited = asyncio.Event()
        self._transport: asyncio.SubprocessTransport | None = None
        self._open_pipes = {_STDIN, _STDOUT}
        self._feed: Callable[[bytes], None] = _drop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called once both pipes are connected and before any of their data.
        process = self._transport = cast(asyncio.SubprocessTransport, transport)
        stdin = cast(asyncio.WriteTransport, process.get_pipe_transport(_STDIN))
        stdout = cast(asyncio.ReadTransport, process.get_pipe_transport(_STDOUT))
        peer = self.peer = Peer(stdin, name=self._name, line_limit=self._line_limit)
        peer.reading_from(stdout)
        self._feed = peer.data_received

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        if fd == _STDOUT:
            self._feed(cast(bytes, data))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if self.peer is not None:
            if fd == _STDOUT:
                self.peer.connection_lost(exc)
            elif fd == _STDIN:
                self.peer.output_lost(exc)
        self._open_pipes.discard(fd)
        self._maybe_close()

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_writing()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_writing()

    def process_exited(self) -> None:
        self.exited.set()
        # Nothing more can reach the child: its stdin goes now; stdout ends at its EOF
        # (which may come later, from a process that inherited it).
        if self._transport is not None:
            stdin = self._transport.get_pipe_transport(_STDIN)
            if stdin is not None and not stdin.is_closing():
                stdin.close()
        self._maybe_close()

    def _maybe_close(self) -> None:
        # Closing the transport earlier would kill a running child.
        if self.exited.is_set() and not self._open_pipes and self._transport is not None:
            self._transport.close()


def _drop(data: bytes) -> None:
    """Where stdout goes before the peer exists (never, per asyncio's order)."""
