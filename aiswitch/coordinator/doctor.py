"""`aiswitch doctor`'s checks: what is wrong with this machine's aiswitch, and the fix.

Contract:
- `examine(home, env, online=False)` returns `Finding`s: a check's name, its level
  (`ok`, `note`, `warning`, `problem`), what it found and, for anything not ok, the
  command that fixes it. It changes nothing: files are read directly (a corrupt state file
  is reported, not moved aside as `StateStore` would), locks are tried without waiting and
  released at once.
- Checks: the home's ownership and modes (`Home.problems`); every state file parses and
  fits its model (`state/*.json`, `state/runs/*.json`, the config YAML files); locks
  (held or not: OS locks die with their holder, so a lock file is never stale, but a lock
  file that is not a regular file is); control sockets of runs that are not running, or
  that are not the user's; `agents.json` entries whose process is gone (liveness by pid and
  create time, as `aiswitch ps`), or whose parent is gone (an orphan); runs marked running
  whose aiswitch is gone; the pinned agent CLIs (aiswitch/data/clis.json): installed, and
  at the tested version (aiswitch.coordinator.doctor_clis); user presets valid and their
  references resolvable; with `online`, each user preset's base URL reachable; free disk
  space under the home.
- `repair(home)` (`doctor --fix`) does what the next run would do (`reconcile`: orphans
  reaped, dead runs marked interrupted, their sockets removed), removes stale sockets and
  moves corrupt state files aside (kept, never deleted).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

from aiswitch.home import NOFOLLOW, Home

Level = Literal["ok", "note", "warning", "problem"]

# Below this much free space a run's state and logs may not fit (a ledger batch, a run
# file, rotated logs): enough for hundreds of runs, little enough to warn only when low.
MIN_FREE_BYTES: Final = 256 << 20


@dataclass
class Finding:
    check: str
    level: Level
    what: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def examine(home: Home, env: Mapping[str, str], *, online: bool = False) -> list[Finding]:
    from aiswitch.coordinator.doctor_clis import check_clis, check_presets, check_providers

    if not home.root.exists():
        found = [Finding("home", "note", f"{home.root} does not exist yet (made on first use)")]
    else:
        found = check_home(home)
        if any(f.level == "problem" for f in found):
            # Nothing is read through a tree someone else could have swapped.
            found.append(Finding("state", "note", "the home's files are checked once it is safe"))
        else:
            found += check_state_files(home)
            found += check_locks(home)
            found += check_processes(home)
    found += check_clis(home, env)
    found += check_presets(home, env)
    if online:
        found += check_providers(home, env)
    found += check_disk(home)
    return found


def check_home(home: Home) -> list[Finding]:
    problems = home.problems()
    if not problems:
        return [Finding("home", "ok", f"{home.root} is yours, private, and holds no links")]
    return [Finding("home", "problem", f"{path} {what}", fix) for path, what, fix in problems]


# --- state files ------------------------------------------------------------------------


def _mapping_of(key: str, kind: type) -> Callable[[Any], str | None]:
    def check(data: Any) -> str | None:
        if not isinstance(data, dict):
            return "is not a JSON object"
        if key in data and not isinstance(data[key], kind):
            return f"its {key!r} is not a {kind.__name__}"
        return None

    return check


def _run_file(data: Any) -> str | None:
    from pydantic import ValidationError

    from aiswitch.agents import validation_summary
    from aiswitch.coordinator.results import RunResult

    try:
        RunResult.model_validate(data)
    except ValidationError as exc:
        return f"is not a run: {validation_summary(exc)}"
    return None


_STATE_FILES: Final[dict[str, Callable[[Any], str | None]]] = {
    "agents.json": _mapping_of("agents", dict),
    "tasks.json": _mapping_of("runs", list),
    "capabilities.json": _mapping_of("agents", dict),
    "metrics.json": _mapping_of("runs", dict),
}


def _read(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def state_file_problem(path: Path, check: Callable[[Any], str | None] | None) -> str | None:
    try:
        data = json.loads(_read(path))
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    except ValueError:
        return "is not valid JSON"
    return check(data) if check is not None else None


def _state_files(home: Home) -> list[tuple[Path, Callable[[Any], str | None] | None]]:
    files: list[tuple[Path, Callable[[Any], str | None] | None]] = []
    if home.state.is_dir():
        for path in sorted(home.state.glob("*.json")):
            files.append((path, _STATE_FILES.get(path.name)))
    if home.runs.is_dir():
        files.extend((path, _run_file) for path in sorted(home.runs.glob("*.json")))
    return files


def check_state_files(home: Home) -> list[Finding]:
    found = []
    count = 0
    for path, check in _state_files(home):
        count += 1
        problem = state_file_problem(path, check)
        if problem is not None:
            found.append(
                Finding(
                    "state",
                    "problem",
                    f"{path} {problem}",
                    f"aiswitch doctor --fix  # {_aside(path)}",
                )
            )
    found += _config_files(home)
    if not found:
        found.append(Finding("state", "ok", f"{count} state files parse and fit their models"))
    return found


def _aside(path: Path) -> str:
    return f"moves it to {path.name}.corrupt-<time>"


def _config_files(home: Home) -> list[Finding]:
    from aiswitch.agents import AgentRegistry
    from aiswitch.coordinator import notify
    from aiswitch.errors import ConfigError
    from aiswitch.presets.store import PresetStore
    from aiswitch.tokens.quotas import load_quotas
    from aiswitch.workspace.model import load_settings

    found = []
    loaders: list[tuple[Path, Callable[[], object]]] = [
        (home.config / "agents.yaml", lambda: AgentRegistry.load(home)),
        (home.config / "presets.yaml", lambda: PresetStore(home).load()),
        (home.config / "quotas.yaml", lambda: load_quotas(home)),
        (home.config / "coordination.yaml", lambda: load_settings(home.config)),
        (home.config / "coordination.yaml", lambda: notify.load_settings(home.config)),
    ]
    for path, load in loaders:
        try:
            load()
        except ConfigError as exc:
            found.append(Finding("config", "problem", exc.one_line(), f"edit {path}"))
    return found


# --- locks, sockets, processes ------------------------------------------------------------


def check_locks(home: Home) -> list[Finding]:
    import fcntl

    found: list[Finding] = []
    held = []
    count = 0
    for path in sorted(home.locks.glob("*.lock")) if home.locks.is_dir() else []:
        count += 1
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            found.append(Finding("locks", "problem", f"{path} is not a regular file", f"rm {path}"))
            continue
        try:
            fd = os.open(path, os.O_RDONLY | NOFOLLOW)
        except OSError as exc:
            found.append(
                Finding(
                    "locks", "problem", f"{path} cannot be opened: {exc.strerror}", f"rm {path}"
                )
            )
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            held.append(path.stem)
        finally:
            os.close(fd)
    if held:
        found.append(Finding("locks", "note", f"held now by a running aiswitch: {', '.join(held)}"))
    if not found:
        found.append(
            Finding("locks", "ok", f"{count} lock files, none held (OS locks: none can go stale)")
        )
    return found


def _live_runs(home: Home) -> tuple[set[str], list[str]]:
    """The ids of runs whose aiswitch is alive, and of runs marked running whose is not."""
    from aiswitch.state.processes import is_same_process

    try:
        index = json.loads(_read(home.state / "tasks.json"))
    except (OSError, ValueError):
        return set(), []
    live, dead = set(), []
    for entry in index.get("runs", []) if isinstance(index, dict) else []:
        if not isinstance(entry, dict) or entry.get("status") != "running":
            continue
        pid, created = entry.get("pid"), entry.get("pid_create_time")
        if isinstance(pid, int) and is_same_process(pid, created):
            live.add(str(entry.get("run_id")))
        else:
            dead.append(str(entry.get("run_id")))
    return live, dead


def check_processes(home: Home) -> list[Finding]:
    from aiswitch.state.processes import is_same_process

    found: list[Finding] = []
    live, dead = _live_runs(home)
    for run_id in dead:
        found.append(
            Finding(
                "runs",
                "problem",
                f"run {run_id} is marked running but its aiswitch is gone",
                "aiswitch doctor --fix  # marks it interrupted; then `aiswitch runs resume "
                f"{run_id}` to finish it",
            )
        )
    sockets = home.tmp / "sockets"
    uid = os.geteuid()
    for path in sorted(sockets.iterdir()) if sockets.is_dir() else []:
        info = path.lstat()
        if info.st_uid != uid:
            found.append(
                Finding(
                    "sockets",
                    "problem",
                    f"{path} belongs to uid {info.st_uid}, not you",
                    f"rm {path}",
                )
            )
        elif not stat.S_ISSOCK(info.st_mode):
            found.append(Finding("sockets", "problem", f"{path} is not a socket", f"rm {path}"))
        elif path.stem not in live:
            found.append(
                Finding(
                    "sockets",
                    "problem",
                    f"{path} is the socket of run {path.stem}, which is not running",
                    f"rm {path}",
                )
            )
    try:
        table = json.loads(_read(home.state / "agents.json")).get("agents", {})
    except (OSError, ValueError, AttributeError):
        table = {}
    for key, entry in sorted(table.items()) if isinstance(table, dict) else []:
        if not isinstance(entry, dict):
            continue
        pid = entry.get("pid")
        alive = isinstance(pid, int) and is_same_process(pid, entry.get("create_time"))
        parent = entry.get("parent_pid")
        parent_alive = isinstance(parent, int) and is_same_process(
            parent, entry.get("parent_create_time")
        )
        if not alive:
            found.append(
                Finding(
                    "agents",
                    "problem",
                    f"agents.json lists {key} (pid {pid}), which is no longer running",
                    "aiswitch doctor --fix  # drops the entry",
                )
            )
        elif not parent_alive:
            found.append(
                Finding(
                    "agents",
                    "problem",
                    f"{key} (pid {pid}) is an orphan: the aiswitch that started it is gone",
                    f"aiswitch doctor --fix  # or: kill -9 -{entry.get('pgid', pid)}",
                )
            )
    if not found:
        found.append(
            Finding("processes", "ok", f"{len(live)} runs running, no stale socket or entry")
        )
    return found


# --- disk -----------------------------------------------------------------------------------


def check_disk(home: Home) -> list[Finding]:
    where = home.root
    while not where.exists() and where != where.parent:
        where = where.parent
    usage = shutil.disk_usage(where)
    free = f"{usage.free / (1 << 20):,.0f} MiB free"
    if usage.free < MIN_FREE_BYTES:
        return [
            Finding(
                "disk",
                "problem",
                f"{where}: only {free} (aiswitch wants {MIN_FREE_BYTES >> 20} MiB)",
                f"free space on {where} (aiswitch runs rm RUN and aiswitch tokens prune "
                "--before DATE free aiswitch's own)",
            )
        ]
    return [Finding("disk", "ok", f"{where}: {free}")]


# --- repair ---------------------------------------------------------------------------------


def repair(home: Home) -> list[str]:
    """What `doctor --fix` did, one line each."""
    from aiswitch.coordinator.reconcile import reconcile
    from aiswitch.state.store import StateStore

    done: list[str] = []
    store = StateStore(home)
    for path, check in _state_files(home):
        if state_file_problem(path, check) is not None:
            done.append(f"moved {path} to {store.move_aside(path).name}")
    before = set(_table_keys(home))
    marked = reconcile(store)
    done += [f"marked run {run_id} interrupted" for run_id in marked]
    done += [f"dropped {key} from agents.json" for key in sorted(before - set(_table_keys(home)))]
    live, _ = _live_runs(home)
    sockets = home.tmp / "sockets"
    uid = os.geteuid()
    for path in sorted(sockets.iterdir()) if sockets.is_dir() else []:
        info = path.lstat()
        if info.st_uid == uid and path.stem not in live:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                done.append(f"removed {path}")
    return done


def _table_keys(home: Home) -> list[str]:
    try:
        table = json.loads(_read(home.state / "agents.json")).get("agents", {})
    except (OSError, ValueError, AttributeError):
        return []
    return list(table) if isinstance(table, dict) else []
