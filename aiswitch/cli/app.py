"""The typer application: commands are registered here and defined in their modules."""

from __future__ import annotations

import sys

import typer

from aiswitch import __version__
from aiswitch.cli.entry import error_line
from aiswitch.errors import AiswitchError

app = typer.Typer(
    name="aiswitch",
    help="Run AI coding CLIs side by side as child processes, each with its own preset.",
    no_args_is_help=True,
    # `--install-completion [bash|zsh|fish]` / `--show-completion`; the candidates come
    # from aiswitch.cli.completion (cheap reads of the home's files).
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"aiswitch {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print the version."
    ),
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="Print the log on stderr too (-vv: debug)."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No live view, status lines or notes: results only."
    ),
) -> None:
    """aiswitch: a local-first coordinator for AI coding CLIs."""
    # Usually taken off the command line before typer (aiswitch.cli.entry); the same here.
    if verbose or quiet:
        from aiswitch.cli import verbosity

        verbosity.set_level(verbosity.QUIET if quiet else min(verbose, verbosity.DEBUG))


# Each module defines `register(app)`, which adds the command named here; it imports little
# at module level, so that `aiswitch --help` stays fast, and imports what its commands need
# inside them. A command line naming one of them registers only that module.
COMMAND_MODULES = {
    "run": "run_cmd",
    "runs": "runs_cmd",
    "agents": "agents_cmd",
    "ps": "ps_cmd",
    "top": "top_cmd",
    "metrics": "metrics_cmd",
    "logs": "logs_cmd",
    "preset": "preset_cmd",
    "shell-init": "shell_cmd",
    "tokens": "tokens_cmd",
    "doctor": "doctor_cmd",
    "audit": "audit_cmd",
    "diff": "workspace_cmd",
    "compare": "workspace_cmd",
    "apply": "workspace_cmd",
    "workspaces": "workspace_cmd",
    "mcp": "mcp_cmd",
}


def _register(args: list[str]) -> None:
    import importlib

    first = args[0] if args else ""
    names = (
        [COMMAND_MODULES[first]]
        if first in COMMAND_MODULES
        else dict.fromkeys(COMMAND_MODULES.values())
    )
    for name in names:
        importlib.import_module(f"aiswitch.cli.{name}").register(app)


def run_app(args: list[str]) -> int:
    _register(args)
    if "--install-completion" in args or "--show-completion" in args:
        from aiswitch.cli.completion import fix_zsh_script

        fix_zsh_script()
    try:
        app(args=args, prog_name="aiswitch", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except AiswitchError as exc:
        sys.stderr.write(error_line(exc) + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("aiswitch: interrupted\n")
        return 130
    return 0
