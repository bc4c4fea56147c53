"""Agent log files: `logs/agents/<run_id>/<agent-id>.log`, appended to, rotated by size.

One folder per run, so two runs' `gemini.p1` never share a file. The child's stderr is the
file itself (an fd handed to the child), so nothing in the parent copies log lines. Each
process start writes a header line first (`==== TIME run RUN agent ID ====`).

Rotation (here for agent logs, and for the coordinator log by `aiswitch.logs`): a log past
`MAX_LOG_BYTES` is compressed to `NAME.1.gz` (older parts shift to `.2.gz`, …; the oldest
beyond `KEEP_ROTATED` is dropped) and a new one begins. `log_parts(path)` lists a log's
parts oldest first, and the readers here read them all, in order.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiswitch.home import DIR_MODE, NOFOLLOW, SECRET_FILE_MODE, Home
from aiswitch.state.store import writing

# Rotate before a log grows past this; keep this many old ones (`.1` is the newest).
MAX_LOG_BYTES = 5 * 1024 * 1024
KEEP_ROTATED = 3


def agent_log_path(home: Home, agent_id: str, run_id: str) -> Path:
    return home.agent_logs / run_id / f"{agent_id}.log"


def open_agent_log(home: Home, agent_id: str, run_id: str) -> int:
    """Open (rotating first if needed) and return a file descriptor for appending."""
    path = agent_log_path(home, agent_id, run_id)
    with writing(path.parent, "create"):
        path.parent.mkdir(mode=DIR_MODE, exist_ok=True)
        # A link planted in place of the run's folder would take the log elsewhere.
        if not stat.S_ISDIR(os.lstat(path.parent).st_mode):
            raise OSError(errno.ELOOP, "not a folder", str(path.parent))
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


def rotated(path: Path, index: int) -> Path:
    """The `index`-th rotated part of `path` (1 is the newest): `NAME.1.gz`."""
    return path.with_name(f"{path.name}.{index}.gz")


def dropped_marker(path: Path) -> Path:
    """Present once a part of `path` was dropped (its lines are gone): `NAME.dropped`."""
    return path.with_name(f"{path.name}.dropped")


def rotate(path: Path) -> None:
    """`path` -> `NAME.1.gz`, older parts shifted, the oldest beyond KEEP_ROTATED dropped
    (which `dropped_marker` then records)."""
    if rotated(path, KEEP_ROTATED).exists():
        os.close(
            os.open(dropped_marker(path), os.O_WRONLY | os.O_CREAT | NOFOLLOW, SECRET_FILE_MODE)
        )
    for index in range(KEEP_ROTATED - 1, 0, -1):
        older = rotated(path, index)
        if older.exists():
            os.replace(older, rotated(path, index + 1))
    compress(path, rotated(path, 1))


def compress(source: Path, target: Path) -> None:
    """`source` gzipped into `target` (0600, written aside then renamed), then removed."""
    # Here, not at the top: every run imports this module for its agents' logs, few rotate.
    import gzip

    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW, SECRET_FILE_MODE)
    try:
        with (
            open(fd, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out,
            open(source, "rb") as handle,
        ):
            while chunk := handle.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.unlink(source)


def log_parts(path: Path) -> list[Path]:
    """`path`'s rotated parts that exist, oldest first, then `path` itself (if it does)."""
    parts = [rotated(path, i) for i in range(KEEP_ROTATED, 0, -1)]
    return [p for p in (*parts, path) if p.exists()]


def read_part(path: Path) -> bytes:
    """A log part's bytes (decompressed for `.gz`)."""
    if path.suffix == ".gz":
        import gzip

        with gzip.open(path, "rb") as handle:
            return handle.read()
    return path.read_bytes()


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


def last_line(path: Path) -> str:
    """The last meaningful line of an agent's log (its run headers skipped), for saying
    how a process ended."""
    lines = [
        line.strip()
        for line in tail(path).splitlines()
        if line.strip() and not line.startswith("====")
    ]
    return lines[-1][:300] if lines else ""


# An adapter's log line starts with its logging time (`%(asctime)s`: local time, with
# milliseconds after a comma); the header line has an ISO time with its offset.
_LINE_TIME = re.compile(rb"^(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?:[,.](\d{1,6}))?")
_HEADER = re.compile(rb"^==== (\S+) run ")


@dataclass(frozen=True)
class LogLine:
    when: datetime
    agent_id: str
    text: str


_ROTATED = re.compile(r"^(.+)\.log(?:\.\d+\.gz)?$")


def run_logs(home: Home, run_id: str) -> dict[str, Path]:
    """The agent logs of `run_id` by agent id (each the path of its current part, which
    may be gone when only rotated parts are left)."""
    folder = home.agent_logs / run_id
    try:
        names = sorted(p.name for p in folder.iterdir())
    except FileNotFoundError:
        return {}
    found = {m.group(1) for m in map(_ROTATED.match, names) if m is not None}
    return {agent: folder / f"{agent}.log" for agent in sorted(found)}


def log_lines(path: Path, agent_id: str) -> list[LogLine]:
    """The lines of `path`'s parts, oldest first, each with its time: its own, or the
    last one before it (a CLI's relayed line has none); lines before any time get the
    part's modification time."""
    import gzip

    lines: list[LogLine] = []
    when: datetime | None = None
    for part in log_parts(path):
        try:
            data = read_part(part)
            fallback = datetime.fromtimestamp(part.stat().st_mtime).astimezone()
        except (FileNotFoundError, EOFError, gzip.BadGzipFile):
            continue
        found, when = timed_lines(data, agent_id, when, fallback)
        lines.extend(found)
    return lines


def timed_lines(
    data: bytes, agent_id: str, when: datetime | None, fallback: datetime
) -> tuple[list[LogLine], datetime | None]:
    """`data`'s lines with their times (module contract); the last time seen."""
    local = datetime.now().astimezone().tzinfo
    lines = []
    for raw in data.splitlines():
        found = _HEADER.match(raw) or _LINE_TIME.match(raw)
        if found is not None:
            with contextlib.suppress(ValueError):
                text = found.group(1).decode()
                parsed = datetime.fromisoformat(text)
                if found.re is _LINE_TIME and found.group(2):
                    parsed = parsed.replace(microsecond=int(found.group(2).ljust(6, b"0")))
                when = parsed if parsed.tzinfo else parsed.replace(tzinfo=local)
        lines.append(LogLine(when or fallback, agent_id, raw.decode(errors="replace")))
    return lines, when


def merged(paths: dict[str, Path], since: datetime | None = None) -> list[LogLine]:
    """Every line of `paths` in time order (a file's own order kept for equal times)."""
    lines = [line for agent, path in paths.items() for line in log_lines(path, agent)]
    lines.sort(key=lambda line: line.when)
    if since is not None:
        lines = [line for line in lines if line.when >= since]
    return lines
