"""One client's MCP session on the project's JSON-RPC peer (aiswitch.rpc), over stdio.

Contract:
- Methods: `initialize` (the revision negotiated as `wire.negotiate` says; the client's
  `clientInfo` is remembered as `name/version` and recorded as every run's `caller` and on
  its ledger records), `ping`, `tools/list`, `tools/call`; notifications `initialized`
  and `cancelled`. Revision 2026-07-28 (no handshake): `server/discover`, and
  `tools/list`/`tools/call` whose `_meta` names the revision (`wire.envelope_version`;
  an unserved one is -32022) are answered in that revision's shape (`wire.shape`), its
  `clientInfo` is the caller; `ping` does not exist there (-32601). Params are read
  with the `mcp_types` models; params that do not fit are -32602, an unknown method
  -32601, malformed JSON-RPC -32700/-32600 (the peer's), an unknown tool -32602; the
  server keeps serving after each.
- A tool's own failure (bad arguments, an unknown agent or run, a limit) is a result with
  `isError: true` and one sentence (an `AiswitchError`'s line, never a traceback or a
  secret); a bug is `isError: true` with "internal error", details in the log only.
- `run`: when the call carries `_meta.progressToken`, each run event goes to the client
  as `notifications/progress` (a count that grows by one per event, a short message, and
  the event itself in `_meta["aiswitch/event"]`). `notifications/cancelled` naming the
  call cancels its task, which cancels the run (its children stopped) and sends no answer.
- A run that names no `workspace` works in a worktree of its own in a git repository with
  a commit, one agent as well as several (`default_workspace`); elsewhere the CLI's rule.
- `run_start` runs the same request in a task of the session; `run_status`,
  `run_result` and `run_cancel` read it (a run of another process: its recorded file).
- The end of stdin (the client closed it, or died) cancels every call and run of the
  session and waits for them: their children are stopped before the process exits.
- Each run gets a control socket, as a run of `aiswitch run` does, so `aiswitch runs
  watch|cancel` reach it from a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiswitch.cli.mcp_server import tools as tool_defs
from aiswitch.cli.mcp_server.limits import Limits, McpToolError
from aiswitch.cli.mcp_server.wire import (
    INSTRUCTIONS,
    SERVER_NAME,
    caller_of,
    discover,
    dump,
    envelope_version,
    negotiate,
    ping,
    shape,
)
from aiswitch.errors import AiswitchError
from aiswitch.rpc import codes
from aiswitch.rpc.errors import MethodError
from aiswitch.rpc.serving import CURRENT_REQUEST_ID

if TYPE_CHECKING:
    from aiswitch.coordinator.request import RunEvent
    from aiswitch.coordinator.results import RunResult
    from aiswitch.rpc.peer import Peer

log = logging.getLogger("aiswitch.mcp")
# A progress message is one line for a person watching: cut to this many characters.
PROGRESS_TEXT_CHARS = 200


# A cancel waits this long for the run to have begun (its first event) before it cancels
# the run's task anyway: a run cancelled before it began would stay `running` on file.
BEGIN_WAIT_S = 10.0


@dataclass
class SessionRun:
    run: Any  # aiswitch.coordinator.run.Run
    began: asyncio.Event
    task: asyncio.Task[RunResult] | None = None
    # Its cost is counted in the session's spent money (it has ended).
    charged: bool = False

    async def cancel(self) -> None:
        """Cancel the run's task once the run has begun, and wait for it to end."""
        task = self.task
        if task is None or task.done():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.began.wait(), BEGIN_WAIT_S)
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


class Session:
    def __init__(self, peer: Peer, limits: Limits, *, allow_apply: bool = False) -> None:
        self.peer = peer
        self.limits = limits
        self.allow_apply = allow_apply
        self.version: str | None = None
        self.caller: str | None = None
        self.runs: dict[str, SessionRun] = {}
        self.calls: dict[Any, asyncio.Task[Any]] = {}
        self._coordinator: Any = None
        self._tools: list[dict[str, Any]] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        peer.on_request_inline("initialize", self.initialize)
        peer.on_request_inline("server/discover", discover)
        peer.on_request_inline("ping", ping)
        peer.on_request_inline("tools/list", self.list_tools)
        peer.on_request("tools/call", self.call_tool)
        peer.on_notification("notifications/initialized", lambda _params: None)
        peer.on_notification("notifications/cancelled", self.cancelled)

    # -- protocol -------------------------------------------------------------------

    def initialize(self, params: Any) -> dict[str, Any]:
        import mcp_types

        from aiswitch import __version__

        asked = mcp_types.InitializeRequestParams.model_validate(params or {})
        self.version = negotiate(asked.protocol_version)
        info = asked.client_info
        self.caller = f"{info.name}/{info.version}"
        return dump(
            mcp_types.InitializeResult(
                protocol_version=self.version,
                capabilities=mcp_types.ServerCapabilities(
                    tools=mcp_types.ToolsCapability(list_changed=False)
                ),
                server_info=mcp_types.Implementation(name=SERVER_NAME, version=__version__),
                instructions=INSTRUCTIONS,
            )
        )

    def list_tools(self, params: Any) -> dict[str, Any]:
        version = envelope_version(params)
        if self._tools is None:
            self._tools = tool_defs.listing(self.allow_apply)
        if version is None:
            return {"tools": self._tools}
        import mcp_types

        listed = mcp_types.ListToolsResult.model_validate({"tools": self._tools})
        return shape("tools/list", version, listed)

    def cancelled(self, params: Any) -> None:
        import mcp_types

        try:
            note = mcp_types.CancelledNotificationParams.model_validate(params or {})
        except ValueError:
            log.warning("ignored a malformed notifications/cancelled")
            return
        task = self.calls.get(note.request_id)
        if task is not None:
            task.cancel()

    async def call_tool(self, params: Any) -> dict[str, Any]:
        import mcp_types

        version = envelope_version(params)
        call = mcp_types.CallToolRequestParams.model_validate(params or {})
        if version is not None:
            self.caller = caller_of(params) or self.caller
        tool = tool_defs.BY_NAME.get(call.name)
        if tool is None or (tool.name == "apply" and not self.allow_apply):
            raise MethodError(codes.INVALID_PARAMS, f"Unknown tool: {call.name}")
        request_id = CURRENT_REQUEST_ID.get()
        current = asyncio.current_task()
        if request_id is not None and current is not None:
            self.calls[request_id] = current
        meta = params.get("_meta") if isinstance(params, dict) else None
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        try:
            args = tool_defs.parse_args(tool, call.arguments)
            structured, text = await getattr(self, tool.method)(args, token)
            result = mcp_types.CallToolResult(
                content=[mcp_types.TextContent(text=text)], structured_content=structured
            )
        except AiswitchError as exc:
            result = _tool_error(exc.one_line())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("tool %s failed", call.name)
            result = _tool_error(f"internal error in {call.name}; the server's log has details")
        finally:
            self.calls.pop(request_id, None)
        return shape("tools/call", version, result)

    # -- the end ----------------------------------------------------------------------

    async def close(self) -> None:
        """Cancel every call and run of the session and wait until their children are
        stopped (the runs' own cancel path)."""
        await asyncio.gather(*(run.cancel() for run in list(self.runs.values())))
        calls = list(self.calls.values())
        for task in calls:
            task.cancel()
        for task in calls:
            with contextlib.suppress(BaseException):
                await task
        await self.peer.close("stdin closed")

    # -- runs ---------------------------------------------------------------------------

    @property
    def coordinator(self) -> Any:
        if self._coordinator is None:
            import os

            from aiswitch import logs
            from aiswitch.coordinator.coordinator import Coordinator
            from aiswitch.home import Home
            from aiswitch.tokens.quota_check import check_for

            home = Home.current().ensure()
            logs.configure(home)
            env = {**os.environ, **self.limits.child_env()}
            self._coordinator = Coordinator(home, parent_env=env, check_quota=check_for(home))
        return self._coordinator

    def _request(self, args: tool_defs.RunArgs) -> Any:
        from aiswitch.coordinator.request import RunRequest
        from aiswitch.coordinator.specs import parse_specs

        if not args.task.strip():
            raise McpToolError("the task is empty: say what the agents should do")
        self.limits.check_depth()
        if args.budget_usd is not None and args.budget_usd <= 0:
            raise McpToolError("budget_usd must be a positive amount of dollars")
        if args.timeout is not None and args.timeout <= 0:
            raise McpToolError("timeout must be a positive number of seconds")
        specs = parse_specs(",".join(args.agents))
        self.limits.check_agents(specs)
        permissions = self.limits.permissions(args.permissions)
        mode = "single" if len(specs) == 1 else args.mode
        return RunRequest(
            mode=mode,
            specs=specs,
            prompt=args.task,
            timeout_s=args.timeout,
            cwd=args.cwd,
            budget_usd=self.limits.budget(args.budget_usd, self._live_usd()),
            permissions=permissions,  # type: ignore[arg-type]
            workspace=args.workspace or "auto",
            check=args.check,
            caller=self.caller,
        )

    async def _new_run(self, args: tool_defs.RunArgs, token: Any) -> SessionRun:
        request = self._request(args)
        if args.workspace is None:
            request.workspace = await asyncio.to_thread(default_workspace, request.cwd)
        coordinator = self.coordinator
        plan = await asyncio.to_thread(coordinator.plan, request)
        began = asyncio.Event()
        progress = None if token is None else self._progress(token)

        def on_event(event: RunEvent) -> None:
            began.set()
            if event.kind == "usage":
                self._check_budget()
            if progress is not None:
                progress(event)

        entry = SessionRun(coordinator.new_run(request, plan, on_event=on_event), began)
        entry.task = asyncio.ensure_future(self._execute(entry))
        # Its failure is read from the run's result (run_result); not an unread error.
        entry.task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self.runs[entry.run.run_id] = entry
        return entry

    async def _execute(self, entry: SessionRun) -> RunResult:
        from aiswitch.cli.control import ControlServer

        run = entry.run
        task = asyncio.current_task()
        assert task is not None
        control = await ControlServer.start(self.coordinator, run, task.cancel)
        try:
            return await run.execute()  # type: ignore[no-any-return]
        finally:
            self.limits.spend(run.result.cost_usd)
            entry.charged = True
            if control is not None:
                await control.close(str(run.result.status))

    def _live_usd(self) -> float:
        """What this session's running runs have spent so far (not yet in `spent_usd`)."""
        return float(sum(e.run.spent_cost for e in self.runs.values() if not e.charged))

    def _check_budget(self) -> None:
        """Stop every running run once the session's runs together reached its budget."""
        limits = self.limits
        if limits.budget_usd is None or not limits.over(self._live_usd()):
            return  # without a session budget, no sum to make at each usage event
        reason = f"this session's budget of ${limits.budget_usd:g} was reached"
        for entry in self.runs.values():
            if not entry.charged:
                entry.run.stop_for_budget(reason)

    def _progress(self, token: Any) -> Any:
        count = 0

        def on_event(event: RunEvent) -> None:
            nonlocal count
            count += 1
            result = event.result
            text = (event.text or "").strip().replace("\n", " ")
            message = f"{result.agent_id} {result.status}" + (f": {text}" if text else "")
            params = {
                "progressToken": token,
                "progress": count,
                "message": message[:PROGRESS_TEXT_CHARS],
                "_meta": {
                    "aiswitch/event": {
                        "kind": event.kind,
                        "agent_id": result.agent_id,
                        "task_id": result.task_id,
                        "status": str(result.status),
                        "text": event.text,
                    }
                },
            }
            self._spawn(self._notify("notifications/progress", params))

        return on_event

    async def _notify(self, method: str, params: dict[str, Any]) -> None:
        from aiswitch.rpc.errors import ConnectionClosedError

        with contextlib.suppress(ConnectionClosedError):  # the client has gone
            await self.peer.notify(method, params)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- tools ----------------------------------------------------------------------------

    async def tool_run(self, args: tool_defs.RunArgs, token: Any) -> tuple[dict[str, Any], str]:
        entry = await self._new_run(args, token)
        assert entry.task is not None
        try:
            result = await asyncio.shield(entry.task)
        except asyncio.CancelledError:
            call = asyncio.current_task()
            if call is not None and call.cancelling():
                # notifications/cancelled (or the end of stdin): the run goes with the call.
                await entry.cancel()
                raise
            # The run alone was cancelled (run_cancel, `aiswitch runs cancel`): the call
            # answers with what the run recorded.
            result = entry.run.result
        finally:
            if entry.task.done():
                self.runs.pop(entry.run.run_id, None)
        document = result.json_document()
        return document, tool_defs.run_text(document)

    async def tool_run_start(
        self, args: tool_defs.RunArgs, token: Any
    ) -> tuple[dict[str, Any], str]:
        entry = await self._new_run(args, None)
        run_id = entry.run.run_id
        return (
            {"run_id": run_id, "status": "running"},
            f"run {run_id} started; follow it with run_status and collect it with run_result",
        )

    def _document(self, run_id: str) -> dict[str, Any]:
        entry = self.runs.get(run_id)
        if entry is not None:
            return entry.run.result.json_document()  # type: ignore[no-any-return]
        from aiswitch.coordinator.history import finished_run

        return finished_run(self.coordinator.store, run_id).json_document()

    async def tool_run_status(
        self, args: tool_defs.RunIdArgs, token: Any
    ) -> tuple[dict[str, Any], str]:
        status = tool_defs.status_of(await asyncio.to_thread(self._document, args.run_id))
        return status, tool_defs.status_text(status)

    async def tool_run_result(
        self, args: tool_defs.RunResultArgs, token: Any
    ) -> tuple[dict[str, Any], str]:
        entry = self.runs.get(args.run_id)
        if entry is not None and entry.task is not None and not entry.task.done():
            if args.wait_s > 0:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(entry.task), args.wait_s)
            if not entry.task.done():
                raise McpToolError(
                    f"run {args.run_id} is still running; call run_result again later "
                    "(wait_s waits for it) or run_status to see where it stands"
                )
        document = await asyncio.to_thread(self._document, args.run_id)
        if document["status"] == "running":
            raise McpToolError(f"run {args.run_id} is still running; call run_result again later")
        return document, tool_defs.run_text(document)

    async def tool_run_cancel(
        self, args: tool_defs.RunIdArgs, token: Any
    ) -> tuple[dict[str, Any], str]:
        entry = self.runs.get(args.run_id)
        if entry is None:
            from aiswitch.coordinator.history import finished_run

            run = await asyncio.to_thread(finished_run, self.coordinator.store, args.run_id)
            raise McpToolError(
                f"run {args.run_id} was not started by this server ({run.status}); "
                f"cancel it from a terminal with `aiswitch runs cancel {args.run_id}`"
            )
        await entry.cancel()
        status = str(entry.run.result.status)
        return {"run_id": args.run_id, "status": status}, f"run {args.run_id}: {status}"

    async def tool_agents(self, args: Any, token: Any) -> tuple[dict[str, Any], str]:
        from aiswitch.cli.mcp_server.catalog import agents_document

        document = await asyncio.to_thread(
            agents_document, self.coordinator, self.limits, self._live_usd()
        )
        names = ", ".join(
            a["name"] + ("" if a["installed"] else " (not installed)")
            for a in document["agents"]
            if a["allowed"]
        )
        presets = ", ".join(p["name"] for p in document["presets"])
        return document, f"agents: {names}\npresets: {presets}"

    async def tool_diff(self, args: tool_defs.DiffArgs, token: Any) -> tuple[dict[str, Any], str]:
        from aiswitch.cli.workspace_cmd import diffs

        found = await asyncio.to_thread(diffs, self.coordinator.store, args.run_id, args.agent_id)
        budget = tool_defs.DIFF_LIMIT_BYTES
        items = []
        texts = []
        cut_any = False
        for ws, data in found:
            text, cut = tool_defs.cut_diff(data, budget)
            budget = max(0, budget - len(text.encode()))
            cut_any = cut_any or cut
            label = ws.agent_id or ws.name
            items.append(
                {
                    "agent_id": label,
                    "branch": ws.branch,
                    "diff": text,
                    "bytes": len(data),
                    "truncated": cut,
                }
            )
            texts.append(f"# {label} ({ws.branch or ws.mode})\n{text}")
        note = (
            f"cut at {tool_defs.DIFF_LIMIT_BYTES:,} bytes; ask for one agent_id, or see "
            f"`aiswitch diff {args.run_id}` in a terminal"
            if cut_any
            else None
        )
        document = {"run_id": args.run_id, "diffs": items, "note": note}
        return document, "\n".join(texts) + (f"\n[{note}]" if note else "")

    async def tool_compare(
        self, args: tool_defs.RunIdArgs, token: Any
    ) -> tuple[dict[str, Any], str]:
        from aiswitch.cli.workspace_cmd import compare_document

        document = await asyncio.to_thread(compare_document, self.coordinator.store, args.run_id)
        lines = [f"run {document['run_id']} ({document['status']}), best first:"]
        for row in document["agents"]:
            changed = (
                ""
                if row["files"] is None
                else f", {row['files']} files +{row['insertions']} -{row['deletions']}"
            )
            check = f", check {row['check']}" if row["check"] else ""
            lines.append(f"{row['rank']}. {row['agent_id']}: {row['status']}{check}{changed}")
        return document, "\n".join(lines)

    async def tool_apply(self, args: tool_defs.ApplyArgs, token: Any) -> tuple[dict[str, Any], str]:
        from aiswitch.cli.workspace_cmd import apply_workspace

        done = await asyncio.to_thread(
            apply_workspace, self.coordinator.store, args.run_id, args.agent_id, args.how, args.keep
        )
        return done, (
            f"applied {done['agent_id']} ({done['files']} files) to {done['target']} as "
            f"{done['how']}"
        )

    async def tool_tokens_report(
        self, args: tool_defs.TokensReportArgs, token: Any
    ) -> tuple[dict[str, Any], str]:
        import json

        from aiswitch.cli.tokens_cmd import make_report

        def build() -> tuple[Any, list[str]]:
            return make_report(
                self.coordinator.home,
                args.by,
                args.since,
                args.until,
                args.agents,
                args.presets,
                None,
                args.runs,
                args.timezone,
                "aiswitch",
                "auto",
            )

        report, warnings = await asyncio.to_thread(build)
        document = json.loads(report.to_json())
        if warnings:
            document["warnings"] = [*document.get("warnings", []), *warnings]
        totals = document.get("totals", {})
        cost = totals.get("cost_usd")
        text = (
            f"{len(document.get('rows', []))} rows by {args.by}; total "
            f"{totals.get('total_tokens', 0):,} tokens"
            + (f", ${cost:.4f}" if cost is not None else "")
        )
        return document, text


def default_workspace(cwd: str | None) -> str:
    """Delegated agents edit in a worktree of their own when they work in a git repository
    with a commit (the caller reviews with diff and takes the work with apply), even one
    agent alone; elsewhere the CLI's rule (`auto`)."""
    from pathlib import Path

    from aiswitch.workspace.git import inspect

    path = Path(cwd or ".").resolve()
    # Outside any repository (no `.git` above), no git process is started.
    if not any((folder / ".git").exists() for folder in (path, *path.parents)):
        return "auto"
    state = inspect(path)
    return "worktree" if state is not None and state.head is not None else "auto"


def _tool_error(message: str) -> Any:
    import mcp_types

    return mcp_types.CallToolResult(content=[mcp_types.TextContent(text=message)], is_error=True)


async def serve(limits: Limits, *, allow_apply: bool = False) -> int:
    """Serve one session on stdin/stdout until stdin closes."""
    from aiswitch.rpc.stdio import stdio_peer

    peer = await stdio_peer("mcp")
    session = Session(peer, limits, allow_apply=allow_apply)
    peer.start()
    await peer.wait_closed()
    await session.close()
    return 0
