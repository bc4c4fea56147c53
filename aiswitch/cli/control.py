"""The control socket of a running `aiswitch run`, both ends.

Contract:
- `ControlServer.start(coordinator, run, cancel)` listens on the run's socket
  (`tmp/sockets/<run_id>.sock`, 0600) and serves the run-control methods
  (docs/protocol.md, "Run control") with `RunControl`; a socket that cannot be made is a
  warning, never a failed run. `close(status)` tells watchers the run ended, closes
  every connection and removes the socket, after the run's file is final.
- `control_call(run_id, method, params)` is the other end, for one request from another
  terminal. A run that is not running (finished, or its aiswitch is dead: its stale
  socket is removed and the run marked) is one clear error, as is a socket that is not a
  socket or not the user's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiswitch.coordinator.control import RunControl
from aiswitch.errors import AiswitchError, StateError, UnknownAgentError, UsageError
from aiswitch.rpc import codes
from aiswitch.rpc.errors import MethodError, RemoteError, RpcError
from aiswitch.rpc.peer import Peer
from aiswitch.state.runs import RunStore, check_run_id

log = logging.getLogger("aiswitch.control")
# A control request is a few lines over a local socket; a restart waits for a new process.
CONTROL_TIMEOUT_S = 60.0


def _text(params: Any, name: str) -> str:
    value = params.get(name) if isinstance(params, dict) else None
    if not isinstance(value, str) or not value:
        raise MethodError.invalid_params(f"{name} must be a non-empty string")
    return value


async def _answer(work: Awaitable[Any]) -> Any:
    """A control method's result, or its user error as a wire error (one line, no secret)."""
    try:
        return await work
    except UnknownAgentError as exc:
        raise MethodError(codes.UNKNOWN_AGENT, exc.one_line()) from None
    except AiswitchError as exc:
        raise MethodError(codes.CONTROL_REFUSED, exc.one_line()) from None


class ControlServer:
    def __init__(self, control: RunControl, path: Path) -> None:
        self.control = control
        self.path = path
        self._server: asyncio.Server | None = None
        self._peers: set[Peer] = set()
        self._sends: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(
        cls, coordinator: Any, run: Any, cancel: Callable[[], object]
    ) -> ControlServer | None:
        from aiswitch.rpc.unix import serve_unix

        server = cls(RunControl(run, cancel), coordinator.runs.socket_path(run.run_id))
        try:
            server.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            server._server = await serve_unix(server.path, server._serve)
        except OSError as exc:
            coordinator.store.warn(
                f"run {run.run_id} cannot be controlled from another terminal: "
                f"{server.path}: {exc.strerror}"
            )
            return None
        return server

    def _serve(self, peer: Peer) -> None:
        control = self.control

        async def agent(params: Any, act: Callable[..., Awaitable[Any]], *names: str) -> Any:
            return await _answer(act(*(_text(params, n) for n in names)))

        peer.on_request_inline("run.status", lambda _: control.status())
        peer.on_request_inline("run.cancel", lambda _: control.cancel())
        peer.on_request_inline("run.watch", lambda _: control.watch(sink))
        peer.on_request("agent.stop", lambda p: agent(p, control.stop_agent, "agent_id"))
        peer.on_request("agent.restart", lambda p: agent(p, control.restart_agent, "agent_id"))
        peer.on_request(
            "agent.switch", lambda p: agent(p, control.switch_agent, "agent_id", "preset")
        )

        def sink(events: list[dict[str, Any]]) -> None:
            self._send(peer.notify("run.events", {"events": events}))

        async def forget() -> None:
            await peer.wait_closed()
            control.unwatch(sink)
            self._peers.discard(peer)

        self._peers.add(peer)
        self._send(forget())
        peer.start()

    def _send(self, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            with contextlib.suppress(RpcError, OSError):
                await work

        task = asyncio.get_running_loop().create_task(guarded())
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    def event(self, event: Any) -> None:
        self.control.event(event)

    async def close(self, status: str) -> None:
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        # What the last turn queued goes before the end.
        self.control.flush()
        for peer in list(self._peers):
            with contextlib.suppress(RpcError, OSError):
                await peer.notify(
                    "run.ended", {"run_id": self.control.run.run_id, "status": status}
                )
        for peer in list(self._peers):
            peer.close_output()
        for task in list(self._sends):
            task.cancel()
        for peer in list(self._peers):
            await peer.close("run ended")


def _check_socket(path: Path, run_id: str) -> bool:
    """Whether `path` is there; refuse one that is not a socket or not ours."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if st.st_uid != os.getuid():
        raise StateError(
            f"the control socket of run {run_id} belongs to another user (uid {st.st_uid})",
            hint=f"aiswitch does not talk to it; check who owns {path}",
        )
    if not stat.S_ISSOCK(st.st_mode):
        raise StateError(f"{path} is not a socket", hint="remove it")
    return True


def _not_running(store: Any, run_id: str) -> AiswitchError:
    """Why `run_id` cannot be reached (reconciling marks a dead one, removes its socket)."""
    from aiswitch.coordinator.history import finished_run

    run = finished_run(store, run_id)
    if run.status == "running":
        return StateError(
            f"run {run_id} does not answer on its control socket",
            hint="it may be an older aiswitch; Ctrl-C in its terminal stops it",
        )
    return UsageError(
        f"run {run_id} is not running (it is {run.status})",
        hint="`aiswitch runs show " + run_id + "` shows its results",
    )


async def control_peer(store: Any, run_id: str) -> Peer:
    """A peer connected to the running run `run_id` (module contract)."""
    from aiswitch.rpc.unix import connect_unix

    check_run_id(run_id)
    path = RunStore(store).socket_path(run_id)
    if _check_socket(path, run_id):
        try:
            return await connect_unix(path)
        except (ConnectionRefusedError, FileNotFoundError):
            pass
    error = _not_running(store, run_id)
    with contextlib.suppress(OSError):
        # Nobody listens: a socket left by a killed run.
        if _check_socket(path, run_id):
            path.unlink()
    raise error


async def control_call(
    store: Any,
    run_id: str,
    method: str,
    params: Any = None,
    *,
    timeout: float = CONTROL_TIMEOUT_S,
) -> Any:
    peer = await control_peer(store, run_id)
    try:
        return await peer.request(method, params, timeout=timeout)
    except RemoteError as exc:
        raise UsageError(exc.remote_message) from None
    finally:
        await peer.close()
