"""The `acp` adapter: any Agent Client Protocol agent as an aiswitch agent.

    ACP_COMMAND…   (agents.yaml `kind: acp` + `command`, sent as `config.acp_command`)

Per task the adapter starts the ACP agent as its own child (its own process group,
SIGKILL on the adapter's death) and is its ACP client, over the project's one JSON-RPC
peer (`aiswitch.rpc`, newline-delimited JSON on the child's stdin/stdout; stderr goes
to the agent log, redacted, its tail kept for error messages):

    initialize (protocolVersion 1, fs + terminal)  →  session/new {cwd}  (or, with
    params.session_id, session/resume when advertised, else session/load)  →
    session/prompt  →  the stop reason  →  stdin closed, group ended.

Contract (docs/acp.md has the tables):
- `session/update` becomes `task.progress` (`acp_updates.TurnTranslator`); a malformed
  one fails the task with what was wrong. The client side (files, terminals, permission
  answers from `--permissions`) is `acp_client.ClientSide`.
- Stop reasons: `end_turn` ok; `cancelled` cancelled; `max_tokens`, `max_turn_requests`,
  `refusal` (or anything else) failed with the reason.
- Usage: the prompt response's token counts (`acp_updates.turn_usage`) and token counts
  on `usage_update`; with `acp_cli: claude|gemini` the CLI's own log of the session
  (since the task started) is read after the turn and its per-request records are
  recorded instead when they agree with what the stream carried (or the stream carried
  none: claude-code-acp reports no tokens). `usage_update.cost` (USD) is the task's
  `cost_usd`.
- Bad agents: one that exits before answering, answers another protocol version, or
  fails a request fails the task with one line (the agent's exit code and last stderr
  line, or its error message). `task.cancel` and the task timeout send `session/cancel`,
  wait `CANCEL_GRACE_S` for the turn to end, then end the agent's whole group (and every
  terminal it opened): nothing outlives the task.
- The handshake (`agent.initialize`) only finds the agent's binary: no process starts
  before a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiswitch import __version__
from aiswitch.adapter_sdk import Adapter, TaskContext, TaskFailed, TaskOutcome, serve
from aiswitch.masking import remember_env_secrets
from aiswitch.rpc import codes
from aiswitch.rpc.errors import ConnectionClosedError, MethodError, RemoteError, RpcError

from ._common import (
    Permission,
    failure_text,
    permission_level,
    provider_name,
    str_option,
)
from ._drive import (
    Exit,
    Progress,
    exit_failure,
)
from ._usage import UsageReport, UsageTotals, accounts_for, sum_usage
from .acp_client import CAPABILITIES, ClientSide, default_workspace
from .acp_process import AgentProcess
from .acp_updates import MalformedUpdate, TurnTranslator, turn_usage

PROTOCOL_VERSION: Final = 1
# `initialize` and `session/new|load|resume`: a node agent starts in a few seconds on a
# loaded machine; past this it is hung.
SETUP_TIMEOUT_S: Final = 60.0
# After `session/cancel`, how long the agent may take to end its turn before it is killed.
CANCEL_GRACE_S: Final = 2.0
STOP_REASONS: Final = {
    "max_tokens": "the agent reached its maximum number of tokens",
    "max_turn_requests": "the agent reached its maximum number of model requests",
    "refusal": "the agent refused to continue",
}
# The CLIs behind ACP agents whose homes, settings and logs aiswitch knows.
KNOWN_CLIS: Final = ("claude", "gemini")
# The variable each of them takes its model from (the `model` option sets it).
MODEL_VARS: Final = {"claude": "ANTHROPIC_MODEL", "gemini": "GEMINI_MODEL"}
# Those that write their session log in the background: after the turn they get the whole
# stop sequence (EOF, SIGTERM, TERM_GRACE_S) to flush it, not DONE_GRACE_S (claude lost
# its last entries to the quick kill in about one run of three).
FLUSH_ON_EXIT: Final = frozenset({"claude"})

log = logging.getLogger("aiswitch.adapter.acp")


# -- the adapter ----------------------------------------------------------------------


@dataclass
class Turn:
    """What one task's exchange collected."""

    translator: TurnTranslator = field(default_factory=TurnTranslator)
    stream_usage: list[UsageReport] = field(default_factory=list)
    stop_reason: str | None = None
    session_id: str | None = None
    # The request awaiting its reply (session/prompt, while the turn runs).
    in_flight: asyncio.Future[Any] | None = None
    # What the client refused so far (`ClientSide.denied`): some agents end the turn
    # with an error on a refusal (claude-code-acp interrupts), and the error says why.
    denied: list[str] = field(default_factory=list)


def _acp_command(config: Mapping[str, Any]) -> list[str]:
    command = config.get("acp_command")
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(part, str) and part for part in command)
    ):
        raise MethodError(
            codes.CLI_UNAVAILABLE,
            "the acp adapter needs `command` (a list of strings) in its agents.yaml entry",
        )
    return list(command)


def _missing(program: str, config: Mapping[str, Any]) -> MethodError:
    install = config.get("acp_install")
    how = f"install it with `{install}`" if install else "install it"
    return MethodError(
        codes.CLI_UNAVAILABLE,
        f"the ACP agent's command {program!r} is not on PATH: {how} "
        "(or set cli_path for this agent in agents.yaml)",
    )


class AcpAdapter(Adapter):
    name = "acp"
    version = "1"
    # One ACP agent process per task: a few at once, as the CLI adapters run.
    max_concurrent_tasks = 4
    supports_resume = True

    def __init__(self) -> None:
        self.command: list[str] = []
        self.cli: str | None = None
        self.cli_path: str | None = None

    async def setup(self, params: Any) -> None:
        config: Mapping[str, Any] = params.config
        command = _acp_command(config)
        configured = config.get("cli_path")
        program = str(configured) if configured else shutil.which(command[0])
        if program is None or not os.access(program, os.X_OK):
            raise _missing(command[0], config)
        self.command = [program, *command[1:]]
        cli = config.get("acp_cli")
        if cli is not None and cli not in KNOWN_CLIS:
            raise MethodError(
                codes.CLI_UNAVAILABLE,
                f"acp_cli {cli!r} is not one of {', '.join(KNOWN_CLIS)}; leave it out otherwise",
            )
        self.cli = cli
        if cli == "claude":
            # claude-code-acp runs the claude CLI it is told of (else its bundled copy).
            self.cli_path = shutil.which("claude")
            if self.cli_path is None:
                raise MethodError(
                    codes.CLI_UNAVAILABLE,
                    "claude-code-acp drives the claude CLI, which is not on PATH: install it "
                    "with `npm install -g @anthropic-ai/claude-code`",
                )

    def cli_info(self) -> str | None:
        return " ".join(self.command) if self.command else None

    def build_env(self, ctx: TaskContext, level: Permission) -> dict[str, str]:
        """The agent's environment: the native adapter's for a known CLI behind it, with
        the task's `model` option as that CLI's model variable (ACP has no stable way to
        pick a model; other agents take theirs from their own configuration)."""
        model = str_option(ctx, "model")
        if self.cli == "gemini":
            from .gemini import build_env as gemini_env

            env = gemini_env(ctx)
        elif self.cli == "claude":
            from .claude import build_env as claude_env

            env = claude_env(ctx, level)
            if self.cli_path is not None:
                env.setdefault("CLAUDE_CODE_EXECUTABLE", self.cli_path)
        else:
            return dict(ctx.env)
        if model:
            env[MODEL_VARS[self.cli]] = model
        return env

    async def run_task(self, ctx: TaskContext) -> TaskOutcome:
        level = permission_level(ctx)
        env = self.build_env(ctx, level)
        remember_env_secrets(env)
        workspace = default_workspace(ctx.params.cwd).resolve()
        started = time.time()
        client = ClientSide(workspace=workspace, level=level, env=env, report=ctx.progress)
        agent = await AgentProcess.start(self.command, env, str(workspace), self.name_of(ctx))
        turn = Turn(denied=client.denied)
        try:
            await self._exchange(ctx, agent, client, turn, workspace)
        except TaskFailed as exc:
            raise TaskFailed(failure_text(exc.message, env), output=exc.output) from None
        finally:
            done = turn.stop_reason is not None and self.cli not in FLUSH_ON_EXIT
            await asyncio.shield(self._end(agent, client, done=done))
        output, _ = turn.translator.finish()
        totals = await self._record_usage(ctx, env, turn, started)
        return self._outcome(turn, output, totals, env)

    def name_of(self, ctx: TaskContext) -> str:
        return Path(self.command[0]).name if self.command else "acp"

    async def _end(self, agent: AgentProcess, client: ClientSide, *, done: bool) -> None:
        await client.close()
        await agent.end(done=done)

    # -- the exchange ---------------------------------------------------------------

    async def _exchange(
        self,
        ctx: TaskContext,
        agent: AgentProcess,
        client: ClientSide,
        turn: Turn,
        workspace: Path,
    ) -> None:
        peer = agent.peer
        loop = asyncio.get_running_loop()
        broken: asyncio.Future[str] = loop.create_future()
        translator = turn.translator

        async def relay(reports: list[Progress]) -> None:
            for report in reports:
                await ctx.progress(report.text, report.kind)

        def on_update(params: Any) -> Any:
            try:
                reports = translator.update(params)
            except MalformedUpdate as exc:
                if not broken.done():
                    broken.set_result(str(exc))
                return None
            # Awaited before the next line is read: progress keeps the agent's order.
            return relay(reports) if reports else None

        client.register(peer)
        peer.on_notification("session/update", on_update)
        peer.start()
        name = agent.name
        init = await self._call(agent, broken, "initialize", _initialize_params(), SETUP_TIMEOUT_S)
        version = init.get("protocolVersion") if isinstance(init, dict) else None
        if version != PROTOCOL_VERSION:
            raise TaskFailed(
                f"{name} speaks ACP protocol version {version!r}; aiswitch speaks "
                f"{PROTOCOL_VERSION}: use a version of the agent that supports it"
            )
        capabilities = init.get("agentCapabilities")
        capabilities = capabilities if isinstance(capabilities, dict) else {}
        turn.session_id = await self._open_session(ctx, agent, broken, capabilities, str(workspace))
        translator.session_id = turn.session_id
        translator.prompt_sent = True
        prompt = {
            "sessionId": turn.session_id,
            "prompt": [{"type": "text", "text": ctx.prompt}],
        }
        try:
            response = await self._call(agent, broken, "session/prompt", prompt, None, turn)
        except asyncio.CancelledError:
            await self._cancel_turn(agent, turn)
            raise
        if not isinstance(response, dict) or not isinstance(response.get("stopReason"), str):
            raise TaskFailed(f"{name} answered session/prompt without a stop reason")
        await relay(translator.finish()[1])
        turn.stop_reason = response["stopReason"]
        turn.stream_usage = turn_usage(response) + translator.update_usage
        if turn.stop_reason == "cancelled":
            # The agent ended the turn itself (it was told to elsewhere): a cancel.
            raise asyncio.CancelledError
        if turn.stop_reason != "end_turn":
            reason = STOP_REASONS.get(turn.stop_reason, "the turn ended early")
            raise TaskFailed(f"{name} stopped: {turn.stop_reason} ({reason})")

    async def _open_session(
        self,
        ctx: TaskContext,
        agent: AgentProcess,
        broken: asyncio.Future[str],
        capabilities: dict[str, Any],
        cwd: str,
    ) -> str:
        resume = ctx.params.session_id
        base = {"cwd": cwd, "mcpServers": []}
        if not resume:
            reply = await self._call(agent, broken, "session/new", base, SETUP_TIMEOUT_S)
            session = reply.get("sessionId") if isinstance(reply, dict) else None
            if not isinstance(session, str) or not session:
                raise TaskFailed(f"{agent.name} answered session/new without a session id")
            return session
        sessions = capabilities.get("sessionCapabilities")
        if isinstance(sessions, dict) and sessions.get("resume") is not None:
            method = "session/resume"
        elif capabilities.get("loadSession") is True:
            method = "session/load"
        else:
            raise TaskFailed(
                f"{agent.name} cannot resume sessions (it advertises neither session/resume "
                "nor session/load): run the task without a session id"
            )
        await self._call(agent, broken, method, {**base, "sessionId": resume}, SETUP_TIMEOUT_S)
        return resume

    async def _call(
        self,
        agent: AgentProcess,
        broken: asyncio.Future[str],
        method: str,
        params: dict[str, Any],
        timeout: float | None,
        turn: Turn | None = None,
    ) -> Any:
        """One request to the agent, raced against a malformed update; failures as one line."""
        future = agent.peer.send_request(method, params, timeout=timeout)
        if turn is not None:
            turn.in_flight = future
        try:
            await asyncio.wait({future, broken}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The caller cancels the turn; the reply, if any, is not awaited here.
            future.add_done_callback(_consume)
            raise
        if not future.done():
            future.cancel()
            raise TaskFailed(f"{agent.name} sent a malformed session/update: {broken.result()}")
        try:
            return future.result()
        except RemoteError as exc:
            after = ""
            if turn is not None and turn.denied:
                after = f" after aiswitch refused {turn.denied[-1]}"
            raise TaskFailed(f"{agent.name}: {method} failed{after}: {exc.message}") from None
        except ConnectionClosedError:
            code = await agent.exit_code()
            end = Exit(code=code if code is not None else 0, stderr_line=agent.stderr.last_line())
            if code is None:
                detail = f"{agent.name} closed its output"
            else:
                detail = exit_failure(agent.name, end)
            raise TaskFailed(f"{detail} (during {method})") from None
        except RpcError as exc:
            raise TaskFailed(f"{agent.name}: {method}: {exc}") from None

    async def _cancel_turn(self, agent: AgentProcess, turn: Turn) -> None:
        """Tell the agent to stop (session/cancel), give it CANCEL_GRACE_S to end its turn."""
        if turn.session_id is None or agent.peer.closed.is_set():
            return
        with contextlib.suppress(RpcError):
            await agent.peer.notify("session/cancel", {"sessionId": turn.session_id})
        if turn.in_flight is not None and not turn.in_flight.done():
            with contextlib.suppress(TimeoutError, RpcError):
                await asyncio.wait_for(asyncio.shield(turn.in_flight), CANCEL_GRACE_S)

    # -- usage and outcome ------------------------------------------------------------

    async def _record_usage(
        self, ctx: TaskContext, env: dict[str, str], turn: Turn, started: float
    ) -> UsageTotals:
        requests = turn.stream_usage
        if self.cli is not None and turn.session_id is not None:
            try:
                logged = await asyncio.to_thread(
                    logged_requests, self.cli, env, turn.session_id, started
                )
            except (OSError, ValueError) as exc:  # the log is a refinement, never a failure
                log.warning("usage kept as the agent reported it: %s", exc)
                logged = []
            if logged and (not requests or agrees(logged, requests)):
                requests = logged
            elif logged:
                log.warning("%s's log disagrees with the agent's usage; kept the agent's", self.cli)
        provider = provider_for(self.cli, env)
        totals = UsageTotals()
        for report in requests:
            totals.add(report)
            await ctx.report_usage(
                report.usage,
                model=report.model,
                provider=provider,
                cost_usd=report.cost_usd,
                session_id=turn.session_id,
                message_id=report.message_id,
                request_id=report.request_id,
            )
        return totals

    def _outcome(
        self, turn: Turn, output: str, totals: UsageTotals, env: Mapping[str, str]
    ) -> TaskOutcome:
        cost = turn.translator.cost_usd()
        model = totals.model
        if model is None and self.cli == "gemini":
            model = env.get("GEMINI_MODEL")
        return TaskOutcome(
            output=output,
            usage=totals.usage,
            model=model,
            session_id=turn.session_id,
            cost_usd=cost if cost is not None else totals.cost_usd,
        )


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _initialize_params() -> dict[str, Any]:
    return {
        "protocolVersion": PROTOCOL_VERSION,
        "clientCapabilities": CAPABILITIES,
        "clientInfo": {"name": "aiswitch", "version": __version__},
    }


def logged_requests(
    cli: str, env: Mapping[str, str], session: str, started: float
) -> list[UsageReport]:
    """The requests of `session` since `started` as the CLI behind the agent logged them."""
    if cli == "gemini":
        from .gemini import logged_requests as gemini_requests

        return gemini_requests(env, session, started)
    from aiswitch.tokens.rows import R_TS

    from ._usage import reports_from_rows
    from .claude import session_rows

    return reports_from_rows(row for row in session_rows(env, session) if row[R_TS] >= started)


def agrees(logged: Sequence[UsageReport], stream: Sequence[UsageReport]) -> bool:
    """Whether the log's requests are the stream's usage: equal, or (Gemini CLI's
    `_meta.quota`) equal in what the stream counts: input with cached tokens, output
    without thoughts."""
    if accounts_for(logged, stream):
        return True
    log_sum, stream_sum = sum_usage(logged), sum_usage(stream)
    prompt = log_sum.input_tokens + log_sum.cache_read_tokens + log_sum.cache_write_tokens
    return (
        stream_sum.cache_read_tokens == 0
        and stream_sum.reasoning_tokens == 0
        and prompt == stream_sum.input_tokens
        and log_sum.output_tokens - log_sum.reasoning_tokens == stream_sum.output_tokens
    )


def provider_for(cli: str | None, env: Mapping[str, str]) -> str:
    if cli == "claude":
        return provider_name(env.get("ANTHROPIC_BASE_URL"), "anthropic")
    if cli == "gemini":
        return provider_name(env.get("GOOGLE_GEMINI_BASE_URL"), "google")
    return "acp"


def main() -> None:
    serve(AcpAdapter())


if __name__ == "__main__":
    main()
