"""A local Ray cluster on 127.0.0.1 for the tests and benchmarks of the `ray` backend.

Contract:
- `LocalRayCluster(resources)` starts nothing; `start_head()` and `add_node(name)` run
  `ray start` (the venv's) with the dashboard off, usage stats off, no token auth, one
  CPU, a small object store, free ports for every per-node agent, and `resources` (e.g.
  `{"agent:mock": 16}`) on each node. Ray's files go to a short temporary folder
  (`temp`: its session logs, which a test searches, and the nodes' `TMPDIR`, so the
  actors' scratch folders go when the cluster does).
- Every process of the cluster carries `AISWITCH_RAY_TEST=<mark>-<node>` in its
  environment (Ray's processes inherit it): `processes(node)` finds them and their
  children, `kill(node)` SIGKILLs them (a lost node), `stop()` kills them all and returns
  those that are still there (none, when all went). Nothing here stops a process it did
  not start: no `ray stop`.
- The cluster lives in a network namespace of its own whose only interface is `lo`
  (Ray 2.60's GCS and raylets listen on `::` and each node's runtime-env agent on the
  machine's address, with no option to bind them elsewhere): `start_head()` makes it
  (`unshare --net=FILE`, root and util-linux needed; otherwise a one-line RuntimeError,
  never a cluster on the machine's interfaces), every node starts in it, and a driver
  reaches the cluster only by being run in it too: `command(argv)` prefixes
  `nsenter --net=FILE --`. `stop()` removes the namespace.
- `listening(procs)`: where each listening TCP socket of those processes can be reached
  from, as seen in its own network namespace (a wildcard address: every address of that
  namespace's interfaces).
- `env()` is what a driver needs to reach it offline.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import psutil

MARK: Final = "AISWITCH_RAY_TEST"
# `ray start` of one node on a busy machine takes seconds; this only stops a hung one.
RAY_START_TIMEOUT_S: Final = 120.0
# Killed processes may take a moment to leave the process table.
REAP_WAIT_S: Final = 15.0
OBJECT_STORE_BYTES: Final = 100 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def offline_env() -> dict[str, str]:
    """No usage stats sent, no token to share between the nodes of a local cluster."""
    return {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


class LocalRayCluster:
    def __init__(self, resources: Mapping[str, float]) -> None:
        self.resources = dict(resources)
        # Short: Ray's socket paths under it must fit in a unix socket's 107 bytes.
        self.temp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
        self.mark = f"aiswitch-{os.getpid()}-{self.temp.name}"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # The network namespace's handle (a bind mount), beside Ray's files, not among them.
        self.netns = Path(f"{self.temp}.net")
        self._netns_made = False

    def env(self) -> dict[str, str]:
        return offline_env()

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run in the cluster's network namespace (the only place it is reachable)."""
        return ["nsenter", f"--net={self.netns}", "--", *argv]

    def start_head(self) -> None:
        self._make_netns()
        self._start(
            "head",
            [
                "--head",
                "--port",
                str(self.port),
                "--include-dashboard=false",
                "--temp-dir",
                str(self.temp),
            ],
        )

    def add_node(self, name: str) -> None:
        self._start(name, ["--address", self.address])

    def _start(self, name: str, args: list[str]) -> None:
        ports = [str(free_port()) for _ in range(3)]
        # TMPDIR: the nodes' scratch folders (the actors' homes) go with the cluster's files.
        env = {**os.environ, **offline_env(), MARK: f"{self.mark}-{name}", "TMPDIR": str(self.temp)}
        ray = str(Path(sys.executable).parent / "ray")
        command = [
            ray, "start", *args, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
            "--object-store-memory", str(OBJECT_STORE_BYTES),
            "--resources", json.dumps(self.resources), "--disable-usage-stats",
            "--dashboard-agent-listen-port", ports[0], "--dashboard-agent-grpc-port", ports[1],
            "--metrics-export-port", ports[2],
        ]  # fmt: skip
        done = subprocess.run(
            self.command(command),
            env=env,
            capture_output=True,
            text=True,
            timeout=RAY_START_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ray start ({name}) failed: {done.stderr[-3000:]}")

    def _make_netns(self) -> None:
        missing = [tool for tool in ("unshare", "nsenter", "umount") if not shutil.which(tool)]
        if missing:
            raise RuntimeError(
                f"the Ray test cluster's loopback-only network namespace needs util-linux: "
                f"{', '.join(missing)} not found"
            )
        if os.geteuid() != 0:
            raise RuntimeError(
                "the Ray test cluster's loopback-only network namespace needs root (unshare --net)"
            )
        self.netns.touch()
        self._netns_made = True
        # A new namespace has `lo` down; bring it up from inside, no iproute2 needed.
        done = subprocess.run(
            ["unshare", f"--net={self.netns}", "--", sys.executable, "-c", _LO_UP],
            capture_output=True,
            text=True,
            timeout=RAY_START_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            reason = " ".join(done.stderr.split())[-300:]
            raise RuntimeError(f"cannot make a network namespace for the Ray cluster: {reason}")

    def processes(self, node: str = "") -> list[psutil.Process]:
        """This cluster's processes (of one node, by name) and their children."""
        prefix = f"{self.mark}-{node}" if node else self.mark
        found: set[psutil.Process] = set()
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if proc.environ().get(MARK, "").startswith(prefix):
                    found.add(proc)
                    found.update(proc.children(recursive=True))
        return [p for p in found if _alive(p)]

    def kill(self, node: str = "") -> set[int]:
        """SIGKILL a node's processes (all nodes': ""); their pids."""
        victims = self.processes(node)
        for proc in victims:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(victims, timeout=REAP_WAIT_S)
        return {p.pid for p in victims}

    def stop(self) -> list[psutil.Process]:
        self.kill()
        left = self.processes()
        if self._netns_made:
            # The namespace goes with its last process and this mount.
            subprocess.run(["umount", str(self.netns)], capture_output=True, check=False)
            self._netns_made = False
        self.netns.unlink(missing_ok=True)
        shutil.rmtree(self.temp, ignore_errors=True)
        return left


# Run by `python -c` in a new network namespace: set IFF_UP on `lo` (SIOCGIFFLAGS 0x8913,
# SIOCSIFFLAGS 0x8914).
_LO_UP: Final = """
import fcntl, socket, struct
with socket.socket() as s:
    flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)))[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))
"""

# Run by `python -c PID...` in the processes' network namespace (psutil reads the sockets
# of the namespace it runs in): one JSON line per listening TCP socket.
_LISTENING: Final = """
import json, sys, psutil
here = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
        if a.family in (2, 10)]
for pid in map(int, sys.argv[1:]):
    try:
        conns = psutil.Process(pid).net_connections("tcp")
    except psutil.Error:
        continue
    for c in conns:
        if c.status == psutil.CONN_LISTEN:
            wild = c.laddr.ip in ("0.0.0.0", "::")
            reach = here if wild else [c.laddr.ip]
            print(json.dumps([pid, c.laddr.ip, c.laddr.port, reach]))
"""


def listening(procs: list[psutil.Process]) -> list[tuple[int, str, int, list[str]]]:
    """(pid, bound address, port, the addresses it is reachable at) for each listening TCP
    socket of `procs`, each looked at from inside its own network namespace."""
    by_netns: dict[str, list[int]] = {}
    for proc in procs:
        with contextlib.suppress(OSError):
            by_netns.setdefault(os.readlink(f"/proc/{proc.pid}/ns/net"), []).append(proc.pid)
    found = []
    for pids in by_netns.values():
        # Entered through one of its processes that is still there.
        for pid in pids:
            done = subprocess.run(
                ["nsenter", f"--net=/proc/{pid}/ns/net", "--", sys.executable, "-c",
                 _LISTENING, *map(str, pids)],
                capture_output=True, text=True, timeout=RAY_START_TIMEOUT_S,
            )  # fmt: skip
            if done.returncode == 0:
                found += [tuple(json.loads(line)) for line in done.stdout.splitlines()]
                break
        else:
            raise RuntimeError(f"cannot enter the network namespace of {pids}: {done.stderr}")
    return found


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
