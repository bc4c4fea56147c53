"""Which files a token report reads, found with the standard library only.

Contract: `claude_roots(env)` / `claude_files(roots)`, `codex_home(env)` / `codex_files(env)`,
`gemini_home(env)` / `gemini_files(env)` list each CLI's log files exactly as the readers in
`aiswitch.tokens.sources` use them (those modules re-export these functions), and
`input_files(source, home, env)` lists every file a report of `source` depends on, in a
stable order. Nothing here imports pydantic, typer or the report engine: the CLI's fast path
(`aiswitch.tokens.fastpath`) fingerprints these files before anything heavy is loaded.

How each CLI's files are found:

- Claude: `CLAUDE_CONFIG_DIR` (comma separated, each a config dir holding `projects/` or the
  `projects/` dir itself); else `$XDG_CONFIG_HOME/claude` (default `~/.config/claude`) and
  `~/.claude`, those that have a `projects/` dir. Every `*.jsonl` under each root's
  `projects/`, sorted by path as ccusage sorts them.
- Codex: `$CODEX_HOME/sessions/**/rollout-*.jsonl` (default `~/.codex`), sorted by path.
- Gemini: `$GEMINI_DATA_DIR/tmp/*/chats/session-*.json[l]` (default `~/.gemini`), sorted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from aiswitch.home import Home

SOURCES = ("aiswitch", "claude", "codex", "gemini", "all")
# The prune rollup beside the ledger (see aiswitch.tokens.transfer, which imports this name).
ROLLUP_FILE = "tokens-rollup.jsonl"


def rollup_path(home: Home) -> Path:
    return home.state / ROLLUP_FILE


def claude_roots(env: Mapping[str, str] | None = None) -> list[Path]:
    """The Claude config directories to read, as ccusage finds them."""
    env = os.environ if env is None else env
    roots: list[Path] = []
    configured = env.get("CLAUDE_CONFIG_DIR")
    if configured is not None:
        candidates = [Path(part.strip()).expanduser() for part in configured.split(",")]
        candidates = [
            path.parent if path.name == "projects" and path.is_dir() else path
            for path in candidates
            if str(path).strip()
        ]
    else:
        home = Path(env.get("HOME") or Path.home())
        xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        candidates = [xdg / "claude", home / ".claude"]
    for path in candidates:
        if (path / "projects").is_dir() and path not in roots:
            roots.append(path)
    return roots


def claude_files(roots: Iterable[Path]) -> list[Path]:
    """Every `*.jsonl` under each root's `projects/`, sorted by path as ccusage sorts them."""
    files: list[Path] = []
    for root in roots:
        for dirpath, _dirnames, filenames in os.walk(root / "projects"):
            files.extend(Path(dirpath, name) for name in filenames if name.endswith(".jsonl"))
    files.sort(key=str)
    return files


def codex_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    configured = env.get("CODEX_HOME")
    if configured:
        return Path(configured).expanduser()
    return Path(env.get("HOME") or Path.home()) / ".codex"


def codex_files(env: Mapping[str, str] | None = None) -> list[Path]:
    sessions = codex_home(env) / "sessions"
    return sorted(sessions.rglob("rollout-*.jsonl"), key=str) if sessions.is_dir() else []


def gemini_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    configured = env.get("GEMINI_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(env.get("HOME") or Path.home()) / ".gemini"


def gemini_files(env: Mapping[str, str] | None = None) -> list[Path]:
    tmp = gemini_home(env) / "tmp"
    if not tmp.is_dir():
        return []
    files = [
        path
        for path in tmp.glob("*/chats/session-*")
        if path.suffix in (".json", ".jsonl") and path.is_file()
    ]
    return sorted(files, key=str)


def input_files(source: str, home: Home, env: Mapping[str, str] | None = None) -> list[Path]:
    """The files a report of `source` reads (for cache keys), without reading them.

    `source` must be one of `SOURCES` (the caller checks it)."""
    files: list[Path] = []
    if source in ("aiswitch", "all"):
        files.extend([home.ledger, rollup_path(home)])
    if source in ("claude", "all"):
        files.extend(claude_files(claude_roots(env)))
    if source in ("codex", "all"):
        files.extend(codex_files(env))
    if source in ("gemini", "all"):
        files.extend(gemini_files(env))
    return files
