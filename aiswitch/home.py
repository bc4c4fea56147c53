"""Where aiswitch keeps its files.

The home is `$AISWITCH_HOME` when set, else `~/.aiswitch`. `Home` only computes paths;
`Home.ensure()` creates the directory tree with mode 0700 (the home holds keys and
logs that may contain prompts). Nothing else in aiswitch builds these paths by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "AISWITCH_HOME"
DIR_MODE = 0o700
SECRET_FILE_MODE = 0o600


def default_home() -> Path:
    """The home directory in force for this process."""
    value = os.environ.get(HOME_ENV)
    if value:
        return Path(value).expanduser()
    return Path.home() / ".aiswitch"


@dataclass(frozen=True)
class Home:
    """The paths of one aiswitch home."""

    root: Path

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
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def ledger(self) -> Path:
        return self.state / "tokens.jsonl"

    def lock_path(self, resource: str) -> Path:
        """The lock file guarding `resource` (one lock file per resource)."""
        return self.locks / f"{resource}.lock"

    def ensure(self) -> Home:
        """Create the tree (0700) if missing; tighten the root's mode if it is looser."""
        for path in (
            self.root,
            self.config,
            self.locks,
            self.state,
            self.runs,
            self.logs,
            self.agent_logs,
            self.tmp,
            self.tmp / "pids",
            self.tmp / "sockets",
        ):
            path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        if self.root.stat().st_mode & 0o077:
            self.root.chmod(DIR_MODE)
        return self
