"""A cold report over a large ledger, parsed in parallel over newline-aligned byte ranges.

Contract:

- `aggregate_ledger(path, options)` returns an `Aggregator` holding the whole ledger's sums,
  the number of malformed lines, and whether the last line is unterminated. The result is the
  one `build_report(parse_ledger_bytes(whole file))` gives: same rows, same dedupe ("the
  first one read wins"), same warnings.
- The file is split into byte ranges that start right after a newline. Each range is parsed
  and aggregated in its own process (the parent takes the first range itself): workers send
  back sums and the dedupe keys they met, never rows, since shipping a million rows between
  processes would cost what parsing them does.
- When two ranges hold the same dedupe key (a duplicate across a range boundary, rare), only
  an in-order pass knows which copy counts: the ranges are then aggregated again in order in
  this process. Correct first, fast when it can be.
- Only where `fork` exists (start-up and pickling of the options would eat the gain
  otherwise); `parallel_workers()` says how many processes to use, 1 meaning "do not" (also
  on a machine whose load average is over twice its cores).
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import Future
from pathlib import Path

from aiswitch.tokens.report import AggregateState, Aggregator, OverlappingStates, ReportOptions

# Below this size a single process is faster: forking and merging cost ~0.1 s.
PARALLEL_LEDGER_MIN_BYTES = 32 * 1024 * 1024
# Parsing is CPU-bound; beyond a few processes the merge and the page cache are the limit.
MAX_LEDGER_WORKERS = 4
# On a machine this loaded, extra workers only time-slice with other processes and the merge
# makes the report slower. Measured on 2 cores: at load 2.8, 2 workers 4.8 s vs one process
# 7.2 s; at load 6.5, 7.7 s vs 6.2 s.
OVERLOADED_LOAD_PER_CPU = 2.0


def parallel_workers(size: int) -> int:
    """How many processes should parse a ledger of `size` bytes (1: no parallelism)."""
    import multiprocessing

    if size < PARALLEL_LEDGER_MIN_BYTES or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cpus = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    if busy >= OVERLOADED_LOAD_PER_CPU * cpus:
        return 1
    return max(1, min(cpus, MAX_LEDGER_WORKERS))


def split_ranges(fd: int, size: int, parts: int) -> list[tuple[int, int]]:
    """`parts` byte ranges covering [0, size), each starting just after a newline."""
    bounds = [0]
    for index in range(1, parts):
        guess = max(size * index // parts, bounds[-1])
        # Move each cut to just after the next newline (a line is never split).
        while True:
            chunk = os.pread(fd, 65536, guess)
            if not chunk:
                guess = size
                break
            found = chunk.find(b"\n")
            if found >= 0:
                guess += found + 1
                break
            guess += len(chunk)
        bounds.append(min(guess, size))
    bounds.append(size)
    return [(start, end) for start, end in itertools.pairwise(bounds) if end > start]


def _read_range(path: Path, start: int, end: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(start)
        return handle.read(end - start)


def _aggregate_range(
    path: Path, start: int, end: int, options: ReportOptions
) -> tuple[AggregateState, int]:
    from aiswitch.tokens.sources.ledger import parse_ledger_bytes

    rows, malformed = parse_ledger_bytes(_read_range(path, start, end))
    aggregator = Aggregator(options)
    aggregator.add(rows)
    return aggregator.state, malformed


def aggregate_ledger(
    path: Path, options: ReportOptions, workers: int
) -> tuple[Aggregator, int, bool]:
    """The whole ledger aggregated (see the module docstring), malformed lines, torn tail."""
    with path.open("rb") as handle:
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        ranges = split_ranges(fd, size, workers)
        last = os.pread(fd, 1, size - 1) if size else b"\n"
        tail_start = size
        if last != b"\n":
            # A torn last line: the start of the unterminated line, for the warning.
            probe = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
            tail_start = size - len(probe) + probe.rfind(b"\n") + 1
        torn = last != b"\n" and bool(os.pread(fd, size - tail_start, tail_start).strip())
    if not ranges:
        return Aggregator(options), 0, False
    states: list[tuple[AggregateState, int]] = []
    if len(ranges) == 1:
        states.append(_aggregate_range(path, *ranges[0], options))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=len(ranges) - 1, mp_context=context) as pool:
            futures: list[Future[tuple[AggregateState, int]]] = [
                pool.submit(_aggregate_range, path, start, end, options)
                for start, end in ranges[1:]
            ]
            states.append(_aggregate_range(path, *ranges[0], options))
            states.extend(future.result() for future in futures)
    aggregator = Aggregator(options, states[0][0])
    try:
        for state, _ in states[1:]:
            aggregator.merge(state)
    except OverlappingStates:
        aggregator = Aggregator(options)
        for start, end in ranges:
            from aiswitch.tokens.sources.ledger import parse_ledger_bytes

            rows, _ = parse_ledger_bytes(_read_range(path, start, end))
            aggregator.add(rows)
    return aggregator, sum(malformed for _, malformed in states), torn
