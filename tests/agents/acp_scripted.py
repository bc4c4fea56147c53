"""A scripted ACP agent for the tests, written with the `agent-client-protocol` package.

It speaks ACP on stdio like any real agent (gemini --experimental-acp, claude-code-acp)
and does, per prompt, what the JSON script in ACP_TEST_SCRIPT (a file) says; a step
list under the key the prompt names (`"prompt": steps`), else under `"*"`:

    {"say": "text ({prompt} is the prompt)"}      agent_message_chunk
    {"think": "text"}                              agent_thought_chunk
    {"tool": "id", "title": "t", "kind": "edit"}   tool_call (pending), then completed
    {"plan": ["a", "b"]}                           plan
    {"write": "path", "content": "c"}              fs/write_text_file; says what happened
    {"read": "path"}                               fs/read_text_file; says the content
    {"permission": "edit", "title": "t", "path": p, "cwd": d}  session/request_permission
    {"run": "command line"}                        terminal/create, wait, output; says it
    {"spawn": "command line"}                      terminal/create, no wait
    {"usage": {"used": 1, "size": 9, "cost": 0.5}} usage_update (cost in USD)
    {"ask": "method"}                              a request the client did not advertise
    {"malformed": true}                            a session/update of no content
    {"crash": 3}                                   exits with that code at once
    {"hang": true}                                 never ends the turn (until cancelled)
    {"deaf": true}                                 never ends the turn, ignores cancel
    {"stop": "refusal"}                            the turn's stop reason (end_turn)
    {"tokens": {"inputTokens": …}}                 the prompt response's `usage`

ACP_TEST_VERSION sets the protocol version it answers; ACP_TEST_EXIT_EARLY=1 makes it
exit (code 7, a stderr line) before reading `initialize`. Paths in steps are relative to
the session's cwd unless absolute.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from acp import (
    Agent,
    InitializeResponse,
    LoadSessionResponse,
    NewSessionResponse,
    PromptResponse,
    RequestError,
    plan_entry,
    run_agent,
    start_tool_call,
    update_agent_message_text,
    update_agent_thought_text,
    update_plan,
    update_tool_call,
)
from acp.interfaces import Client
from acp.schema import (
    AgentCapabilities,
    Cost,
    PermissionOption,
    ToolCallLocation,
    ToolCallUpdate,
    Usage,
    UsageUpdate,
)


class ScriptedAgent(Agent):
    def __init__(self) -> None:
        self.conn: Client | None = None
        self.cwd: dict[str, str] = {}
        self.cancelled: dict[str, asyncio.Event] = {}
        script = os.environ.get("ACP_TEST_SCRIPT")
        self.script: dict[str, Any] = json.loads(Path(script).read_text()) if script else {}

    def on_connect(self, conn: Client) -> None:
        self.conn = conn

    async def initialize(self, protocol_version: int, **kwargs: Any) -> InitializeResponse:
        version = int(os.environ.get("ACP_TEST_VERSION", protocol_version))
        return InitializeResponse(
            protocol_version=version,
            agent_capabilities=AgentCapabilities(load_session=True),
        )

    async def new_session(self, cwd: str, **kwargs: Any) -> NewSessionResponse:
        session = str(uuid.uuid4())
        self.cwd[session] = cwd
        return NewSessionResponse(session_id=session)

    async def load_session(self, cwd: str, session_id: str, **kwargs: Any) -> LoadSessionResponse:
        self.cwd[session_id] = cwd
        assert self.conn is not None
        # History replay and the session's cost so far: neither is the next task's.
        await self.conn.session_update(session_id, update_agent_message_text("old answer"))
        await self.conn.session_update(
            session_id,
            UsageUpdate(
                session_update="usage_update",
                used=5,
                size=100,
                cost=Cost(amount=1.0, currency="USD"),
            ),
        )
        return LoadSessionResponse()

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        self.cancelled.setdefault(session_id, asyncio.Event()).set()

    def _path(self, session: str, raw: str) -> str:
        return raw if os.path.isabs(raw) else os.path.join(self.cwd[session], raw)

    async def prompt(self, prompt: list[Any], session_id: str, **kwargs: Any) -> PromptResponse:
        assert self.conn is not None
        conn = self.conn
        text = "".join(getattr(block, "text", "") for block in prompt)
        steps = self.script.get(text, self.script.get("*", [{"say": "{prompt}"}]))
        stop, tokens = "end_turn", None
        cancelled = self.cancelled.setdefault(session_id, asyncio.Event())

        async def say(words: str) -> None:
            await conn.session_update(session_id, update_agent_message_text(words))

        for step in steps:
            if "say" in step:
                await say(step["say"].replace("{prompt}", text))
            elif "think" in step:
                await conn.session_update(session_id, update_agent_thought_text(step["think"]))
            elif "tool" in step:
                await conn.session_update(
                    session_id,
                    start_tool_call(
                        step["tool"], step["title"], kind=step.get("kind"), status="pending"
                    ),
                )
                await conn.session_update(
                    session_id, update_tool_call(step["tool"], status="completed")
                )
            elif "plan" in step:
                entries = [plan_entry(e, status="pending") for e in step["plan"]]
                await conn.session_update(session_id, update_plan(entries))
            elif "write" in step:
                try:
                    await conn.write_text_file(
                        session_id=session_id,
                        path=self._path(session_id, step["write"]),
                        content=step["content"],
                    )
                    await say(f"wrote {step['write']}\n")
                except RequestError as exc:
                    await say(f"write refused: {exc}\n")
            elif "read" in step:
                try:
                    read = await conn.read_text_file(
                        session_id=session_id, path=self._path(session_id, step["read"])
                    )
                    await say(f"read: {read.content}\n")
                except RequestError as exc:
                    await say(f"read refused: {exc}\n")
            elif "permission" in step:
                locations = [ToolCallLocation(path=step["path"])] if "path" in step else None
                raw = {"cwd": step["cwd"]} if "cwd" in step else None
                answer = await conn.request_permission(
                    session_id=session_id,
                    tool_call=ToolCallUpdate(
                        tool_call_id=str(uuid.uuid4()),
                        title=step.get("title", "a tool"),
                        kind=step["permission"],
                        locations=locations,
                        raw_input=raw,
                    ),
                    options=[
                        PermissionOption(option_id="yes", name="Allow", kind="allow_once"),
                        PermissionOption(option_id="no", name="Reject", kind="reject_once"),
                    ],
                )
                outcome = answer.outcome
                picked = getattr(outcome, "option_id", None) or outcome.outcome
                await say(f"permission {step['title']}: {picked}\n")
            elif "run" in step or "spawn" in step:
                try:
                    terminal = await conn.create_terminal(
                        session_id=session_id, command=step.get("run") or step["spawn"]
                    )
                except RequestError as exc:
                    await say(f"terminal refused: {exc}\n")
                    continue
                if "run" in step:
                    await conn.wait_for_terminal_exit(
                        session_id=session_id, terminal_id=terminal.terminal_id
                    )
                    out = await conn.terminal_output(
                        session_id=session_id, terminal_id=terminal.terminal_id
                    )
                    await say(f"ran: {out.output.strip()} (exit {out.exit_status.exit_code})\n")
            elif "usage" in step:
                usage = step["usage"]
                cost = Cost(amount=usage["cost"], currency="USD") if "cost" in usage else None
                await conn.session_update(
                    session_id,
                    UsageUpdate(
                        session_update="usage_update",
                        used=usage["used"],
                        size=usage["size"],
                        cost=cost,
                    ),
                )
            elif "ask" in step:
                try:
                    await self._raw_request(step["ask"])
                    await say("asked: answered\n")
                except RequestError as exc:
                    await say(f"asked: error {exc.code}\n")
            elif "malformed" in step:
                line = {
                    "jsonrpc": "2.0",
                    "method": "session/update",
                    "params": {
                        "sessionId": session_id,
                        "update": {"sessionUpdate": "agent_message_chunk"},
                    },
                }
                os.write(1, (json.dumps(line) + "\n").encode())
            elif "crash" in step:
                sys.stderr.write("scripted agent: crashing as told\n")
                sys.stderr.flush()
                os._exit(int(step["crash"]))
            elif "hang" in step:
                await cancelled.wait()
                return PromptResponse(stop_reason="cancelled")
            elif "deaf" in step:
                await asyncio.Event().wait()
            elif "stop" in step:
                stop = step["stop"]
            elif "tokens" in step:
                tokens = Usage(**step["tokens"])
        return PromptResponse(stop_reason=stop, usage=tokens)

    async def _raw_request(self, method: str) -> Any:
        conn: Any = self.conn
        return await conn._conn.send_request(method, {"sessionId": "x"})


def main() -> None:
    if os.environ.get("ACP_TEST_EXIT_EARLY") == "1":
        sys.stderr.write("scripted agent: no API key configured\n")
        sys.exit(7)
    asyncio.run(run_agent(ScriptedAgent(), use_unstable_protocol=True))


if __name__ == "__main__":
    main()
