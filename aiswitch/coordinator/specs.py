"""Agent specs as users write them: `NAME[@PRESET]`, comma-separated.

`mock,mock@slow` is two agents; a name may repeat. Agent ids are `NAME#N`, numbered
per name in the order given, and are the ids used in the ledger and in log file names.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from aiswitch.agents import AGENT_NAME
from aiswitch.errors import UsageError
from aiswitch.presets.model import NAME_RE


@dataclass(frozen=True)
class AgentSpec:
    name: str
    preset: str | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.preset}" if self.preset else self.name


def parse_specs(text: str) -> list[AgentSpec]:
    specs: list[AgentSpec] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise UsageError(f"empty agent in {text!r}", hint="write NAME[@PRESET],NAME[@PRESET]")
        name, sep, preset = item.partition("@")
        if not AGENT_NAME.match(name):
            raise UsageError(f"invalid agent name {name!r} in {text!r}")
        if sep and not NAME_RE.match(preset):
            raise UsageError(f"invalid preset name {preset!r} in {item!r}")
        specs.append(AgentSpec(name=name, preset=preset or None))
    return specs


def agent_ids(specs: list[AgentSpec]) -> list[str]:
    seen: Counter[str] = Counter()
    ids = []
    for spec in specs:
        seen[spec.name] += 1
        ids.append(f"{spec.name}#{seen[spec.name]}")
    return ids
