"""Following a run's agent logs as they grow (`aiswitch logs -f`).

Contract:
- `Follower(home, run_id, agent_id)` reads one agent's log of a run, or all of them
  (`agent_id` None: logs that appear later, a process started meanwhile, are picked up).
- `first(since)` is every line so far (rotated parts included), in time order, from
  `since` on; `more()` is the complete lines written since the last call, in time order
  (a partial last line waits for its newline). A log rotated meanwhile is read to its
  end in its `.1.gz` part, then the new file from its start: no line is lost or repeated.
- `pending()`: each log's unterminated last line, for a reader that does not follow.
- It reads files only; when to call `more()` is the caller's (the CLI wakes on the run's
  events and at a modest interval).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from aiswitch.home import Home
from aiswitch.supervisor.logs import LogLine, log_parts, read_part, rotated, run_logs, timed_lines


@dataclass
class _Tail:
    path: Path
    inode: int = 0
    offset: int = 0
    partial: bytes = b""
    when: datetime | None = None


class Follower:
    def __init__(self, home: Home, run_id: str, agent_id: str | None = None) -> None:
        self.home = home
        self.run_id = run_id
        self.agent_id = agent_id
        self.tails: dict[str, _Tail] = {}

    def paths(self) -> dict[str, Path]:
        found = run_logs(self.home, self.run_id)
        if self.agent_id is not None:
            return {self.agent_id: found[self.agent_id]} if self.agent_id in found else {}
        return found

    def first(self, since: datetime | None = None) -> list[LogLine]:
        lines: list[LogLine] = []
        for agent, path in self.paths().items():
            tail = self.tails[agent] = _Tail(path)
            for part in log_parts(path):
                if part == path:
                    continue  # the current file: read by `_read`, which keeps its offset
                try:
                    data = read_part(part)
                except (OSError, EOFError):
                    continue
                fallback = datetime.fromtimestamp(part.stat().st_mtime).astimezone()
                found, tail.when = timed_lines(data, agent, tail.when, fallback)
                lines.extend(found)
            lines.extend(self._read(agent, tail))
        return _ordered(lines, since)

    def more(self) -> list[LogLine]:
        lines: list[LogLine] = []
        for agent, path in self.paths().items():
            tail = self.tails.get(agent) or self.tails.setdefault(agent, _Tail(path))
            lines.extend(self._read(agent, tail))
        return _ordered(lines, None)

    def pending(self) -> list[LogLine]:
        """The last line of each log that has no newline yet (when not following)."""
        lines: list[LogLine] = []
        for agent, tail in self.tails.items():
            if tail.partial:
                when = tail.when or datetime.now().astimezone()
                lines.extend(timed_lines(tail.partial, agent, tail.when, when)[0])
                tail.partial = b""
        return _ordered(lines, None)

    def _read(self, agent: str, tail: _Tail) -> list[LogLine]:
        data = b""
        try:
            stat = tail.path.stat()
        except FileNotFoundError:
            return []
        if tail.inode and stat.st_ino != tail.inode:
            # Rotated since the last read: the rest of the old file is now `.1.gz`.
            with contextlib.suppress(OSError, EOFError):
                data += read_part(rotated(tail.path, 1))[tail.offset :]
            tail.offset = 0
        tail.inode = stat.st_ino
        if stat.st_size > tail.offset:
            with open(tail.path, "rb") as handle:
                handle.seek(tail.offset)
                chunk = handle.read(stat.st_size - tail.offset)
            tail.offset += len(chunk)
            data += chunk
        data = tail.partial + data
        complete, newline, tail.partial = data.rpartition(b"\n")
        if not newline:
            complete, tail.partial = b"", data
        if not complete and not newline:
            return []
        fallback = datetime.fromtimestamp(stat.st_mtime).astimezone()
        lines, tail.when = timed_lines(complete + b"\n", agent, tail.when, fallback)
        return lines


def _ordered(lines: list[LogLine], since: datetime | None) -> list[LogLine]:
    lines.sort(key=lambda line: line.when)  # stable: a file's own order kept
    return lines if since is None else [line for line in lines if line.when >= since]
