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
- `append_lines` appends under the lock with one write and one fsync per call; a torn last
  line (a writer killed, or cut short by a full disk) is first moved aside to
  `<name>.torn-<UTC time>` (`move_torn_tail_aside`), so no bad line stays inside the file.
- A write that fails for a reason of the environment (`WRITE_FAILURES`: a full disk, a
  quota, a read-only file system, …) raises `StateError` naming the file and what to do
  (`writing`), never a bare `OSError`: the CLI prints it as one line and exits 4.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from aiswitch.errors import StateError
from aiswitch.home import DIR_MODE, NOFOLLOW, SECRET_FILE_MODE, Home

# Long enough to wait out any other aiswitch process's write (they are milliseconds);
# short enough that a wedged lock holder gives an error instead of a hang.
LOCK_TIMEOUT_S = 30.0

# A torn tail is looked for backwards in steps of this much (a ledger line is < 1 KiB).
TAIL_STEP_BYTES = 64 * 1024

# The failures of a write that are the environment's, not aiswitch's, and what to do about
# each: they become one line naming the file (`writing`), never a traceback.
WRITE_FAILURES: Final[Mapping[int, str]] = {
    errno.ENOSPC: "free space on that disk, then run it again",
    errno.EDQUOT: "free space or raise your disk quota, then run it again",
    errno.EROFS: "the file system is read-only: remount it read-write, "
    "or set AISWITCH_HOME to a writable folder",
    errno.EIO: "the disk reported an I/O error: check it",
    errno.ELOOP: "it is a symbolic link, which aiswitch never follows under its home: "
    "remove it (`aiswitch doctor`)",
}

T = TypeVar("T")
log = logging.getLogger("aiswitch.state")


def write_error(path: Path, exc: OSError, action: str = "write") -> StateError | None:
    """The `StateError` for a failed write of `path`, or None when it is not the
    environment's (`WRITE_FAILURES`): then it is a bug and keeps its traceback."""
    hint = WRITE_FAILURES.get(exc.errno or 0)
    if hint is None:
        return None
    return StateError(f"cannot {action} {path}: {exc.strerror}", hint=hint)


@contextlib.contextmanager
def writing(path: Path, action: str = "write") -> Iterator[None]:
    """Turn the environment's failures of writing `path` into a `StateError` naming it."""
    try:
        yield
    except OSError as exc:
        error = write_error(path, exc, action)
        if error is None:
            raise
        raise error from None


class StateStore:
    def __init__(self, home: Home | None = None) -> None:
        home = home or Home.current()
        with writing(home.root, "create the folders of"):
            self.home = home.ensure()
        self.warnings: list[str] = []

    @contextlib.contextmanager
    def lock(self, resource: str) -> Iterator[None]:
        from filelock import FileLock, Timeout

        path = self.home.lock_path(resource)
        if path.is_symlink():  # filelock would open (and truncate) the link's target
            raise StateError(
                f"cannot lock {resource}: {path} is a symbolic link",
                hint=WRITE_FAILURES[errno.ELOOP],
            )
        lock = FileLock(str(path), mode=SECRET_FILE_MODE)
        try:
            with writing(path, "create the lock file"):
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

    def write_json(
        self, path: Path, value: Any, *, mode: int = SECRET_FILE_MODE, compact: bool = False
    ) -> None:
        """`compact`: one line, no indent (json's C encoder; indented output is encoded in
        Python, ~20x slower: for a file of megabytes, a cost every write pays)."""
        if compact:
            data = json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n"
        else:
            data = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
        self.write_bytes(path, data.encode(), mode=mode)

    def write_bytes(self, path: Path, data: bytes, *, mode: int = SECRET_FILE_MODE) -> None:
        with writing(path):
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
                # The old file stays whole: a full disk loses this write, never the file.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            _fsync_dir(path.parent)

    def update_json(
        self,
        resource: str,
        path: Path,
        default: Callable[[], T],
        change: Callable[[T], T],
        *,
        compact: bool = False,
    ) -> T:
        """Read, change and write `path` inside the lock of `resource`."""
        with self.lock(resource):
            current = self.read_json(path, None)
            value = change(default() if current is None else current)
            self.write_json(path, value, compact=compact)
            return value

    def append_lines(self, resource: str, path: Path, lines: Sequence[bytes]) -> None:
        if not lines:
            return
        payload = b"".join(line.rstrip(b"\n") + b"\n" for line in lines)
        with self.lock(resource), writing(path, "append to"):
            path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | NOFOLLOW, SECRET_FILE_MODE)
            try:
                self.move_torn_tail_aside(fd, path)
                start = os.fstat(fd).st_size
                try:
                    done = os.write(fd, payload)
                    while done < len(payload):
                        done += os.write(fd, payload[done:])
                    os.fsync(fd)
                except OSError:
                    # Under the lock no one else appends: take back the part written.
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)

    def move_torn_tail_aside(self, fd: int, path: Path) -> Path | None:
        """When `path` (open as `fd`, its lock held exclusively) ends without a newline, copy
        that torn last line to `<name>.torn-<UTC time>` (kept, never deleted) and cut it off,
        so the next line starts a line of its own and no bad line stays inside the file."""
        size = os.fstat(fd).st_size
        if not size or os.pread(fd, 1, size - 1) == b"\n":
            return None
        start = size
        while start > 0:
            step = min(TAIL_STEP_BYTES, start)
            newline = os.pread(fd, step, start - step).rfind(b"\n")
            if newline >= 0:
                start = start - step + newline + 1
                break
            start -= step
        tail = os.pread(fd, size - start, start)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        aside = path.with_name(f"{path.name}.torn-{stamp}")
        with writing(aside):
            aside_fd = os.open(
                aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, SECRET_FILE_MODE
            )
            try:
                done = 0
                while done < len(tail):
                    done += os.write(aside_fd, tail[done:])
                os.fsync(aside_fd)
            except BaseException:
                os.close(aside_fd)
                os.unlink(aside)
                raise
            os.close(aside_fd)
        os.ftruncate(fd, start)
        self.warn(f"{path} ended in a torn line (a writer was cut short); moved it to {aside.name}")
        return aside

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
