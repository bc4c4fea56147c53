"""A run's file, saved on a throttle while the run goes (`RunSaves`).

Each final result reaches the run's journal at once (the run writes it at the end of the
loop turn); this object makes the journal's fsync and the run file's rewrite ride on one
save at most every `RUN_SAVE_INTERVAL_S`, off the event loop, one at a time, and spaces the
rewrites of a big run's file by what the last one cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiswitch.state.runs import RunJournal, RunStore

# The run file is rewritten at most this often (and at its end): a big batch must not
# rewrite its file once per task. (Each final result reaches the journal at once; the
# journal's fsync rides on this save.)
RUN_SAVE_INTERVAL_S = 1.0
# The run file holds every result, so rewriting it costs more the bigger the run (about
# 0.1 s per 1,000 results): after a rewrite that took T seconds the next waits at least
# this many times T, so rewrites take at most 1/20 of a run's time however big it is.
# The journal (what recovery reads) still gets every final result each interval.
RUN_REWRITE_COST_FACTOR = 20.0


class RunSaves:
    def __init__(
        self,
        runs: RunStore,
        run_id: str,
        journal: RunJournal,
        document: Callable[[], dict[str, Any]],
    ) -> None:
        self.runs = runs
        self.run_id = run_id
        self.journal = journal
        self.document = document
        self._timer: asyncio.TimerHandle | None = None
        self._saves: set[asyncio.Task[None]] = set()
        self._next_rewrite = 0.0

    def soon(self) -> None:
        """A save within `RUN_SAVE_INTERVAL_S` (one already due covers this one)."""
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(RUN_SAVE_INTERVAL_S, self._now)

    async def settle(self) -> None:
        """No save pending, none running (the run's end writes its file itself)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for save in list(self._saves):
            with contextlib.suppress(Exception):
                await save

    def _now(self) -> None:
        self._timer = None
        if self._saves:
            # One save at a time: the next one follows.
            self.soon()
            return
        journal = self.journal
        started = time.monotonic()
        document = self.document() if started >= self._next_rewrite else None
        if document is None:
            # The run file waits for its turn (at most until the rewrite is due).
            self.soon()
        runs, run_id = self.runs, self.run_id

        def write() -> None:
            journal.sync()
            if document is not None:
                runs.save(run_id, document)

        task = asyncio.get_running_loop().create_task(asyncio.to_thread(write))
        self._saves.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._saves.discard(task)
            if document is not None:
                cost = time.monotonic() - started
                self._next_rewrite = time.monotonic() + RUN_REWRITE_COST_FACTOR * cost

        task.add_done_callback(done)
