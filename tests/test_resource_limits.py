"""Per-agent resource limits (`limits:` in config/agents.yaml) on real processes: the
mock adapter allocates, burns CPU, opens files or spawns until it reaches the limit, and
its task fails saying which one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
from support.cli import assert_one_error_line, run_cli
from test_run_control import hanging_run

from aiswitch.home import Home


def limit(home: Home, **limits: object) -> None:
    home.config.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"      {k}: {v}\n" for k, v in limits.items())
    (home.config / "agents.yaml").write_text(f"agents:\n  mock:\n    limits:\n{lines}")


def failed_task(env: dict[str, str], **knobs: str) -> str:
    done = run_cli("run", "-a", "mock", "x", "--retries", "0", "--json", env={**env, **knobs})
    assert done.code == 1, done.stderr
    (result,) = done.json()["results"]
    assert result["status"] == "failed"
    return str(result["error"])


def test_a_task_over_the_memory_limit_fails_saying_so(env: dict[str, str], home: Home) -> None:
    limit(home, memory="300M")
    error = failed_task(env, MOCK_ALLOCATE_MB="600")
    assert error.startswith("MemoryError"), error
    assert "it reached its memory limit (limits.memory: 300 MiB in config/agents.yaml)" in error
    # Under the limit the same agent works: the limit is not in the way of a normal task.
    ok = run_cli("run", "-a", "mock", "x", "--json", env={**env, "MOCK_ALLOCATE_MB": "50"})
    assert ok.code == 0, ok.stderr


def test_a_process_over_its_cpu_time_is_killed_and_its_task_says_which_limit(
    env: dict[str, str], home: Home
) -> None:
    limit(home, cpu_seconds=1)
    error = failed_task(env, MOCK_BURN_CPU="60")
    assert "was killed by SIGXCPU: it used its CPU time limit" in error, error
    assert "(limits.cpu_seconds: 1 in config/agents.yaml)" in error


def test_a_task_over_the_open_files_limit_fails_saying_so(env: dict[str, str], home: Home) -> None:
    limit(home, open_files=64)
    error = failed_task(env, MOCK_OPEN_FILES="200")
    assert "Too many open files" in error, error
    assert "it reached its open_files limit (limits.open_files: 64 in config/agents.yaml)" in error


def test_the_limits_are_set_on_the_agent_process_and_inherited_by_what_it_runs(
    env: dict[str, str], home: Home
) -> None:
    limit(home, memory="1G", cpu_seconds=100, open_files=128, processes=4000)
    with hanging_run(env, "mock") as proc:
        (adapter,) = psutil.Process(proc.pid).children()
        assert adapter.rlimit(psutil.RLIMIT_DATA) == (1 << 30, 1 << 30)
        assert adapter.rlimit(psutil.RLIMIT_CPU) == (100, 102)
        assert adapter.rlimit(psutil.RLIMIT_NOFILE) == (128, 128)
        assert adapter.rlimit(psutil.RLIMIT_NPROC) == (4000, 4000)
        assert adapter.rlimit(psutil.RLIMIT_CORE) == (0, 0)
    # An agent with no limits keeps the parent's.
    (home.config / "agents.yaml").unlink()
    with hanging_run(env, "mock") as proc:
        (adapter,) = psutil.Process(proc.pid).children()
        assert adapter.rlimit(psutil.RLIMIT_CPU) == psutil.Process().rlimit(psutil.RLIMIT_CPU)


# The kernel does not apply RLIMIT_NPROC to root: fork() checks it only when the real uid
# is not root's (kernel/fork.c: `p->real_cred->user != INIT_USER`) and the process lacks
# CAP_SYS_RESOURCE and CAP_SYS_ADMIN in the initial user namespace. A user namespace
# alone does not do it here: `unshare --user --map-root-user` keeps the kernel uid 0
# (INIT_USER), and a namespace whose root is another uid cannot reach the interpreter
# under /root (0700). So the agent runs through setpriv (util-linux) with a real uid of
# its own and no capabilities (bounding set empty, and `noroot` so that exec does not
# give them back), keeping euid 0 for the files: then the limit applies to it as to any
# user. Its uid is this test process's own, so no other process counts against it.
# (setpriv --ruid needs root, as this suite has: as any other user the limit applies
# without it.)
_NOBODYS_UID = 1_700_000_000 + os.getpid()
_SETPRIV = [
    "setpriv",
    f"--ruid={_NOBODYS_UID}",
    "--securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked",
    "--bounding-set=-all",
    "--inh-caps=-all",
]


def spawner(home: Home, spawn: int, processes: int) -> None:
    """Agent `spawner`: the mock, without root's exemption, holding `spawn` children."""
    command = [*_SETPRIV, sys.executable, "-m", "aiswitch_adapters.mock"]
    home.config.mkdir(parents=True, exist_ok=True)
    (home.config / "agents.yaml").write_text(
        "agents:\n"
        f"  spawner:\n    command: {json.dumps(command)}\n"
        f"    env: {{MOCK_SPAWN: '{spawn}'}}\n    limits: {{processes: {processes}}}\n"
    )


def test_a_fork_refused_under_the_processes_limit_fails_the_task_saying_so(
    env: dict[str, str], home: Home
) -> None:
    spawner(home, spawn=40, processes=12)
    done = run_cli("run", "-a", "spawner", "x", "--retries", "0", "--json", env=env)
    assert done.code == 1, done.stderr
    (result,) = done.json()["results"]
    assert result["status"] == "failed"
    # Nothing is killed at this limit: fork fails with EAGAIN, and the task says which limit.
    assert result["error"] == (
        "BlockingIOError: [Errno 11] Resource temporarily unavailable (it reached its "
        "processes limit (limits.processes: 12 in config/agents.yaml))"
    )
    # Under the limit the same agent works: the limit, not the setup, refused the fork.
    spawner(home, spawn=3, processes=12)
    ok = run_cli("run", "-a", "spawner", "x", "--json", env=env)
    assert ok.code == 0, ok.stderr
    assert ok.json()["results"][0]["status"] == "ok"


_THREADS = """
import threading
from aiswitch.adapter_sdk.rlimits import exception_note
started, done = [], threading.Event()
try:
    for _ in range(40):
        started.append(threading.Thread(target=done.wait))
        started[-1].start()
except RuntimeError as exc:
    print(f"{exc} after {len(started) - 1}: {exception_note(exc)}")
done.set()
"""


def test_a_thread_refused_under_the_processes_limit_names_that_limit_too() -> None:
    # RLIMIT_NPROC counts threads: a thread that cannot start is the same limit.
    limited = (
        f"import resource, os; resource.setrlimit(resource.RLIMIT_NPROC, (6, 6)); "
        f"os.execvp({_SETPRIV[0]!r}, {[*_SETPRIV, sys.executable, '-c', _THREADS]!r})"
    )
    done = subprocess.run([sys.executable, "-c", limited], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    said, _, note = done.stdout.strip().partition(": ")
    assert said.startswith("can't start new thread after "), done.stdout
    assert note == "it reached its processes limit (limits.processes: 6 in config/agents.yaml)"


def test_a_limit_that_is_not_a_size_is_one_line(env: dict[str, str], home: Home) -> None:
    limit(home, memory="lots")
    assert_one_error_line(run_cli("run", "-a", "mock", "x", env=env), "limits.memory", code=3)
    limit(home, open_files=2)
    assert_one_error_line(run_cli("run", "-a", "mock", "x", env=env), "limits.open_files", code=3)


_CLI_ENDS = """
import resource, signal
from aiswitch_adapters._drive import (Exit, exit_failure,)
resource.setrlimit(resource.RLIMIT_CPU, (30, 32))
resource.setrlimit(resource.RLIMIT_DATA, (512 << 20, 512 << 20))
resource.setrlimit(resource.RLIMIT_NPROC, (4000, 4000))
print(exit_failure("claude", Exit(-signal.SIGXCPU)))
print(exit_failure("claude", Exit(134, "FATAL ERROR: JavaScript heap out of memory")))
print(exit_failure("codex", Exit(1, "Error: spawn /bin/bash EAGAIN")))
print(exit_failure("claude", Exit(1, "Error: 401 unauthorized")))
"""


def test_a_real_adapters_cli_ended_by_a_limit_is_said_so_and_another_end_is_not() -> None:
    done = subprocess.run([sys.executable, "-c", _CLI_ENDS], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "claude was killed by signal 24 (it reached its cpu_seconds limit "
        "(limits.cpu_seconds: 30 in config/agents.yaml)) before its result",
        "claude exited with code 134 (it reached its memory limit (limits.memory: 512 MiB "
        "in config/agents.yaml)): FATAL ERROR: JavaScript heap out of memory",
        # Node's words for a spawn the processes limit refused (seen under the limit here).
        "codex exited with code 1 (it reached its processes limit (limits.processes: 4000 "
        "in config/agents.yaml)): Error: spawn /bin/bash EAGAIN",
        "claude exited with code 1: Error: 401 unauthorized",
    ]
