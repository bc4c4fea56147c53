"""The ledger writer: each record's line is in the file when `add()` returns, fsyncs are batched,
torn lines stay one bad line, and a parent killed with SIGKILL loses nothing it added."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import date
from typing import Any

import pytest
from support.cli import clean_env

from aiswitch.errors import StateError
from aiswitch.home import Home
from aiswitch.state.store import StateStore
from aiswitch.tokens.ledger import FSYNC_INTERVAL_S, RESOURCE, LedgerWriter, ledger_line
from aiswitch.tokens.records import LedgerRecord
from aiswitch.tokens.transfer import prune, read_ledger_records

# A child process starts and writes in well under a second; this only stops a hung test.
HANG_GUARD_S = 20.0
pytestmark = pytest.mark.timeout(60)

# A child that adds one record per line it reads on stdin ("go"), saying "added N" after each
# add, and waits to be killed; with argv[1] = a count, it adds that many at once and exits.
CHILD = """
import asyncio, sys
from aiswitch.state.store import StateStore
from aiswitch.tokens.ledger import LedgerWriter
from aiswitch.tokens.records import LedgerRecord

async def main():
    writer = LedgerWriter(StateStore())
    tag = sys.argv[2] if len(sys.argv) > 2 else "child"
    if len(sys.argv) > 1:
        for n in range(int(sys.argv[1])):
            writer.add(LedgerRecord(message_id=f"{tag}-{n}", request_id="r", input_tokens=n))
        await writer.close()
        return
    loop = asyncio.get_running_loop()
    n = 0
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "go":
        n += 1
        writer.add(LedgerRecord(message_id=f"{tag}-{n}", request_id="r", input_tokens=n))
        print(f"added {n}", flush=True)

asyncio.run(main())
"""


def record(n: int) -> LedgerRecord:
    return LedgerRecord(agent="mock", message_id=f"m-{n}", request_id="r", input_tokens=n)


class FsyncCounter:
    """Counts real fsyncs of the ledger (wrapping `os.fsync`, which still runs)."""

    def __init__(self, home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
        self.home = home
        self.calls = 0
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()
        real = os.fsync

        def fsync(fd: Any) -> None:
            real(fd)
            if os.fstat(fd).st_ino == self.home.ledger.stat().st_ino:
                self.calls += 1
                self.loop.call_soon_threadsafe(self.event.set)

        monkeypatch.setattr(os, "fsync", fsync)

    async def next_fsync(self) -> None:
        async with asyncio.timeout(HANG_GUARD_S):
            await self.event.wait()
        self.event.clear()


async def test_a_line_is_in_the_file_as_soon_as_add_returns(home: Home) -> None:
    writer = LedgerWriter(StateStore(home))
    try:
        first = writer.add(record(1))
        assert home.ledger.read_bytes() == ledger_line(first) + b"\n"
        second = writer.add(record(2))
        assert home.ledger.read_bytes() == ledger_line(first) + b"\n" + ledger_line(second) + b"\n"
        assert writer.written == 2
        assert home.ledger.stat().st_mode & 0o777 == 0o600
    finally:
        await writer.close()


async def test_queued_lines_go_out_in_order_as_one_write_of_whole_lines(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = LedgerWriter(StateStore(home))
    writes: list[bytes] = []
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        writes.append(bytes(data))
        return real_write(fd, data)

    try:
        queued = [writer.queue(record(n)) for n in (1, 2, 3)]
        assert not home.ledger.exists() and writer.written == 0  # nothing before the write
        monkeypatch.setattr(os, "write", write)
        writer.write_queued()
        lines = b"".join(ledger_line(r) + b"\n" for r in queued)
        assert writes == [lines]
        assert home.ledger.read_bytes() == lines and writer.written == 3
        writer.write_queued()  # nothing queued: nothing written
        assert len(writes) == 1
    finally:
        await writer.close()


async def test_fsyncs_are_batched_one_per_interval_armed_by_the_first_write(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = FsyncCounter(home, monkeypatch)
    writer = LedgerWriter(StateStore(home))
    try:
        started = asyncio.get_running_loop().time()  # the first write arms the timer
        for n in range(100):
            writer.add(record(n))
        assert counter.calls == 0  # every line is written, none fsynced yet
        assert len(home.ledger.read_bytes().splitlines()) == 100
        await counter.next_fsync()
        assert asyncio.get_running_loop().time() - started >= FSYNC_INTERVAL_S * 0.9
        assert counter.calls == 1
        for n in range(100, 150):
            writer.add(record(n))
        await writer.flush()  # fsyncs what is outstanding at once, and cancels the timer
        assert counter.calls == 2
        await writer.flush()  # nothing outstanding: no fsync
        assert counter.calls == 2
    finally:
        await writer.close()
    assert counter.calls == 2
    records, malformed = read_ledger_records(home.ledger)
    assert [r.input_tokens for r in records] == list(range(150)) and malformed == 0


async def test_a_torn_last_line_left_by_a_killed_writer_is_moved_aside_before_the_next_line(
    home: Home,
) -> None:
    home.ensure()
    torn = b'{"v":1,"ts":"2026-05-01T12:00:00Z","input_tok'
    first = ledger_line(record(0)) + b"\n"
    home.ledger.write_bytes(first + torn)
    writer = LedgerWriter(StateStore(home))
    try:
        added = writer.add(record(1))
    finally:
        await writer.close()
    assert home.ledger.read_bytes() == first + ledger_line(added) + b"\n"
    (aside,) = home.state.glob("tokens.jsonl.torn-*")
    assert aside.read_bytes() == torn
    records, malformed = read_ledger_records(home.ledger)
    assert [r.input_tokens for r in records] == [0, 1] and malformed == 0


async def test_a_failed_write_raises_a_clear_error_and_leaves_no_line_glued_to_the_next(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = LedgerWriter(StateStore(home))
    try:
        writer.add(record(1))
        real = os.write
        cut = 20

        def full_disk(fd: int, data: Any) -> int:
            # The first write goes in part, then the disk is full, even for the newline.
            nonlocal cut
            if cut:
                written, cut = real(fd, bytes(data)[:cut]), 0
                return written
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "write", full_disk)
        with pytest.raises(StateError) as failed:
            writer.add(record(2))
        assert str(home.ledger) in failed.value.one_line()
        assert "free space" in failed.value.one_line()
        monkeypatch.setattr(os, "write", real)
        last = writer.add(record(3))  # reopens first, moving the part line aside
    finally:
        await writer.close()
    lines = home.ledger.read_bytes().split(b"\n")
    assert lines[1] == ledger_line(last)
    (aside,) = home.state.glob("tokens.jsonl.torn-*")
    assert aside.read_bytes() == ledger_line(record(2))[:20]
    records, malformed = read_ledger_records(home.ledger)
    assert [r.input_tokens for r in records] == [1, 3] and malformed == 0


async def test_a_prune_replacing_the_ledger_does_not_swallow_later_lines(home: Home) -> None:
    writer = LedgerWriter(StateStore(home))
    try:
        writer.add(record(1))
        old = home.ledger.stat().st_ino
        await asyncio.to_thread(prune, home, date(2000, 1, 1))
        assert home.ledger.stat().st_ino != old
        writer.add(record(2))
    finally:
        await writer.close()
    records, _ = read_ledger_records(home.ledger)
    assert [r.input_tokens for r in records] == [1, 2]


async def _child(home: Home, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        *args,
        env=clean_env(home.root),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def test_lines_wait_while_a_rewriter_holds_the_lock_and_land_when_it_lets_go(
    home: Home,
) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from aiswitch.state.store import StateStore\n"
        f"with StateStore().lock({RESOURCE!r}):\n"
        "    print('locked', flush=True); sys.stdin.readline()\n",
        env=clean_env(home.root),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdin is not None and holder.stdout is not None
    writer = LedgerWriter(StateStore(home))
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            assert await holder.stdout.readline() == b"locked\n"
            writer.add(record(1))
            writer.add(record(2))
            assert not home.ledger.exists() and writer.written == 0
            holder.stdin.write(b"\n")
            await holder.stdin.drain()
            await writer.flush()
            assert await holder.wait() == 0
    finally:
        await writer.close()
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    records, _ = read_ledger_records(home.ledger)
    assert [r.input_tokens for r in records] == [1, 2] and writer.written == 2


async def test_a_parent_killed_with_sigkill_loses_no_record_it_added(home: Home) -> None:
    added = 7
    child = await _child(home)
    assert child.stdin is not None and child.stdout is not None
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            for n in range(1, added + 1):
                child.stdin.write(b"go\n")
                await child.stdin.drain()
                assert await child.stdout.readline() == f"added {n}\n".encode()
            child.send_signal(signal.SIGKILL)
            assert await child.wait() == -signal.SIGKILL
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    data = home.ledger.read_bytes()
    assert data.endswith(b"\n")
    records, malformed = read_ledger_records(home.ledger)
    assert [r.message_id for r in records] == [f"child-{n}" for n in range(1, added + 1)]
    assert malformed == 0


async def test_writers_in_several_processes_append_whole_lines_that_never_interleave(
    home: Home,
) -> None:
    per_child, children = 2000, 4
    procs = [await _child(home, str(per_child), f"w{c}") for c in range(children)]
    try:
        async with asyncio.timeout(HANG_GUARD_S * 2):
            codes = [await p.wait() for p in procs]
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    assert codes == [0] * children
    records, malformed = read_ledger_records(home.ledger)
    assert malformed == 0 and len(records) == per_child * children
    for c in range(children):
        mine = [r.message_id for r in records if (r.message_id or "").startswith(f"w{c}-")]
        assert mine == [f"w{c}-{n}" for n in range(per_child)]  # each writer's order kept
