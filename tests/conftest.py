"""Fixtures shared by the suite: an isolated aiswitch home per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import clean_env

from aiswitch.home import Home

# Tests with these markers belong to the slow tier too (`-m "not slow"` is the fast one).
SLOW_MARKERS = ("realcli", "shells")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(name) for name in SLOW_MARKERS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _outside_any_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts in its own empty directory, not in the project's checkout: a
    parallel run in a git repository gets worktrees by default (docs/workspaces.md), and
    a test means that only where it makes a repository of its own."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """A fresh `$AISWITCH_HOME` (tests never touch the real ~/.aiswitch)."""
    root = tmp_path / "aiswitch-home"
    monkeypatch.setenv("AISWITCH_HOME", str(root))
    return Home(root)


@pytest.fixture
def env(home: Home) -> dict[str, str]:
    """An environment for running the CLI: fast mock agents, the test's home."""
    return clean_env(home.root)
