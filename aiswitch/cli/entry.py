"""The `aiswitch` console script.

`aiswitch --version` is answered here, before typer, rich or pydantic are imported,
so that it costs little more than starting Python. So is a JSON token report whose output
is already recorded for unchanged inputs (`aiswitch.tokens.fastpath`: a byte-for-byte replay
of what the typer path printed; anything it does not answer exactly goes to typer, which
records it for next time). So is `aiswitch tokens statusline` (`aiswitch.tokens.statusline`:
its recorded summary, while the Claude logs are unchanged). So is the parse of a common
`aiswitch run` command line (`parse_run`: the options as plain `--name value`,
`--name=value` or a flag, and one task), which then runs without typer ever being imported;
a test holds it to typer's parse over a table of command lines, and anything else (help,
errors, unusual forms) goes to typer.
Everything else goes to the typer app; user errors (`AiswitchError`) become one line on
stderr and their exit code, with no traceback.
"""

from __future__ import annotations

import sys

# Not `typing` at run time: it imports `re` (~5 ms), which this fast path otherwise never
# loads; mypy reads the names as if typing.TYPE_CHECKING were used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from aiswitch.errors import AiswitchError


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] and args[0] in ("-q", "--quiet", "-v", "--verbose", "-vv"):
        from aiswitch.cli.verbosity import take

        args = take(args)
    if args in (["--version"], ["-V"]):
        from aiswitch import __version__

        sys.stdout.write(f"aiswitch {__version__}\n")
        return
    if args == ["tokens", "statusline"]:  # on every refresh of Claude Code's status bar
        sys.exit(run_statusline())
    if args[:1] == ["tokens"]:
        from aiswitch.tokens import fastpath

        if fastpath.try_fast_report(args):
            return
        fastpath.current_args = list(args)
        try:
            code = _run(args)
        finally:
            fastpath.current_args = None
        sys.exit(code)
    if args[:1] == ["run"]:
        parsed = parse_run(args[1:])
        if parsed is not None:
            sys.exit(_run_fast(parsed))
    if args[:1] == ["run"] or args[:2] in (["runs", "resume"], ["runs", "rerun"]):
        # A process made for one run, its options left to typer: as `_run_fast` does.
        from aiswitch.coordinator.quiet_gc import hold_until_run

        hold_until_run()
    sys.exit(_run(args))


def run_statusline() -> int:
    """`aiswitch tokens statusline`: Claude Code's JSON on stdin, one line on stdout."""
    import gc

    # A short process that makes thousands of small objects (a fingerprint per log file)
    # and frees them at exit: the cyclic collector would walk them again and again.
    gc.disable()
    from aiswitch.errors import AiswitchError
    from aiswitch.home import Home
    from aiswitch.tokens.statusline import statusline

    try:
        line = statusline(sys.stdin.read(), Home.current())
    except AiswitchError as exc:
        sys.stderr.write(error_line(exc) + "\n")
        return exc.exit_code
    sys.stdout.write(line + "\n")
    return 0


def _run(args: list[str]) -> int:
    from aiswitch.cli.app import run_app

    return run_app(args)


# `aiswitch run`'s options as `aiswitch.cli.run_cmd.register` declares them for typer:
# option name -> (parameter, type). The test of this fast path compares both parses.
RUN_VALUE_OPTIONS: dict[str, tuple[str, str]] = {
    "--agent": ("agent", "str"),
    "-a": ("agent", "str"),
    "--parallel": ("parallel", "str"),
    "-p": ("parallel", "str"),
    "--sequential": ("sequential", "str"),
    "-s": ("sequential", "str"),
    "--tasks": ("tasks_file", "str"),
    "--concurrency": ("concurrency", "int"),
    "-c": ("concurrency", "int"),
    "--retries": ("retries", "int"),
    "--timeout": ("timeout", "float"),
    "-t": ("timeout", "float"),
    "--cwd": ("cwd", "path"),
    "--handoff-template": ("handoff", "str"),
    "--budget-usd": ("budget_usd", "float"),
    "--budget-tokens": ("budget_tokens", "int"),
    "--permissions": ("permissions", "str"),
    "--resume": ("resume", "str"),
    "--plan": ("plan_file", "str"),
    "--workspace": ("workspace", "str"),
    "-w": ("workspace", "str"),
    "--check": ("check", "str"),
    "--best-of": ("best_of", "int"),
    "--backend": ("backend", "str"),
    "--address": ("address", "str"),
}
RUN_FLAGS = {
    "--retry-failed": "retry_failed",
    "--json": "as_json",
    "--jsonl": "as_jsonl",
    "--dry-run": "dry_run",
    "--with-changes": "with_changes",
    "--notify": "notify",
}
# The only number forms the fast path converts itself; any other goes to typer.
_INT = frozenset("0123456789")


def parse_run(args: list[str]) -> dict[str, Any] | None:
    """The keyword arguments of `run_cmd.execute` for `aiswitch run ARGS`, or None when
    the command line is not one this parse handles exactly as typer does (typer then
    parses it, and explains any error)."""
    parsed: dict[str, Any] = {}
    rest = iter(args)
    for arg in rest:
        if arg in RUN_FLAGS:
            name = RUN_FLAGS[arg]
            if name in parsed:
                return None
            parsed[name] = True
            continue
        if not arg.startswith("-") or arg == "-":
            if "task" in parsed or not arg:
                return None
            parsed["task"] = arg
            continue
        option, equals, value = arg.partition("=")
        if equals and not option.startswith("--"):
            return None
        spec = RUN_VALUE_OPTIONS.get(option)
        if spec is None:
            return None
        if not equals:
            value = next(rest, "")
        name, kind = spec
        if name in parsed or not value or value.startswith("-"):
            return None
        converted = _convert(value, kind)
        if converted is None:
            return None
        parsed[name] = converted
    return parsed


def _convert(value: str, kind: str) -> Any:
    if kind == "str":
        return value
    if kind == "path":
        from pathlib import Path

        return Path(value)
    # Plain decimals only (no sign, exponent, underscore or leading zero).
    whole, dot, fraction = value.partition(".") if kind == "float" else (value, "", "")
    digits = whole + fraction
    if not whole or not _INT.issuperset(digits) or (dot and not fraction):
        return None
    if (len(whole) > 1 and whole[0] == "0") or len(digits) > 15:
        return None
    return float(value) if kind == "float" else int(value)


# At most this many warm interpreters for one command line (aiswitch.rpc.warm).
MAX_WARM = 8


def warm_count(parsed: dict[str, Any]) -> int:
    """How many agent processes a run surely starts first: one per distinct agent named
    (the tasks of one agent and preset share its pool, which starts one process first);
    none for a dry run, a plan (its first tasks are not known yet) or another backend."""
    if parsed.get("dry_run") or parsed.get("plan_file") or parsed.get("backend"):
        return 0
    named = parsed.get("parallel") or parsed.get("agent") or parsed.get("sequential")
    if not named:
        return 0
    if parsed.get("sequential"):
        return 1  # a step starts when the one before it has ended
    return min(len({spec.strip() for spec in str(named).split(",")}), MAX_WARM)


def _run_fast(parsed: dict[str, Any]) -> int:
    """`run_cmd.execute(**parsed)`, its errors handled as `run_app` and typer do."""
    from aiswitch.rpc import warm

    # The agents' interpreters load while this process loads its own modules.
    warm.start(warm_count(parsed))
    try:
        return _execute(parsed)
    finally:
        warm.close_unused()


def _execute(parsed: dict[str, Any]) -> int:
    import gc

    from aiswitch.coordinator.quiet_gc import hold_until_run
    from aiswitch.errors import AiswitchError

    # No collection while the run's modules load and its plan is made (all of it lives
    # until the exit); the run turns the collector on as it starts scheduling.
    hold_until_run()

    try:
        from aiswitch.cli.run_cmd import execute

        code = execute(**parsed)
        # Everything left is garbage at exit: the collection the interpreter makes as it
        # finalizes need not walk the ~50,000 objects of the modules (~35 ms here).
        gc.freeze()
        return code
    except AiswitchError as exc:
        sys.stderr.write(error_line(exc) + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except EOFError:
        sys.stderr.write("\nAborted!\n")
        return 1
    except OSError as exc:
        import errno

        if exc.errno != errno.EPIPE:
            raise
        # As click does for a reader that went away (`| head`): a quiet exit 1, and the
        # interpreter's last flush of the closed pipe is not reported either.
        sys.stdout = _QuietPipe(sys.stdout)
        sys.stderr = _QuietPipe(sys.stderr)
        return 1


class _QuietPipe:
    """A standard stream whose flush ignores a broken pipe (click's PacifyFlushWrapper)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def flush(self) -> None:
        import errno

        try:
            self.stream.flush()
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def error_line(exc: AiswitchError) -> str:
    """The one line a user error prints (one per problem for an error that lists several,
    a plan's): safe for a terminal, secret values masked (an error may quote an agent's
    log or a file)."""
    from aiswitch.cli.terminal import shown

    return "\n".join(f"aiswitch: error: {shown(line)}" for line in exc.lines())


if __name__ == "__main__":
    main()
