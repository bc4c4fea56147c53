"""Runs on disk: one file per run, and a small index of runs.

`state/runs/<run_id>.json` holds one run and is rewritten as its tasks change (each
write is small: one run). `state/tasks.json` is the index: one short entry per run,
written only when a run starts and when it ends, so it never churns with task updates.

The store knows files, not runs: a run's document and its index entry are plain JSON
values that the coordinator builds (files know no run logic).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiswitch.errors import StateError, UsageError
from aiswitch.home import DIR_MODE, NOFOLLOW, SECRET_FILE_MODE
from aiswitch.state.store import StateStore, writing

INDEX_RESOURCE = "runs-index"
# One lock for every run file, not one per run: run writes are small and rare, and a
# lock file per run would pile up under locks/ (they are never removed).
RUNS_RESOURCE = "runs"
# The index keeps the newest entries; run files themselves are kept until pruned.
MAX_INDEX_ENTRIES = 10_000


# What `new_run_id` makes: a run id given on a command line must be one (it names files).
RUN_ID_PATTERN = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")


def check_run_id(run_id: str) -> str:
    """`run_id` if it is one `new_run_id` could have made; else a usage error."""
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise UsageError(
            f"{run_id!r} is not a run id",
            hint="run ids look like 20261204T131648Z-a596a1; `aiswitch runs list` shows them",
        )
    return run_id


def new_run_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


class RunJournal:
    """`state/runs/<run_id>.jsonl`: each final task result, on disk as it is known.

    Only the run's own coordinator appends (a resumed run appends to the same file, after
    the first is gone). Each line is one `os.write` on an O_APPEND descriptor, so a killed
    coordinator leaves whole lines and at most a torn last one, which readers skip; fsync
    is the caller's to batch (`sync`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def append(self, line: bytes) -> None:
        """Append `line` (or several lines joined by newlines) with one write."""
        if self._fd is None:
            with writing(self.path, "append to"):
                self.path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
                self._fd = os.open(
                    self.path,
                    os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | NOFOLLOW,
                    SECRET_FILE_MODE,
                )
                # A torn line a killed writer left ends here, so it stays one bad line.
                if os.fstat(self._fd).st_size and not _ends_with_newline(self.path):
                    os.write(self._fd, b"\n")
        data = line.rstrip(b"\n") + b"\n"
        try:
            written = os.write(self._fd, data)
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            raise StateError(
                f"cannot append to {self.path}: {exc.strerror}",
                hint="free some disk space; `aiswitch runs resume` finishes the run",
            ) from None

    def sync(self) -> None:
        if self._fd is not None:
            with writing(self.path, "fsync"):
                os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                with writing(self.path, "fsync"):
                    os.fsync(fd)
            finally:
                os.close(fd)


def run_file_bytes(document: Mapping[str, Any]) -> bytes:
    """A run file's bytes: what `StateStore.write_json` writes (indented by 2, UTF-8, a
    final newline), through orjson: json took 0.16 s per 10,000 results, orjson 0.01 s.

    The document is a model's JSON form (`model_dump(mode="json")`: plain JSON types, NaN
    and infinities already null); anything orjson refuses (an integer over 64 bits, a key
    that is not a string) is written by json, as before."""
    import orjson

    try:
        return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


class RunStore:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.index_path = store.home.state / "tasks.json"

    def path(self, run_id: str) -> Path:
        return self.store.home.runs / f"{run_id}.json"

    def save(self, run_id: str, document: Mapping[str, Any]) -> None:
        """Rewrite the run's own file (on every task update)."""
        data = run_file_bytes(document)
        with self.store.lock(RUNS_RESOURCE):
            self.store.write_bytes(self.path(run_id), data)

    def socket_path(self, run_id: str) -> Path:
        """Where the run's aiswitch listens for control requests while it runs."""
        return self.store.home.tmp / "sockets" / f"{run_id}.sock"

    def journal_path(self, run_id: str) -> Path:
        return self.store.home.runs / f"{run_id}.jsonl"

    def journal_writer(self, run_id: str) -> RunJournal:
        return RunJournal(self.journal_path(run_id))

    def journal(self, run_id: str) -> list[dict[str, Any]]:
        """The journal's entries; a torn last line (a killed writer) is skipped."""
        import json

        try:
            data = self.journal_path(run_id).read_bytes()
        except FileNotFoundError:
            return []
        entries = []
        for line in data.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        return entries

    def load(self, run_id: str) -> dict[str, Any] | None:
        data = self.store.read_json(self.path(run_id), None, strict=True)
        return data if isinstance(data, dict) else None

    def index(self) -> list[dict[str, Any]]:
        data: Any = self.store.read_json(self.index_path, {"runs": []})
        runs = data.get("runs", []) if isinstance(data, dict) else []
        return [r for r in runs if isinstance(r, dict)]

    def record(self, run_id: str, document: Mapping[str, Any], entry: Mapping[str, Any]) -> None:
        """Save the run and its index entry (when it starts and when it ends)."""
        self.save(run_id, document)
        self._index(run_id, entry)

    def remove(self, run_id: str) -> bool:
        """Forget a run: its index entry, its file and its journal. False if none was."""
        found = False

        def change(index: dict[str, Any]) -> dict[str, Any]:
            nonlocal found
            runs = index.get("runs", [])
            kept = [r for r in runs if r.get("run_id") != run_id]
            found = len(kept) != len(runs)
            index["runs"] = kept
            return index

        self.store.update_json(INDEX_RESOURCE, self.index_path, lambda: {"runs": []}, change)
        with self.store.lock(RUNS_RESOURCE):
            for path in (self.path(run_id), self.journal_path(run_id)):
                with writing(path, "remove"):
                    try:
                        path.unlink()
                        found = True
                    except FileNotFoundError:
                        pass
        return found

    def _index(self, run_id: str, entry: Mapping[str, Any]) -> None:
        def change(index: dict[str, Any]) -> dict[str, Any]:
            runs = [r for r in index.get("runs", []) if r.get("run_id") != run_id]
            runs.append({"run_id": run_id, **entry})
            index["runs"] = runs[-MAX_INDEX_ENTRIES:]
            index.setdefault("version", 1)
            return index

        self.store.update_json(INDEX_RESOURCE, self.index_path, lambda: {"runs": []}, change)
