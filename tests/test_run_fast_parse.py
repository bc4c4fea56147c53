"""The fast parse of `aiswitch run` (`aiswitch.cli.entry.parse_run`) gives `run_cmd.execute`
exactly the arguments typer gives it, or declines (and typer parses): over a table of
command lines and over generated ones."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
from support.cli import CLI_TIMEOUT_S, aiswitch_bin

from aiswitch.cli import run_cmd
from aiswitch.cli.entry import parse_run


def typer_parse(args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any] | None:
    """What typer passes to `execute` for `aiswitch ARGS`, or None when it refuses them."""
    seen: list[dict[str, Any]] = []

    def execute(**kwargs: Any) -> int:
        seen.append(kwargs)
        return 0

    monkeypatch.setattr(run_cmd, "execute", execute)
    app = typer.Typer(add_completion=False, rich_markup_mode=None)

    @app.callback()
    def _root() -> None:
        """A group, as the real app is."""

    run_cmd.register(app)
    # A refusal is typer's usage error (or its exit); only a call of `execute` counts.
    with contextlib.suppress(SystemExit, typer.Exit, Exception):
        app(args=args, prog_name="aiswitch", standalone_mode=False)
    return seen[0] if seen else None


ACCEPTED = [
    ["run", "--agent", "mock@fast", "hi", "--json"],
    ["run", "-a", "mock", "hi"],
    ["run", "hi", "--agent", "mock"],
    ["run", "--agent=mock", "--timeout=1.5", "hi"],
    ["run", "-p", "mock,mock@fast", "x", "--jsonl", "--retries", "0", "--retry-failed"],
    ["run", "-s", "a,b", "t", "--handoff-template", "{task}!", "--budget-usd", "0.5"],
    ["run", "--sequential", "a", "t", "--budget-tokens", "100", "--budget-usd", "10"],
    ["run", "--tasks", "f.txt", "-c", "10", "--agent", "mock"],
    ["run", "--agent", "mock", "-", "--cwd", "/tmp", "--permissions", "edit", "--resume", "s"],
    ["run", "--agent", "mock", "x", "--timeout", "5", "--concurrency", "12"],
    ["run", "--agent", "mock", "x", "-t", "0", "--permissions", "bogus"],
    ["run", "--parallel", "mock", "two words", "--cwd=relative/dir"],
    ["run", "-p", "mock,mock", "x", "--workspace", "worktree", "--with-changes"],
    ["run", "-a", "mock", "x", "--notify"],
    ["run", "-a", "mock", "x", "-w", "copy", "--check", "pytest -q", "--best-of", "3"],
    ["run", "-a", "mock", "x", "--backend", "ray", "--address", "ray://127.0.0.1:10001"],
    ["run"],
    ["run", "x"],
]

DECLINED = [
    ["run", "--help"],
    ["run", "--agent"],
    ["run", "--agent", "mock", "x", "y"],
    ["run", "--agent", "mock", "--", "x"],
    ["run", "-amock", "x"],
    ["run", "-a=mock", "x"],
    ["run", "--agent", "a", "--agent", "b", "x"],
    ["run", "--agent", "mock", "x", "--json", "--json"],
    ["run", "--agent", "mock", "x", "--concurrency", "007"],
    ["run", "--agent", "mock", "x", "--timeout", "1e3"],
    ["run", "--agent", "mock", "x", "--timeout", "-1"],
    ["run", "--agent", "mock", "x", "--timeout", "1."],
    ["run", "--agent", "mock", "x", "--retries", "two"],
    ["run", "--agent", "mock", "x", "--unknown"],
    ["run", "--agent", "mock", ""],
    ["run", "--json=yes", "--agent", "mock", "x"],
]


@pytest.mark.parametrize("args", ACCEPTED, ids=" ".join)
def test_a_common_command_line_parses_as_typer_parses_it(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = parse_run(args[1:])
    assert fast is not None
    expected = typer_parse(args, monkeypatch)
    assert expected is not None
    assert {**DEFAULTS, **fast} == expected


@pytest.mark.parametrize("args", DECLINED, ids=" ".join)
def test_an_unusual_or_wrong_command_line_is_left_to_typer(args: list[str]) -> None:
    assert parse_run(args[1:]) is None


# What `execute` gets for an option not on the command line (typer passes them all).
DEFAULTS: dict[str, Any] = {
    "task": None,
    "agent": None,
    "parallel": None,
    "sequential": None,
    "tasks_file": None,
    "concurrency": None,
    "retries": 2,
    "retry_failed": False,
    "timeout": None,
    "cwd": None,
    "handoff": None,
    "budget_usd": None,
    "budget_tokens": None,
    "permissions": None,
    "resume": None,
    "as_json": False,
    "as_jsonl": False,
    "plan_file": None,
    "dry_run": False,
    "workspace": None,
    "with_changes": False,
    "check": None,
    "best_of": None,
    "backend": None,
    "address": None,
    "notify": False,
}

PIECES = [
    ["--plan", "p.yaml"],
    ["--dry-run"],
    ["--agent", "mock"],
    ["-a", "mock@fast"],
    ["--agent=m"],
    ["-p", "a,b"],
    ["--parallel=a"],
    ["-s", "a,b"],
    ["--tasks", "-"],
    ["--tasks", "t.jsonl"],
    ["-c", "3"],
    ["--concurrency", "0"],
    ["--concurrency", "1.5"],
    ["--retries", "10"],
    ["--retries=0"],
    ["--retry-failed"],
    ["--timeout", "2.25"],
    ["-t", "30"],
    ["--timeout", "inf"],
    ["--cwd", "."],
    ["--cwd", "a b"],
    ["--handoff-template", "{previous_output}"],
    ["--budget-usd", "0.01"],
    ["--budget-tokens", "5"],
    ["--budget-tokens", "5.0"],
    ["--permissions", "read-only"],
    ["--resume", "abc"],
    ["--backend", "ray"],
    ["--backend=local"],
    ["--address", "auto"],
    ["--json"],
    ["--jsonl"],
    ["the task"],
    ["-"],
    ["x=y"],
    ["--"],
    ["-h"],
    ["--agent"],
    [""],
]


def test_generated_command_lines_parse_as_typer_parses_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(20261204)
    accepted = 0
    for _ in range(300):
        args = ["run"]
        for _ in range(rng.randint(0, 6)):
            args += rng.choice(PIECES)
        fast = parse_run(args[1:])
        expected = typer_parse(args, monkeypatch)
        if fast is None:
            continue
        accepted += 1
        assert expected is not None, args
        assert {**DEFAULTS, **fast} == expected, args
    assert accepted > 50


def test_the_cwd_is_a_path_as_typer_makes_it() -> None:
    assert parse_run(["--cwd", "d", "x"]) == {"cwd": Path("d"), "task": "x"}


def closed_reader_run(env: dict[str, str], task: str, *extra: str) -> tuple[int, str]:
    """`aiswitch run … --json` whose stdout reader is gone before anything is written."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [aiswitch_bin(), "run", "--agent", "mock@fast", task, "--json", *extra],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
    finally:
        os.close(write)
    return proc.returncode, proc.stderr


# A document smaller than stdout's buffer fails at the interpreter's last flush; a bigger
# one (the prompt is in it) fails in the write itself, which typer (as click) makes quiet.
@pytest.mark.parametrize("task", ["hi", "x" * 20_000], ids=["small", "over the buffer"])
def test_a_reader_that_went_away_ends_the_fast_path_as_it_ends_typers(
    env: dict[str, str], task: str
) -> None:
    assert parse_run(["--agent", "mock@fast", task, "--json"]) is not None
    assert parse_run(["--agent", "mock@fast", task, "--json", "--retries", "02"]) is None
    fast = closed_reader_run(env, task)
    typer_path = closed_reader_run(env, task, "--retries", "02")
    assert fast == typer_path
    assert "Traceback" not in fast[1]
