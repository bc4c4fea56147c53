"""`aiswitch mcp install|uninstall CLIENT`: the server's entry in a client's own config file.

Contract:
- Files: Claude Code `.mcp.json` (project) or `~/.claude.json` (user), both `mcpServers`;
  Codex `.codex/config.toml` (project) or `$CODEX_HOME/config.toml` (user, default
  `~/.codex`), table `[mcp_servers.aiswitch]`; Gemini CLI `.gemini/settings.json`
  (project) or `~/.gemini/settings.json` (user), `mcpServers`.
- Only the `aiswitch` entry changes. TOML is edited with tomlkit, which keeps every other
  table, comment and blank line as it was; JSON is parsed and written back in its key
  order with the indentation it had (a JSON file with comments, which a strict parser
  refuses, is left alone with a message saying what to add by hand).
- Install twice equals install once (nothing written when the entry is already what it
  would write); uninstall after install gives back the file as it was (a `mcpServers` or
  `mcp_servers` left empty is removed, a file left empty is deleted).
- Every change is shown as a unified diff; `--dry-run` shows it and writes nothing.
  Writes are atomic (temp file + rename) and keep the file's mode.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiswitch.errors import UsageError

CLIENTS = ("claude", "codex", "gemini")
Scope = Literal["project", "user"]
ENTRY = "aiswitch"


@dataclass(frozen=True)
class Change:
    path: Path
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.before.splitlines(keepends=True),
                self.after.splitlines(keepends=True),
                fromfile=f"{self.path} (before)",
                tofile=f"{self.path} (after)",
            )
        )


def config_path(client: str, scope: Scope, cwd: Path, home: Path) -> Path:
    if client == "claude":
        return cwd / ".mcp.json" if scope == "project" else home / ".claude.json"
    if client == "codex":
        if scope == "project":
            return cwd / ".codex" / "config.toml"
        codex_home = os.environ.get("CODEX_HOME")
        return (Path(codex_home) if codex_home else home / ".codex") / "config.toml"
    if client == "gemini":
        base = cwd if scope == "project" else home
        return base / ".gemini" / "settings.json"
    raise UsageError(f"unknown client {client!r}", hint="use claude, codex or gemini")


def plan(
    client: str,
    scope: Scope,
    server: dict[str, Any] | None,
    *,
    cwd: Path | None = None,
    home: Path | None = None,
) -> Change:
    """The change that installs `server` (None: uninstalls) in the client's file."""
    if scope not in ("project", "user"):
        raise UsageError(f"unknown --scope {scope!r}", hint="use project or user")
    path = config_path(client, scope, cwd or Path.cwd(), home or Path.home())
    try:
        before = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    edit = _toml if client == "codex" else _json
    return Change(path, before, edit(path, before, server))


def write(change: Change) -> None:
    if not change.changed:
        return
    path = change.path
    if not change.after:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(change.after)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json(path: Path, text: str, server: dict[str, Any] | None) -> str:
    if text.strip():
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            entry = json.dumps({"mcpServers": {ENTRY: server}}, indent=2)
            raise UsageError(
                f"{path} is not plain JSON (comments?), so it is left as it is",
                hint=f"add this to it by hand: {entry}" if server else "remove 'aiswitch' by hand",
            ) from None
        if not isinstance(data, dict):
            raise UsageError(f"{path} does not hold a JSON object")
    else:
        data = {}
    servers = data.get("mcpServers")
    if servers is not None and not isinstance(servers, dict):
        raise UsageError(f"{path}: mcpServers is not an object")
    if server is None:
        if not servers or ENTRY not in servers:
            return text
        del servers[ENTRY]
        if len(servers) == 0:
            del data["mcpServers"]
    else:
        if servers is None:
            servers = data["mcpServers"] = {}
        if servers.get(ENTRY) == server:
            return text
        servers[ENTRY] = server
    if not data and server is None:
        return ""
    end = "\n" if text.endswith("\n") or not text.strip() else ""
    return json.dumps(data, indent=_indent(text), ensure_ascii=False) + end


def _indent(text: str) -> int:
    match = re.search(r"\n( +)\S", text)
    return len(match.group(1)) if match else 2


def _toml(path: Path, text: str, server: dict[str, Any] | None) -> str:
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise UsageError(f"{path} is not valid TOML ({exc}); fix it first") from None
    servers = doc.get("mcp_servers")
    if servers is not None and not isinstance(servers, dict):
        raise UsageError(f"{path}: mcp_servers is not a table")
    if server is None:
        if not servers or ENTRY not in servers:
            return text
        del servers[ENTRY]
        if len(servers) == 0:
            del doc["mcp_servers"]
        return tomlkit.dumps(doc)
    if servers is not None and servers.get(ENTRY) == server:
        return text
    if servers is None:
        servers = tomlkit.table(is_super_table=True)
        doc["mcp_servers"] = servers
    table = tomlkit.table()
    for key, value in server.items():
        table[key] = value
    table.add(tomlkit.nl())
    servers[ENTRY] = table
    out = tomlkit.dumps(doc)
    return out if out.endswith("\n") else out + "\n"


def server_entry(args: list[str], command: str) -> dict[str, Any]:
    """What the client starts: `aiswitch mcp` with the limits given."""
    return {"command": command, "args": ["mcp", *args]}
