"""Where the pinned agent CLIs live for the real-CLI tests.

`scripts/setup/agent-clis.sh` installs them with npm into
``${AISWITCH_TEST_CACHE:-~/.cache/aiswitch-test}/npm``; this module finds them there.
A missing CLI is an error that says how to install it, never a skip: a real-CLI test
that silently does not run proves nothing.

Import it from a test as ``from support.clis import cli_path`` (pytest puts ``tests/``
on ``sys.path`` because the test folder is not a package).

The versions are aiswitch/data/clis.json's, which scripts/setup/agent-clis.sh installs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from aiswitch.agents import pinned_clis

# The pins are aiswitch/data/clis.json's (scripts/setup/agent-clis.sh reads it too).
PINNED = pinned_clis()
CLAUDE_PACKAGE, CLAUDE_VERSION = PINNED["claude"]
CODEX_PACKAGE, CODEX_VERSION = PINNED["codex"]
GEMINI_PACKAGE, GEMINI_VERSION = PINNED["gemini"]

# The models each pinned CLI uses when no model is set (issue 12: each must be priced).
# claude 2.1.197 asks for claude-opus-4-8 (its stream's init and result name it
# `claude-opus-4-8[1m]`, the context window tagged on) and uses claude-haiku-4-5 for its small
# fast requests; codex 0.169.0's rollouts name gpt-6.1-sol; gemini 0.61.0's
# DEFAULT_GEMINI_MODEL is gemini-2.5-pro, with gemini-2.5-flash as its flash model.
PINNED_DEFAULT_MODELS = {
    "claude": ("claude-opus-4-8[1m]", "claude-haiku-4-5"),
    "codex": ("gpt-6.1-sol",),
    "gemini": ("gemini-2.5-pro", "gemini-2.5-flash"),
}

SETUP_SCRIPT = "scripts/setup/agent-clis.sh"
# The ACP agent adapters (scripts/setup/acp-agents.sh, a prefix of their own).
ACP_SETUP_SCRIPT = "scripts/setup/acp-agents.sh"
CLAUDE_ACP_PACKAGE = "@zed-industries/claude-code-acp"
CLAUDE_ACP_VERSION = "0.16.2"


class CliNotInstalledError(RuntimeError):
    """A pinned CLI is missing from the test cache."""


def cache_root() -> Path:
    override = os.environ.get("AISWITCH_TEST_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "aiswitch-test"


def cli_bin_dir() -> Path:
    """The npm ``.bin`` folder holding ``claude``, ``codex`` and ``gemini``."""
    bin_dir = cache_root() / "npm" / "node_modules" / ".bin"
    if not bin_dir.is_dir():
        raise CliNotInstalledError(
            f"agent CLIs are not installed ({bin_dir} does not exist): run `bash {SETUP_SCRIPT}`"
        )
    return bin_dir


def cli_path(name: str) -> Path:
    """The executable of one pinned CLI (``claude``, ``codex`` or ``gemini``)."""
    if name not in PINNED:
        raise ValueError(f"unknown CLI {name!r}; expected one of {sorted(PINNED)}")
    path = cli_bin_dir() / name
    if not os.access(path, os.X_OK):
        raise CliNotInstalledError(f"{name} is not installed at {path}: run `bash {SETUP_SCRIPT}`")
    package, version = PINNED[name]
    manifest = cache_root() / "npm" / "node_modules" / package / "package.json"
    if f'"version": "{version}"' not in manifest.read_text(encoding="utf-8"):
        raise CliNotInstalledError(
            f"{name} in {manifest.parent} is not the pinned {version}: run `bash {SETUP_SCRIPT}`"
        )
    return path


def acp_bin_dir() -> Path:
    """The npm ``.bin`` folder holding ``claude-code-acp`` (pinned), never skipped."""
    prefix = cache_root() / "npm-acp"
    manifest = prefix / "node_modules" / CLAUDE_ACP_PACKAGE / "package.json"
    if not manifest.is_file() or f'"version": "{CLAUDE_ACP_VERSION}"' not in manifest.read_text(
        encoding="utf-8"
    ):
        raise CliNotInstalledError(
            f"{CLAUDE_ACP_PACKAGE}@{CLAUDE_ACP_VERSION} is not installed in {prefix}: "
            f"run `bash {ACP_SETUP_SCRIPT}`"
        )
    return prefix / "node_modules" / ".bin"


def node_bin_dir() -> Path:
    """The folder of the ``node`` that codex's and gemini's launchers need on PATH."""
    node = shutil.which("node")
    if node is None:
        raise CliNotInstalledError("node is not on PATH; install Node.js 18+ (see agent-clis.sh)")
    return Path(node).resolve().parent
