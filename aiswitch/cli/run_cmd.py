"""`aiswitch run`: one task over one or more agents, parallel or sequential; a batch of
tasks (`--tasks`); a plan (`--plan`, a graph of tasks). `--dry-run` shows any of them as
the graph it is, in levels, and starts nothing."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from aiswitch.cli import exitcodes
from aiswitch.errors import UsageError

if TYPE_CHECKING:
    import typer

    from aiswitch.cli.live import LiveView


def read_task(task: str) -> str:
    if task == "-":
        data = sys.stdin.read()
        if not data.strip():
            raise UsageError("the task read from stdin is empty")
        return data
    return task


def read_tasks(path: str) -> tuple[str, str]:
    """The batch file's text and a name for it in errors (`-` is stdin)."""
    if path == "-":
        return sys.stdin.read(), "stdin"
    try:
        return Path(path).read_text(encoding="utf-8"), path
    except FileNotFoundError:
        raise UsageError(f"--tasks {path!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--tasks {path!r}: cannot read it ({exc})") from None


def execute(
    task: str | None = None,
    agent: str | None = None,
    parallel: str | None = None,
    sequential: str | None = None,
    tasks_file: str | None = None,
    concurrency: int | None = None,
    retries: int = 2,
    retry_failed: bool = False,
    timeout: float | None = None,
    cwd: Path | None = None,
    handoff: str | None = None,
    budget_usd: float | None = None,
    budget_tokens: int | None = None,
    permissions: str | None = None,
    resume: str | None = None,
    as_json: bool = False,
    as_jsonl: bool = False,
    plan_file: str | None = None,
    dry_run: bool = False,
    workspace: str | None = None,
    with_changes: bool = False,
    check: str | None = None,
    best_of: int | None = None,
    backend: str | None = None,
    address: str | None = None,
    notify: bool = False,
) -> int:
    """`aiswitch run` with its options parsed (by typer, or by the fast path in
    `aiswitch.cli.entry`, which a test holds to typer's parse): its exit code."""
    from aiswitch.coordinator.request import DEFAULT_HANDOFF_TEMPLATE, RunRequest
    from aiswitch.coordinator.specs import parse_specs

    if as_json and as_jsonl:
        raise UsageError("give --json or --jsonl, not both")
    if dry_run and as_jsonl:
        raise UsageError("--dry-run prints the graph: use --json, not --jsonl, with it")
    output = "json" if as_json else "jsonl" if as_jsonl else "human"
    # No --workspace: the default rule (aiswitch.coordinator.workspaces.choose_mode).
    where = {
        "workspace": workspace or "auto",
        "with_changes": with_changes,
        "check": check,
        "backend": backend,
        "address": address,
    }
    if plan_file is not None:
        if agent or parallel or sequential or tasks_file or task is not None:
            raise UsageError(
                "--plan names its tasks and agents itself",
                hint="leave out the task, --tasks, --agent, --parallel and --sequential",
            )
        request = plan_request(
            plan_file,
            concurrency=concurrency,
            retries=retries,
            retry_failed=retry_failed,
            timeout=timeout,
            cwd=cwd,
            budget_usd=budget_usd,
            budget_tokens=budget_tokens,
            permissions=permissions,
        )
        if best_of is not None:
            raise UsageError("--best-of repeats one task; a plan names its tasks itself")
        vars(request).update(where)
        return asyncio.run(_run(request, output, dry_run, notify=notify))
    chosen = [
        (n, v)
        for n, v in (("--agent", agent), ("--parallel", parallel), ("--sequential", sequential))
        if v
    ]
    if len(chosen) != 1:
        raise UsageError("give exactly one of --agent, --parallel or --sequential")
    flag, value = chosen[0]
    specs = parse_specs(value)
    if flag == "--agent" and len(specs) != 1:
        raise UsageError("--agent takes one agent; use --parallel or --sequential for several")
    if permissions not in (None, "read-only", "edit", "full"):
        raise UsageError(
            f"unknown --permissions {permissions!r}", hint="use read-only, edit or full"
        )
    if best_of is not None:
        if best_of < 1:
            raise UsageError("--best-of must be 1 or more")
        if flag == "--sequential" or tasks_file is not None:
            raise UsageError("--best-of runs one task N times side by side; use --agent or -p")
        # The same task N times over the agents given (claude#1, claude#2, …).
        specs = [specs[i % len(specs)] for i in range(best_of * len(specs))]
        flag = "--parallel"
    batch = None
    if tasks_file is not None:
        from aiswitch.coordinator.batch import parse_batch

        if task is not None:
            raise UsageError("give the tasks with --tasks or as an argument, not both")
        if flag == "--sequential":
            raise UsageError("--tasks runs each task on --agent or on every --parallel agent")
        batch = parse_batch(*read_tasks(tasks_file))
    elif task is None:
        raise UsageError(
            "no task given",
            hint="pass the task as an argument, - for stdin, or a file of tasks with --tasks FILE",
        )
    mode = {"--agent": "single", "--parallel": "parallel", "--sequential": "sequential"}[flag]
    request = RunRequest(
        mode="batch" if batch is not None else mode,  # type: ignore[arg-type]
        specs=specs,
        prompt="" if batch is not None else read_task(task or ""),
        timeout_s=timeout,
        cwd=str(cwd) if cwd else None,
        handoff_template=handoff or DEFAULT_HANDOFF_TEMPLATE,
        budget_usd=budget_usd,
        budget_tokens=budget_tokens,
        permissions=permissions,  # type: ignore[arg-type]
        session_id=resume,
        batch=batch,
        concurrency=concurrency,
        retries=retries,
        retry_failed=retry_failed,
        best_of=best_of,
        **where,  # type: ignore[arg-type]
    )
    return asyncio.run(_run(request, output, dry_run, ranked=best_of is not None, notify=notify))


def plan_request(
    path: str,
    *,
    concurrency: int | None,
    retries: int,
    retry_failed: bool,
    timeout: float | None,
    cwd: Path | None,
    budget_usd: float | None,
    budget_tokens: int | None,
    permissions: str | None,
) -> Any:
    """The request of `--plan PATH`: the plan's own limits, the command line's over them."""
    from aiswitch.coordinator.plan_check import read_plan
    from aiswitch.coordinator.request import RunRequest

    if permissions not in (None, "read-only", "edit", "full"):
        raise UsageError(
            f"unknown --permissions {permissions!r}", hint="use read-only, edit or full"
        )
    source = read_plan(Path(path))
    plan = source.plan
    return RunRequest(
        mode="plan",
        specs=[],
        prompt=f"plan {source.name}",
        timeout_s=timeout,
        cwd=str(cwd) if cwd else None,
        budget_usd=budget_usd or plan.budget_usd,
        budget_tokens=budget_tokens or plan.budget_tokens,
        permissions=permissions or plan.defaults.permissions,  # type: ignore[arg-type]
        concurrency=concurrency or plan.concurrency,
        retries=retries,
        retry_failed=retry_failed,
        plan=source,
    )


async def _run(
    request: Any, output: str, dry_run: bool = False, *, ranked: bool = False, notify: bool = False
) -> int:
    coordinator = coordinator_for_cli()
    plan = coordinator.plan(request)
    if dry_run:
        from aiswitch.cli.dry_run import show_dry_run

        return show_dry_run(plan, as_json=output == "json")
    from aiswitch.coordinator.notify import load_settings

    settings = load_settings(coordinator.home.config)
    return await present(
        coordinator,
        lambda on_event: coordinator.new_run(request, plan, on_event=on_event),
        output,
        ranked=ranked,
        notify=settings if notify or settings.always else None,
    )


def coordinator_for_cli() -> Any:
    """The coordinator the CLI's commands use: this home, its logs, its quotas."""
    from aiswitch import logs, yaml_text
    from aiswitch.coordinator.coordinator import Coordinator
    from aiswitch.home import Home
    from aiswitch.tokens.quota_check import check_for

    home = Home.current().ensure()
    logs.configure(home)
    # The built-in presets, parsed before, are taken as parsed (no PyYAML).
    yaml_text.remember_in(home.tmp)
    return Coordinator(home, check_quota=check_for(home))


async def present(
    coordinator: Any, make_run: Any, output: str, *, ranked: bool = False, notify: Any = None
) -> int:
    """Run what `make_run(on_event)` makes and show it: live view, lines, or JSON; with
    `notify` (NotifySettings), tell the user of its tasks (aiswitch.coordinator.notify).
    stdout carries the run's output alone: what other code prints meanwhile goes to stderr
    (aiswitch.own_stdout; Ray's driver prints its cluster's errors to stdout)."""
    from aiswitch.own_stdout import held

    with held() as out:
        return await _present(out, coordinator, make_run, output, ranked=ranked, notify=notify)


async def _present(
    out: TextIO,
    coordinator: Any,
    make_run: Any,
    output: str,
    *,
    ranked: bool = False,
    notify: Any = None,
) -> int:
    # `--json` shows nothing on stderr but warnings: rich is loaded only for them, and the
    # views (aiswitch.cli.live, results_view) not at all.
    from aiswitch.cli.verbosity import quiet
    from aiswitch.coordinator.request import RunEvent

    err = None if output == "json" else _console(stderr=True)
    interactive = err is not None and err.is_terminal and output == "human" and not quiet()
    live: LiveView | None = None
    lines = None
    if not (interactive or err is None or quiet()):
        from aiswitch.cli.live import StatusLines

        lines = StatusLines(err)
    printed: set[str] = set()

    def task_line(result: Any) -> None:
        if result.task_id in printed:
            return
        printed.add(result.task_id)
        out.write(json.dumps(jsonl_task(result), ensure_ascii=False) + "\n")
        out.flush()

    control: Any = None
    notifier: Any = None

    def on_event(event: RunEvent) -> None:
        if control is not None:
            control.event(event)
        if notifier is not None:
            notifier.on_event(event)
        if live is not None:
            live.event(event.kind, event.result, event.text)
        if event.kind != "status":
            return
        if output == "jsonl" and event.result.final:
            task_line(event.result)
        if lines is not None:
            lines.status(event.result)

    run = make_run(on_event)
    if notify is not None:
        from aiswitch.cli.terminal import terminal_ring
        from aiswitch.coordinator.notify import Notifier

        ring = terminal_ring(notify.terminal, sys.stderr)
        notifier = Notifier(notify, run.run_id, ring=ring)
    if lines is not None:
        lines.watch(run)
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if main is not None:
        loop.add_signal_handler(signal.SIGTERM, main.cancel)
        # `runs cancel`, `runs watch`, `agents …` from another terminal (aiswitch.cli.control).
        from aiswitch.cli.control import ControlServer

        control = await ControlServer.start(coordinator, run, main.cancel)
    try:
        if interactive and err is not None:
            from aiswitch.cli.live import LiveView

            live = LiveView(err, run)
            with live:
                result = await run.execute()
        else:
            result = await run.execute()
    except asyncio.CancelledError:
        result = run.result
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        if control is not None:
            await control.close(str(run.result.status))
        if notifier is not None:
            notifier.on_run_end(run.result)
            await notifier.close()
    for warning in coordinator.store.warnings:
        if err is None:
            err = _console(stderr=True)
        err.print(f"aiswitch: warning: {warning}", highlight=False)
    if output == "json":
        out.write(json.dumps(result.json_document(), ensure_ascii=False) + "\n")
    elif output == "jsonl":
        for task_result in result.results:
            task_line(task_result)
        out.write(json.dumps(jsonl_run(result), ensure_ascii=False) + "\n")
    else:
        from aiswitch.cli.results_view import render_results

        render_results(_console(file=out), result)
        if ranked or result.settings.best_of:  # `runs rerun` of a --best-of run too
            from aiswitch.cli.workspace_cmd import render_ranking

            render_ranking(_console(file=out), result)
    return exitcodes.RUN_STATUS.get(str(result.status), exitcodes.FAILED)


def _console(**options: Any) -> Any:
    from rich.console import Console

    return Console(**options)


def jsonl_task(result: Any) -> dict[str, Any]:
    """One `--jsonl` line for a task that ended."""
    return {
        "type": "task",
        "id": result.id or result.agent_id,
        "task_id": result.task_id,
        "agent_id": result.agent_id,
        "attempts": result.attempts,
        "status": str(result.status),
        "output": result.output,
        "error": result.error,
        "usage": result.usage.model_dump(),
        "cost_usd": result.cost_usd,
        "duration_s": result.duration_s,
        "workspace": result.workspace.model_dump(mode="json") if result.workspace else None,
    }


def jsonl_run(run: Any) -> dict[str, Any]:
    """The last `--jsonl` line: the run's totals."""
    return {
        "type": "run",
        "run_id": run.run_id,
        "mode": run.mode,
        "status": str(run.status),
        "tasks": len(run.results),
        "ok": sum(1 for r in run.results if r.status == "ok"),
        "usage": run.usage.model_dump(),
        "cost_usd": run.cost_usd,
        "figures": run.figures.model_dump(),
    }


def register(app: typer.Typer) -> None:
    import typer

    from aiswitch.cli import completion

    def run(
        task: str | None = typer.Argument(
            None, help="The task, or - to read it from stdin (not with --tasks)."
        ),
        agent: str | None = typer.Option(
            None,
            "--agent",
            "-a",
            help="One agent: NAME[@PRESET].",
            autocompletion=completion.agent_specs,
        ),
        parallel: str | None = typer.Option(
            None,
            "--parallel",
            "-p",
            help="Agents given the same task at once: A,B[@PRESET],…",
            autocompletion=completion.agent_specs,
        ),
        sequential: str | None = typer.Option(
            None,
            "--sequential",
            "-s",
            help="Agents run in turn, each given the previous output.",
            autocompletion=completion.agent_specs,
        ),
        tasks_file: str | None = typer.Option(
            None,
            "--tasks",
            help="A batch: one task per line (a prompt, or a JSON object); - for stdin.",
        ),
        concurrency: int | None = typer.Option(
            None, "--concurrency", "-c", help="Tasks in flight at once (all agents together)."
        ),
        retries: int = typer.Option(
            2, "--retries", help="Attempts after a child died, hung or failed to start."
        ),
        retry_failed: bool = typer.Option(
            False, "--retry-failed", help="Also retry tasks the agent itself reported failed."
        ),
        timeout: float | None = typer.Option(None, "--timeout", "-t", help="Seconds per task."),
        cwd: Path | None = typer.Option(None, "--cwd", help="Working directory for the agents."),
        handoff: str | None = typer.Option(
            None,
            "--handoff-template",
            help="Sequential prompt template: {task}, {previous_output}, {previous_agent}.",
        ),
        budget_usd: float | None = typer.Option(
            None, "--budget-usd", help="Stop the run when its cost reaches this many USD."
        ),
        budget_tokens: int | None = typer.Option(
            None, "--budget-tokens", help="Stop the run when it has spent this many tokens."
        ),
        permissions: str | None = typer.Option(
            None,
            "--permissions",
            help="What agents may do: read-only, edit or full (default: each adapter's, "
            "see docs/agents.md).",
        ),
        resume: str | None = typer.Option(
            None,
            "--resume",
            help="Continue this session of the agent (its session_id from an earlier run).",
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print one JSON document (docs/run-json.md)."
        ),
        as_jsonl: bool = typer.Option(
            False, "--jsonl", help="Print one JSON line per task as it ends, then one for the run."
        ),
        plan_file: str | None = typer.Option(
            None, "--plan", help="A plan file: a graph of tasks (docs/plans.md)."
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Print the graph in levels and start nothing."
        ),
        workspace: str | None = typer.Option(
            None,
            "--workspace",
            "-w",
            help="Where each agent works: worktree, copy or shared (default: worktree for "
            "several agents in a git repository, else shared; docs/workspaces.md).",
        ),
        with_changes: bool = typer.Option(
            False, "--with-changes", help="Carry your uncommitted changes into each worktree."
        ),
        check: str | None = typer.Option(
            None,
            "--check",
            help="A command run in each workspace after its agent, e.g. 'pytest -q'.",
        ),
        best_of: int | None = typer.Option(
            None, "--best-of", help="Run the task N times on each agent given, then rank them."
        ),
        backend: str | None = typer.Option(
            None,
            "--backend",
            help="What runs the tasks: local (child processes here) or ray (a Ray cluster, "
            "docs/ray.md); default: config/coordination.yaml's, else local.",
        ),
        address: str | None = typer.Option(
            None,
            "--address",
            help="The Ray cluster for --backend ray: auto, ray://HOST:PORT or HOST:PORT.",
        ),
        notify: bool = typer.Option(
            False,
            "--notify",
            help="Tell me when a task finishes, fails or waits for me: a bell, and "
            "notify.command (config/coordination.yaml, docs/operations.md).",
        ),
    ) -> None:
        """Run a task on agents (child processes) and show their results side by side."""
        code = execute(
            task=task,
            agent=agent,
            parallel=parallel,
            sequential=sequential,
            tasks_file=tasks_file,
            concurrency=concurrency,
            retries=retries,
            retry_failed=retry_failed,
            timeout=timeout,
            cwd=cwd,
            handoff=handoff,
            budget_usd=budget_usd,
            budget_tokens=budget_tokens,
            permissions=permissions,
            resume=resume,
            as_json=as_json,
            as_jsonl=as_jsonl,
            plan_file=plan_file,
            dry_run=dry_run,
            workspace=workspace,
            with_changes=with_changes,
            check=check,
            best_of=best_of,
            backend=backend,
            address=address,
            notify=notify,
        )
        raise typer.Exit(code)

    app.command("run")(run)
