"""`aiswitch mcp`: serve MCP over stdio (aiswitch.cli.mcp_server); `aiswitch mcp install|
uninstall CLIENT` put the server into a client's own configuration. docs/mcp.md."""

from __future__ import annotations

import typer


def serve(
    agents: str | None,
    max_permissions: str,
    budget_usd: float | None,
    max_depth: int,
    allow_apply: bool,
) -> int:
    import asyncio

    from aiswitch.cli.mcp_server.limits import Limits, current_depth
    from aiswitch.cli.mcp_server.session import serve as serve_session

    allowed = None
    if agents is not None:
        allowed = tuple(a.strip() for a in agents.split(",") if a.strip())
    limits = Limits(
        agents=allowed,
        max_permissions=max_permissions,
        budget_usd=budget_usd,
        max_depth=max_depth,
        depth=current_depth(),
    )
    return asyncio.run(serve_session(limits, allow_apply=allow_apply))


def register(app: typer.Typer) -> None:
    from aiswitch.cli.mcp_server.limits import DEFAULT_MAX_DEPTH, DEFAULT_MAX_PERMISSIONS

    mcp_app = typer.Typer(
        help="aiswitch as an MCP server: agents delegate tasks to each other (docs/mcp.md).",
        invoke_without_command=True,
    )

    @mcp_app.callback()
    def mcp(
        ctx: typer.Context,
        agents: str | None = typer.Option(
            None,
            "--agents",
            help="Only these agents may be called: NAME (its default preset), NAME@PRESET, "
            "NAME@* (any preset), comma-separated.",
        ),
        max_permissions: str = typer.Option(
            DEFAULT_MAX_PERMISSIONS,
            "--max-permissions",
            help="The most a delegated agent may do: read-only, edit or full.",
        ),
        budget_usd: float | None = typer.Option(
            None, "--budget-usd", help="What this session's runs may cost together (USD)."
        ),
        max_depth: int = typer.Option(
            DEFAULT_MAX_DEPTH,
            "--max-depth",
            help="How many aiswitch mcp servers may be nested (an agent delegating again).",
        ),
        allow_apply: bool = typer.Option(
            False, "--allow-apply", help="Offer the apply tool (changes your working tree)."
        ),
    ) -> None:
        """Serve MCP over stdin/stdout (newline-delimited JSON-RPC 2.0)."""
        if ctx.invoked_subcommand is not None:
            return
        raise typer.Exit(serve(agents, max_permissions, budget_usd, max_depth, allow_apply))

    scope_option = typer.Option(
        "user", "--scope", help="user (your own config) or project (this folder's)."
    )
    dry_run_option = typer.Option(False, "--dry-run", help="Show the change, write nothing.")

    @mcp_app.command("install")
    def install(
        client: str = typer.Argument(..., help="claude, codex or gemini."),
        scope: str = scope_option,
        dry_run: bool = dry_run_option,
        agents: str | None = typer.Option(None, "--agents", help="Passed to aiswitch mcp."),
        max_permissions: str | None = typer.Option(
            None, "--max-permissions", help="Passed to aiswitch mcp."
        ),
        budget_usd: float | None = typer.Option(
            None, "--budget-usd", help="Passed to aiswitch mcp."
        ),
        allow_apply: bool = typer.Option(False, "--allow-apply", help="Passed to aiswitch mcp."),
    ) -> None:
        """Add aiswitch to a client's MCP servers (its own config file; nothing else changes)."""
        args: list[str] = []
        if agents:
            args += ["--agents", agents]
        if max_permissions:
            args += ["--max-permissions", max_permissions]
        if budget_usd is not None:
            args += ["--budget-usd", f"{budget_usd:g}"]
        if allow_apply:
            args.append("--allow-apply")
        raise typer.Exit(change(client, scope, args, dry_run))

    @mcp_app.command("uninstall")
    def uninstall(
        client: str = typer.Argument(..., help="claude, codex or gemini."),
        scope: str = scope_option,
        dry_run: bool = dry_run_option,
    ) -> None:
        """Take aiswitch out of a client's MCP servers again."""
        raise typer.Exit(change(client, scope, None, dry_run))

    app.add_typer(mcp_app, name="mcp")


def change(client: str, scope: str, args: list[str] | None, dry_run: bool) -> int:
    import shutil
    import sys

    from aiswitch.cli.mcp_server import install as setup

    server = None
    if args is not None:
        server = setup.server_entry(args, shutil.which("aiswitch") or "aiswitch")
    planned = setup.plan(client, scope, server)  # type: ignore[arg-type]
    what = "install" if server is not None else "uninstall"
    if not planned.changed:
        sys.stderr.write(f"aiswitch: {planned.path}: nothing to {what}, it is as asked already\n")
        return 0
    sys.stdout.write(planned.diff())
    if dry_run:
        sys.stderr.write(f"aiswitch: --dry-run: {planned.path} not written\n")
        return 0
    setup.write(planned)
    sys.stderr.write(f"aiswitch: {what}ed the aiswitch MCP server in {planned.path}\n")
    return 0
