"""One process's entry in `state/agents.json`, as its handle keeps it.

Contract: `TableEntry(table, key)` writes the entry (`add`) and drops it (`remove`) in one
chain: each write runs in a worker thread after every earlier one has finished, so a stop
that comes while the entry is on its way removes it after it is written, never before (an
entry that outlived its process would be reaped as an orphan's). `settled()` waits for the
chain; `remove` never raises (a write that fails warns, and the next run drops the entry).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from aiswitch.state.processes import ProcessTable


class TableEntry:
    def __init__(self, table: ProcessTable, key: str) -> None:
        self.table = table
        self.key = key
        self._last: asyncio.Task[Any] | None = None

    async def add(self, entry: dict[str, Any]) -> None:
        """Write the entry; raises the table's `StateError` when it cannot be written."""
        await asyncio.shield(self._chain(lambda: self.table.add(self.key, entry)))

    def remove(self) -> None:
        """Drop the entry once every earlier write is done (without waiting for it)."""
        self._chain(lambda: self.table.remove(self.key))

    async def settled(self) -> None:
        """Every write asked for so far has finished (not cancelled by the caller's cancel)."""
        if self._last is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._last)

    def _chain(self, write: Callable[[], Any]) -> asyncio.Task[Any]:
        previous = self._last

        async def chained() -> Any:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            return await asyncio.to_thread(write)

        self._last = task = asyncio.get_running_loop().create_task(chained())
        return task
