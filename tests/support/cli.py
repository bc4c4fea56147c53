"""Run the installed `aiswitch` console script as a user would, and parse what it says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A whole mock run takes well under a second; this only stops a hung test.
CLI_TIMEOUT_S = 60.0


def aiswitch_bin() -> str:
    """The console script next to this interpreter (the venv's), as installed."""
    candidate = Path(sys.executable).parent / "aiswitch"
    if not candidate.exists():
        raise RuntimeError(f"{candidate} is missing: install the project (scripts/test does)")
    return str(candidate)


@dataclass
class Completed:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(
    *args: str,
    env: dict[str, str],
    input: str | None = None,
    cwd: Path | None = None,
    timeout: float = CLI_TIMEOUT_S,
    wrap: Callable[[list[str]], list[str]] | None = None,
) -> Completed:
    """`wrap`: what runs the command (e.g. in a Ray test cluster's network namespace)."""
    command = [aiswitch_bin(), *args]
    proc = subprocess.run(
        wrap(command) if wrap else command,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    return Completed(proc.returncode, proc.stdout, proc.stderr)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: PATH, HOME and the aiswitch home; nothing else leaks in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "AISWITCH_HOME": str(home),
        "LANG": "C.UTF-8",
        "MOCK_LATENCY": "0",
        "MOCK_STEPS": "1",
    }
    env.update(extra)
    return env


def assert_one_error_line(done: Completed, *fragments: str, code: int | None = None) -> None:
    """A user error as aiswitch reports one: a non-zero exit (`code`, when given), nothing
    on stdout, and on stderr exactly one `aiswitch: error:` line, holding every fragment,
    with no traceback."""
    assert done.code != 0, (done.code, done.stdout, done.stderr)
    if code is not None:
        assert done.code == code, (done.code, done.stdout, done.stderr)
    assert done.stdout == "", done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("aiswitch: error: "), done.stderr
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
