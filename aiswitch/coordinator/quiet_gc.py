"""The cyclic garbage collector kept quieter while runs schedule.

Contract: inside `with quiet_gc():` what existed when the first run started is frozen out
of the collector's sight (`gc.freeze`), and young collections run every
`GC_GEN0_THRESHOLD` allocations; both are undone when the last of the process's nested or
concurrent runs leaves. A plan is frozen with everything in it: never traversed, never
collected until the run ends.

`hold_until_run()`, for a process started to make one run (the console script's `aiswitch
run`): no collection at all until that run schedules; `quiet_gc` then turns the collector
on again, with everything the start-up made frozen.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# A batch holds several objects per task for the whole run, and the cyclic collector
# traversed them again and again: a third of the coordinator's CPU for 10,000 tasks. During
# a run young collections wait for this many allocations (700 by default; garbage cycles
# live that much longer, a few MB at most).
GC_GEN0_THRESHOLD = 10_000


_quiet_runs = 0
_gc_threshold: tuple[int, ...] = ()
_held = False


def hold_until_run() -> None:
    """No collection until the first run schedules (`quiet_gc`). What a start-up makes
    (the ~400 modules of a run, their classes and models, the plan) lives as long as the
    process: the young collections walked it again and again, ~90 of them, ~15 ms of
    every `aiswitch run`. A collector already off is left to whoever turned it off."""
    global _held
    if gc.isenabled():
        gc.disable()
        _held = True


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """The collector quieter while a run schedules; nested
    and concurrent runs of one process share one quiet period, undone by the last."""
    global _quiet_runs, _gc_threshold, _held
    if _quiet_runs == 0:
        _gc_threshold = gc.get_threshold()
        # The plan (every task, its result) is frozen: never traversed, never collected
        # until the run ends.
        gc.freeze()
        gen0, *older = _gc_threshold
        gc.set_threshold(max(gen0, GC_GEN0_THRESHOLD), *older)
        if _held:
            _held = False
            gc.enable()
    _quiet_runs += 1
    try:
        yield
    finally:
        _quiet_runs -= 1
        if _quiet_runs == 0:
            gc.set_threshold(*_gc_threshold)
            gc.unfreeze()
