"""The one way to read and write files under the aiswitch home.

Contract:
- Every resource has its own lock file, `locks/<resource>.lock` (filelock: an OS lock
  that dies with its process, so a killed writer never leaves a stale lock).
- `write_json` writes a temp file in the same directory, fsyncs it, `os.replace`s it
  over the target and fsyncs the directory: a reader sees the old file or the new one,
  never half of one, even if the writer is killed.
- `update_json` does read-modify-write inside the resource's lock.
- A file that fails to parse is moved aside to `<name>.corrupt-<UTC time>` (kept, never
  deleted); the caller gets a `StateError` from `read_json(strict=True)`, or a default
  plus a warning (on the `aiswitch.state` logger and in `warnings`) otherwise.
- `append_lines` appends under the lock with one fsync per call; a torn last line left
  by a killed writer gets a newline first, so it stays one bad line, never two.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiswitch.errors import StateError
from aiswitch.home import DIR_MODE, SECRET_FILE_MODE, Home

# Long enough to wait out any other aiswitch process's write (they are milliseconds);
# short enough that a wedged lock holder gives an error instead of a hang.
LOCK_TIMEOUT_S = 30.0

T = TypeVar("T")
log = logging.getLogger("aiswitch.state")


class StateStore:
    def __init__(self, home: Home | None = None) -> None:
        self.home = (home or Home.current()).ensure()
        self.warnings: list[str] = []

    @contextlib.contextmanager
    def lock(self, resource: str) -> Iterator[None]:
        from filelock import FileLock, Timeout

        path = self.home.lock_path(resource)
        lock = FileLock(str(path), mode=SECRET_FILE_MODE)
        try:
            lock.acquire(timeout=LOCK_TIMEOUT_S)
        except Timeout:
            raise StateError(
                f"could not lock {resource} within {LOCK_TIMEOUT_S:g}s",
                hint=f"another aiswitch process holds {path}",
            ) from None
        try:
            yield
        finally:
            lock.release()

    def read_json(self, path: Path, default: T, *, strict: bool = False) -> Any | T:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return default
        except OSError as exc:
            raise StateError(f"cannot read {path}: {exc.strerror}") from None
        try:
            return json.loads(data)
        except ValueError:
            aside = self.move_aside(path)
            message = f"{path} was not valid JSON; moved it to {aside.name}"
            if strict:
                raise StateError(message) from None
            self.warn(message)
            return default

    def write_json(self, path: Path, value: Any, *, mode: int = SECRET_FILE_MODE) -> None:
        data = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
        self.write_bytes(path, data.encode(), mode=mode)

    def write_bytes(self, path: Path, data: bytes, *, mode: int = SECRET_FILE_MODE) -> None:
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)

    def update_json(
        self, resource: str, path: Path, default: Callable[[], T], change: Callable[[T], T]
    ) -> T:
        """Read, change and write `path` inside the lock of `resource`."""
        with self.lock(resource):
            current = self.read_json(path, None)
            value = change(default() if current is None else current)
            self.write_json(path, value)
            return value

    def append_lines(self, resource: str, path: Path, lines: Sequence[bytes]) -> None:
        if not lines:
            return
        with self.lock(resource):
            path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, SECRET_FILE_MODE)
            try:
                size = os.fstat(fd).st_size
                prefix = b""
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    prefix = b"\n"
                payload = prefix + b"".join(line.rstrip(b"\n") + b"\n" for line in lines)
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)

    def move_aside(self, path: Path) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        os.replace(path, aside)
        return aside

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning("%s", message)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
