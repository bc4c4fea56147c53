"""Runs on disk: one file per run, and a small index of runs.

`state/runs/<run_id>.json` holds one run and is rewritten as its tasks change (each
write is small: one run). `state/tasks.json` is the index: one short entry per run,
written only when a run starts and when it ends, so it never churns with task updates.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiswitch.coordinator.results import RunResult
from aiswitch.state.store import StateStore

INDEX_RESOURCE = "runs-index"
# The index keeps the newest entries; run files themselves are kept until pruned.
MAX_INDEX_ENTRIES = 10_000
PROMPT_PREVIEW_CHARS = 120


def new_run_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


class RunStore:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.index_path = store.home.state / "tasks.json"

    def path(self, run_id: str) -> Path:
        return self.store.home.runs / f"{run_id}.json"

    def save(self, run: RunResult) -> None:
        """Rewrite the run's own file (on every task update)."""
        with self.store.lock(f"run-{run.run_id}"):
            self.store.write_json(self.path(run.run_id), run.json_document())

    def record(self, run: RunResult) -> None:
        """Save the run and its index entry (when it starts and when it ends)."""
        self.save(run)
        self._index(run)

    def _index(self, run: RunResult) -> None:
        entry = {
            "run_id": run.run_id,
            "mode": run.mode,
            "status": run.status,
            "started_at": run.started_at.isoformat(),
            "ended_at": run.ended_at.isoformat() if run.ended_at else None,
            "agents": [r.agent_id for r in run.results],
            "prompt": run.prompt[:PROMPT_PREVIEW_CHARS],
            "total_tokens": run.usage.total_tokens,
        }

        def change(index: dict[str, Any]) -> dict[str, Any]:
            runs = [r for r in index.get("runs", []) if r.get("run_id") != run.run_id]
            runs.append(entry)
            index["runs"] = runs[-MAX_INDEX_ENTRIES:]
            index.setdefault("version", 1)
            return index

        self.store.update_json(INDEX_RESOURCE, self.index_path, lambda: {"runs": []}, change)
