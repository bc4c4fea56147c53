"""Generated Claude Code log sets for the parity tests and the benchmark.

`write_claude_logs(root, spec)` writes `root/projects/<project>/<session>.jsonl` files (and a
few `<project>/<session>/subagents/agent-*.jsonl` ones) the way Claude Code writes them: one
compact JSON object per line, user and assistant lines, assistant lines carrying
`message.usage`. It deliberately includes everything the readers must get right:

- duplicates: the same message id + request id written again in the same file (Claude Code
  writes one line per content block) and copied into another session's file (resumed chats);
- sidechain replays: the same message id under a new request id with `isSidechain: true`;
- lines without a request id (some repeated at the same instant) and without a message id;
- malformed lines: truncated JSON, garbage, a line with a non-nullable field set to null;
- several projects, several models (and `<synthetic>`), 5-minute and 1-hour cache writes,
  an occasional reported `costUSD`, and timestamps spread over whole days so that days cut
  differently in different timezones;
- the shapes of two Claude Code versions: 2.0 lines, and 2.1 lines whose usage also holds
  `iterations: []`, `speed`, `server_tool_use` and whose message has `stop_details: null`
  (copied from the lines the real CLI writes in the end-to-end tests); every assistant
  message has `stop_sequence: null`, as the API sends it (`LogSetSpec.legacy`: neither, the
  lines this generator wrote before).

Prompts stay under 200k tokens, where every tiering rule agrees.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MODELS = (
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-1-20250805",
    "claude-haiku-4-5-20251001",
    "claude-sonnet-4-20250514",
    "claude-opus-4-5-20251101",
)


@dataclass
class LogSetSpec:
    files: int = 24
    assistant_lines: int = 2_000
    projects: int = 3
    days: int = 4
    start: datetime = field(default_factory=lambda: datetime(2026, 3, 6, tzinfo=UTC))
    seed: int = 7
    content_bytes: int = 160
    duplicate_rate: float = 0.06
    cross_file_duplicate_rate: float = 0.03
    sidechain_rate: float = 0.03
    missing_request_rate: float = 0.03
    missing_message_rate: float = 0.02
    malformed_rate: float = 0.01
    synthetic_rate: float = 0.01
    cost_rate: float = 0.02
    # The lines earlier versions of this generator wrote: Claude Code 2.0 only, and no
    # `stop_sequence: null` (kept for benchmarks comparable with earlier figures).
    legacy: bool = False


@dataclass
class LogSetStats:
    files: int = 0
    lines: int = 0
    assistant_lines: int = 0
    malformed_lines: int = 0
    bytes: int = 0


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def write_claude_logs(root: Path, spec: LogSetSpec | None = None) -> LogSetStats:
    """Write a log set under `root` (a Claude config dir) and say what was written."""
    spec = spec or LogSetSpec()
    rng = random.Random(spec.seed)
    stats = LogSetStats()
    projects = [f"-home-dev-project-{index}" for index in range(spec.projects)]
    per_file = max(1, spec.assistant_lines // spec.files)
    span = timedelta(days=spec.days).total_seconds()
    previous_file_lines: list[str] = []
    for file_index in range(spec.files):
        project = projects[file_index % len(projects)]
        session = str(uuid.UUID(int=rng.getrandbits(128)))
        subagent = file_index % 11 == 5
        # Every other session by Claude Code 2.1, whose usage lines carry more fields.
        version = "2.1.197" if file_index % 2 and not spec.legacy else "2.0.37"
        if subagent:
            path = root / "projects" / project / session / "subagents" / "agent-a1.jsonl"
        else:
            path = root / "projects" / project / f"{session}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines: list[str] = []
        written: list[str] = []
        base = spec.start.timestamp() + rng.random() * span
        for line_index in range(per_file):
            ts = datetime.fromtimestamp(
                min(base + line_index * rng.uniform(5, 90), spec.start.timestamp() + span - 1), UTC
            )
            stamp = ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
            lines.append(
                _dump(
                    {
                        "type": "user",
                        "sessionId": session,
                        "timestamp": stamp,
                        "version": version,
                        "cwd": "/home/dev/" + project,
                        "message": {"role": "user", "content": "please " * 8},
                    }
                )
            )
            line = _assistant_line(rng, spec, session, stamp, subagent, version)
            lines.append(line)
            written.append(line)
            stats.assistant_lines += 1
            roll = rng.random()
            if roll < spec.duplicate_rate:
                lines.append(line)  # the same message again (another content block)
                stats.assistant_lines += 1
            elif roll < spec.duplicate_rate + spec.sidechain_rate:
                replay = json.loads(line)
                if "id" in replay["message"]:
                    replay["requestId"] = f"req_{rng.getrandbits(64):016x}"
                    replay["isSidechain"] = True
                    replay["message"]["usage"]["cache_read_input_tokens"] += 5_000
                    lines.append(_dump(replay))
                    stats.assistant_lines += 1
            if rng.random() < spec.malformed_rate:
                lines.append(_malformed(rng, line))
                stats.malformed_lines += 1
        # A resumed chat copies some of the previous session's messages into this file.
        for copied in previous_file_lines:
            if rng.random() < spec.cross_file_duplicate_rate:
                obj = json.loads(copied)
                obj["sessionId"] = session
                lines.append(_dump(obj))
                stats.assistant_lines += 1
        previous_file_lines = written
        text = "\n".join(lines) + "\n"
        path.write_text(text, encoding="utf-8")
        stats.files += 1
        stats.lines += len(lines)
        stats.bytes += len(text)
    return stats


def _assistant_line(
    rng: random.Random, spec: LogSetSpec, session: str, stamp: str, subagent: bool, version: str
) -> str:
    synthetic = rng.random() < spec.synthetic_rate
    usage: dict[str, Any] = {
        "input_tokens": 0 if synthetic else rng.randint(1, 6_000),
        "output_tokens": 0 if synthetic else rng.randint(1, 4_000),
        "cache_creation_input_tokens": 0 if synthetic else rng.choice((0, rng.randint(1, 30_000))),
        "cache_read_input_tokens": 0 if synthetic else rng.randint(0, 120_000),
        "service_tier": "standard",
    }
    if usage["cache_creation_input_tokens"] and rng.random() < 0.5:
        hour = rng.randint(0, usage["cache_creation_input_tokens"])
        usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": usage["cache_creation_input_tokens"] - hour,
            "ephemeral_1h_input_tokens": hour,
        }
    if version.startswith("2.1."):  # what Claude Code 2.1 adds to every usage
        usage["server_tool_use"] = {"web_search_requests": 0, "web_fetch_requests": 0}
        usage["inference_geo"] = ""
        usage["iterations"] = []
        usage["speed"] = "standard"
    message: dict[str, Any] = {
        "id": f"msg_01{rng.getrandbits(96):024x}",
        "type": "message",
        "role": "assistant",
        "model": "<synthetic>" if synthetic else rng.choice(MODELS),
        "content": [{"type": "text", "text": "x" * spec.content_bytes}],
        "stop_reason": "end_turn",
        "stop_sequence": None,  # as Claude Code writes it: a null ccusage does not check
        "usage": usage,
    }
    if spec.legacy:
        del message["stop_sequence"]
    if version.startswith("2.1."):
        message["stop_details"] = None
    line: dict[str, Any] = {
        "parentUuid": str(uuid.UUID(int=rng.getrandbits(128))),
        "isSidechain": subagent,
        "userType": "external",
        "cwd": "/home/dev/project",
        "sessionId": session,
        "version": version,
        "gitBranch": "main",
        "type": "assistant",
        "uuid": str(uuid.UUID(int=rng.getrandbits(128))),
        "timestamp": stamp,
        "message": message,
        "requestId": f"req_{rng.getrandbits(64):016x}",
    }
    roll = rng.random()
    if roll < spec.missing_request_rate:
        del line["requestId"]
    elif roll < spec.missing_request_rate + spec.missing_message_rate:
        del message["id"]
    if rng.random() < spec.cost_rate:
        line["costUSD"] = round(rng.uniform(0.001, 0.5), 6)
    return _dump(line)


def _malformed(rng: random.Random, line: str) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return line[: line.index('"usage":{') + 30]  # a torn write, cut inside the usage
    if kind == 1:
        return 'garbage "usage":{ not json'
    return line.replace('"cwd":"/home/dev/project"', '"cwd":null', 1)  # valid JSON, not usage
