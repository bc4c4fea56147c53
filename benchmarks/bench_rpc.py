"""JSON-RPC round trips over one real pipe between two processes, beside baselines.

    .venv/bin/python benchmarks/bench_rpc.py [--seconds 2] [--repeats 5] [--window 100]

Cases, each against its own child process over pipes, measured sequentially (await
each round trip) and pipelined (`window` round trips in flight, awaited together):

- `json-rpc peer`: the parent starts the child with `aiswitch.rpc.child.spawn` (as the
  supervisor does) and its `Peer` sends `echo` requests; the child runs the `Peer` of
  `aiswitch.rpc.stdio.stdio_peer` (as an adapter does), whose `echo` handler returns its
  params. Sequential: `await peer.request(...)` in a loop.
  Pipelined: `window` x `peer.send_request(...)` (each sends at once and returns the
  future of its reply), then each future awaited in turn, as the baseline writes
  `window` lines and then reads them back in turn.
- `json-rpc peer, tasks`: the same peer pipelined as
  `asyncio.gather(*(peer.request(...) for ...))` (one task per request on the parent;
  sequential is the same as above). asyncio's own cost for a task per request (create,
  step, wake, gather's callback) is more than the baseline's whole cost per line, so
  this row shows what that way of pipelining costs, beside the peer's own cost above.
- `asyncio line echo` (the baseline: the limit for an asyncio peer on this machine):
  asyncio's own streams on both sides (`asyncio.create_subprocess_exec` with
  `limit=LINE_LIMIT`; the child's stdin/stdout as a `StreamReader`/`StreamWriter` over
  the same pipe transports), the same line bytes, no JSON; the child echoes each line.
- `blocking raw echo` (reference only): plain `os.read`/`os.write` on pipes, no asyncio.

Each case runs for `--seconds` per repeat; repeats are interleaved across cases (so
machine noise hits every case alike) and the median is reported. Goals (issue 2):
pipelined peer >= 0.5x the pipelined asyncio baseline, sequential >= 0.8x.

`--profile sequential|pipelined` runs the peer case under cProfile on both sides (the
child dumps its stats when it exits) and prints the top functions; `--json` prints the
figures as one JSON document instead of the table. Besides wall time per round trip,
the table shows the CPU time each side spent per round trip (from /proc on Linux):
on a busy machine wall time is noisy, CPU time much less so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiswitch.rpc.child import Child, spawn
from aiswitch.rpc.messages import dumps, request_payload
from aiswitch.rpc.peer import LINE_LIMIT
from aiswitch.rpc.stdio import stdio_peer

# What a small control request carries (task.status-sized); both baselines echo a line
# of exactly the size of this request.
PARAMS = {"task_id": "bench-task-0001", "text": "hello from the benchmark"}
LINE = dumps(request_payload(1, "echo", PARAMS))
# Round trips between clock reads in the sequential loops (keeps the clock off the profile).
SEQ_BLOCK = 50
WARMUP_S = 0.3
GOAL_PIPELINED = 0.5
GOAL_SEQUENTIAL = 0.8
SCRIPT = os.path.abspath(__file__)
# Set by --profile: the child writes its cProfile stats to this path when it exits.
CHILD_PROFILE_ENV = "BENCH_RPC_CHILD_PROFILE"


# -- children --------------------------------------------------------------------------


async def _child_rpc(inline: bool = False) -> None:
    peer = await stdio_peer("bench-child")

    async def echo(params: Any) -> Any:
        return params

    if inline:
        # Answered as it is read, as the SDK answers agent.status, task.status, env.*.
        peer.on_request_inline("echo", lambda params: params)
    else:
        peer.on_request("echo", echo)
    peer.start()
    await peer.closed.wait()
    await peer.close()


async def _stdio_streams() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """This process's stdin/stdout as asyncio's own streams (the baseline's child side)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def _child_line() -> None:
    reader, writer = await _stdio_streams()
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return
        writer.write(line)
        await writer.drain()


def _child_raw() -> None:
    while True:
        data = os.read(0, 65536)
        if not data:
            return
        view = memoryview(data)
        while view:
            view = view[os.write(1, view) :]


# -- parent side: one runner per case ---------------------------------------------------


@dataclass
class Rate:
    roundtrips: int
    seconds: float
    parent_cpu: float = 0.0  # CPU seconds (user + system) spent by this process
    child_cpu: float | None = None  # and by the child, where /proc tells


def _proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far, from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Case:
    name: str
    pid: int = 0

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def sequential(self, seconds: float) -> Rate:
        raise NotImplementedError

    async def pipelined(self, seconds: float, window: int) -> Rate:
        raise NotImplementedError


async def _spawn(kind: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        SCRIPT,
        "--child",
        kind,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=LINE_LIMIT,
    )


async def _timed(pid: int, seconds: float, step: Callable[[], Awaitable[int]]) -> Rate:
    clock = time.perf_counter
    count = 0
    child_before = _proc_cpu(pid)
    cpu_before = time.process_time()
    started = clock()
    deadline = started + seconds
    while True:
        count += await step()
        now = clock()
        if now >= deadline:
            break
    return _rate(pid, count, now - started, cpu_before, child_before)


def _rate(
    pid: int, count: int, elapsed: float, cpu_before: float, child_before: float | None
) -> Rate:
    child_after = _proc_cpu(pid)
    child = None if child_before is None or child_after is None else child_after - child_before
    return Rate(count, elapsed, time.process_time() - cpu_before, child)


class PeerCase(Case):
    name = "json-rpc peer"
    kind = "rpc"

    async def start(self) -> None:
        self.child: Child = await spawn(
            [sys.executable, SCRIPT, "--child", self.kind],
            env=None,
            cwd=None,
            stderr=sys.stderr.fileno(),
            name="bench",
        )
        self.pid = self.child.pid
        self.peer = self.child.peer
        self.peer.start()
        assert await self.peer.request("echo", PARAMS) == PARAMS

    async def stop(self) -> None:
        await self.peer.close()
        await self.child.wait()

    async def sequential(self, seconds: float) -> Rate:
        request = self.peer.request

        async def step() -> int:
            for _ in range(SEQ_BLOCK):
                await request("echo", PARAMS)
            return SEQ_BLOCK

        return await _timed(self.pid, seconds, step)

    async def pipelined(self, seconds: float, window: int) -> Rate:
        send = self.peer.send_request

        async def step() -> int:
            for reply in [send("echo", PARAMS) for _ in range(window)]:
                await reply
            return window

        return await _timed(self.pid, seconds, step)


class PeerTasksCase(PeerCase):
    name = "json-rpc peer, tasks"

    async def pipelined(self, seconds: float, window: int) -> Rate:
        request = self.peer.request

        async def step() -> int:
            await asyncio.gather(*(request("echo", PARAMS) for _ in range(window)))
            return window

        return await _timed(self.pid, seconds, step)


class PeerInlineCase(PeerCase):
    """The same driver, the child's echo registered inline (no task per request)."""

    name = "json-rpc peer, inline"
    kind = "rpc-inline"


class LineCase(Case):
    name = "asyncio line echo"

    async def start(self) -> None:
        self.proc = await _spawn("line")
        self.pid = self.proc.pid
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.reader, self.writer = self.proc.stdout, self.proc.stdin
        self.writer.write(LINE)
        await self.writer.drain()
        assert await self.reader.readuntil(b"\n") == LINE

    async def stop(self) -> None:
        self.writer.close()
        await self.proc.wait()

    async def sequential(self, seconds: float) -> Rate:
        reader, writer = self.reader, self.writer

        async def step() -> int:
            for _ in range(SEQ_BLOCK):
                writer.write(LINE)
                await writer.drain()
                await reader.readuntil(b"\n")
            return SEQ_BLOCK

        return await _timed(self.pid, seconds, step)

    async def pipelined(self, seconds: float, window: int) -> Rate:
        reader, writer = self.reader, self.writer

        async def step() -> int:
            # One write (and drain) per line, as the peer does: the same syscalls.
            for _ in range(window):
                writer.write(LINE)
                await writer.drain()
            for _ in range(window):
                await reader.readuntil(b"\n")
            return window

        return await _timed(self.pid, seconds, step)


class RawCase(Case):
    """Blocking I/O; its loops run in the event loop thread, which is idle meanwhile."""

    name = "blocking raw echo"

    async def start(self) -> None:
        # Blocking on purpose: this case is the no-asyncio reference.
        self.proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, SCRIPT, "--child", "raw"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.pid = self.proc.pid
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        self._roundtrips(1)

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()

    def _roundtrips(self, lines: int) -> int:
        for _ in range(lines):
            os.write(self.wfd, LINE)
        expected = len(LINE) * lines
        got = 0
        while got < expected:
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                raise EOFError("raw echo child exited")
            got += len(chunk)
        return lines

    async def sequential(self, seconds: float) -> Rate:
        def step() -> int:
            for _ in range(SEQ_BLOCK):
                self._roundtrips(1)
            return SEQ_BLOCK

        return _timed_blocking(self.pid, seconds, step)

    async def pipelined(self, seconds: float, window: int) -> Rate:
        return _timed_blocking(self.pid, seconds, lambda: self._roundtrips(window))


def _timed_blocking(pid: int, seconds: float, step: Callable[[], int]) -> Rate:
    clock = time.perf_counter
    count = 0
    child_before = _proc_cpu(pid)
    cpu_before = time.process_time()
    started = clock()
    deadline = started + seconds
    while True:
        count += step()
        now = clock()
        if now >= deadline:
            break
    return _rate(pid, count, now - started, cpu_before, child_before)


# -- driver ----------------------------------------------------------------------------


@dataclass
class Figures:
    name: str
    mode: str
    rates: list[float] = field(default_factory=list)
    parent_us: list[float] = field(default_factory=list)
    child_us: list[float] = field(default_factory=list)

    def add(self, rate: Rate) -> None:
        self.rates.append(rate.roundtrips / rate.seconds)
        self.parent_us.append(rate.parent_cpu / rate.roundtrips * 1e6)
        if rate.child_cpu is not None:
            self.child_us.append(rate.child_cpu / rate.roundtrips * 1e6)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    def row(self) -> dict[str, Any]:
        return {
            "case": self.name,
            "mode": self.mode,
            "roundtrips_per_s": round(self.median),
            "us_per_roundtrip": round(1e6 / self.median, 2),
            "min_per_s": round(min(self.rates)),
            "max_per_s": round(max(self.rates)),
            "repeats": len(self.rates),
            "parent_cpu_us_per_roundtrip": round(statistics.median(self.parent_us), 2),
            "child_cpu_us_per_roundtrip": (
                round(statistics.median(self.child_us), 2) if self.child_us else None
            ),
        }


async def bench(seconds: float, repeats: int, window: int) -> list[Figures]:
    cases: list[Case] = [RawCase(), LineCase(), PeerCase(), PeerInlineCase(), PeerTasksCase()]
    figures: dict[tuple[str, str], Figures] = {}
    for case in cases:
        await case.start()
        for mode in ("sequential", "pipelined"):
            figures[case.name, mode] = Figures(case.name, mode)
    try:
        for case in cases:
            await case.sequential(WARMUP_S)
            await case.pipelined(WARMUP_S, window)
        for repeat in range(repeats):
            for case in cases:
                for mode in ("sequential", "pipelined"):
                    if mode == "sequential":
                        rate = await case.sequential(seconds)
                    else:
                        rate = await case.pipelined(seconds, window)
                    figures[case.name, mode].add(rate)
            print(f"  repeat {repeat + 1}/{repeats} done", file=sys.stderr)
    finally:
        for case in cases:
            await case.stop()
    return list(figures.values())


def report(figures: list[Figures], args: argparse.Namespace) -> dict[str, Any]:
    by = {(f.name, f.mode): f for f in figures}
    ratios = {
        mode: by["json-rpc peer", mode].median / by["asyncio line echo", mode].median
        for mode in ("sequential", "pipelined")
    }
    inline = {
        mode: by["json-rpc peer, inline", mode].median / by["asyncio line echo", mode].median
        for mode in ("sequential", "pipelined")
    }
    goals = {"sequential": GOAL_SEQUENTIAL, "pipelined": GOAL_PIPELINED}
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "seconds_per_case": args.seconds,
        "repeats": args.repeats,
        "window": args.window,
        "line_bytes": len(LINE),
        "rows": [f.row() for f in figures],
        "peer_vs_asyncio": {
            mode: {"ratio": round(ratio, 3), "goal": goals[mode], "met": ratio >= goals[mode]}
            for mode, ratio in ratios.items()
        },
        "inline_peer_vs_asyncio": {
            mode: {"ratio": round(ratio, 3), "goal": goals[mode], "met": ratio >= goals[mode]}
            for mode, ratio in inline.items()
        },
    }


def print_table(result: dict[str, Any]) -> None:
    rows = result["rows"]
    base = {r["mode"]: r["roundtrips_per_s"] for r in rows if r["case"] == "asyncio line echo"}
    print(
        f"JSON-RPC round trips over a pipe: python {result['python']}, {result['cpus']} CPUs, "
        f"{result['line_bytes']}-byte lines, window {result['window']}, "
        f"median of {result['repeats']} x {result['seconds_per_case']:g}s"
    )
    header = (
        f"{'case':<21} {'mode':<11} {'rt/s':>9} {'us/rt':>8} "
        f"{'min..max rt/s':>17} {'x asyncio':>10} {'cpu us/rt parent+child':>23}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        spread = f"{r['min_per_s']}..{r['max_per_s']}"
        ratio = r["roundtrips_per_s"] / base[r["mode"]]
        child = r["child_cpu_us_per_roundtrip"]
        cpu = f"{r['parent_cpu_us_per_roundtrip']:.1f} + " + (
            f"{child:.1f}" if child is not None else "?"
        )
        print(
            f"{r['case']:<21} {r['mode']:<11} {r['roundtrips_per_s']:>9} "
            f"{r['us_per_roundtrip']:>8.1f} {spread:>17} {ratio:>9.2f}x {cpu:>23}"
        )
    print()
    print("us/rt is wall time per round trip; cpu is what each side spent per round trip.")
    for key, label in (("peer_vs_asyncio", "task handler"), ("inline_peer_vs_asyncio", "inline")):
        for mode, verdict in result[key].items():
            status = "met" if verdict["met"] else "MISSED"
            print(
                f"goal {mode:<10} peer ({label}) / asyncio = {verdict['ratio']:.2f}x "
                f"(goal >= {verdict['goal']}x): {status}"
            )


async def profile(seconds: float, window: int, mode: str) -> None:
    """cProfile both sides of the peer case in one mode (profiling slows both down)."""
    import cProfile
    import pstats
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        child_stats = os.path.join(tmp, "child.prof")
        os.environ[CHILD_PROFILE_ENV] = child_stats
        case = PeerCase()
        await case.start()
        del os.environ[CHILD_PROFILE_ENV]
        profiler = cProfile.Profile()
        try:
            profiler.enable()
            if mode == "sequential":
                count = (await case.sequential(seconds)).roundtrips
            else:
                count = (await case.pipelined(seconds, window)).roundtrips
            profiler.disable()
        finally:
            await case.stop()
        print(f"== {count} round trips, {mode}; parent side (tottime) ==")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        print(f"== child side (tottime), same {count} round trips ==")
        pstats.Stats(child_stats).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per case and repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--window", type=int, default=100, help="requests in flight")
    parser.add_argument("--json", action="store_true", help="print JSON, not a table")
    parser.add_argument(
        "--profile",
        choices=["sequential", "pipelined"],
        help="cProfile both sides of the peer case in this mode, instead of the table",
    )
    parser.add_argument(
        "--child", choices=["rpc", "rpc-inline", "line", "raw"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child == "raw":
        _child_raw()
        return
    if args.child is not None:
        child = {
            "rpc": _child_rpc,
            "rpc-inline": lambda: _child_rpc(inline=True),
            "line": _child_line,
        }[args.child]
        dump_to = os.environ.get(CHILD_PROFILE_ENV)
        if dump_to:
            import cProfile

            cProfile.runctx("asyncio.run(child())", globals(), {"child": child}, dump_to)
        else:
            asyncio.run(child())
        return
    if args.profile:
        asyncio.run(profile(args.seconds, args.window, args.profile))
        return
    result = report(asyncio.run(bench(args.seconds, args.repeats, args.window)), args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
