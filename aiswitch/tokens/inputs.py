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
- aiswitch's own preset homes, always, after the above: an API-key preset's CLI keeps its
  files in `<aiswitch home>/homes/<cli>/<preset>/` (claude: a config dir; codex: a
  CODEX_HOME; gemini: a GEMINI_CLI_HOME holding `.gemini/`), so their logs are read without
  the user pointing the CLI's variable at them. `log_roots(cli, env, home)` lists every
  folder read, for `tokens report -v`.
"""

from __future__ import annotations

import os
from pathlib import Path

from aiswitch.home import Home
from aiswitch.tokens.listing import files_under

# Not `typing` at run time: it imports `re` (~5 ms), which this fast path otherwise never
# loads; mypy reads the names as if typing.TYPE_CHECKING were used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

SOURCES = ("aiswitch", "claude", "codex", "gemini", "all")


# Where aiswitch keeps each CLI's files for an API-key preset (adapters/_common.py makes them).
HOMES_DIR = "homes"


def preset_homes(home: Home | None, cli: str) -> list[Path]:
    """`<home>/homes/<cli>/<preset>/` for every preset that has one, sorted by name."""
    if home is None:
        return []
    folder = home.root / HOMES_DIR / cli
    try:
        found = [path for path in folder.iterdir() if path.is_dir()]
    except OSError:
        return []
    return sorted(found, key=str)


def claude_roots(env: Mapping[str, str] | None = None, home: Home | None = None) -> list[Path]:
    """The Claude config directories to read, as ccusage finds them, then the preset
    homes aiswitch made under `home`."""
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
        candidates += preset_homes(home, "claude")
    else:
        user_home = Path(env.get("HOME") or Path.home())
        xdg = Path(env.get("XDG_CONFIG_HOME") or user_home / ".config")
        candidates = [xdg / "claude", user_home / ".claude"]
    candidates += preset_homes(home, "claude")
    for path in candidates:
        if (path / "projects").is_dir() and path not in roots:
            roots.append(path)
    return roots


def claude_paths(roots: Iterable[Path], index: dict[str, Any] | None = None) -> list[str]:
    """`claude_files` as strings; `index`: see `aiswitch.tokens.listing.files_under`."""
    files: list[str] = []
    for root in roots:
        files.extend(files_under(os.path.join(root, "projects"), ".jsonl", index))
    files.sort()
    return files


def claude_files(roots: Iterable[Path]) -> list[Path]:
    """Every `*.jsonl` under each root's `projects/`, sorted by path as ccusage sorts them."""
    return [Path(path) for path in claude_paths(roots)]


def codex_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    configured = env.get("CODEX_HOME")
    if configured:
        return Path(configured).expanduser()
    return Path(env.get("HOME") or Path.home()) / ".codex"


def codex_homes(env: Mapping[str, str] | None = None, home: Home | None = None) -> list[Path]:
    """`codex_home(env)`, then the preset homes aiswitch made under `home` (each a
    CODEX_HOME), without repeats."""
    homes = [codex_home(env)]
    homes += [path for path in preset_homes(home, "codex") if path not in homes]
    return homes


def codex_files(env: Mapping[str, str] | None = None, home: Home | None = None) -> list[Path]:
    files: list[Path] = []
    for codex in codex_homes(env, home):
        sessions = codex / "sessions"
        if sessions.is_dir():
            files.extend(sorted(sessions.rglob("rollout-*.jsonl"), key=str))
    return files


def gemini_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    configured = env.get("GEMINI_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(env.get("HOME") or Path.home()) / ".gemini"


def gemini_homes(env: Mapping[str, str] | None = None, home: Home | None = None) -> list[Path]:
    """`gemini_home(env)`, then the `.gemini` of each preset home aiswitch made under
    `home` (a GEMINI_CLI_HOME), without repeats."""
    homes = [gemini_home(env)]
    homes += [
        path / ".gemini" for path in preset_homes(home, "gemini") if path / ".gemini" not in homes
    ]
    return homes


def gemini_files(env: Mapping[str, str] | None = None, home: Home | None = None) -> list[Path]:
    files: list[Path] = []
    for gemini in gemini_homes(env, home):
        tmp = gemini / "tmp"
        if tmp.is_dir():
            files.extend(
                sorted(
                    (
                        path
                        for path in tmp.glob("*/chats/session-*")
                        if path.suffix in (".json", ".jsonl") and path.is_file()
                    ),
                    key=str,
                )
            )
    return files


def log_roots(
    cli: str, env: Mapping[str, str] | None = None, home: Home | None = None
) -> list[Path]:
    """The folders a report of `cli`'s logs reads (those that exist), for `-v`."""
    if cli == "claude":
        return claude_roots(env, home)
    if cli == "codex":
        return [path for path in codex_homes(env, home) if (path / "sessions").is_dir()]
    return [path for path in gemini_homes(env, home) if (path / "tmp").is_dir()]


def input_paths(
    source: str,
    home: Home,
    env: Mapping[str, str] | None = None,
    index: dict[str, Any] | None = None,
) -> list[str]:
    """The files a report of `source` reads (for cache keys), without reading them.

    `source` must be one of `SOURCES` (the caller checks it). `index`: the directory index
    the Claude logs are listed through (`aiswitch.tokens.listing.files_under`)."""
    files: list[str] = []
    if source in ("aiswitch", "all"):
        from aiswitch.tokens.rollup import rollup_path  # dataclasses: not on the fast paths

        files.extend([os.fspath(home.ledger), os.fspath(rollup_path(home))])
    if source in ("claude", "all"):
        files.extend(claude_paths(claude_roots(env, home), index))
    if source in ("codex", "all"):
        files.extend(map(os.fspath, codex_files(env, home)))
    if source in ("gemini", "all"):
        files.extend(map(os.fspath, gemini_files(env, home)))
    return files


def input_files(source: str, home: Home, env: Mapping[str, str] | None = None) -> list[Path]:
    """`input_paths` as paths."""
    return [Path(path) for path in input_paths(source, home, env)]
