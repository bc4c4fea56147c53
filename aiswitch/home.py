"""Where aiswitch keeps its files.

The home is `$AISWITCH_HOME` when set, else `~/.aiswitch`. `Home` only computes paths;
`Home.ensure()` creates the directory tree with mode 0700 (the home holds keys and
logs that may contain prompts) and refuses a tree it cannot trust (`problems`): a folder
that is a symbolic link, owned by another user, or writable by others, any of whom could
swap a file for a link to one of yours. `aiswitch doctor` lists them with the fix. Files
under the home are opened with `O_NOFOLLOW` (`NOFOLLOW`). Nothing else in aiswitch builds
these paths by hand.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from aiswitch.errors import StateError

HOME_ENV = "AISWITCH_HOME"
DIR_MODE = 0o700
SECRET_FILE_MODE = 0o600
# Added to every open of a file under the home: a link planted there is refused (ELOOP),
# never followed to a file of the user's (or root's) elsewhere.
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def default_home() -> Path:
    """The home directory in force for this process."""
    value = os.environ.get(HOME_ENV)
    if value:
        return Path(value).expanduser()
    return Path.home() / ".aiswitch"


class Home:
    """The paths of one aiswitch home: immutable, equal when the roots are.

    A plain class, not a dataclass: importing `dataclasses` (with `inspect` and `ast`) would
    cost the fast paths that start here (a replayed report, the status line) ~10 ms."""

    __slots__ = ("root",)
    root: Path

    def __init__(self, root: Path) -> None:
        object.__setattr__(self, "root", root)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Home is immutable: cannot set {name!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Home) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __repr__(self) -> str:
        return f"Home(root={self.root!r})"

    def __reduce__(self) -> tuple[type[Home], tuple[Path]]:
        return (Home, (self.root,))

    @classmethod
    def current(cls) -> Home:
        return cls(default_home())

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def runs(self) -> Path:
        return self.state / "runs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def agent_logs(self) -> Path:
        return self.logs / "agents"

    @property
    def workspaces(self) -> Path:
        """Agents' worktrees and copies: `workspaces/<run>/<name>/` (aiswitch.workspace)."""
        return self.root / "workspaces"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def ledger(self) -> Path:
        return self.state / "tokens.jsonl"

    def lock_path(self, resource: str) -> Path:
        """The lock file guarding `resource` (one lock file per resource)."""
        return self.locks / f"{resource}.lock"

    def folders(self) -> tuple[Path, ...]:
        return (
            self.root,
            self.config,
            self.locks,
            self.state,
            self.runs,
            self.logs,
            self.agent_logs,
            self.workspaces,
            self.tmp,
            self.tmp / "pids",
            self.tmp / "sockets",
        )

    def problems(self) -> list[tuple[Path, str, str]]:
        """(path, what is wrong, the command that fixes it) for each folder of the tree that
        is a link, is owned by another user, or is writable by others, and each link in a
        folder of the tree."""
        found: list[tuple[Path, str, str]] = []
        uid = os.geteuid()
        for path in self.folders():
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(info.st_mode):
                found.append((path, "is a symbolic link", f"rm {path}"))
            elif info.st_uid != uid:
                found.append(
                    (path, f"is owned by uid {info.st_uid}, not you", f"chown -R {uid} {path}")
                )
            elif info.st_mode & 0o022:
                found.append((path, "is writable by others", f"chmod 700 {path}"))
            else:
                # A link in a trusted folder was planted (aiswitch makes none): refuse it
                # before anything is written through it.
                with os.scandir(path) as entries:
                    found.extend(
                        (Path(e.path), "is a symbolic link", f"rm {e.path}")
                        for e in entries
                        if e.is_symlink()
                    )
        return found

    def ensure(self) -> Home:
        """Create the tree (0700) if missing; tighten the root's mode if it is looser;
        refuse a tree with `problems` (StateError)."""
        for path in self.folders():
            path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        info = self.root.lstat()
        if info.st_uid == os.geteuid() and not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o077:
            self.root.chmod(DIR_MODE)
        problems = self.problems()
        if problems:
            path, what, fix = problems[0]
            raise StateError(
                f"the aiswitch home is not safe to use: {path} {what}",
                hint=f"`{fix}`; `aiswitch doctor` lists every problem",
            )
        return self
