"""Agent log files: `logs/agents/<agent-id>.log`, appended to, rotated by size.

The child's stderr is the file itself (an fd handed to the child), so nothing in the
parent copies log lines. Each run writes a header line first so runs can be told apart.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path

from aiswitch.home import NOFOLLOW, SECRET_FILE_MODE, Home
from aiswitch.state.store import writing

# Rotate before a log grows past this; keep this many old ones (`.1` is the newest).
MAX_LOG_BYTES = 5 * 1024 * 1024
KEEP_ROTATED = 3


def agent_log_path(home: Home, agent_id: str) -> Path:
    return home.agent_logs / f"{agent_id}.log"


def open_agent_log(home: Home, agent_id: str, run_id: str) -> int:
    """Open (rotating first if needed) and return a file descriptor for appending."""
    path = agent_log_path(home, agent_id)
    with writing(path):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size > MAX_LOG_BYTES:
                rotate(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | NOFOLLOW, SECRET_FILE_MODE)
        try:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            os.write(fd, f"==== {stamp} run {run_id} agent {agent_id} ====\n".encode())
        except BaseException:
            os.close(fd)
            raise
    return fd


def rotate(path: Path) -> None:
    for index in range(KEEP_ROTATED - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))


def tail(path: Path, max_bytes: int = 2048) -> str:
    """The last lines of a log, for error messages."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""
