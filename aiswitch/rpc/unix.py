"""A `Peer` over a unix stream socket: the control socket of a running `aiswitch run`.

Contract:
- `serve_unix(path, on_peer)` listens on `path` (mode 0600; a file left there is
  replaced) and calls `on_peer(peer)` for each connection with a peer that is not
  started: register handlers, then `start()`. `connect_unix(path)` returns a started
  peer connected to `path`.
- Both sides use the same framing and peer as a child's stdio (newline-delimited
  JSON-RPC 2.0); the socket transport feeds the peer through the public protocol
  callbacks, as `aiswitch.rpc.stdio` does for pipes.
- A path longer than a socket address allows (108 bytes on Linux: a deep `$AISWITCH_HOME`)
  is reached through its folder's descriptor (`/proc/self/fd/N/NAME`), so any home works.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from aiswitch.rpc.peer import LINE_LIMIT, Peer

# sun_path is 108 bytes on Linux, its last one the terminating NUL.
_MAX_SOCKET_PATH = 107
SOCKET_MODE = 0o600


class _SocketProtocol(asyncio.Protocol):
    """Feeds one connection to its peer, both ways (the socket is read and written)."""

    def __init__(self, make_peer: Callable[[asyncio.Transport], Peer]) -> None:
        self._make_peer = make_peer
        self.peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.peer = self._make_peer(transport)
        self.peer.reading_from(transport)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.data_received(data)

    def eof_received(self) -> bool | None:
        if self.peer is not None:
            self.peer.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.output_lost(exc)
            self.peer.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_writing()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_writing()


@contextlib.contextmanager
def _reachable(path: Path) -> Iterator[str]:
    """A name for `path` short enough for a socket address."""
    if len(os.fsencode(str(path))) <= _MAX_SOCKET_PATH:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


async def serve_unix(
    path: Path, on_peer: Callable[[Peer], None], *, name: str = "control"
) -> asyncio.Server:
    """Listen on `path`; each connection's peer goes to `on_peer` (not started)."""
    loop = asyncio.get_running_loop()

    def make_peer(transport: asyncio.Transport) -> Peer:
        peer = Peer(transport, name=name, line_limit=LINE_LIMIT)
        on_peer(peer)
        return peer

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a socket left there (nobody listens: this run is new)
    with _reachable(path) as address:
        server = await loop.create_unix_server(lambda: _SocketProtocol(make_peer), address)
    # The folder is the owner's only (0700); the socket is too, as every file there.
    os.chmod(path, SOCKET_MODE)
    return server


async def connect_unix(path: Path, *, name: str = "control") -> Peer:
    """A started peer connected to the socket at `path` (OSError if nobody listens)."""
    loop = asyncio.get_running_loop()
    holder: list[Peer] = []

    def make_peer(transport: asyncio.Transport) -> Peer:
        peer = Peer(transport, name=name, line_limit=LINE_LIMIT)
        holder.append(peer)
        return peer

    with _reachable(path) as address:
        await loop.create_unix_connection(lambda: _SocketProtocol(make_peer), address)
    peer = holder[0]
    peer.start()
    return peer
