"""A cold report over a large ledger, parsed in parallel over newline-aligned byte ranges.

Contract:

- `aggregate_ledger(path, options, workers)` returns an `Aggregator` holding the whole
  ledger's sums, the number of malformed lines, and whether the last line is unterminated.
  The sums are the ones `build_report(parse_ledger_bytes(whole file))` gives: same rows, same
  dedupe ("the first one read wins"), same warnings (costs may differ in the last bits of a
  float, as they are summed in another order). The returned aggregator is for finishing the
  report (`add_rollup`, `finish`): its `seen` may lack the ledger's dedupe keys.
- The file is split into `workers` byte ranges that start right after a newline, each read,
  parsed and aggregated by a forked worker, a block (128 KiB of lines) at a time: rows never
  pile up in memory (a million rows held at once cost more to allocate than to parse), and
  a worker exits without freeing what it built (half a million dedupe keys took a parent
  ~0.13 s to free). The parent only merges.
- Workers send back sums and the hashes of their rows' dedupe keys, taken block by block
  while the rows are in cache (`_key_hashes`; hashing the keys of the report's `seen` set
  afterwards took ~0.3 s per half million). Forked children share the parent's string hash
  seed. Never rows or keys: shipping those between processes would cost about what parsing
  them does.
- When two ranges may hold the same dedupe key (a shared hash: a duplicate across a range
  boundary, rare, or a hash collision, rarer), only an in-order pass knows which copy
  counts: the ranges are then aggregated again in order in this process, as they are when a
  worker fails. Correct first, fast when it can be.
- Only where `fork` exists (start-up and pickling of the options would eat the gain
  otherwise); `parallel_workers()` says how many processes to use, 1 meaning "do not" (also
  on a machine whose load average is over twice its cores).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from array import array
from pathlib import Path
from typing import Any

from aiswitch.tokens.report import AggregateState, Aggregator
from aiswitch.tokens.report_options import ReportOptions
from aiswitch.tokens.rows import R_MESSAGE, R_REQUEST, R_SOURCE
from aiswitch.tokens.sources import forked
from aiswitch.tokens.sources.ledger import parse_ledger_bytes

# Below this size a single process is faster: forking and merging cost ~0.1 s.
PARALLEL_LEDGER_MIN_BYTES = 32 * 1024 * 1024
# Parsing is CPU-bound; beyond a few processes the merge and the page cache are the limit.
MAX_LEDGER_WORKERS = 4
# On a machine this loaded, extra workers only time-slice with other processes and the merge
# makes the report slower. Measured on 2 cores: at load 2.8, 2 workers 4.8 s vs one process
# 7.2 s; at load 6.5, 7.7 s vs 6.2 s.
OVERLOADED_LOAD_PER_CPU = 2.0
# How much of a range is read, parsed and aggregated at a time: its rows stay in the CPU's
# cache from parsing to summing (measured: 1 MiB blocks cost a third more than 128 KiB ones).
READ_BYTES = 128 * 1024


def parallel_workers(size: int) -> int:
    """How many processes should parse a ledger of `size` bytes (1: no parallelism)."""
    if size < PARALLEL_LEDGER_MIN_BYTES or not forked.can_fork():
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


def _aggregate_range(
    path: Path, start: int, end: int, aggregator: Aggregator, keys: array[int] | None = None
) -> int:
    """Add the rows of the bytes [start, end) of `path` to `aggregator`, in file order, a
    block of whole lines at a time; the number of malformed lines. `keys`: where to append
    the hashes of the rows' dedupe keys (`_key_hashes`)."""
    malformed = 0
    add = aggregator.add
    with path.open("rb") as handle:
        fd = handle.fileno()
        position = start
        carry = b""  # the start of a line that the last read cut
        while position < end:
            # Reading at least as much again as is carried keeps a long line linear to read.
            want = min(max(READ_BYTES, len(carry)), end - position)
            chunk = os.pread(fd, want, position)
            position = position + len(chunk) if chunk else end  # or the file shrank
            data = carry + chunk if carry else chunk
            # A block ends with a newline, but at the range's end (the file's torn tail).
            cut = data.rfind(b"\n") + 1 if position < end else len(data)
            carry = data[cut:]
            if cut:
                rows, bad = parse_ledger_bytes(data[:cut] if carry else data)
                add(rows)
                malformed += bad
                if keys is not None:
                    keys.extend(_key_hashes(rows))
    return malformed


def _key_hashes(rows: list[tuple[Any, ...]]) -> list[int]:
    """The hashes of the dedupe keys of `rows` (the report's rule, docs/tokens.md: source,
    message id and request id, for a row with both ids). The ranges of two processes may
    hold a duplicate only if their lists share a hash."""
    return [
        hash((row[R_SOURCE], row[R_MESSAGE], row[R_REQUEST]))
        for row in rows
        if row[R_MESSAGE] and row[R_REQUEST]
    ]


def _worker(connection: Any, path: Path, start: int, end: int, aggregator: Aggregator) -> None:
    """A worker process: aggregate one range, send back its sums and its keys' hashes."""
    keys: array[int] = array("q")
    malformed = _aggregate_range(path, start, end, aggregator, keys)
    forked.send(connection, (aggregator.state.sums(), malformed, keys.tobytes()))


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
    # Made before forking: the workers inherit its loaded timezone and price table.
    aggregator = Aggregator(options)
    if len(ranges) > 1:
        with contextlib.suppress(forked.WorkerFailed):
            malformed, states = _aggregate_in_workers(path, ranges, aggregator)
            if states is not None:
                for state in states:
                    aggregator.merge(state)
                return aggregator, malformed, torn
            # The same key in two ranges: the first read wins, which only an in-order pass
            # knows.
            aggregator = Aggregator(options)
            for start, end in ranges:
                _aggregate_range(path, start, end, aggregator)
            return aggregator, malformed, torn
    malformed = sum(_aggregate_range(path, start, end, aggregator) for start, end in ranges)
    return aggregator, malformed, torn


def _aggregate_in_workers(
    path: Path, ranges: list[tuple[int, int]], aggregator: Aggregator
) -> tuple[int, list[AggregateState] | None]:
    """Each range aggregated into a copy of `aggregator` by a forked worker: the number of
    malformed lines, and the workers' states in range order (their `seen` left empty), or
    None if two ranges may share a dedupe key. Raises `forked.WorkerFailed`."""
    targets = [(_worker, (path, start, end, aggregator)) for start, end in ranges]
    # Short-lived workers whose rows hold no cycles: collecting would only cost.
    with forked.no_cyclic_gc(), forked.workers(targets) as ends:
        payloads = [forked.receive(end) for end in ends]
    malformed = sum(payload[1] for payload in payloads)
    met: set[int] = set()
    for number, payload in enumerate(payloads):
        theirs: array[int] = array("q")
        theirs.frombytes(payload[2])
        if number == 0:
            met.update(theirs)
            continue
        if not met.isdisjoint(theirs):
            return malformed, None
        if number < len(payloads) - 1:
            met.update(theirs)
    return malformed, [AggregateState.from_sums(payload[0]) for payload in payloads]
