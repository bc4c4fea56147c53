"""What an ACP agent says during a turn, as aiswitch reports it (pure: no I/O).

Contract:
- `TurnTranslator.update(params)` takes one `session/update` notification's params and
  returns the `Progress` items it makes: agent message chunks become text progress (by
  line; the answer is the text after the last tool call, as the native adapters have
  it), thought chunks `thinking`, tool calls and their status changes `tool`, plans
  `status`. Updates for another session, user message chunks (replayed history) and
  kinds aiswitch has no use for (commands, modes, config options, session info) are
  skipped; an unknown kind is skipped too (the schema grows).
- A known kind without its required fields (or with fields of the wrong type), or
  params that are not an object, raise `MalformedUpdate`: the caller fails the task
  with its message rather than guessing.
- `usage_update` keeps its cumulative `cost` (USD) for the task's cost (`cost_usd()`:
  the last figure less the one seen before the prompt, for a resumed session), and
  token counts when it carries them (`_meta.usage`, in the shape of the draft `Usage`).
- `turn_usage(response)` reads a `session/prompt` response's token counts: the draft
  schema's `usage` object, else Gemini CLI's `_meta.quota` (per model when it gives
  models), normalised to aiswitch's meaning (`Usage`: input without cached tokens,
  reasoning inside output).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final

from aiswitch.tokens.usage import Usage

from ._common import (
    short,
)
from ._drive import (
    Progress,
)
from ._usage import UsageReport

log = logging.getLogger("aiswitch.adapter.acp")

# Kinds that carry nothing a task result or the live view needs.
IGNORED_KINDS: Final = frozenset(
    {
        "user_message_chunk",
        "available_commands_update",
        "current_mode_update",
        "config_option_update",
        "session_info_update",
    }
)
PLAN_MARKS: Final = {"completed": "x", "in_progress": "~", "pending": " "}


class MalformedUpdate(ValueError):
    """A session/update aiswitch cannot read (its message names what is wrong)."""


def _need(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedUpdate(f"{what} without a valid {name!r}")
    return value


def _text_of(content: object, what: str) -> str:
    """The text of a content block; other blocks (images, resources) as a short tag."""
    if not isinstance(content, dict):
        raise MalformedUpdate(f"{what} without a content block")
    kind = content.get("type")
    if kind == "text":
        return str(_need(content, "text", str, what))
    if not isinstance(kind, str):
        raise MalformedUpdate(f"{what} with a content block of no type")
    return f"[{kind}]"


@dataclass
class TurnTranslator:
    """One task's turn: the session's updates → progress, answer text, cost and usage."""

    session_id: str | None = None
    answer: list[str] = field(default_factory=list)
    all_text: list[str] = field(default_factory=list)
    pending: str = ""
    thinking: str = ""
    tools: dict[str, str] = field(default_factory=dict)
    # Cumulative session cost: before the prompt (a resumed session's) and the last seen.
    cost_before: float | None = None
    cost_last: float | None = None
    prompt_sent: bool = False
    update_usage: list[UsageReport] = field(default_factory=list)
    skipped: int = 0

    def update(self, params: object) -> list[Progress]:
        if not isinstance(params, dict):
            raise MalformedUpdate("session/update params are not an object")
        session = params.get("sessionId")
        if self.session_id is not None and session != self.session_id:
            self.skipped += 1
            return []
        update = params.get("update")
        if not isinstance(update, dict):
            raise MalformedUpdate("session/update without an update object")
        kind = update.get("sessionUpdate")
        if not isinstance(kind, str):
            raise MalformedUpdate("session/update without a sessionUpdate kind")
        if not self.prompt_sent:
            # What a loaded session replays (its history) is not this task's.
            if kind == "usage_update":
                self._cost(update, before=True)
            return []
        if kind == "agent_message_chunk":
            return self._text(_text_of(update.get("content"), kind))
        if kind == "agent_thought_chunk":
            return self._thought(_text_of(update.get("content"), kind))
        if kind == "tool_call":
            return self._flush() + self._tool_call(update)
        if kind == "tool_call_update":
            return self._tool_update(update)
        if kind == "plan":
            return self._flush() + self._plan(update)
        if kind == "usage_update":
            self._cost(update, before=False)
            return []
        if kind not in IGNORED_KINDS:
            log.debug("skipped a session/update of kind %r", kind)
        return []

    # -- text -----------------------------------------------------------------------

    def _text(self, text: str) -> list[Progress]:
        self.answer.append(text)
        self.all_text.append(text)
        self.pending += text
        reports: list[Progress] = []
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            if line.strip():
                reports.append(Progress(short(line), "text"))
        return reports

    def _thought(self, text: str) -> list[Progress]:
        self.thinking += text
        reports: list[Progress] = []
        while "\n" in self.thinking:
            line, self.thinking = self.thinking.split("\n", 1)
            if line.strip():
                reports.append(Progress(short(line), "thinking"))
        return reports

    def _flush(self) -> list[Progress]:
        reports: list[Progress] = []
        if self.thinking.strip():
            reports.append(Progress(short(self.thinking), "thinking"))
        if self.pending.strip():
            reports.append(Progress(short(self.pending), "text"))
        self.pending = self.thinking = ""
        return reports

    def finish(self) -> tuple[str, list[Progress]]:
        """The answer and the progress still held (the last partial line)."""
        reports = self._flush()
        output = "".join(self.answer).strip() or "".join(self.all_text).strip()
        return output, reports

    # -- tools and plans ----------------------------------------------------------------

    def _tool_call(self, update: dict[str, Any]) -> list[Progress]:
        call_id = _need(update, "toolCallId", str, "tool_call")
        title = update.get("title")
        title = title if isinstance(title, str) and title else update.get("kind") or "tool"
        self.tools[call_id] = str(title)
        # The answer is what comes after the last tool call.
        self.answer = []
        status = update.get("status") or "pending"
        kind = update.get("kind")
        label = f"{title} ({kind})" if isinstance(kind, str) and kind != "other" else str(title)
        return [Progress(short(f"{label}: {status}"), "tool")]

    def _tool_update(self, update: dict[str, Any]) -> list[Progress]:
        call_id = _need(update, "toolCallId", str, "tool_call_update")
        title = update.get("title")
        if isinstance(title, str) and title:
            self.tools[call_id] = title
        status = update.get("status")
        if status not in ("completed", "failed"):
            return []
        name = self.tools.get(call_id, call_id)
        return [Progress(short(f"{name}: {status}"), "tool")]

    def _plan(self, update: dict[str, Any]) -> list[Progress]:
        entries = _need(update, "entries", list, "plan")
        parts = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
                raise MalformedUpdate("plan with an entry of no content")
            mark = PLAN_MARKS.get(str(entry.get("status")), " ")
            parts.append(f"[{mark}] {entry['content']}")
        return [Progress(short("plan: " + "; ".join(parts)), "status")] if parts else []

    # -- cost and usage ------------------------------------------------------------------

    def _cost(self, update: dict[str, Any], *, before: bool) -> None:
        for name in ("used", "size"):
            if not isinstance(update.get(name), int) or update[name] < 0:
                raise MalformedUpdate(f"usage_update without a valid {name!r}")
        cost = update.get("cost")
        if isinstance(cost, dict):
            amount = cost.get("amount")
            if cost.get("currency") == "USD" and isinstance(amount, int | float):
                if before:
                    self.cost_before = float(amount)
                else:
                    self.cost_last = float(amount)
        meta = update.get("_meta")
        counts = meta.get("usage") if isinstance(meta, dict) else None
        if not before and isinstance(counts, dict):
            usage = normalised_usage(counts)
            if usage is not None and usage.total_tokens:
                self.update_usage.append(UsageReport(usage))

    def cost_usd(self) -> float | None:
        if self.cost_last is None:
            return None
        return round(max(self.cost_last - (self.cost_before or 0.0), 0.0), 10)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def normalised_usage(counts: dict[str, Any]) -> Usage | None:
    """The draft schema's `Usage` (camelCase counts) → aiswitch's meaning.

    The schema does not say whether `inputTokens` holds the cached tokens, nor whether
    `outputTokens` holds the thoughts; `totalTokens` tells: when it equals the counts
    without the cached ones, input held them (they are taken out); when it equals them
    with the thoughts added, output did not hold the thoughts (they are added)."""
    if "inputTokens" not in counts and "outputTokens" not in counts:
        return None
    given = _count(counts.get("inputTokens"))
    output = _count(counts.get("outputTokens"))
    cache_read = _count(counts.get("cachedReadTokens"))
    cache_write = _count(counts.get("cachedWriteTokens"))
    thoughts = _count(counts.get("thoughtTokens"))
    total = _count(counts.get("totalTokens"))
    cached = cache_read + cache_write
    if total and cached and total == given + output and given >= cached:
        given -= cached
        if total == given + cached + output + thoughts:
            output += thoughts
    elif total and thoughts and total == given + cached + output + thoughts:
        output += thoughts
    return Usage(
        input_tokens=given,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=min(thoughts, output),
    )


def _quota_usage(token_count: object) -> Usage | None:
    if not isinstance(token_count, dict):
        return None
    return Usage(
        input_tokens=_count(token_count.get("input_tokens")),
        output_tokens=_count(token_count.get("output_tokens")),
    )


def turn_usage(response: dict[str, Any]) -> list[UsageReport]:
    """The token counts of a `session/prompt` response (see the module docstring)."""
    usage = response.get("usage")
    if isinstance(usage, dict):
        found = normalised_usage(usage)
        return [UsageReport(found)] if found is not None and found.total_tokens else []
    meta = response.get("_meta")
    quota = meta.get("quota") if isinstance(meta, dict) else None
    if not isinstance(quota, dict):
        return []
    reports: list[UsageReport] = []
    models = quota.get("model_usage")
    if isinstance(models, list):
        for entry in models:
            if isinstance(entry, dict):
                found = _quota_usage(entry.get("token_count"))
                if found is not None and found.total_tokens:
                    model = entry.get("model")
                    named = model if isinstance(model, str) else None
                    reports.append(UsageReport(found, model=named))
    if reports:
        return reports
    total = _quota_usage(quota.get("token_count"))
    return [UsageReport(total)] if total is not None and total.total_tokens else []
