"""`aiswitch mcp`: the handshake against a minimal official-SDK server, and a `run` call
against `aiswitch run` as a process.

    .venv/bin/python benchmarks/bench_mcp.py              # 10 repeats each
    .venv/bin/python benchmarks/bench_mcp.py --repeat 20

- Handshake: from spawning the server until its answer to `initialize` has been read, for
  `aiswitch mcp` and for a server built with the official SDK (`mcp.server.mcpserver.
  MCPServer`, one tool, stdio), measured in the same run, alternating. Goal: faster than it.
- `run` with one mock agent (`mock@fast`): a `tools/call` to a server that is already up
  (its first run made, so warm), from sending the request to reading the answer, against
  `aiswitch run --agent mock@fast hi --json` as a process (spawn to exit). Goal: ≤ 1.1×.

Reported: median and min..max milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BIN = str(Path(sys.executable).parent / "aiswitch")
SDK_SERVER = """
from mcp.server.mcpserver import MCPServer

server = MCPServer("minimal")


@server.tool()
def echo(text: str) -> str:
    \"\"\"Echo the text.\"\"\"
    return text


server.run("stdio")
"""
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "1"},
    },
}


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


def handshake(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(_line(INITIALIZE))
    proc.stdin.flush()
    answer = json.loads(proc.stdout.readline())
    elapsed = time.perf_counter() - started
    assert answer["result"]["serverInfo"], answer
    proc.stdin.close()
    proc.wait(timeout=30)
    return elapsed


def run_calls(env: dict[str, str], repeat: int, cwd: Path) -> list[float]:
    proc = subprocess.Popen(
        [BIN, "mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def ask(message: dict[str, Any]) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(_line(message))
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())  # type: ignore[no-any-return]

    ask(INITIALIZE)
    call = {
        "jsonrpc": "2.0",
        "method": "tools/call",
        "params": {"name": "run", "arguments": {"task": "hi", "agents": ["mock@fast"]}},
    }
    times = []
    for i in range(repeat + 1):  # the first one warms the server up
        started = time.perf_counter()
        answer = ask({**call, "id": 10 + i})
        elapsed = time.perf_counter() - started
        assert answer["result"].get("structuredContent", {}).get("status") == "ok", answer
        if i:
            times.append(elapsed)
    proc.stdin.close()
    proc.wait(timeout=30)
    return times


def cli_run(env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [BIN, "run", "--agent", "mock@fast", "hi", "--json"],
        env=env,
        cwd=cwd,
        capture_output=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "ok", done.stderr
    return elapsed


def show(name: str, times: list[float]) -> float:
    median = statistics.median(times)
    print(
        f"  {name:<44} median {median * 1000:7.1f} ms  "
        f"({min(times) * 1000:.1f}..{max(times) * 1000:.1f})"
    )
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aiswitch-bench-mcp-") as tmp:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "AISWITCH_HOME": str(Path(tmp) / "home"),
            "LANG": "C.UTF-8",
        }
        # Outside any repository: in one, each run would get a git worktree of it.
        work = Path(tmp) / "work"
        work.mkdir()
        sdk = Path(tmp) / "sdk_server.py"
        sdk.write_text(SDK_SERVER)
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(options.repeat):
            ours.append(handshake([BIN, "mcp"], env, work))
            theirs.append(handshake([sys.executable, str(sdk)], env, work))
        print("handshake: spawn -> initialize answered")
        a = show("aiswitch mcp", ours)
        b = show("official SDK MCPServer, one tool", theirs)
        print(f"  ratio aiswitch/SDK: {a / b:.2f}x (goal < 1)")

        calls = run_calls(env, options.repeat, work)
        cli = [cli_run(env, work) for _ in range(options.repeat)]
        print("one mock agent (mock@fast): run tool call vs aiswitch run --json")
        c = show("tools/call run (warm server)", calls)
        d = show("aiswitch run --agent mock@fast hi --json", cli)
        print(f"  ratio tool call/process: {c / d:.2f}x (goal <= 1.1)")


if __name__ == "__main__":
    main()
