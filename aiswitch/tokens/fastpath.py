"""The CLI's fast path: a JSON token report the cache already answered, without typer.

`aiswitch tokens report|daily|weekly|monthly|session … --json` on unchanged inputs would
otherwise pay for importing typer, rich, pydantic and the report engine only to print a
cached document. This module answers it with the standard library (and orjson) only.

Contract:

- `remember(args, source, home, state, stdout, stderr)` is called by the normal (typer) path
  after it printed a JSON report for the command line `args` (the words after `aiswitch`):
  it stores exactly what was written to stdout and stderr, keyed by `args` and the
  environment (`context_key`), together with `state`, the `snapshot(source, home)` taken
  before the report was computed.
- `try_fast_report(args)` prints the stored stdout and stderr and returns True only when a
  record for exactly these `args` in this environment exists and `snapshot(source, home)` is
  unchanged; anything else (no record, a changed file, an unreadable or foreign record, any
  error at all) returns False with nothing written, and the caller takes the normal path.
- A snapshot covers everything the report's output depends on besides the command line and
  the environment: the (path, size, mtime, inode) of every input file of the source (as
  `aiswitch.tokens.inputs.input_files` lists them, so a new file is noticed), of every file
  under the home's `config/` (user prices, presets), and of aiswitch's own code and data
  (the bundled prices and presets). The environment covers the variables that choose the
  home, the CLIs' log directories and the timezone, the working directory, and the local
  zone's current name and UTC offset (a report without `--timezone` uses them).
- Both paths therefore print the same bytes: a fast-path answer is a byte-for-byte replay of
  what the normal path printed for the same command line over the same files.
- `AISWITCH_NO_FAST_PATH` set to a non-empty value disables the fast path (tests compare
  both paths with it). `--no-cache` never takes or feeds the fast path.
- Records live in `tmp/token-index/fast/` (mode 0600 files in a 0700 directory, written
  atomically); only the newest `MAX_FAST_RECORDS` are kept. They are only a cache.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from aiswitch.home import Home

# Not `typing` at run time: it imports `re` (~5 ms), which this fast path otherwise never
# loads; mypy reads the names as if typing.TYPE_CHECKING were used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    Fingerprint = list[Any]  # [path, size, mtime_ns, inode]

FAST_PATH_ENV = "AISWITCH_NO_FAST_PATH"
FAST_RECORD_VERSION = 1
# Under the token index directory (aiswitch.tokens.index.INDEX_DIR).
FAST_DIR = ("token-index", "fast")
MAX_FAST_RECORDS = 64
# The index of the Claude log folders' mtimes (`aiswitch.tokens.listing`), under the home's tmp.
DIR_INDEX_FILE = ("token-index", "dirs.marshal")
DIR_INDEX_VERSION = 1
REPORT_COMMANDS = frozenset({"report", "daily", "weekly", "monthly", "session"})
# Options after which the fast path never applies (the typer path does other work for them).
BYPASS_FLAGS = frozenset({"--no-cache", "--help"})
JSON_FLAG = "--json"
# Environment variables that change which files are read or how times are shown.
CONTEXT_ENV = (
    "AISWITCH_HOME",
    "HOME",
    "CLAUDE_CONFIG_DIR",
    "CODEX_HOME",
    "GEMINI_DATA_DIR",
    "XDG_CONFIG_HOME",
    "TZ",
)
LOCALTIME_FILE = "/etc/localtime"
# aiswitch's own files whose change may change a report (code, bundled prices and presets).
CODE_DIRS = ("tokens", "data", "presets")
CODE_FILES = ("cli/tokens_cmd.py", "home.py", "errors.py", "agents.py", "__init__.py")
KEY_CHARS = 32

# The command line of this process, set by `aiswitch.cli.entry` around the typer path so that
# the report command can `remember` its output (None when not run from the console script).
current_args: list[str] | None = None


def eligible(args: Sequence[str]) -> bool:
    """Whether `args` may be a report the fast path can answer (a cheap first test)."""
    return (
        len(args) >= 2
        and args[0] == "tokens"
        and args[1] in REPORT_COMMANDS
        and JSON_FLAG in args
        and not BYPASS_FLAGS.intersection(args)
    )


def enabled() -> bool:
    return not os.environ.get(FAST_PATH_ENV)


def _fingerprint(path: str) -> Fingerprint:
    try:
        stat = os.stat(path)
    except OSError:
        return [path, 0, 0, 0]
    return [path, stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _tree(root: str) -> list[Fingerprint]:
    """Fingerprints of every file under `root` (sorted; bytecode caches left out)."""
    out: list[Fingerprint] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [name for name in dirnames if name != "__pycache__"]
        out.extend(_fingerprint(os.path.join(dirpath, name)) for name in filenames)
    out.sort(key=lambda item: str(item[0]))
    return out


def _code_fingerprints() -> list[Fingerprint]:
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out: list[Fingerprint] = []
    for name in CODE_DIRS:
        out.extend(_tree(os.path.join(package, name)))
    out.extend(_fingerprint(os.path.join(package, name)) for name in CODE_FILES)
    return out


def _dir_index_path(home: Home) -> Path:
    return home.tmp.joinpath(*DIR_INDEX_FILE)


def _load_dir_index(home: Home) -> dict[str, Any]:
    import marshal  # built in, and loads several times faster than json

    try:
        stored = marshal.loads(_dir_index_path(home).read_bytes())  # noqa: S302 (own cache)
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    if not isinstance(stored, dict) or stored.get("v") != DIR_INDEX_VERSION:
        return {}
    folders = stored.get("dirs")
    return folders if isinstance(folders, dict) else {}


def _save_dir_index(home: Home, folders: dict[str, Any]) -> None:
    import contextlib
    import marshal

    from aiswitch.tokens.index import _atomic_write

    record = {"v": DIR_INDEX_VERSION, "dirs": folders}
    with contextlib.suppress(OSError, TypeError, ValueError):
        _atomic_write(_dir_index_path(home), marshal.dumps(record))


def snapshot(source: str, home: Home) -> list[Any]:
    """What a report of `source` depends on besides the command line (module docstring).

    The Claude logs are listed through the index of their folders' mtimes kept in
    `tmp/token-index/dirs.json` (`aiswitch.tokens.listing`): only changed folders are read.
    Every file is still stat-ed (a log appended to changes no folder)."""
    from aiswitch.tokens.inputs import input_paths
    from aiswitch.tokens.listing import DIRTY

    folders = _load_dir_index(home)
    inputs = [_fingerprint(path) for path in input_paths(source, home, index=folders)]
    if folders.pop(DIRTY, False):
        _save_dir_index(home, folders)
    return [source, inputs, _tree(os.fspath(home.config)), _code_fingerprints()]


def context_key(args: Sequence[str]) -> str:
    """The record name for `args` in this process's environment."""
    import hashlib  # only here: the status line (which has no key) does not pay for it

    from aiswitch import __version__

    local = time.localtime()
    try:
        zone_file = os.path.realpath(LOCALTIME_FILE)
    except OSError:
        zone_file = ""
    context = [
        FAST_RECORD_VERSION,
        __version__,
        list(args),
        [os.environ.get(name) for name in CONTEXT_ENV],
        os.getcwd(),
        local.tm_zone,
        local.tm_gmtoff,
        zone_file,
        _fingerprint(zone_file) if zone_file else None,
    ]
    return hashlib.sha256(repr(context).encode("utf-8", "surrogatepass")).hexdigest()[:KEY_CHARS]


def _record_dir(home: Home) -> Path:
    return home.tmp.joinpath(*FAST_DIR)


def try_fast_report(args: Sequence[str]) -> bool:
    """Print the recorded output for `args` if still valid (module docstring); else False."""
    if not enabled() or not eligible(args):
        return False
    try:
        import orjson

        home = Home.current()
        path = _record_dir(home) / f"{context_key(args)}.json"
        record = orjson.loads(path.read_bytes())
        if not isinstance(record, dict) or record.get("v") != FAST_RECORD_VERSION:
            return False
        state, stdout, stderr = record["state"], record["stdout"], record["stderr"]
        if not (isinstance(state, list) and state and isinstance(state[0], str)):
            return False
        if not (isinstance(stdout, str) and isinstance(stderr, str)):
            return False
        from aiswitch.tokens.inputs import SOURCES

        if state[0] not in SOURCES or state != snapshot(state[0], home):
            return False
    except Exception:  # only a cache: any problem means "take the normal path"
        return False
    if stderr:
        sys.stderr.write(stderr)
    sys.stdout.write(stdout)
    return True


def remember(args: Sequence[str], home: Home, state: list[Any], stdout: str, stderr: str) -> None:
    """Store what the normal path printed for `args` (see the module docstring)."""
    if not enabled() or not eligible(args):
        return
    import contextlib

    import orjson

    from aiswitch.tokens.index import _atomic_write

    record = {"v": FAST_RECORD_VERSION, "state": state, "stdout": stdout, "stderr": stderr}
    directory = _record_dir(home)
    with contextlib.suppress(OSError, TypeError, orjson.JSONEncodeError):
        _atomic_write(directory / f"{context_key(args)}.json", orjson.dumps(record))
        names = sorted(
            directory.glob("*.json"), key=lambda item: item.stat().st_mtime_ns, reverse=True
        )
        for old in names[MAX_FAST_RECORDS:]:
            with contextlib.suppress(OSError):
                old.unlink()
