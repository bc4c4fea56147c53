"""Appending usage to the ledger, `state/tokens.jsonl`: each record's line as it arrives.

Contract:

- `add(record)`, before it returns, writes the record's line to the ledger with one
  `os.write` of the whole line on an `O_APPEND` descriptor the writer holds open (opened
  at the first record, mode 0600). There is no user-space buffer: once `add()` has returned,
  the line is in the kernel's page cache, so a parent killed even by SIGKILL loses none of
  the usage its children reported before the kill. `queue(record)` (or `queue_line(line)`,
  a line `values_line` made) + `write_queued()` is the same for a batch: the lines queued
  (in one loop turn, by the coordinator) go out as one write of whole lines, under one
  lock, when `write_queued()` is called. Records are written as given (priced already:
  `aiswitch.tokens.pricing`).
- `ledger_line(record)` is the one way a record becomes a line; `values_line(values)` makes
  the same bytes from a record's field values without building the model (the
  coordinator's path: one record per usage notification, whose values the protocol's
  models have checked already). tests/test_ledger_schema.py holds the two to pydantic's
  own serialization of the record.
- fsync is batched: the first line written after an fsync arms a timer of `FSYNC_INTERVAL_S`
  (no polling) that fsyncs, in a thread, every line written meanwhile; `flush()` (at each
  task end) and `close()` (at the run's end) fsync what is outstanding. The fsync bounds what
  a machine crash or power loss may take; a killed process loses nothing either way.
- Lines never interleave. Other runs (other processes) append to the same file the same way,
  one whole line per write. On Linux a write(2) to a regular file holds the inode's lock
  (`i_rwsem`) for the whole call, and `O_APPEND` moves the offset to the end under that lock,
  so two appends land one after the other, each whole. (POSIX promises atomic appends only
  for pipes; this holds on local file systems, not on NFS.) A write cut short (a full disk,
  a fatal signal) leaves a torn last line, which the next opening moves aside, see below.
- The ledger's rewriters (`tokens prune` replaces the file, `tokens import` appends a batch,
  `aiswitch.tokens.transfer`) hold the ledger's lock, `locks/ledger.lock`, exclusively. Each
  write here holds that lock *shared*, so writers never wait for one another, only for a
  rewriter, and checks under it that its descriptor still names the ledger (a prune leaves
  it on the replaced inode: it reopens). So no line lands in a file a prune has already read.
  On the event loop the lock is only tried; while a rewriter holds it, lines wait in memory,
  in order, and a thread writes them as soon as it gets the lock: the one case where a line
  is not in the file when `add()` returns, and it lasts only as long as the rewrite.
- Opening (and reopening) takes the ledger's lock exclusively and, when the file's last byte
  is not a newline (a writer killed in the middle of its line, or cut short by a full disk),
  moves that torn line aside to `tokens.jsonl.torn-<UTC time>` (`StateStore.
  move_torn_tail_aside`: kept, never deleted) and cuts it off: the next record's line is
  whole and no bad line is left inside the file. Readers skip a torn last line meanwhile.
- A write that fails (ENOSPC, EDQUOT, EIO, …) raises `StateError` naming the file and what to
  do; the record is not recorded. Part of a line already written is left as the torn last
  line (no newline is added: it would leave it inside the file), and this writer reopens
  before its next line, which moves it aside. (Another process's writer, already open, may
  append behind it first; a full disk fails its write too.)
  A failure in the thread (a rewriter's lock, a timed fsync) is raised by the next `flush()`.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from aiswitch.errors import StateError
from aiswitch.home import DIR_MODE, NOFOLLOW, SECRET_FILE_MODE
from aiswitch.state.store import StateStore
from aiswitch.tokens.records import LEDGER_SCHEMA_VERSION, LedgerRecord

RESOURCE = "ledger"
# The bound on how long a written usage record may wait for its fsync.
FSYNC_INTERVAL_S = 0.1

# Read as well as append: opening checks the file's last byte for a torn line.
# NOFOLLOW: a link planted in place of the ledger is refused, never appended through.
_LEDGER_FLAGS = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | NOFOLLOW
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | NOFOLLOW
_WRITE_HINT = "free space on that disk (or fix its permissions); the record was not recorded"


def ledger_line(record: LedgerRecord) -> bytes:
    """One ledger line: `v` first, then only the fields that differ from their defaults.

    Readers fill the defaults back in (a missing counter is 0, a missing id null, a missing
    `source` `aiswitch`, a missing `cost_source` `unpriced`): lines shrink by about a third,
    and a report's cold read is mostly JSON parsing, so it shrinks with them."""
    line = values_line(record.__dict__)
    if line is None:
        body = record.model_dump_json(exclude_defaults=True, exclude={"v"})
        line = b'{"v":%d,' % record.v + body[1:].encode()
    return line


# Every field but `v` and `ts` (which every line has), in the schema's order, with the
# default that leaves it out of a line.
_OPTIONAL: tuple[tuple[str, Any], ...] = tuple(
    (name, info.default)
    for name, info in LedgerRecord.model_fields.items()
    if name not in ("v", "ts")
)
_DUMPS: list[Callable[[Any], bytes] | None] = []


def values_line(values: Mapping[str, Any]) -> bytes | None:
    """`ledger_line` of the record with these field values (a missing one is its default;
    `ts` is required), made without the model; None where only the model's own
    serializer can say (no orjson, a time zone of seconds, an integer beyond 64 bits)."""
    if not _DUMPS:
        try:
            import orjson
        except ImportError:  # pragma: no cover - orjson is a dependency
            _DUMPS.append(None)
        else:
            _DUMPS.append(orjson.dumps)
    dumps = _DUMPS[0]
    ts = _time_text(values["ts"])
    if dumps is None or ts is None:
        return None
    out: dict[str, Any] = {"v": values.get("v", LEDGER_SCHEMA_VERSION), "ts": ts}
    get = values.get
    for name, default in _OPTIONAL:
        value = get(name, default)
        if value != default:
            out[name] = value
    try:
        return dumps(out)
    except TypeError:
        return None


def _time_text(ts: Any) -> str | None:
    """A record's time as pydantic writes it (UTC as `Z`), or None when it is not sure."""
    if type(ts) is not datetime:
        return None
    text = ts.isoformat()
    offset = ts.utcoffset()
    if offset is None:
        return text
    if not offset:
        return text[:-6] + "Z"  # "+00:00"
    if offset.microseconds or offset.seconds % 60:
        return None
    return text


class LedgerWriter:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.path = store.home.ledger
        self.written = 0
        self._fd: int | None = None
        self._lock_fd: int | None = None
        # The ledger descriptor's lifetime (reopen, close) against the fsync thread using it.
        self._fd_guard = threading.Lock()
        # Part of a line is in the file without its newline: reopen (and repair) before more.
        self._torn = False
        self._unsynced = False
        self._timer: asyncio.TimerHandle | None = None
        self._fsyncs: set[asyncio.Task[None]] = set()
        self._queued: list[bytes] = []  # lines `queue()` took, for `write_queued()`
        # Whole lines (one or more per entry) waiting for a rewriter's lock, oldest first.
        self._backlog: list[bytes] = []
        self._drain: asyncio.Task[None] | None = None
        self._error: StateError | None = None  # from the thread, raised by the next flush()

    def add(self, record: LedgerRecord) -> LedgerRecord:
        """Write `record`'s line now (see the module contract); returns it."""
        self.queue(record)
        self.write_queued()
        return record

    def queue(self, record: LedgerRecord) -> LedgerRecord:
        """Queue `record`'s line for `write_queued()`, which writes every queued line with
        one write: the usage a coordinator reads in one loop turn costs one lock and one
        write, not one each."""
        self._queued.append(ledger_line(record) + b"\n")
        return record

    def queue_line(self, line: bytes) -> None:
        """Queue one record's line (`values_line`, no newline) as `queue` does."""
        self._queued.append(line + b"\n")

    def write_queued(self) -> None:
        """Write the queued lines, in order, as one write of whole lines (or, while a
        rewriter holds the lock, hand them to the thread that waits for it)."""
        lines = self._queued
        if not lines:
            return
        self._queued = []
        data = lines[0] if len(lines) == 1 else b"".join(lines)
        if self._backlog or not self._write_if_free(data):
            self._backlog.append(data)
            if self._drain is None:
                self._drain = asyncio.get_running_loop().create_task(self._drain_backlog())
            return
        self.written += len(lines)
        self._arm_fsync()

    async def flush(self) -> None:
        """Wait for waiting lines and fsync everything written so far."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._drain is not None:
            await asyncio.shield(self._drain)
        for task in list(self._fsyncs):
            await asyncio.shield(task)
        if self._unsynced:
            await self._fsync()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    async def close(self) -> None:
        try:
            await self.flush()
        finally:
            with self._fd_guard:
                for fd in (self._fd, self._lock_fd):
                    if fd is not None:
                        os.close(fd)
                self._fd = self._lock_fd = None

    # -- writing -------------------------------------------------------------------

    def _write_if_free(self, line: bytes) -> bool:
        """Write `line` now unless a rewriter holds the ledger's lock (then: False)."""
        lock_fd = self._lock_file()
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            if not self._current():
                # Opening may write a newline after a torn line: no other writer may be
                # writing then, so the lock becomes exclusive (only tried, never awaited:
                # two writers converting at once must not wait for each other).
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                self._open()
            self._append(line)
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
        return True

    def _write_locked(self, lines: list[bytes]) -> tuple[int, StateError | None]:
        """In a thread: wait for the ledger's lock, then write `lines` in order.

        Returns how many were written, and the error that stopped the rest."""
        done = 0
        try:
            with self.store.lock(RESOURCE):
                if not self._current():
                    self._open()
                for line in lines:
                    self._append(line)
                    done += 1
        except StateError as exc:
            return done, exc
        return done, None

    async def _drain_backlog(self) -> None:
        try:
            while self._backlog:
                batch = list(self._backlog)
                done, error = await asyncio.to_thread(self._write_locked, batch)
                # Only this loop's thread changes the backlog: `add()` appends behind `batch`.
                self.written += sum(chunk.count(b"\n") for chunk in self._backlog[:done])
                del self._backlog[:done]
                if done:
                    self._arm_fsync()
                if error is not None:
                    self._error = error  # the lines stay; the next add() tries again
                    return
        finally:
            self._drain = None

    def _lock_file(self) -> int:
        if self._lock_fd is not None and os.fstat(self._lock_fd).st_nlink:
            return self._lock_fd
        # First use, or the lock file was deleted: lock the one rewriters lock now.
        path = self.store.home.lock_path(RESOURCE)
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        try:
            fd = os.open(path, _LOCK_FLAGS, SECRET_FILE_MODE)
        except OSError as exc:
            raise StateError(f"cannot open {path}: {exc.strerror}", hint=_WRITE_HINT) from None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        self._lock_fd = fd
        return fd

    def _current(self) -> bool:
        """Whether the held descriptor still names the ledger, with no torn line of ours."""
        return self._fd is not None and not self._torn and os.fstat(self._fd).st_nlink > 0

    def _open(self) -> None:
        """Open the ledger (the caller holds its lock exclusively); move a torn last line
        aside."""
        try:
            self.path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            fd = os.open(self.path, _LEDGER_FLAGS, SECRET_FILE_MODE)
        except OSError as exc:
            raise StateError(f"cannot open {self.path}: {exc.strerror}", hint=_WRITE_HINT) from None
        try:
            self.store.move_torn_tail_aside(fd, self.path)
        except (OSError, StateError) as exc:
            os.close(fd)
            if isinstance(exc, StateError):
                raise
            raise StateError(
                f"cannot move the torn last line of {self.path} aside: {exc.strerror}",
                hint=_WRITE_HINT,
            ) from None
        with self._fd_guard:
            old, self._fd = self._fd, fd
            self._torn = False
            if old is not None:
                # Lines written to a replaced ledger were read by the prune that replaced it
                # (it held the lock exclusively): nothing there needs an fsync.
                os.close(old)

    def _append(self, line: bytes) -> None:
        """One write of the whole line; a write cut short leaves a torn line to move aside."""
        assert self._fd is not None
        fd = self._fd
        done = 0
        try:
            done = os.write(fd, line)
            while done < len(line):
                # Only an error (disk full, a fatal signal) cuts a regular file's write short.
                done += os.write(fd, line[done:])
        except OSError as exc:
            if done:
                self._torn = True  # reopen (and move the part aside) before the next line
            raise StateError(
                f"cannot append a usage record to {self.path}: {exc.strerror}",
                hint=_WRITE_HINT,
            ) from None
        self._unsynced = True

    # -- fsync ---------------------------------------------------------------------

    def _arm_fsync(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FSYNC_INTERVAL_S, self._fsync_soon)

    def _fsync_soon(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self._fsync())
        self._fsyncs.add(task)
        task.add_done_callback(self._fsync_done)

    def _fsync_done(self, task: asyncio.Task[None]) -> None:
        self._fsyncs.discard(task)
        error = None if task.cancelled() else task.exception()
        if isinstance(error, StateError) and self._error is None:
            self._error = error

    async def _fsync(self) -> None:
        self._unsynced = False
        try:
            await asyncio.to_thread(self._fsync_fd)
        except BaseException:
            self._unsynced = True
            raise

    def _fsync_fd(self) -> None:
        with self._fd_guard:
            if self._fd is None:
                return
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise StateError(
                    f"cannot fsync {self.path}: {exc.strerror}",
                    hint="check that disk; usage written since the last fsync may not survive "
                    "a machine crash",
                ) from None
