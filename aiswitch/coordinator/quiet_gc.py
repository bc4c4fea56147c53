"""The cyclic garbage collector kept out of the way while runs go.

Contract: inside `with quiet_gc():` (a run, from its start to its end's writes) what
existed when the first run started is frozen out of the collector's sight (`gc.freeze`)
and the collector does not run at all; both are undone when the last of the process's
nested or concurrent runs leaves (the collector as it was before: on, with its
thresholds, or off if its owner had turned it off). Reference counting frees everything
as always; only garbage in reference cycles waits for the end of the quiet period.

Why not collect at all: a run makes almost no cyclic garbage (330 objects over a
100,000-task batch, measured), while every collection walks what the run made and keeps:
each task's result, attempts, usage models (~1 M objects at 100,000 tasks). Collections
every 10,000 allocations cost ~3 s of the coordinator's ~16 s of CPU while a 100,000-task
batch scheduled (a fifth), and full ones ~1-1.5 s more at its end; rarer collections cost
about as much, since each walks everything made since the last.

A process that hosts runs for long (`aiswitch mcp`: runs may overlap for hours, so the
quiet period need never end) still collects once every `QUIET_COLLECT_S` of a quiet
period (a timer on the running event loop; none without one): cyclic garbage waits at
most that long, and a batch, done well within it, never pays for one.

`hold_until_run()`, for a process started to make one run (the console script's `aiswitch
run`): no collection at all until that run starts; `quiet_gc` keeps it so, and turns the
collector on as the run ends (everything the start-up made frozen until then).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator

# A quiet period this long gets one full collection (and one more each time again).
QUIET_COLLECT_S = 300.0

_quiet_runs = 0
_was_enabled = False
_held = False
_timer: asyncio.TimerHandle | None = None


def hold_until_run() -> None:
    """No collection until the first run starts (`quiet_gc`). What a start-up makes
    (the ~400 modules of a run, their classes and models, the plan) lives as long as the
    process: the young collections walked it again and again, ~90 of them, ~15 ms of
    every `aiswitch run`. A collector already off is left to whoever turned it off."""
    global _held
    if gc.isenabled():
        gc.disable()
        _held = True


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """No collection while a run goes, the heap of its start frozen; nested and
    concurrent runs of one process share one quiet period, undone by the last."""
    global _quiet_runs, _was_enabled, _held
    if _quiet_runs == 0:
        _was_enabled = gc.isenabled() or _held
        _held = False
        gc.freeze()
        gc.disable()
        _arm()
    _quiet_runs += 1
    try:
        yield
    finally:
        _quiet_runs -= 1
        if _quiet_runs == 0:
            _disarm()
            gc.unfreeze()
            if _was_enabled:
                gc.enable()


def _arm() -> None:
    """The next collection of a long quiet period, on the running loop (if there is one)."""
    global _timer
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    _timer = loop.call_later(QUIET_COLLECT_S, _collect)


def _collect() -> None:
    global _timer
    _timer = None
    if _quiet_runs > 0:
        gc.collect()
        _arm()


def _disarm() -> None:
    global _timer
    if _timer is not None:
        _timer.cancel()
        _timer = None
