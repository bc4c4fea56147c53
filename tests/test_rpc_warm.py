"""Warm interpreters (`aiswitch.rpc.warm`): started before their child is known, they
become the very child `spawn` would have started, or are passed over.

Real processes throughout: a probe module (`-m probe_child`, in the test's folder) reports
what a child can see of its own start (environment, folder, `sys.path[0]`, argv, limits,
session, death signal, stderr), and each test compares the warm path with the ordinary one.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from aiswitch.rpc import warm
from aiswitch.rpc.child import Child, spawn

HANG_GUARD_S = 20.0

PROBE = textwrap.dedent(
    """
    import ctypes, json, os, resource, sys

    death = ctypes.c_int()
    ctypes.CDLL(None).prctl(2, ctypes.byref(death))  # PR_GET_PDEATHSIG
    sys.stderr.write("probe says hello on stderr\\n")
    sys.stderr.flush()
    for line in sys.stdin:
        message = json.loads(line)
        if message["method"] == "exit":
            sys.exit(message["params"]["code"])
        facts = {
            "env": dict(os.environ),
            "cwd": os.getcwd(),
            "path0": sys.path[0],
            "argv": sys.argv,
            "name": __name__,
            "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
            "session_leader": os.getsid(0) == os.getpid(),
            "death": death.value,
        }
        reply = {"jsonrpc": "2.0", "id": message["id"], "result": facts}
        sys.stdout.write(json.dumps(reply) + "\\n")
        sys.stdout.flush()
    """
)


@pytest.fixture(autouse=True)
def no_warm_left() -> Iterator[None]:
    yield
    warm.close_unused()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "probe_child.py").write_text(PROBE)
    return tmp_path


def child_env(**extra: str) -> dict[str, str]:
    """An agent-like environment: the parent's, without its PYTHON* settings (the
    supervisor's allowlist passes none), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(extra)
    return env


async def start_probe(folder: Path, env: dict[str, str], *, cwd: Path | None = None) -> Child:
    nofile_soft, nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = min(256, nofile_soft)
    log = os.open(folder / "probe.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return await spawn(
            [sys.executable, "-m", "probe_child", "one", "two"],
            env=env,
            cwd=str(cwd or folder),
            stderr=log,
            name="probe",
            rlimits=[(resource.RLIMIT_NOFILE, limit, nofile_hard)],
            death=signal.SIGTERM,
        )
    finally:
        os.close(log)


async def facts_of(child: Child) -> dict[str, Any]:
    child.peer.start()
    facts: dict[str, Any] = await child.peer.request("facts", {})
    child.close_stdin()
    assert await child.wait() == 0
    return facts


def the_warm_one() -> int:
    (popen, _) = warm._waiting[0]
    return popen.pid


async def test_a_warm_interpreter_becomes_the_child_spawn_would_have_started(
    folder: Path,
) -> None:
    env = child_env(PROBE_MARK="x1", TZ="UTC")
    async with asyncio.timeout(HANG_GUARD_S):
        ordinary = await facts_of(await start_probe(folder, env))
        warm.start(1)
        warm_pid = the_warm_one()
        child = await start_probe(folder, env)
        assert child.pid == warm_pid and not warm.waiting()
        became = await facts_of(child)
    assert became == ordinary
    assert became["env"] == env
    assert became["cwd"] == became["path0"] == str(folder)
    assert became["argv"] == [str(folder / "probe_child.py"), "one", "two"]
    assert became["name"] == "__main__"
    assert became["session_leader"] and became["death"] == signal.SIGTERM
    assert became["nofile"][0] == min(256, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    # Both children's stderr went to the log they were given.
    assert (folder / "probe.log").read_text().count("probe says hello on stderr") == 2


async def test_what_an_interpreter_adds_to_its_environment_as_it_starts_is_added_too(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The C locale: Python coerces it to C.UTF-8 as it starts and says so in LC_CTYPE.
    for name in [n for n in os.environ if n.startswith("LC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LANG", "C")
    env = child_env()
    async with asyncio.timeout(HANG_GUARD_S):
        ordinary = await facts_of(await start_probe(folder, env))
        warm.start(1)
        warm_pid = the_warm_one()
        child = await start_probe(folder, env)
        assert child.pid == warm_pid
        became = await facts_of(child)
    assert became["env"] == ordinary["env"] != env


async def test_the_exit_code_and_a_signal_to_the_group_reach_the_parent(folder: Path) -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        warm.start(2)
        first = await start_probe(folder, child_env())
        first.peer.start()
        await first.peer.notify("exit", {"code": 3})
        assert await first.wait() == 3
        second = await start_probe(folder, child_env())
        assert second.pid != first.pid and not warm.waiting()
        second.peer.start()
        await second.peer.request("facts", {})
        os.killpg(second.pid, signal.SIGTERM)
        assert await second.wait() == -signal.SIGTERM
        await second.peer.wait_closed()


async def test_a_child_with_other_startup_variables_is_started_the_ordinary_way(
    folder: Path,
) -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        warm.start(1)
        warm_pid = the_warm_one()
        env = child_env(PYTHONHASHSEED="7")
        child = await start_probe(folder, env)
        assert child.pid != warm_pid and warm.waiting()
        facts = await facts_of(child)
    assert facts["env"] == env
    popen = warm._waiting[0][0]
    warm.close_unused()
    assert popen.returncode == -signal.SIGKILL and not warm.waiting()


async def test_a_warm_interpreter_that_died_is_passed_over(folder: Path) -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        warm.start(1)
        popen = warm._waiting[0][0]
        popen.kill()
        popen.wait()
        child = await start_probe(folder, child_env())
        assert child.pid != popen.pid
        assert (await facts_of(child))["cwd"] == str(folder)


async def test_a_spec_it_cannot_apply_gives_the_ordinary_error(folder: Path) -> None:
    missing = folder / "no-such-folder"
    async with asyncio.timeout(HANG_GUARD_S):
        with pytest.raises(OSError) as ordinary:
            await start_probe(folder, child_env(), cwd=missing)
        warm.start(1)
        popen = warm._waiting[0][0]
        with pytest.raises(OSError) as after_warm:
            await start_probe(folder, child_env(), cwd=missing)
    assert type(after_warm.value) is type(ordinary.value)
    assert after_warm.value.errno == ordinary.value.errno
    # It was offered the child, refused it and was reaped.
    assert popen.returncode is not None and not warm.waiting()


def test_only_this_interpreter_run_as_a_module_is_taken() -> None:
    warm.start(1)
    env = child_env()
    assert warm.take(["/usr/bin/python3-other", "-m", "x"], env) is None
    assert warm.take([sys.executable, "-c", "pass"], env) is None
    assert warm.take([sys.executable, "-m", "x"], child_env(LC_ALL="C")) is None
    assert warm.take([sys.executable, "-m", "x"], env) is not None
    assert not warm.waiting()


def test_an_unused_warm_interpreter_ends_with_its_parent() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from aiswitch.rpc import warm\n"
            "warm.start(1)\n"
            "print(warm._waiting[0][0].pid, flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    assert parent.stdout is not None
    warm_pid = int(parent.stdout.readline())
    interpreter = psutil.Process(warm_pid)
    parent.kill()
    parent.wait()
    gone, alive = psutil.wait_procs([interpreter], timeout=HANG_GUARD_S)
    assert alive == [] and gone[0].pid == warm_pid


def test_a_run_warms_one_interpreter_per_distinct_agent() -> None:
    from aiswitch.cli.entry import MAX_WARM, warm_count

    assert warm_count({"agent": "mock", "task": "hi"}) == 1
    assert warm_count({"parallel": "mock,mock@fast,claude", "task": "hi"}) == 3
    # One pool per agent and preset: it starts one process first, whatever the tasks.
    assert warm_count({"parallel": "mock@fast,mock@fast, mock@fast", "task": "hi"}) == 1
    assert warm_count({"parallel": "mock,claude", "best_of": 3, "task": "hi"}) == 2
    names = ",".join(f"mock@p{n}" for n in range(20))
    assert warm_count({"parallel": names, "task": "hi"}) == MAX_WARM
    assert warm_count({"sequential": "mock,claude", "task": "hi"}) == 1
    assert warm_count({"agent": "mock", "task": "hi", "dry_run": True}) == 0
    assert warm_count({"plan_file": "p.yaml"}) == 0
    assert warm_count({"agent": "mock", "task": "hi", "backend": "ray"}) == 0
