"""The `mock` agent: a real child process that simulates an AI coding CLI.

It is the quickstart's agent, the tests' and the benchmarks'. Its behaviour comes from
its environment (so presets and agents.yaml can set it) and, per task, from
`task.assign` options with the same names in lower case without the prefix
(`{"latency": "0", "fail": true}`). docs/mock.md lists every variable.

    MOCK_LATENCY            seconds per task, fixed ("1.5") or a range ("0.2-2")   [1.0]
    MOCK_STEPS              progress notifications per task                        [3]
    MOCK_OUTPUT             the result text; "{prompt}" and "{agent_id}" are filled in
                            [deterministic text derived from the prompt]
    MOCK_MODEL              the model name reported with usage                     [mock-1]
    MOCK_INPUT_TOKENS       input tokens per task           [derived from the prompt]
    MOCK_OUTPUT_TOKENS      output tokens per task          [derived from the output]
    MOCK_CACHE_READ_TOKENS  cache-read tokens per task                             [0]
    MOCK_CACHE_WRITE_TOKENS cache-write tokens per task                            [0]
    MOCK_REASONING_TOKENS   of the output tokens, those spent reasoning            [0]
    MOCK_COST_USD           a cost to report as the CLI's own figure               [none]
    MOCK_USAGE_EVENTS       tokens.usage notifications the usage is split into     [1]
    MOCK_USAGE_EARLY        "1": report the usage before the task's steps (so a
                            hanging task has reported usage)                       [0]
    MOCK_USAGE_LIVE         "1": each step's progress carries the usage so far (its
                            share of the task's), provisional, as a CLI's stream
                            shows it before its log has the exact records         [0]
    MOCK_FAILURE_RATE       probability (0..1) that a task fails                   [0]
    MOCK_CRASH_RATE         probability (0..1) that the process exits mid-task     [0]
    MOCK_CRASH_EXIT_CODE    the exit code of such a crash                          [3]
    MOCK_HANG               "1": tasks never finish until cancelled                [0]
    MOCK_FREEZE_RATE        probability (0..1) that the process freezes mid-task: it
                            answers nothing more (tests heartbeats)                [0]
    MOCK_GARBAGE            lines of non-protocol garbage printed before a result  [0]
    MOCK_OVERSIZE_BYTES     pad the result to this many bytes (tests line limits)  [0]
    MOCK_MAX_CONCURRENT     tasks it runs at once                                  [4]
    MOCK_METRICS_REPORT     "1": send metrics.report as each task ends             [0]
    MOCK_SEED               seed for latency ranges and rates                      [0]
    MOCK_EXIT_AT_START      exit with this code before the handshake               [unset]
    MOCK_HANDSHAKE_DELAY    seconds before answering agent.initialize; "inf" never [0]
    MOCK_IGNORE_EOF         "1": keep running when stdin closes (tests the kill path) [0]
    MOCK_IGNORE_SIGTERM     "1": ignore SIGTERM (tests the SIGKILL escalation)     [0]
    MOCK_DUMP_ENV           "1": the result is the JSON of the environment a CLI
                            would get (tests preset isolation)                     [0]
    MOCK_LOG_ENV            "1": each task writes that environment to the agent log,
                            through the adapter's logger and from a child process
                            run as CLIs are run (CliRun) printing it on its stderr
                            (tests that secret values are redacted as written)     [0]
    MOCK_PROVIDES           capabilities advertised in agent.initialize ("review,test") [none]
    MOCK_PROVIDER_STATUS    with a failure: the HTTP status its "provider" refused it
                            with (429, 529…; the parent may fail the task over)    [none]
    MOCK_TASK_LOG           a file to append one JSON line to at each task's start
                            and end (tests prove exactly-once with it)             [unset]
    MOCK_WRITE              a JSON object {relative path: content} the task writes in
                            its working directory ("{agent_id}" filled in in both) [unset]
    MOCK_WAIT_FOR_USER      "1": the task first reports that it waits for the user
                            (task.progress of kind `waiting`, as a refused permission) [0]
    MOCK_ALLOCATE_MB        MiB the task allocates (and touches), then frees       [0]
    MOCK_BURN_CPU           CPU seconds the task burns, blocking its loop          [0]
    MOCK_OPEN_FILES         files the task holds open at once, then closes         [0]
    MOCK_SPAWN              child processes the task holds at once, then ends      [0]
                            (these four run an agent into its `limits:`)

Tasks are deterministic for a given seed, agent id, task id and prompt.

The task log (`MOCK_TASK_LOG`, from the environment only, not a task option): at a task's
start `{"event":"start","task_id","attempt","attempt_id","pid","agent_id"}`, at its end
`{"event":"end","task_id","attempt","attempt_id","pid","status"}` with `status` the task
result's (`ok`, `failed`, `timeout` or `cancelled`). `attempt` and `attempt_id` are
the task options the parent sends (null when absent). Each line is one `os.write` on an
`O_APPEND` descriptor, so the lines of several mock processes sharing the file never
interleave. A crash (`MOCK_CRASH_RATE`, `crash`) exits mid-task: a start line, no end line.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import random
import signal
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiswitch.adapter_sdk import (
    Adapter,
    TaskContext,
    TaskFailed,
    TaskOutcome,
    light_usage,
    serve,
)

if TYPE_CHECKING:
    # Pydantic models: never built on the mock's usual path (a task runs without
    # pydantic: `light_usage` stands in for `Usage`).
    from aiswitch.protocol.models import InitializeParams
    from aiswitch.tokens.usage import Usage

PREFIX = "MOCK_"
DEFAULT_LATENCY = "1.0"
DEFAULT_STEPS = 3
DEFAULT_MAX_CONCURRENT = 4
TASK_LOG = PREFIX + "TASK_LOG"
# How long a frozen mock blocks: longer than any test waits for its heartbeat.
FREEZE_S = 3600.0
# Owner-only, like every file aiswitch writes: the log names tasks and agents.
TASK_LOG_MODE = 0o600
# MOCK_LOG_ENV's child: a stand-in CLI that prints its whole environment on stderr.
_PRINT_ENV = (
    "import os, sys\nfor k, v in sorted(os.environ.items()): print(f'{k}={v}', file=sys.stderr)"
)

log = logging.getLogger("aiswitch.mock")


# An option's variable name (`latency` -> `MOCK_LATENCY`), made once per name.
ENV_NAMES: dict[str, str] = {}
# The rates a task draws against; unset (None or ""), each is 0 and no draw can succeed.
RATES = ("failure_rate", "crash_rate", "freeze_rate")


# The option names the last environment seen sets (its MOCK_* variables), with a copy of
# it: a task looks up ~30 options and most are set nowhere, so an unset one is answered
# from this set (a task's environment is a copy of the same one, task after task).
_env_names: tuple[dict[str, str], frozenset[str]] | None = None


def env_option_names(env: Mapping[str, str]) -> frozenset[str]:
    """The names of the options `env` sets (`MOCK_LATENCY` -> `latency`)."""
    global _env_names
    last = _env_names
    if last is not None and last[0] == env:
        return last[1]
    names = frozenset(key[len(PREFIX) :].lower() for key in env if key.startswith(PREFIX))
    _env_names = (dict(env), names)
    return names


class Options:
    """Task options over the process environment over the defaults."""

    def __init__(self, env: Mapping[str, str], task_options: Mapping[str, Any]) -> None:
        self.env = env
        self.task = task_options
        self.env_names = env_option_names(env)

    def raw(self, name: str) -> Any:
        if name in self.task:
            return self.task[name]
        if name not in self.env_names:
            return None
        variable = ENV_NAMES.get(name)
        if variable is None:
            variable = ENV_NAMES[name] = PREFIX + name.upper()
        return self.env.get(variable)

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.raw(name)
        return default if value is None else str(value)

    def number(self, name: str, default: float) -> float:
        value = self.raw(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise TaskFailed(f"mock option {name}={value!r} is not a number") from None

    def flag(self, name: str) -> bool:
        value = self.raw(name)
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in {"1", "true", "yes", "on"} if value else False

    def latency(self, rng: random.Random | None) -> float:
        """Seconds for this task; `rng` draws within a range (None only for a fixed one)."""
        spec = self.text("latency", DEFAULT_LATENCY) or "0"
        low, sep, high = spec.partition("-")
        try:
            if sep:
                assert rng is not None
                return rng.uniform(float(low), float(high))
            return float(low)
        except ValueError:
            raise TaskFailed(f"mock option latency={spec!r} is not SECONDS or MIN-MAX") from None


def session_id(ctx: TaskContext) -> str:
    """A resumed task continues the session it was given, as real CLIs do."""
    return ctx.params.session_id or f"mock-session-{ctx.task_id}"


def default_output(prompt: str, agent_id: str) -> str:
    words = prompt.split()
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    head = " ".join(words[:12]) + (" …" if len(words) > 12 else "")
    return f"[{agent_id or 'mock'}] {len(words)} words, digest {digest}: {head}"


def append_task_log(path: str, event: dict[str, Any]) -> None:
    """One whole line, one write: appends of other mock processes never land inside it."""
    line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, TASK_LOG_MODE)
    try:
        if os.write(fd, line) != len(line):
            raise OSError(f"mock: a short write to {path} (is the disk full?)")
    finally:
        os.close(fd)


async def log_env(env: Mapping[str, str]) -> None:
    """MOCK_LOG_ENV: the environment into the agent log, by both ways a real adapter writes."""
    from aiswitch.adapter_sdk.cli_process import CliRun

    log.info("environment: %s", " ".join(f"{k}={v}" for k, v in sorted(env.items())))
    async with CliRun([sys.executable, "-c", _PRINT_ENV], env=env, name="mock-cli") as run:
        async for _ in run.events():
            pass
        await run.wait()


def write_files(cwd: str, spec: Any, agent_id: str) -> None:
    """MOCK_WRITE: write each {relative path: content} under `cwd`, as an agent edits."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            raise TaskFailed("mock option write is not a JSON object") from None
    if not isinstance(spec, dict):
        raise TaskFailed("mock option write must map relative paths to contents")
    root = os.path.realpath(cwd)
    for name, content in spec.items():
        relative = str(name).replace("{agent_id}", agent_id)
        path = os.path.realpath(os.path.join(root, relative))
        if os.path.isabs(relative) or not path.startswith(root + os.sep):
            raise TaskFailed(f"mock option write: {relative!r} is outside the working directory")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(str(content).replace("{agent_id}", agent_id))


def use_resources(opts: Options) -> None:
    """MOCK_ALLOCATE_MB, MOCK_BURN_CPU, MOCK_OPEN_FILES, MOCK_SPAWN: use that much, at
    once, and give it back; a limit reached raises here (or kills the process)."""
    allocate_mb, burn_cpu = int(opts.number("allocate_mb", 0)), opts.number("burn_cpu", 0)
    open_files, spawn = int(opts.number("open_files", 0)), int(opts.number("spawn", 0))
    if allocate_mb > 0:
        held: list[Any] = [bytearray(1 << 20) for _ in range(allocate_mb)]
        del held
    if burn_cpu > 0:
        end = time.process_time() + burn_cpu
        while time.process_time() < end:
            pass
    fds: list[int] = []
    try:
        for _ in range(open_files):
            fds.append(os.open(os.devnull, os.O_RDONLY))
    finally:
        for fd in fds:
            os.close(fd)
    if spawn <= 0:
        return
    import subprocess

    children: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(spawn):
            children.append(subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL))
    finally:
        for child in children:
            child.kill()
            child.wait()


def timed_out(ctx: TaskContext) -> bool:
    """Whether a cancellation is the task's own deadline (its result says `timeout`)."""
    timeout = ctx.params.timeout_s
    return timeout is not None and time.monotonic() - ctx.started >= timeout


def estimate_tokens(text: str) -> int:
    # Roughly four characters a token, as the providers' rules of thumb say.
    return max(1, math.ceil(len(text) / 4))


class MockAdapter(Adapter):
    name = "mock"
    version = "1"

    def __init__(self, env: Mapping[str, str]) -> None:
        base = Options(env, {})
        self.max_concurrent_tasks = int(base.number("max_concurrent", DEFAULT_MAX_CONCURRENT))
        self.report_metrics = env.get(PREFIX + "METRICS_REPORT") == "1"
        self.seed = int(base.number("seed", 0))
        self.handshake_delay = base.number("handshake_delay", 0.0)
        self.provides = tuple(
            c.strip() for c in (base.text("provides") or "").split(",") if c.strip()
        )

    async def setup(self, params: InitializeParams) -> None:
        if math.isinf(self.handshake_delay):
            await asyncio.Event().wait()
        if self.handshake_delay > 0:
            await asyncio.sleep(self.handshake_delay)

    async def run_task(self, ctx: TaskContext) -> TaskOutcome:
        path = ctx.env.get(TASK_LOG)
        if not path:
            return await self._run_task(ctx)
        ids = {
            "task_id": ctx.task_id,
            "attempt": ctx.options.get("attempt"),
            "attempt_id": ctx.options.get("attempt_id"),
            "pid": os.getpid(),
        }
        append_task_log(path, {"event": "start", **ids, "agent_id": ctx.agent_id})
        status = "failed"
        try:
            outcome = await self._run_task(ctx)
            status = "ok"
            return outcome
        except asyncio.CancelledError:
            status = "timeout" if timed_out(ctx) else "cancelled"
            raise
        finally:
            # Before the result goes out: a parent holding the result finds the end line.
            append_task_log(path, {"event": "end", **ids, "status": status})

    async def _run_task(self, ctx: TaskContext) -> TaskOutcome:
        opts = Options(ctx.env, ctx.options)
        if opts.flag("log_env"):
            await log_env(ctx.env)
        if "-" in (opts.text("latency", DEFAULT_LATENCY) or "") or any(
            opts.raw(name) not in (None, "") for name in RATES
        ):
            rng = random.Random(f"{self.seed}:{ctx.agent_id}:{ctx.task_id}:{ctx.prompt}")
            latency = opts.latency(rng)
            fails = opts.flag("fail") or rng.random() < opts.number("failure_rate", 0.0)
            crashes = opts.flag("crash") or rng.random() < opts.number("crash_rate", 0.0)
            freezes = opts.flag("freeze") or rng.random() < opts.number("freeze_rate", 0.0)
        else:
            # A fixed latency and no rates: no draw could change anything, and seeding a
            # generator costs ~6 us a task. The outcome is the same.
            latency = opts.latency(None)
            fails, crashes, freezes = opts.flag("fail"), opts.flag("crash"), opts.flag("freeze")
        steps = max(0, int(opts.number("steps", DEFAULT_STEPS)))

        if opts.flag("wait_for_user"):
            await ctx.progress("permission needed: mock wants to run `make deploy`", "waiting")
        output = self._output(ctx, opts)
        usage = self._usage(ctx.prompt, output, opts)
        model = opts.text("model", "mock-1")

        cost = opts.text("cost_usd")
        cost_usd = float(cost) if cost else None
        events = int(opts.number("usage_events", 1))
        early = opts.flag("usage_early")
        if early:
            await self._report(ctx, usage, model, cost_usd, events)
        live = opts.flag("usage_live")
        for step in range(1, steps + 1):
            await asyncio.sleep(latency / (steps + 1))
            so_far = None
            if live:
                counts = usage.model_dump()
                so_far = light_usage(**{k: v * step // steps for k, v in counts.items()})
            await ctx.progress(f"step {step}/{steps}: working on {ctx.prompt[:40]!r}", usage=so_far)
            if crashes and step == max(1, steps // 2):
                sys.stderr.write("mock: crashing mid-task as asked\n")
                sys.stderr.flush()
                os._exit(int(opts.number("crash_exit_code", 3)))
        if crashes:
            os._exit(int(opts.number("crash_exit_code", 3)))
        if freezes:
            # A wedged process: its event loop blocks, so nothing is answered any more
            # (not even agent.status) until it is killed.
            sys.stderr.write("mock: freezing as asked\n")
            sys.stderr.flush()
            time.sleep(FREEZE_S)  # noqa: ASYNC251 (blocking the loop is the point)
        use_resources(opts)
        if opts.flag("hang"):
            await asyncio.Event().wait()
        writes = opts.raw("write")
        if writes not in (None, ""):
            write_files(ctx.params.cwd or os.getcwd(), writes, ctx.agent_id)
        await asyncio.sleep(latency / (steps + 1) if steps else latency)

        for _ in range(int(opts.number("garbage", 0))):
            await ctx.emit_raw(b"this is not JSON-RPC {garbage\n")

        if not early:
            await self._report(ctx, usage, model, cost_usd, events)
        if fails:
            status = int(opts.number("provider_status", 0)) or None
            message = f"mock: provider answered {status}" if status else "mock: simulated failure"
            raise TaskFailed(message, usage=usage, provider_status=status)
        return TaskOutcome(
            output=output,
            usage=usage,
            model=model,
            cost_usd=cost_usd,
            session_id=session_id(ctx),
        )

    def _output(self, ctx: TaskContext, opts: Options) -> str:
        if opts.flag("dump_env"):
            return json.dumps(ctx.env, sort_keys=True)
        template = opts.text("output")
        if template is None:
            output = default_output(ctx.prompt, ctx.agent_id)
        else:
            output = template.replace("{prompt}", ctx.prompt).replace("{agent_id}", ctx.agent_id)
        pad = int(opts.number("oversize_bytes", 0))
        if pad > len(output):
            output += "x" * (pad - len(output))
        return output

    def _usage(self, prompt: str, output: str, opts: Options) -> Usage:
        out_tokens = int(opts.number("output_tokens", estimate_tokens(output)))
        return light_usage(
            input_tokens=int(opts.number("input_tokens", estimate_tokens(prompt) + 20)),
            output_tokens=out_tokens,
            cache_read_tokens=int(opts.number("cache_read_tokens", 0)),
            cache_write_tokens=int(opts.number("cache_write_tokens", 0)),
            reasoning_tokens=min(out_tokens, int(opts.number("reasoning_tokens", 0))),
        )

    async def _report(
        self, ctx: TaskContext, usage: Usage, model: str | None, cost: float | None, events: int
    ) -> None:
        """Split `usage` over `events` notifications whose sum is exactly `usage`."""
        events = max(1, events)
        fields = usage.model_dump() if events > 1 else {}
        for index in range(events):
            part = {
                name: value // events + (1 if index < value % events else 0)
                for name, value in fields.items()
            }
            part_cost = cost / events if cost is not None else None
            await ctx.report_usage(
                light_usage(**part) if events > 1 else usage,  # one event: the usage itself
                model=model,
                provider="mock",
                cost_usd=part_cost,
                session_id=session_id(ctx),
                message_id=f"msg-{ctx.task_id}-{index}",
                request_id=f"req-{ctx.task_id}-{index}",
            )


def main() -> None:
    env = os.environ
    exit_at_start = env.get(PREFIX + "EXIT_AT_START")
    if exit_at_start:
        sys.stderr.write("mock: exiting at start as asked\n")
        sys.exit(int(exit_at_start))
    if env.get(PREFIX + "IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    adapter = MockAdapter(env)
    serve(adapter)
    if env.get(PREFIX + "IGNORE_EOF") == "1":
        # Simulates a child that does not notice its parent is gone.
        signal.pause()


if __name__ == "__main__":
    main()
