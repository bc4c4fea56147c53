"""Per-agent resource limits (`limits:` in config/agents.yaml) on real processes: the
mock adapter allocates, burns CPU, opens files or spawns until it reaches the limit, and
its task fails saying which one."""

from __future__ import annotations

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


_FORK_REFUSED = """
import errno, resource, sys
from aiswitch.adapter_sdk.rlimits import exception_note
resource.setrlimit(resource.RLIMIT_NPROC, (40, 40))
print(exception_note(BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")))
"""


def test_a_fork_refused_under_a_processes_limit_names_that_limit() -> None:
    # The kernel exempts root from RLIMIT_NPROC and this suite may run as root, so the
    # refusal itself is not produced here: this is the words for it, in a real process
    # with the limit set (the limit being set is checked on the agent's process above).
    done = subprocess.run([sys.executable, "-c", _FORK_REFUSED], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "it reached its processes limit (limits.processes: 40 in config/agents.yaml)\n"
    )


def test_a_limit_that_is_not_a_size_is_one_line(env: dict[str, str], home: Home) -> None:
    limit(home, memory="lots")
    assert_one_error_line(run_cli("run", "-a", "mock", "x", env=env), "limits.memory", code=3)
    limit(home, open_files=2)
    assert_one_error_line(run_cli("run", "-a", "mock", "x", env=env), "limits.open_files", code=3)


_CLI_ENDS = """
import resource, signal
from aiswitch_adapters._common import Exit, exit_failure
resource.setrlimit(resource.RLIMIT_CPU, (30, 32))
resource.setrlimit(resource.RLIMIT_DATA, (512 << 20, 512 << 20))
print(exit_failure("claude", Exit(-signal.SIGXCPU)))
print(exit_failure("claude", Exit(134, "FATAL ERROR: JavaScript heap out of memory")))
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
        "claude exited with code 1: Error: 401 unauthorized",
    ]
