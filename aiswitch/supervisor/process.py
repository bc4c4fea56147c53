"""One agent child process: spawn, handshake, and the stop sequence.

Everything else said to the child (tasks, status, environment) goes through
`AgentHandle` and the typed client (`process.client`); this module only brings a child
up and takes it down.

Contract:
- Spawned with `aiswitch.rpc.child.spawn` (never a shell) in a new session (its own
  process group, so signals reach the whole group and a terminal's Ctrl-C does not);
  stdin/stdout are the protocol, stderr is `logs/agents/<run_id>/<agent-id>.log`.
- On Linux the child also gets SIGTERM when the parent dies (PR_SET_PDEATHSIG), on top
  of the protocol's own rule that an adapter exits when its stdin closes; and the table
  in `state/agents.json` lets the next invocation reap anything left behind.
- `start()` raises `AgentStartError` (one line, naming the log) when the child exits
  or does not answer `agent.initialize` within the handshake timeout (by default the
  agents' `start_timeout`, `limits.DEFAULT_START_TIMEOUT_S`), or answers it with a reply
  that does not fit the protocol.
- `stop()` runs `agent.shutdown` → close stdin → bounded wait → SIGTERM to the group →
  bounded wait → SIGKILL to the group, and runs to the end even when its caller is
  cancelled (the sequence is a separate task; the caller only waits for it). A stop
  that comes while `start()` spawns the child waits for the spawn and stops that child
  (`start()` then raises `AgentStartError`): no child outlives a stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Any, TypeVar

from aiswitch.agents import AgentDef
from aiswitch.errors import AgentStartError
from aiswitch.home import Home
from aiswitch.process_group import signal_group
from aiswitch.protocol.client import AgentClient, InvalidReplyError
from aiswitch.protocol.models import (
    INITIALIZE,
    SHUTDOWN,
    InitializeParams,
    InitializeResult,
    ShutdownParams,
)
from aiswitch.rpc.child import Child, spawn
from aiswitch.rpc.errors import RpcError
from aiswitch.rpc.peer import LINE_LIMIT, Peer
from aiswitch.supervisor.limits import DEFAULT_START_TIMEOUT_S
from aiswitch.supervisor.logs import agent_log_path, last_line, open_agent_log
from aiswitch.supervisor.rlimits import exit_reason, wanted

# How long each step of the stop sequence may take before the next, harder one.
SHUTDOWN_REPLY_TIMEOUT_S = 2.0
EXIT_AFTER_EOF_S = 2.0
EXIT_AFTER_SIGTERM_S = 2.0
# A cancelled task gets this long to report itself cancelled before we stop waiting.
CANCEL_REPLY_TIMEOUT_S = 3.0

T = TypeVar("T")


# The child gets SIGTERM (a clean stop) if this process dies without stopping it.
_DEATH = signal.SIGTERM


class AgentProcess:
    def __init__(
        self,
        agent: AgentDef,
        agent_id: str,
        *,
        home: Home,
        run_id: str,
        env: dict[str, str],
        cwd: str | None = None,
    ) -> None:
        self.agent = agent
        self.agent_id = agent_id
        self.home = home
        self.run_id = run_id
        self.env = env
        self.cwd = cwd
        self.proc: Child | None = None
        self.peer: Peer | None = None
        # The typed client over `peer`: the one way to speak to the child once it runs.
        self.client: AgentClient | None = None
        self.info: InitializeResult | None = None
        self.create_time: float | None = None
        self._stop_task: asyncio.Task[int | None] | None = None
        # Done once `start()` has spawned the child (or failed to): a stop that comes while
        # the child is being spawned waits for it, then stops it.
        self._spawned: asyncio.Future[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def log_path(self) -> Any:
        return agent_log_path(self.home, self.agent_id, self.run_id)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    # -- start --------------------------------------------------------------------

    async def start(self, handshake_timeout: float = DEFAULT_START_TIMEOUT_S) -> InitializeResult:
        log_fd = open_agent_log(self.home, self.agent_id, self.run_id)
        self._spawned = spawned = asyncio.get_running_loop().create_future()
        try:
            self.proc = await spawn(
                self.agent.command,
                env=self.env,
                cwd=self.cwd,
                stderr=log_fd,
                name=self.agent_id,
                rlimits=wanted(self.agent.limits),
                death=_DEATH,
                line_limit=LINE_LIMIT,
            )
        except OSError as exc:
            raise AgentStartError(
                f"{self.agent_id}: cannot start {self.agent.command[0]!r}: {exc.strerror}"
            ) from None
        finally:
            os.close(log_fd)
            if not spawned.done():  # (a stop cancelled while waiting on it cancels it)
                spawned.set_result(None)
        from aiswitch.state.processes import process_identity

        self.create_time = process_identity(self.proc.pid)
        self.peer = self.proc.peer
        if self._stop_task is not None:
            # Stopped while it was being spawned: the stop sequence takes it down now.
            raise AgentStartError(f"{self.agent_id} was stopped before its handshake")
        self.client = AgentClient(self.peer)
        # No task runs before the handshake, so no notification can come before the
        # handle registers its handlers on `client`.
        self.peer.start()
        from aiswitch import __version__

        params = InitializeParams(
            agent_id=self.agent_id,
            parent_pid=os.getpid(),
            config=self.agent.options,
        )
        params.client.version = __version__
        try:
            self.info = await self.client.call(INITIALIZE, params, timeout=handshake_timeout)
        except RpcError as exc:
            raise AgentStartError(await self._start_failure(exc)) from None
        return self.info

    async def _start_failure(self, exc: RpcError) -> str:
        from aiswitch.rpc.errors import RemoteError, RequestTimeoutError

        if isinstance(exc, RequestTimeoutError):
            return (
                f"{self.agent_id} did not answer {INITIALIZE.name} within "
                f"{exc.timeout:g}s (see {self.log_path})"
            )
        if isinstance(exc, InvalidReplyError):
            return f"{self.agent_id}: {exc.message} (see {self.log_path})"
        if isinstance(exc, RemoteError):
            return f"{self.agent_id} refused to start: {exc.remote_message}"
        ended = await self._ended("before its handshake")
        return f"{self.agent_id} {ended} (see {self.log_path})"

    async def _ended(self, when: str) -> str:
        return self.how_ended(await self.wait_exit(EXIT_AFTER_EOF_S), when)

    def how_ended(self, code: int | None, when: str) -> str:
        """How the child's output ended (its exit `code`, if it exited), `when`, with the
        last line of its log."""
        limit = exit_reason(code, self.agent.limits)
        if limit is not None:
            return f"was {limit} {when}"
        last = last_line(self.log_path)
        how = f"exited with code {code}" if code is not None else "closed its output"
        return f"{how} {when}" + (f": {last}" if last else "")

    # -- stop ---------------------------------------------------------------------

    async def wait_exit(self, timeout: float | None) -> int | None:
        if self.proc is None:
            return None
        try:
            return int(await asyncio.wait_for(self.proc.wait(), timeout))
        except TimeoutError:
            return None

    async def stop(self, reason: str = "stop") -> int | None:
        """Stop the child; safe to call many times and from a cancelled task."""
        if self._stop_task is None:
            self._stop_task = asyncio.get_running_loop().create_task(self._stop_sequence(reason))
        return await wait_uncancellable(self._stop_task)

    async def _stop_sequence(self, reason: str) -> int | None:
        if self._spawned is not None:
            await self._spawned
        proc = self.proc
        if proc is None:
            return None
        peer, client = self.peer, self.client
        if (
            proc.returncode is None
            and peer is not None
            and client is not None
            and not peer.closed.is_set()
        ):
            with contextlib.suppress(RpcError):
                await client.call(
                    SHUTDOWN, ShutdownParams(reason=reason), timeout=SHUTDOWN_REPLY_TIMEOUT_S
                )
        proc.close_stdin()
        code = await self.wait_exit(EXIT_AFTER_EOF_S)
        if code is None:
            self._signal_group(signal.SIGTERM)
            code = await self.wait_exit(EXIT_AFTER_SIGTERM_S)
        if code is None:
            self._signal_group(signal.SIGKILL)
            code = int(await proc.wait())
        # Anything the adapter left in its group (a CLI it failed to reap) goes too.
        self._signal_group(signal.SIGKILL)
        if peer is not None:
            await peer.close("agent stopped")
        return code

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is not None:
            signal_group(self.proc.pid, sig)

    def table_entry(self) -> dict[str, Any]:
        from aiswitch.state.processes import process_identity

        return {
            "agent": self.agent.name,
            "agent_id": self.agent_id,
            "run_id": self.run_id,
            "pid": self.pid,
            "pgid": self.pid,
            "create_time": self.create_time,
            "parent_pid": os.getpid(),
            "parent_create_time": process_identity(os.getpid()),
            "started_at": time.time(),
            "log": str(self.log_path),
        }


async def wait_uncancellable(task: asyncio.Task[T]) -> T:
    """Wait for `task` to finish even if we are cancelled meanwhile; re-raise the
    cancellation afterwards so the caller's own cancellation is not lost."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                break
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return task.result()
