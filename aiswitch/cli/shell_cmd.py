"""`aiswitch shell-init [SHELL]`: print the shell function that makes `preset use` apply.

The function itself is `aiswitch.presets.shells.render_shell_init`; this only picks the shell
(the argument, else the parent process, else `$SHELL`) and prints it.
"""

from __future__ import annotations

import sys

import typer


def shell_init(
    shell: str | None = typer.Argument(None, help="bash | zsh | fish | powershell"),
) -> None:
    """Print the `aiswitch` shell function (install: eval "$(aiswitch shell-init bash)")."""
    import os

    from aiswitch.presets.shells import detect_shell, parent_process_name, render_shell_init

    if shell:
        target = detect_shell(shell, None, None)
    else:
        target = detect_shell(None, parent_process_name(), os.environ.get("SHELL"))
    sys.stdout.write(render_shell_init(target))


def register(app: typer.Typer) -> None:
    app.command("shell-init")(shell_init)
