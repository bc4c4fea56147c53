"""Runs on disk: one file per run, and a small index of runs.

`state/runs/<run_id>.json` holds one run and is rewritten as its tasks change (each
write is small: one run). `state/tasks.json` is the index: one short entry per run,
written only when a run starts and when it ends, so it never churns with task updates.

The store knows files, not runs: a run's document and its index entry are plain JSON
values that the coordinator builds (files know no run logic).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiswitch.state.store import StateStore

INDEX_RESOURCE = "runs-index"
# One lock for every run file, not one per run: run writes are small and rare, and a
# lock file per run would pile up under locks/ (they are never removed).
RUNS_RESOURCE = "runs"
# The index keeps the newest entries; run files themselves are kept until pruned.
MAX_INDEX_ENTRIES = 10_000


def new_run_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


class RunStore:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.index_path = store.home.state / "tasks.json"

    def path(self, run_id: str) -> Path:
        return self.store.home.runs / f"{run_id}.json"

    def save(self, run_id: str, document: Mapping[str, Any]) -> None:
        """Rewrite the run's own file (on every task update)."""
        with self.store.lock(RUNS_RESOURCE):
            self.store.write_json(self.path(run_id), document)

    def record(self, run_id: str, document: Mapping[str, Any], entry: Mapping[str, Any]) -> None:
        """Save the run and its index entry (when it starts and when it ends)."""
        self.save(run_id, document)
        self._index(run_id, entry)

    def _index(self, run_id: str, entry: Mapping[str, Any]) -> None:
        def change(index: dict[str, Any]) -> dict[str, Any]:
            runs = [r for r in index.get("runs", []) if r.get("run_id") != run_id]
            runs.append({"run_id": run_id, **entry})
            index["runs"] = runs[-MAX_INDEX_ENTRIES:]
            index.setdefault("version", 1)
            return index

        self.store.update_json(INDEX_RESOURCE, self.index_path, lambda: {"runs": []}, change)
