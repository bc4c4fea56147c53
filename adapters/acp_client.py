"""The client side of ACP for one task: files, terminals and permission answers.

Contract:
- `ClientSide(task …).register(peer)` answers the agent's requests on `peer`:
  `fs/read_text_file`, `fs/write_text_file`, `terminal/create|output|wait_for_exit|kill|
  release` and `session/request_permission`. Nothing else is advertised (`CAPABILITIES`),
  and anything else an agent asks gets the peer's -32601, never a hang.
- Files: the path must be absolute and, symlinks resolved, inside the task's workspace
  (its working directory) at every permission level; writes are refused at
  `read-only`. A refusal is a JSON-RPC error (`REFUSED`), a `task.progress` line
  (`denied: …`) and a warning in the agent log; nothing is read or written.
- Terminals run with the task's environment (plus the `env` the agent names) in the
  workspace (or the `cwd` the agent names: inside the workspace unless `full`), each in
  its own process group, SIGKILL on the adapter's death; `read-only` refuses them. A
  `command` without `args` is a shell command line (`/bin/sh -c`), as the agents that
  send one (claude-code-acp) expect. `close()` kills every terminal still running:
  the task's end (result, failure, cancel, timeout) takes them with it.
- Permission requests are answered from the task's level (`decide`): `read-only`
  allows reads, searches, thinking and fetches only; `edit` adds edits, deletes and
  moves of paths inside the workspace, and commands whose stated directory is inside
  it; `full` allows everything. The answer picks the agent's `allow_once` (else
  `allow_always`) or `reject_once` (else `reject_always`, else `cancelled`) option, and
  is recorded as progress: `permission granted: …` / `permission refused: …`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiswitch.process_group import death_signal, signal_group
from aiswitch.rpc import codes
from aiswitch.rpc.errors import MethodError
from aiswitch.rpc.peer import Peer

from ._common import Permission, short

log = logging.getLogger("aiswitch.adapter.acp")

# What the client offers in `initialize`: files and terminals, nothing else.
CAPABILITIES: Final = {"fs": {"readTextFile": True, "writeTextFile": True}, "terminal": True}
# ACP names no "permission denied" error; agents treat -32602 as a failed tool call.
REFUSED: Final = codes.INVALID_PARAMS
# A terminal's output kept when the agent names no limit (it reads it back in one reply).
DEFAULT_OUTPUT_LIMIT: Final = 1024 * 1024
# A file the agent reads is returned in one line of JSON; the peer's line limit is 16 MiB.
MAX_READ_BYTES: Final = 8 * 1024 * 1024
# After SIGTERM, how long a terminal's group may take before SIGKILL.
TERMINAL_GRACE_S: Final = 1.0

READ_KINDS: Final = frozenset({"read", "search", "think", "fetch"})
EDIT_KINDS: Final = frozenset({"edit", "delete", "move"})
# rawInput keys agents use for the directory a command runs in, and for the file a tool
# touches (claude-code-acp names neither kind nor locations, only its tool's input).
_CWD_KEYS: Final = ("cwd", "dir_path", "directory", "workdir")
_PATH_KEYS: Final = ("file_path", "path", "notebook_path")

Report = Callable[[str, str], Awaitable[None]]
_PREEXEC = death_signal(signal.SIGKILL)


def inside(path: Path, workspace: Path) -> bool:
    """Whether `path`, symlinks resolved, is `workspace` or below it."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return False
    return resolved == workspace or workspace in resolved.parents


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str


def _paths(tool_call: Mapping[str, Any]) -> list[Path]:
    found: list[Path] = []
    for location in tool_call.get("locations") or []:
        if isinstance(location, dict) and isinstance(location.get("path"), str):
            found.append(Path(location["path"]))
    raw = tool_call.get("rawInput")
    if isinstance(raw, dict):
        found += [
            Path(raw[key]) for key in _PATH_KEYS if isinstance(raw.get(key), str) and raw[key]
        ]
    return found


def _stated_cwd(tool_call: Mapping[str, Any]) -> Path | None:
    raw = tool_call.get("rawInput")
    if isinstance(raw, dict):
        for key in _CWD_KEYS:
            if isinstance(raw.get(key), str) and raw[key]:
                return Path(raw[key])
    return None


def decide(level: Permission, tool_call: Mapping[str, Any], workspace: Path) -> Decision:
    """The answer to one permission request (see the module docstring)."""
    kind = tool_call.get("kind") or "other"
    if level == "full":
        return Decision(True, "full")
    if kind in READ_KINDS:
        return Decision(True, f"{kind} allowed at {level}")
    if level == "read-only":
        return Decision(False, f"{kind} not allowed at read-only")
    # edit: writes and commands, inside the workspace only.
    if kind == "switch_mode":
        return Decision(False, "mode switches need full")
    outside = [p for p in _paths(tool_call) if not inside(workspace / p, workspace)]
    if kind == "execute":
        cwd = _stated_cwd(tool_call)
        if cwd is not None and not inside(workspace / cwd, workspace):
            outside.append(cwd)
    if outside:
        return Decision(False, f"{outside[0]} is outside the workspace")
    return Decision(True, f"{kind} inside the workspace at edit")


def pick_option(options: object, allow: bool) -> dict[str, Any]:
    """The permission outcome: the agent's option of the wanted kind, else cancelled."""
    wanted = ("allow_once", "allow_always") if allow else ("reject_once", "reject_always")
    if isinstance(options, list):
        for kind in wanted:
            for option in options:
                if isinstance(option, dict) and option.get("kind") == kind:
                    option_id = option.get("optionId")
                    if isinstance(option_id, str):
                        return {"outcome": {"outcome": "selected", "optionId": option_id}}
    return {"outcome": {"outcome": "cancelled"}}


@dataclass
class Terminal:
    proc: asyncio.subprocess.Process
    limit: int
    output: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    pump: asyncio.Task[None] | None = None

    def take(self, data: bytes) -> None:
        self.output += data
        if len(self.output) > self.limit:
            del self.output[: len(self.output) - self.limit]
            self.truncated = True

    def text(self) -> str:
        # Cut at a character boundary: the front may have lost part of one.
        return bytes(self.output).decode("utf-8", errors="ignore")

    def exit_status(self) -> dict[str, Any] | None:
        code = self.proc.returncode
        if code is None:
            return None
        if code < 0:
            return {"exitCode": None, "signal": signal.Signals(-code).name}
        return {"exitCode": code, "signal": None}


def _params(params: object) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise MethodError(codes.INVALID_PARAMS, "params must be an object")
    return params


def _string(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise MethodError(codes.INVALID_PARAMS, f"{name!r} must be a non-empty string")
    return value


class ClientSide:
    """One task's answers to its ACP agent (module docstring)."""

    def __init__(
        self,
        *,
        workspace: Path,
        level: Permission,
        env: Mapping[str, str],
        report: Report,
    ) -> None:
        self.workspace = workspace.resolve()
        self.level = level
        self.env = dict(env)
        self.report = report
        self.terminals: dict[str, Terminal] = {}
        self.denied: list[str] = []
        self._serial = 0

    def register(self, peer: Peer) -> None:
        for method, handler in {
            "fs/read_text_file": self.read_text_file,
            "fs/write_text_file": self.write_text_file,
            "terminal/create": self.terminal_create,
            "terminal/output": self.terminal_output,
            "terminal/wait_for_exit": self.terminal_wait,
            "terminal/kill": self.terminal_kill,
            "terminal/release": self.terminal_release,
            "session/request_permission": self.request_permission,
        }.items():
            peer.on_request(method, handler)

    async def _deny(self, what: str, why: str) -> MethodError:
        message = f"{what}: {why}"
        self.denied.append(message)
        log.warning("denied %s", message)
        await self.report(short(f"denied: {message}"), "status")
        return MethodError(REFUSED, message)

    async def _confined(self, method: str, raw: str) -> Path:
        path = Path(raw)
        if not path.is_absolute():
            raise await self._deny(f"{method} {raw}", "the path is not absolute")
        if not inside(path, self.workspace):
            raise await self._deny(f"{method} {raw}", "outside the task's workspace")
        return _resolved(path)

    # -- files ---------------------------------------------------------------------

    async def read_text_file(self, params: object) -> dict[str, Any]:
        p = _params(params)
        path = await self._confined("fs/read_text_file", _string(p, "path"))
        try:
            if path.stat().st_size > MAX_READ_BYTES:
                raise MethodError(
                    codes.INVALID_PARAMS, f"{path} is over {MAX_READ_BYTES} bytes; read less"
                )
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise MethodError(codes.INVALID_PARAMS, f"cannot read {path}: {exc.strerror}") from None
        line, limit = p.get("line"), p.get("limit")
        if isinstance(line, int) or isinstance(limit, int):
            lines = text.splitlines(keepends=True)
            start = max((line if isinstance(line, int) else 1) - 1, 0)
            end = start + limit if isinstance(limit, int) and limit >= 0 else None
            text = "".join(lines[start:end])
        return {"content": text}

    async def write_text_file(self, params: object) -> dict[str, Any]:
        p = _params(params)
        raw = _string(p, "path")
        content = p.get("content")
        if not isinstance(content, str):
            raise MethodError(codes.INVALID_PARAMS, "'content' must be a string")
        if self.level == "read-only":
            why = "writes are not allowed at read-only"
            raise await self._deny(f"fs/write_text_file {raw}", why)
        path = await self._confined("fs/write_text_file", raw)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        except OSError as exc:
            message = f"cannot write {path}: {exc.strerror}"
            raise MethodError(codes.INVALID_PARAMS, message) from None
        await self.report(short(f"wrote {path}"), "tool")
        return {}

    # -- terminals -----------------------------------------------------------------

    async def terminal_create(self, params: object) -> dict[str, Any]:
        p = _params(params)
        command = _string(p, "command")
        args = p.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise MethodError(codes.INVALID_PARAMS, "'args' must be a list of strings")
        what = f"terminal/create {short(' '.join([command, *args]), 120)}"
        if self.level == "read-only":
            raise await self._deny(what, "commands are not allowed at read-only")
        cwd = self.workspace
        if isinstance(p.get("cwd"), str) and p["cwd"]:
            cwd = self.workspace / p["cwd"]
            if self.level != "full" and not inside(cwd, self.workspace):
                raise await self._deny(what, f"{cwd} is outside the workspace")
        env = dict(self.env)
        for item in p.get("env") or []:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                env[item["name"]] = str(item.get("value", ""))
        limit = p.get("outputByteLimit")
        limit = limit if isinstance(limit, int) and limit > 0 else DEFAULT_OUTPUT_LIMIT
        argv = [command, *args] if args else ["/bin/sh", "-c", command]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=str(cwd),
                start_new_session=True,
                preexec_fn=_PREEXEC,
            )
        except OSError as exc:
            message = f"cannot run {command}: {exc.strerror}"
            raise MethodError(codes.INVALID_PARAMS, message) from None
        self._serial += 1
        terminal_id = f"term-{self._serial}"
        terminal = Terminal(proc, limit)
        terminal.pump = asyncio.get_running_loop().create_task(self._pump(terminal))
        self.terminals[terminal_id] = terminal
        await self.report(short(f"$ {' '.join(argv[2:] if not args else argv)}"), "tool")
        return {"terminalId": terminal_id}

    @staticmethod
    async def _pump(terminal: Terminal) -> None:
        stdout = terminal.proc.stdout
        assert stdout is not None
        while chunk := await stdout.read(65536):
            terminal.take(chunk)

    def _terminal(self, params: object) -> Terminal:
        terminal = self.terminals.get(_string(_params(params), "terminalId"))
        if terminal is None:
            raise MethodError(codes.INVALID_PARAMS, "no such terminal")
        return terminal

    async def terminal_output(self, params: object) -> dict[str, Any]:
        terminal = self._terminal(params)
        if terminal.proc.returncode is not None and terminal.pump is not None:
            await terminal.pump  # all of its output, now that it has exited
        return {
            "output": terminal.text(),
            "truncated": terminal.truncated,
            "exitStatus": terminal.exit_status(),
        }

    async def terminal_wait(self, params: object) -> dict[str, Any]:
        terminal = self._terminal(params)
        await terminal.proc.wait()
        if terminal.pump is not None:
            await terminal.pump
        status = terminal.exit_status()
        assert status is not None
        return status

    async def terminal_kill(self, params: object) -> dict[str, Any]:
        await _stop(self._terminal(params))
        return {}

    async def terminal_release(self, params: object) -> dict[str, Any]:
        terminal = self._terminal(params)
        await _stop(terminal)
        self.terminals = {k: t for k, t in self.terminals.items() if t is not terminal}
        return {}

    async def close(self) -> None:
        """Kill every terminal still running (the task is over)."""
        terminals, self.terminals = list(self.terminals.values()), {}
        await asyncio.gather(*(_stop(t) for t in terminals))

    # -- permissions ---------------------------------------------------------------

    async def request_permission(self, params: object) -> dict[str, Any]:
        p = _params(params)
        tool_call = p.get("toolCall")
        if not isinstance(tool_call, dict):
            raise MethodError(codes.INVALID_PARAMS, "'toolCall' must be an object")
        decision = decide(self.level, tool_call, self.workspace)
        title = tool_call.get("title") or tool_call.get("kind") or "a tool call"
        verdict = "granted" if decision.allow else "refused"
        if not decision.allow:
            self.denied.append(f"{title}: {decision.reason}")
            log.warning("refused permission for %s: %s", title, decision.reason)
        # A refusal is the user's to lift (`--permissions`): it is told as waiting for them.
        kind = "status" if decision.allow else "waiting"
        await self.report(short(f"permission {verdict}: {title} ({decision.reason})"), kind)
        return pick_option(p.get("options"), decision.allow)


async def _stop(terminal: Terminal) -> None:
    proc = terminal.proc
    if proc.returncode is None:
        signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), TERMINAL_GRACE_S)
        except TimeoutError:
            signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    # Whatever the command left in its group goes too.
    signal_group(proc.pid, signal.SIGKILL)
    if terminal.pump is not None and not terminal.pump.done():
        terminal.pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await terminal.pump


def _resolved(path: Path) -> Path:
    return path.resolve()


def default_workspace(cwd: str | None) -> Path:
    return Path(cwd) if cwd else Path(os.getcwd())
