"""The typer app registers only the command a command line names (start-up cost), and that
is always the module that defines it."""

from __future__ import annotations

import importlib

import pytest
import typer
from support.cli import run_cli

from aiswitch.cli.app import COMMAND_MODULES


@pytest.mark.parametrize("name", sorted(COMMAND_MODULES))
def test_each_command_name_is_registered_by_its_module(name: str) -> None:
    app = typer.Typer()
    importlib.import_module(f"aiswitch.cli.{COMMAND_MODULES[name]}").register(app)
    names = [command.name for command in app.registered_commands]
    names += [group.name for group in app.registered_groups]
    # A module may serve several commands (workspace_cmd: diff, compare, apply, workspaces).
    assert sorted(n or "" for n in names) == sorted(
        n for n, module in COMMAND_MODULES.items() if module == COMMAND_MODULES[name]
    )


def test_the_root_help_lists_every_command(env: dict[str, str]) -> None:
    result = run_cli("--help", env=env)
    assert result.code == 0
    for name in COMMAND_MODULES:
        assert name in result.stdout


def test_an_unknown_command_is_one_clear_error(env: dict[str, str]) -> None:
    result = run_cli("tokenz", "report", env=env)
    assert result.code == 2
    assert "tokenz" in result.stderr
    assert "Traceback" not in result.stderr
