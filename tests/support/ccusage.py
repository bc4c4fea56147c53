"""Where the pinned ccusage lives for the parity tests and the benchmark.

`scripts/setup/ccusage.sh` installs npm `ccusage@20.0.24` (and its native Linux x64 binary)
into ``${AISWITCH_TEST_CACHE:-~/.cache/aiswitch-test}/ccusage``. A missing install is an error
that says how to install it, never a skip: a parity test that does not run proves nothing.

Import it from a test as ``from support.ccusage import run_ccusage``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CCUSAGE_VERSION = "20.0.24"
# ccusage reads a few thousand files in well under a minute even on a slow machine.
CCUSAGE_TIMEOUT_SECONDS = 300


class CcusageMissing(RuntimeError):
    """ccusage is not installed where the setup script puts it."""


def cache_root() -> Path:
    configured = os.environ.get("AISWITCH_TEST_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "aiswitch-test"


def ccusage_path() -> Path:
    """The native ccusage binary (what `npx ccusage` ends up running, minus the Node shim)."""
    prefix = cache_root() / "ccusage"
    native = prefix / "node_modules" / "@ccusage" / "ccusage-linux-x64" / "bin" / "ccusage"
    stamp = prefix / f".installed-{CCUSAGE_VERSION}"
    if not (native.is_file() and stamp.exists()):
        raise CcusageMissing(
            f"ccusage {CCUSAGE_VERSION} is not installed under {prefix}: "
            "run scripts/setup/ccusage.sh"
        )
    return native


def ccusage_env(claude_config_dir: Path, home: Path) -> dict[str, str]:
    """An environment where ccusage sees only `claude_config_dir` (and no user data)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CCUSAGE")}
    env.update(
        CLAUDE_CONFIG_DIR=str(claude_config_dir),
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        NO_COLOR="1",
    )
    return env


def run_ccusage(args: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
    """Run ccusage offline with `args` and return its JSON output."""
    completed = subprocess.run(
        [str(ccusage_path()), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=CCUSAGE_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"ccusage {' '.join(args)} failed: {completed.stderr.strip()}")
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def ccusage_daily(
    claude_config_dir: Path, home: Path, timezone: str, *, breakdown: bool = True
) -> dict[str, Any]:
    """`ccusage claude daily --json -O [--breakdown] --timezone TZ` on `claude_config_dir`."""
    args = ["claude", "daily", "--json", "-O", "--timezone", timezone]
    if breakdown:
        args.append("--breakdown")
    return run_ccusage(args, ccusage_env(claude_config_dir, home))
