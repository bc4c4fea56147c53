"""Claude logs of many files summed by forked workers that each read, dedupe and sum a
share of the files: a report's sums, or the hourly sums of blocks.

Contract:

- `sum_claude(files, sizes, index, new_sums, workers)` returns `(sums, warnings)`: a
  `new_sums()` (a `Sums`: `ReportSums`, or `aiswitch.tokens.blocks.HourSums`) with every
  entry of the files added once, after ccusage's duplicate rules, and the warnings; or None
  when it cannot run here (no `fork`, a worker failed), and the caller takes the
  one-process path. Workers, pipes and failures: `aiswitch.tokens.sources.forked`; the
  cyclic GC is off while they run. Costs may differ from the one-process path in the last
  bits of a float, as they are summed in another order.
- `aggregate_claude(files, sizes, index, options, workers)` is `sum_claude` for a report:
  `(aggregator, warnings)`, the same sums and warnings as `load_claude` + `build_report`
  over the same files (ccusage's duplicate rules, then the report's own), or None.
- `workers_for(sizes)` says how many processes to use for files of `sizes` bytes (1: do
  not fork).
- Files are split into `workers` contiguous shares balanced by size; the parent reads one
  share itself. Each share is read through the per-file index (a forked copy of the caller's
  `FileIndex`), so cached files are not parsed again and parsed ones come back as index
  updates, which the caller saves.
- Every duplicate rule compares only entries with the same message id, so the entries are
  split by message id: a worker dedupes and aggregates the ids only its share holds, in file
  order, and sends back sums. Ids met in more than one share ("contested": a resumed session
  copied into another file) are sent back as entries tagged with their place in the file
  order, and the parent dedupes those in that order. Two rounds: the workers first send the
  hashes of their message ids (forked children share the parent's string hash seed), the
  parent answers with the contested ones.
"""

from __future__ import annotations

import marshal
import os
from array import array
from collections.abc import Callable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiswitch.tokens.index import FileIndex, FileRead
from aiswitch.tokens.overlap import LedgerKeys, held_by_ledger
from aiswitch.tokens.report import AggregateState, Aggregator
from aiswitch.tokens.report_options import ReportOptions
from aiswitch.tokens.sources import claude, forked

# Below this many bytes of logs, forking and merging cost more than they save.
PARALLEL_MIN_BYTES = 16 * 1024 * 1024
# Parsing is CPU-bound: one process per core, up to this many.
MAX_WORKERS = 8
# The parent's share of the files, relative to a worker's: it also merges, dedupes the
# contested entries and saves the index after the workers are done.
PARENT_WEIGHT = 0.8
# The parent's share when the workers send back hourly sums for blocks (`HourSums`): while
# they work, the parent does what each of them does, and all it does after them (merge a few
# thousand groups, the contested entries, the index) waits for the last one anyway.
BLOCKS_PARENT_WEIGHT = 1.0
# Entries are tuples; the message id is at this position (`ClaudeEntry.message_id`).
_MESSAGE = claude.E_MESSAGE
_S = TypeVar("_S", bound="Sums")


def workers_for(sizes: Sequence[int]) -> int:
    """How many processes should read files of `sizes` bytes (1: no parallelism)."""
    if not forked.can_fork():
        return 1
    cpus = min(os.cpu_count() or 1, MAX_WORKERS, len(sizes))
    if cpus < 2 or sum(sizes) < PARALLEL_MIN_BYTES:
        return 1
    return cpus


def split_shares(sizes: Sequence[int], parts: int, first_weight: float = 1.0) -> list[list[int]]:
    """`parts` contiguous runs of the positions of files of `sizes` bytes, their total sizes in
    proportion to their weights: `first_weight` for the first run (the parent's), 1 for each
    other."""
    import bisect

    total = sum(sizes) or 1
    weights = [first_weight] + [1.0] * (parts - 1)
    # The fraction of all bytes where each run after the first starts.
    starts = [sum(weights[:index]) / sum(weights) for index in range(1, parts)]
    shares: list[list[int]] = [[] for _ in range(parts)]
    running = 0
    for position, size in enumerate(sizes):
        # A file goes to the run its middle byte falls in.
        shares[bisect.bisect_right(starts, (running + size / 2) / total)].append(position)
        running += size
    return [share for share in shares if share]


class Sums(Protocol):
    """What a share's deduplicated entries are summed into: a report's sums
    (`ReportSums`) or the blocks' hours (`aiswitch.tokens.blocks.HourSums`)."""

    def add_entries(
        self, entries: Sequence[tuple[Any, ...]], order_of: Callable[[int], int]
    ) -> None:
        """Add deduplicated entries; `order_of(i)`: the i-th one's place in the file order
        (rising with i), comparable across processes."""

    def sums(self) -> Any:
        """What `merge` takes in another process (marshallable)."""

    def merge(self, sums: Any) -> None: ...


class ReportSums:
    """A report's `Aggregator` as `Sums` (rows the ledger holds left out)."""

    def __init__(self, options: ReportOptions, ledger: LedgerKeys | None) -> None:
        self.aggregator = Aggregator(options)  # also loads the zone and prices
        self.ledger = ledger

    def add_entries(
        self, entries: Sequence[tuple[Any, ...]], order_of: Callable[[int], int]
    ) -> None:
        rows = claude.rows_from_entries(entries)
        if self.ledger:
            rows = [row for row in rows if not held_by_ledger(row, self.ledger)]
        # Deduplicated rows leave `state.seen` empty: merging needs no keys, as every
        # message id is summed in one process only.
        self.aggregator.add(rows, deduplicated=True)

    def sums(self) -> dict[str, Any]:
        return self.aggregator.state.sums()

    def merge(self, sums: dict[str, Any]) -> None:
        self.aggregator.merge(AggregateState.from_sums(sums))


# An entry's place in the file order: its file's position, then its own within the file.
_POSITION_SHIFT = 32


class _Share:
    """One process's part of the work: read its files, then split and sum."""

    def __init__(self, files: list[tuple[int, Path]], index: FileIndex, sums: Sums):
        self.files = files
        self.index = index
        self.sums = sums
        self.per_file: list[tuple[int, list[tuple[Any, ...]]]] = []
        self.notes: list[tuple[int, int, bool]] = []  # (position, malformed, torn tail)
        self.updates: dict[str, list[Any]] = {}

    def read(self) -> set[int]:
        """Round 1: read the share's files; the hashes of the message ids met."""
        entries_of = self.index.entries
        message_of = itemgetter(_MESSAGE)
        ids: set[int] = set()
        for position, path in self.files:
            key = str(path)
            before = entries_of.get(key)
            read = self.index.read_appendable(path, claude.parser_for(path))
            after = entries_of.get(key)
            if after is not None and after is not before:
                self.updates[key] = after
            if read.malformed:
                self.notes.append((position, read.malformed, read.incomplete_tail))
            items = read.items
            self.per_file.append((position, items))
            # Message ids are None or non-empty (parse_claude_bytes drops empty ones).
            ids.update(map(hash, filter(None, map(message_of, items))))
        return ids

    def finish(self, contested: set[int]) -> tuple[Any, list[tuple[Any, ...]]]:
        """Round 2: the sums of the ids only this share holds, and the contested entries
        tagged (file position, line position, entry)."""
        local: list[tuple[Any, ...]] = []
        orders: list[int] = []  # each local entry's place in the file order
        tagged: list[tuple[Any, ...]] = []
        message_of = itemgetter(_MESSAGE)
        for position, items in self.per_file:
            base = position << _POSITION_SHIFT
            if contested.isdisjoint(map(hash, filter(None, map(message_of, items)))):
                local.extend(items)  # most files: nothing contested, no loop in Python
                orders.extend(range(base, base + len(items)))
                continue
            for seq, item in enumerate(items):
                message_id = item[_MESSAGE]
                if message_id is not None and hash(message_id) in contested:
                    tagged.append((position, seq, item))
                else:
                    local.append(item)
                    orders.append(base + seq)
        slots: list[int] = []
        kept = claude.dedupe_claude_entries(local, slots)
        self.sums.add_entries(kept, lambda at: orders[slots[at]])
        return self.sums.sums(), tagged


def _worker(connection: Any, share: _Share) -> None:
    """A worker process: the two rounds over its pipe."""
    forked.send(connection, array("q", share.read()).tobytes())
    contested = set(array("q", forked.receive(connection)))
    sums, tagged = share.finish(contested)
    forked.send(connection, (sums, tagged, list(share.updates), share.notes))
    # The index entries, which the parent writes without loading them.
    forked.send(connection, marshal.dumps(share.updates))


def aggregate_claude(
    files: Sequence[Path],
    sizes: Sequence[int],
    index: FileIndex,
    options: ReportOptions,
    workers: int,
    ledger: LedgerKeys | None = None,
) -> tuple[Aggregator, list[str]] | None:
    """The report's sums and warnings over `files` of `sizes` bytes (module docstring), or
    None. `ledger`: for `--source all`, the ledger's keys; rows the ledger holds are left
    out (`held_by_ledger`)."""
    done = sum_claude(files, sizes, index, lambda: ReportSums(options, ledger), workers)
    if done is None:
        return None
    sums, warnings = done
    return sums.aggregator, warnings


def sum_claude(
    files: Sequence[Path],
    sizes: Sequence[int],
    index: FileIndex,
    new_sums: Callable[[], _S],
    workers: int,
    parent_weight: float = PARENT_WEIGHT,
) -> tuple[_S, list[str]] | None:
    """`new_sums()` with every deduplicated entry of `files` (of `sizes` bytes) added, read
    by `workers` processes, and the warnings; or None when workers cannot run here (module
    docstring). `new_sums` is called once per process, all before forking; the parent's
    share is `parent_weight` times a worker's."""
    if not forked.can_fork():
        return None
    parts = split_shares(sizes, workers, parent_weight)
    total = new_sums()
    shares = [_Share([(at, files[at]) for at in part], index, new_sums()) for part in parts]
    mine, theirs = shares[0], shares[1:]
    try:
        with forked.no_cyclic_gc(), forked.workers([(_worker, (s,)) for s in theirs]) as ends:
            hashes = mine.read()
            their_hashes = [array("q", forked.receive(end)) for end in ends]
            contested = _contested(hashes, their_hashes)
            for end in ends:
                forked.send(end, array("q", contested).tobytes())
            sums, tagged = mine.finish(contested)
            total.merge(sums)
            notes = list(mine.notes)
            if mine.updates:  # marshalled now, while the workers still marshal theirs
                index.adopt(marshal.dumps(mine.updates), list(mine.updates))
            for end in ends:
                sums, more, updated, their_notes = forked.receive(end)
                total.merge(sums)
                tagged.extend(more)
                part = forked.receive(end)
                if updated:
                    index.adopt(part, updated)
                notes.extend(their_notes)
            tagged.sort(key=lambda item: (item[0], item[1]))
            slots: list[int] = []
            kept = claude.dedupe_claude_entries([item[2] for item in tagged], slots)

            def order_of(at: int) -> int:
                position, seq, _ = tagged[slots[at]]
                return int(position << _POSITION_SHIFT) + int(seq)

            total.add_entries(kept, order_of)
    except forked.WorkerFailed:
        return None
    index.seen.update(str(path) for path in files)
    from aiswitch.tokens.sources import malformed_warnings

    reads = [(files[at], FileRead([], malformed, torn)) for at, malformed, torn in sorted(notes)]
    return total, malformed_warnings(claude.SOURCE, reads)


def _contested(mine: set[int], theirs: list[array[int]]) -> set[int]:
    """The hashes met in more than one share (the parent's, then each worker's)."""
    seen = mine
    contested: set[int] = set()
    for at, part in enumerate(theirs):
        contested.update(seen.intersection(part))  # one pass over the array, no set built
        if at + 1 < len(theirs):
            seen = seen.union(part)
    return contested


# How a worker's read of one file comes back (`read_claude`): the parent's own copy of the
# index entry holds its items, the worker's index updates hold them, or they are sent.
_CACHED, _UPDATED, _SENT = 0, 1, 2


def _read_worker(connection: Any, files: list[tuple[int, Path]], index: FileIndex) -> None:
    """A worker of `read_claude`: read `files` through the index, send how each read went,
    then the index entries it changed (marshalled once, for both the parent and the index)."""
    entries_of = index.entries
    reads: list[tuple[int, int, bool, int, Any]] = []
    updates: dict[str, list[Any]] = {}
    for position, path in files:
        key = str(path)
        before = entries_of.get(key)
        read = index.read_appendable(path, claude.parser_for(path))
        after = entries_of.get(key)
        if after is not None and after is not before:
            updates[key] = after
            how, items = (_UPDATED, None) if read.items is after[6] else (_SENT, read.items)
        elif after is not None and read.items is after[6]:
            how, items = _CACHED, None
        else:
            how, items = _SENT, read.items
        reads.append((position, read.malformed, read.incomplete_tail, how, items))
    forked.send(connection, (reads, list(updates)))
    forked.send(connection, marshal.dumps(updates))


def read_claude(
    files: Sequence[Path], sizes: Sequence[int], index: FileIndex, workers: int
) -> list[FileRead] | None:
    """What `index.read_appendable` gives for each of `files` (of `sizes` bytes), in order,
    read by `workers` processes (the parent reads the first share), or None when forked
    workers cannot run here (the caller reads in one process). The index takes the
    workers' updates (`FileIndex.adopt`); the caller saves it."""
    if not forked.can_fork():
        return None
    parts = split_shares(sizes, workers, PARENT_WEIGHT)
    shares = [[(at, files[at]) for at in part] for part in parts]
    out: list[FileRead | None] = [None] * len(files)
    try:
        targets = [(_read_worker, (share, index)) for share in shares[1:]]
        with forked.no_cyclic_gc(), forked.workers(targets) as ends:
            for position, path in shares[0]:
                out[position] = index.read_appendable(path, claude.parser_for(path))
            for end in ends:
                reads, updated = forked.receive(end)
                part = forked.receive(end)
                entries = marshal.loads(part) if updated else {}  # noqa: S302 - our worker's
                for position, malformed, torn, how, items in reads:
                    if how == _UPDATED:
                        items = entries[str(files[position])][6]
                    elif how == _CACHED:
                        items = index.entries[str(files[position])][6]
                    out[position] = FileRead(items, malformed, torn)
                # Adopted after the cached entries above were read: it drops them here.
                if updated:
                    index.adopt(part, updated)
    except forked.WorkerFailed:
        return None
    index.seen.update(str(path) for path in files)
    assert all(read is not None for read in out)
    return out  # type: ignore[return-value]
