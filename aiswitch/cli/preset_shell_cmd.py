"""`aiswitch preset use|clear|env|exec`: presets in a shell and in a child's environment.

Part of the `preset` command group (`aiswitch.cli.preset_cmd` registers these on it). The
only outputs here with real values are `use`/`clear` code (never on a terminal) and
`exec`'s child; `env` shows what a child would get, masked unless `--reveal`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from aiswitch.cli.preset_cmd import (
    _PRESETS,
    JSON_HELP,
    REVEAL_HELP,
    open_store,
    preset_app,
    print_json,
    print_note,
    print_out,
)

if TYPE_CHECKING:
    from aiswitch.presets.model import Preset


# --- shells, children ----------------------------------------------------------------------


def _shell(explicit: str | None) -> str:
    import os

    from aiswitch.presets.shells import WRAPPER_VAR, detect_shell, parent_process_name

    if explicit:
        return detect_shell(explicit, None, None)
    return detect_shell(
        None, parent_process_name(), os.environ.get("SHELL"), wrapper=os.environ.get(WRAPPER_VAR)
    )


def _on_terminal() -> bool:
    """Code would land on a terminal, where it does nothing and shows secrets."""
    import os

    from aiswitch.presets.shells import WRAPPER_VAR

    return sys.stdout.isatty() and not os.environ.get(WRAPPER_VAR)


def _apply_hint(shell: str, command: str) -> str:
    if shell == "fish":
        how = f"aiswitch {command} | source"
    elif shell == "powershell":
        how = f"aiswitch {command} | Out-String | Invoke-Expression"
    else:
        how = f'eval "$(aiswitch {command})"'
    return (
        f"this prints shell code; apply it with: {how}  "
        f"(or install the shell function once: see `aiswitch shell-init {shell}`)"
    )


@preset_app.command("use")
def use(
    name: str | None = typer.Argument(
        None, help="The preset; omit to use .aiswitch.yaml's.", autocompletion=_PRESETS
    ),
    shell: str | None = typer.Option(None, "--shell", help="bash | zsh | fish | powershell"),
) -> None:
    """Print shell code that applies a preset (and unsets the previous one's variables)."""
    import os
    from pathlib import Path

    from aiswitch.presets.project import require_project_preset
    from aiswitch.presets.refs import resolve_variables
    from aiswitch.presets.shells import PRESET_VARS_VAR, parse_applied_vars, render_use

    chosen = name if name is not None else require_project_preset(Path.cwd())
    preset = open_store().get(chosen)
    target = _shell(shell)
    values = resolve_variables(preset.name, preset.variables, os.environ)
    previous = [*parse_applied_vars(os.environ.get(PRESET_VARS_VAR)), *preset.unset]
    code = render_use(target, preset.name, values, previous)
    if _on_terminal():
        print_note(_apply_hint(target, f"preset use {chosen}"))
        return
    sys.stdout.write(code)


@preset_app.command("clear")
def clear(
    shell: str | None = typer.Option(None, "--shell", help="bash | zsh | fish | powershell"),
) -> None:
    """Print shell code that unsets the variables of the preset applied in this shell."""
    import os

    from aiswitch.presets.shells import PRESET_VARS_VAR, parse_applied_vars, render_clear

    target = _shell(shell)
    code = render_clear(target, parse_applied_vars(os.environ.get(PRESET_VARS_VAR)))
    if _on_terminal():
        print_note(_apply_hint(target, "preset clear"))
        return
    sys.stdout.write(code)


@preset_app.command("env")
def env(
    name: str | None = typer.Argument(
        None,
        help="The preset; omit to resolve it as a run would.",
        autocompletion=_PRESETS,
    ),
    agent: str | None = typer.Option(None, "--agent", help="The agent whose child to show."),
    reveal: bool = typer.Option(False, "--reveal", help=REVEAL_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print exactly the environment an agent's child would get, as NAME=VALUE lines."""
    import os

    from aiswitch.agents import AgentRegistry
    from aiswitch.errors import UsageError
    from aiswitch.presets.ops import masked_env
    from aiswitch.presets.resolve import choose_preset, resolved
    from aiswitch.supervisor.env import ChildEnvRequest, build_child_env

    store = open_store()
    data = store.load()
    if name is None and agent is None:
        raise UsageError("name a preset, or an agent with --agent")
    agent_def = None
    if agent is None:
        assert name is not None
        preset: Preset | None = store.get(name, data)
        assert preset is not None
        if preset.agent is not None:
            agent_def = AgentRegistry.load(store.home).get(preset.agent)
    else:
        agent_def = AgentRegistry.load(store.home).get(agent)
        preset = choose_preset(name, agent, os.environ, store, data).preset
    ready = resolved(preset, os.environ)
    child = build_child_env(
        ChildEnvRequest(
            parent=os.environ,
            agent_env=agent_def.env if agent_def else {},
            cli=agent_def.cli if agent_def else None,
            passthrough=tuple(agent_def.env_passthrough) if agent_def else (),
            preset=ready.name,
            preset_vars=ready.variables,
            preset_unset=ready.unset,
            preset_billing=ready.billing,
            agent_id=f"{agent_def.name}#1" if agent_def else "",
            home=str(store.home.root),
        )
    )
    shown = dict(sorted((child if reveal else masked_env(child)).items()))
    if reveal:
        from aiswitch.state.audit import audit

        audit("preset.reveal", preset=ready.name, agent=agent, command="preset env")
    if as_json:
        print_json(
            {"agent": agent_def.name if agent_def else None, "preset": ready.name, "env": shown}
        )
        return
    for key, value in shown.items():
        print_out(f"{key}={value}")


@preset_app.command(
    "exec", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True}
)
def exec_(
    name: str = typer.Argument(..., autocompletion=_PRESETS),
    command: list[str] = typer.Argument(..., help="-- CMD ARGS… (run directly, no shell)."),
) -> None:
    """Run CMD with the preset's environment (no shell); its exit code is passed through."""
    import os
    import shutil

    from aiswitch.errors import UsageError
    from aiswitch.presets.refs import resolve_variables
    from aiswitch.supervisor.env import ChildEnvRequest, build_child_env

    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("no command given", hint="aiswitch preset exec NAME -- CMD ARGS…")
    preset = open_store().get(name)
    child = build_child_env(
        ChildEnvRequest(
            parent=os.environ,
            preset=preset.name,
            preset_vars=resolve_variables(preset.name, preset.variables, os.environ),
            preset_unset=tuple(preset.unset),
            preset_billing=preset.billing,
            # `preset use` for one command: the caller's environment, not an agent's allowlist.
            inherit="all",
        )
    )
    program = shutil.which(command[0], path=child.get("PATH"))
    if program is None:
        print_note(f"error: command not found: {command[0]}")
        raise typer.Exit(127)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a subprocess: signals, the terminal and the exit status are the command's own.
    os.execve(program, command, child)  # noqa: S606 (no shell, by design)
