"""Appending usage to the ledger, `state/tokens.jsonl`, in batches.

Every `tokens.usage` notification becomes one `LedgerRecord` line; none is dropped.
Records wait at most `FLUSH_INTERVAL_S` in memory: the first record of a batch arms a
timer (no polling), and `flush()` is also called at each task end and at exit. A flush
takes the ledger's lock once and fsyncs once, whatever the batch size.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiswitch.state.store import StateStore
from aiswitch.tokens.records import LedgerRecord

RESOURCE = "ledger"
# The bound on how long a usage record may wait before it is on disk.
FLUSH_INTERVAL_S = 0.1


def ledger_line(record: LedgerRecord) -> bytes:
    """One ledger line: `v` first, then only the fields that differ from their defaults.

    Readers fill the defaults back in (a missing counter is 0, a missing id null, a missing
    `source` `aiswitch`, a missing `cost_source` `unpriced`): lines shrink by about a third,
    and a report's cold read is mostly JSON parsing, so it shrinks with them."""
    body = record.model_dump_json(exclude_defaults=True, exclude={"v"})
    return b'{"v":%d,' % record.v + body[1:].encode()


class LedgerWriter:
    def __init__(
        self,
        store: StateStore,
        *,
        price: Callable[[LedgerRecord], LedgerRecord] | None = None,
    ) -> None:
        self.store = store
        self.path = store.home.ledger
        self.written = 0
        self._price = price
        self._pending: list[LedgerRecord] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flush_lock = asyncio.Lock()
        self._flushes: set[asyncio.Task[None]] = set()

    def add(self, record: LedgerRecord) -> LedgerRecord:
        if self._price is not None:
            record = self._price(record)
        self._pending.append(record)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(FLUSH_INTERVAL_S, self._flush_soon)
        return record

    def _flush_soon(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self.flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def flush(self) -> None:
        async with self._flush_lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            batch, self._pending = self._pending, []
            if not batch:
                return
            lines = [ledger_line(r) for r in batch]
            try:
                await asyncio.to_thread(self.store.append_lines, RESOURCE, self.path, lines)
            except BaseException:
                # Nothing is lost: the batch goes back in front for the next flush.
                self._pending[:0] = batch
                raise
            self.written += len(batch)

    async def close(self) -> None:
        for task in list(self._flushes):
            await asyncio.shield(task)
        await self.flush()
