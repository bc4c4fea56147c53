"""An incremental cache of what token reports already read, under `tmp/token-index/`.

Contract (correct first, fast second):

- `FileIndex(home, name)` keeps, per file read: path, size, mtime, inode, the byte offset
  consumed so far, a digest of the last bytes before that offset, the number of malformed
  lines met, and the compact items (tuples) parsed from the consumed bytes.
- `read_appendable(path, parse)` is for append-only files (the ledger, Claude logs): when the
  inode is the same, the file did not shrink and the bytes just before the offset are
  unchanged, only the bytes after the offset are parsed; otherwise the whole file is. Only
  complete lines are consumed: an unterminated last line (a writer mid-append, or killed) is
  parsed on every read but never cached, so it counts once it parses and is re-read when it
  grows.
- `adopt(part, keys)` takes entries marshalled by another process (a worker that read
  those files) and writes them as they are, without loading them here.
- `read_whole(path, parse)` is for files rewritten in place (Codex, Gemini): any change of
  size, mtime or inode re-parses the whole file.
- `ReportCache(home)` stores finished reports keyed by the report options and the (path,
  size, mtime, inode) of every input file: any change to any input, or to the options or
  prices, misses.
- The cache is only a cache: an unreadable, corrupt or foreign-version cache file is ignored
  (and rewritten), never an error. Writes are atomic (temp file + `os.replace`), mode 0600 in
  a 0700 directory. `home=None` disables both caches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import marshal
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiswitch.home import DIR_MODE, SECRET_FILE_MODE, Home

INDEX_VERSION = 2
# An index file: the header's length, the marshalled header {v, rows, parts: [lengths]}, then
# the marshalled {path: entry} parts. `rows` is the row layout (`records.ROW_FIELDS`): an
# index of rows in another layout is rebuilt, so adding a field to the ledger's declaration
# needs no version bump here.
_HEADER_SIZE = struct.Struct("<I")
INDEX_DIR = "token-index"
# Bytes before the consumed offset compared to detect a rewrite that kept or grew the size.
TAIL_PROBE_BYTES = 4096
# Finished reports kept; older ones are dropped so the directory stays small.
MAX_CACHED_REPORTS = 64

Parse = Callable[[bytes], tuple[list[Any], int]]

log = logging.getLogger("aiswitch.tokens")


@dataclass
class FileRead:
    """What one read of one file produced."""

    items: list[Any]
    malformed: int
    incomplete_tail: bool


def index_dir(home: Home) -> Path:
    return home.tmp / INDEX_DIR


def _row_layout() -> tuple[str, ...]:
    from aiswitch.tokens.records import ROW_FIELDS

    return ROW_FIELDS


def _ensure_dir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write a cache file; a cache that cannot be written (a full disk) is skipped, never an
    error: the report it would have sped up is still right."""
    try:
        _write_cache(path, data)
    except OSError as exc:
        log.warning("token index: cannot write %s (%s); reading without it", path, exc.strerror)


def _write_cache(path: Path, data: bytes) -> None:
    _ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).chmod(SECRET_FILE_MODE)
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise


def _tail_digest(handle: Any, offset: int) -> str:
    start = max(0, offset - TAIL_PROBE_BYTES)
    handle.seek(start)
    return _digest(handle.read(offset - start))


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class FileIndex:
    """Per-file parsed items for one kind of source (one cache file per name)."""

    def __init__(self, home: Home | None, name: str) -> None:
        self.path = index_dir(home) / f"{name}.marshal" if home is not None else None
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False
        self.seen: set[str] = set()
        # Parts marshalled elsewhere (by worker processes), written as they are: `adopt`.
        self.adopted: list[bytes] = []
        if self.path is not None:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            data = memoryview(self.path.read_bytes())
            size = _HEADER_SIZE.unpack_from(data)[0]
            # Our own file in the 0700 home; marshal cannot run code, only rebuild values.
            header = marshal.loads(data[_HEADER_SIZE.size : _HEADER_SIZE.size + size])  # noqa: S302
            if not (
                isinstance(header, dict)
                and header.get("v") == INDEX_VERSION
                and header.get("rows") == _row_layout()
            ):
                return
            offset = _HEADER_SIZE.size + size
            entries: dict[str, list[Any]] = {}
            for length in header["parts"]:
                part = marshal.loads(data[offset : offset + length])  # noqa: S302
                offset += length
                entries.update(part)  # a later part overrides an earlier one
        except (OSError, EOFError, ValueError, TypeError, KeyError, struct.error):
            return
        self.entries = entries

    def adopt(self, part: bytes, keys: Sequence[str]) -> None:
        """Take a marshalled {key: entry} part computed elsewhere for `keys` (read, so kept):
        `save` writes it as it is, without loading it here."""
        for key in keys:
            self.entries.pop(key, None)
        self.seen.update(keys)
        self.adopted.append(part)
        self.dirty = True

    def save(self) -> None:
        """Write the index if anything changed, dropping files no longer read."""
        if self.path is None:
            return
        stale = set(self.entries) - self.seen
        if stale:
            for key in stale:
                del self.entries[key]
            self.dirty = True
        if not self.dirty:
            return
        # This process's own entries last: read after any adopted part, they override it.
        parts = [*self.adopted, marshal.dumps(self.entries)]
        header = marshal.dumps(
            {"v": INDEX_VERSION, "rows": _row_layout(), "parts": [len(part) for part in parts]}
        )
        with contextlib.suppress(OSError):
            _atomic_write(self.path, b"".join([_HEADER_SIZE.pack(len(header)), header, *parts]))
        self.dirty = False

    def read_appendable(self, path: Path, parse: Parse) -> FileRead:
        key = str(path)
        self.seen.add(key)
        try:
            handle = path.open("rb")
        except OSError:
            return FileRead([], 0, False)
        with handle:
            stat = os.fstat(handle.fileno())
            cached = self.entries.get(key)
            offset = 0
            items: list[Any] = []
            malformed = 0
            if cached is not None:
                size, mtime_ns, inode, c_offset, digest, c_malformed, c_items = cached
                if inode == stat.st_ino and size == stat.st_size and mtime_ns == stat.st_mtime_ns:
                    offset, items, malformed = c_offset, c_items, c_malformed
                elif (
                    inode == stat.st_ino
                    and stat.st_size > size
                    and _tail_digest(handle, c_offset) == digest
                ):
                    # Appended to: the bytes already read are unchanged, read only the new ones.
                    offset, items, malformed = c_offset, list(c_items), c_malformed
            handle.seek(offset)
            fresh = handle.read()
        end = fresh.rfind(b"\n") + 1
        if end:
            new_items, new_malformed = parse(fresh[:end])
            new_items = [tuple(item) for item in new_items]  # marshal stores plain tuples only
            items = items + new_items if items else new_items
            malformed += new_malformed
        tail = fresh[end:]
        consumed = offset + end
        if (
            cached is None
            or end
            or cached[:4] != [stat.st_size, stat.st_mtime_ns, stat.st_ino, consumed]
        ):
            probe = max(0, consumed - TAIL_PROBE_BYTES)
            if probe >= offset:  # the probed bytes were just read: hash them from memory
                digest = _digest(fresh[probe - offset : consumed - offset])
            else:
                with path.open("rb") as again:
                    digest = _tail_digest(again, consumed)
            self.entries[key] = [
                stat.st_size,
                stat.st_mtime_ns,
                stat.st_ino,
                consumed,
                digest,
                malformed,
                items,
            ]
            self.dirty = True
        if tail.strip():
            tail_items, tail_malformed = parse(tail)
            return FileRead(items + tail_items, malformed + tail_malformed, True)
        return FileRead(items, malformed, False)

    def read_whole(self, path: Path, parse: Parse) -> FileRead:
        key = str(path)
        self.seen.add(key)
        try:
            stat = path.stat()
        except OSError:
            return FileRead([], 0, False)
        cached = self.entries.get(key)
        if cached is not None and cached[:3] == [stat.st_size, stat.st_mtime_ns, stat.st_ino]:
            return FileRead(cached[6], cached[5], False)
        try:
            data = path.read_bytes()
        except OSError:
            return FileRead([], 0, False)
        items, malformed = parse(data)
        items = [tuple(item) for item in items]
        self.entries[key] = [
            stat.st_size,
            stat.st_mtime_ns,
            stat.st_ino,
            len(data),
            "",
            malformed,
            items,
        ]
        self.dirty = True
        return FileRead(items, malformed, False)


def fingerprint_files(paths: Iterable[Path]) -> list[list[Any]]:
    """(path, size, mtime, inode) of each file; a missing file has zeros."""
    out: list[list[Any]] = []
    for path in paths:
        try:
            stat = path.stat()
            out.append([str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino])
        except OSError:
            out.append([str(path), 0, 0, 0])
    return out


class ReportCache:
    """Finished reports, keyed by options and input-file fingerprints."""

    def __init__(self, home: Home | None) -> None:
        self.dir = index_dir(home) / "reports" if home is not None else None

    def key(self, source: str, options_key: str, fingerprints: list[list[Any]]) -> str:
        """The key of a report: `fingerprints` are `fingerprint_files` of its inputs."""
        payload = json.dumps([INDEX_VERSION, source, options_key, fingerprints])
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def get(self, key: str) -> dict[str, Any] | None:
        if self.dir is None:
            return None
        try:
            data = json.loads((self.dir / f"{key}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def put(self, key: str, report: dict[str, Any]) -> None:
        if self.dir is None:
            return
        with contextlib.suppress(OSError):
            _atomic_write(self.dir / f"{key}.json", json.dumps(report).encode())
            self._prune()

    def _prune(self) -> None:
        assert self.dir is not None
        files = sorted(self.dir.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        for old in files[:-MAX_CACHED_REPORTS]:
            with contextlib.suppress(OSError):
                old.unlink()
