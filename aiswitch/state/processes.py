"""`state/agents.json`: the agent processes alive now, for other invocations to see.

Each entry has the child's pid and its process create time, so a reader can tell a
live child from a recycled pid, and the same for its parent. `reap_orphans` kills the
process group of any child whose parent is gone (a parent killed with SIGKILL cannot
clean up after itself; the next invocation does). The file always exists after a run,
possibly as `{"agents": {}}`.

`remove` never raises for a file it cannot write (a full disk): the entry of a process that
has ended is harmless (a reader compares create times, so a recycled pid is never taken
for it) and the next `reap_orphans` drops it; a stop must not fail, or wait, for want of
space. It warns instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

from aiswitch.errors import StateError
from aiswitch.state.store import StateStore

RESOURCE = "agents"
# The table with no agents, as `ProcessTable` writes it.
_NO_AGENTS: dict[str, Any] = {"version": 1, "agents": {}}
# psutil's create times are floats rounded differently across calls; within this much
# they name the same process.
CREATE_TIME_TOLERANCE_S = 0.05


def process_identity(pid: int) -> float | None:
    """The create time of `pid`, or None when no such process is alive.

    On Linux it is read from /proc as psutil computes it (`_proc_identity`, held to psutil
    by a test): importing psutil costs ~10 ms of every `aiswitch run`'s start-up."""
    if pid > 0 and _LINUX_PROC:
        return _proc_identity(pid)
    return _psutil_identity(pid)


def _psutil_identity(pid: int) -> float | None:
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _boot_time() -> float | None:
    """/proc/stat's `btime`, as psutil reads it (None without a Linux /proc)."""
    try:
        with open("/proc/stat", "rb") as stat:
            for line in stat:
                if line.startswith(b"btime"):
                    return float(line.strip().split()[1])
    except OSError:
        return None
    return None


_LINUX_PROC = os.path.exists("/proc/self/stat") and _boot_time() is not None


def _proc_identity(pid: int) -> float | None:
    """psutil's `Process(pid).create_time()` on Linux (None for a zombie or no process):
    field 22 of /proc/PID/stat, in clock ticks since boot, plus the boot time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    boot = _boot_time()
    if len(fields) < 20 or fields[0] == b"Z" or boot is None:
        return None
    # Read each time, as psutil does: btime moves when the clock is stepped.
    return float(fields[19]) / os.sysconf("SC_CLK_TCK") + boot


def process_usage(pid: int) -> tuple[float, int] | None:
    """The CPU seconds (user + system) and resident bytes of `pid`, or None when it cannot
    be read (gone, or not this user's to inspect).

    On Linux it is read from /proc as psutil computes `cpu_times()` and `memory_info().rss`
    (held to psutil by a test): a run samples its children before it stops them, and
    importing psutil for that cost ~10-20 ms of every `aiswitch run`."""
    if pid > 0 and _LINUX_PROC:
        return _proc_usage(pid)
    return _psutil_usage(pid)


def _psutil_usage(pid: int) -> tuple[float, int] | None:
    import psutil

    try:
        process = psutil.Process(pid)
        with process.oneshot():
            times = process.cpu_times()
            rss = process.memory_info().rss
    except psutil.Error:
        return None
    return times.user + times.system, rss


def _proc_usage(pid: int) -> tuple[float, int] | None:
    """Fields 14 and 15 of /proc/PID/stat (utime, stime, in clock ticks) and the second
    field of /proc/PID/statm (resident pages)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
        with open(f"/proc/{pid}/statm", "rb") as statm:
            pages = statm.read().split()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 13 or len(pages) < 2:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = float(fields[11]) / ticks + float(fields[12]) / ticks
    return cpu, int(pages[1]) * os.sysconf("SC_PAGE_SIZE")


def is_same_process(pid: int, create_time: float | None) -> bool:
    if create_time is None:
        return False
    now = process_identity(pid)
    return now is not None and abs(now - create_time) <= CREATE_TIME_TOLERANCE_S


class ProcessTable:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.path = store.home.state / "agents.json"

    def add(self, key: str, entry: dict[str, Any]) -> None:
        def change(agents: dict[str, Any]) -> dict[str, Any]:
            agents[key] = entry
            return agents

        self._change(change)

    def remove(self, key: str) -> None:
        try:
            self._change(lambda agents: {k: v for k, v in agents.items() if k != key})
        except StateError as exc:
            self.store.warn(f"{exc.one_line()}; the next run drops the entry {key}")

    def entries(self) -> dict[str, Any]:
        data: Any = self.store.read_json(self.path, {"agents": {}})
        agents = data.get("agents", {}) if isinstance(data, dict) else {}
        return agents if isinstance(agents, dict) else {}

    def live(self) -> list[dict[str, Any]]:
        """The entries whose process is alive (pid and create time), each with `key`,
        and what the machine says of it now: `cpu_percent` (CPU time over its lifetime,
        as ps(1) counts %CPU: no sampling interval to wait for), `cpu_s` (its CPU seconds so
        far), `rss` (bytes),
        `uptime_s`. A process this user may not inspect keeps None for those."""
        import time

        now = time.time()
        found = []
        for key, entry in sorted(self.entries().items()):
            if not isinstance(entry, dict):
                continue
            pid, created = entry.get("pid"), entry.get("create_time")
            if not isinstance(pid, int) or not is_same_process(pid, created):
                continue
            row: dict[str, Any] = {**entry, "key": key, "cpu_percent": None, "rss": None}
            row["uptime_s"] = round(now - created, 1) if isinstance(created, float) else None
            usage = process_usage(pid)
            if usage is not None:
                busy, row["rss"] = usage
                row["cpu_s"] = busy
                if row["uptime_s"]:
                    row["cpu_percent"] = round(100 * busy / row["uptime_s"], 1)
            found.append(row)
        return found

    def reap_orphans(self) -> list[str]:
        """Kill children whose parent is gone; drop entries of processes that are gone."""
        if self._empty():
            # Nothing to reap or drop (the usual case, before every run): no lock, and
            # no rewrite of the same bytes with two fsyncs.
            return []
        reaped: list[str] = []

        def change(agents: dict[str, Any]) -> dict[str, Any]:
            keep: dict[str, Any] = {}
            for key, entry in agents.items():
                child_alive = is_same_process(entry.get("pid", -1), entry.get("create_time"))
                parent_alive = is_same_process(
                    entry.get("parent_pid", -1), entry.get("parent_create_time")
                )
                if child_alive and parent_alive:
                    keep[key] = entry
                elif child_alive:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(entry.get("pgid", entry["pid"]), signal.SIGKILL)
                    reaped.append(key)
            return keep

        self._change(change)
        return reaped

    def _empty(self) -> bool:
        """The file is there and is exactly what `_change` writes for no agents. Read
        without the lock: writes replace the file whole, and an entry added after this
        read has a live parent, so a reap would have kept it anyway."""
        import json

        try:
            return bool(json.loads(self.path.read_bytes()) == _NO_AGENTS)
        except (OSError, ValueError):
            return False  # missing, unreadable or not JSON: the full path deals with it

    def _change(self, fn: Any) -> None:
        def wrapped(data: dict[str, Any]) -> dict[str, Any]:
            agents = data.get("agents", {}) if isinstance(data, dict) else {}
            return {**_NO_AGENTS, "agents": fn(dict(agents))}

        self.store.update_json(RESOURCE, self.path, lambda: {"agents": {}}, wrapped)
