"""A plan task's placeholders: `{ID.output}`, `{ID.status}`, `{ID.agent}` (`{ID[N].output}`
for one copy of a fanned task), and how they are filled in when the task becomes ready.

Apart from the plan files' check (`plan_check`, which needs the plan models) because every
run's graph fills them in: a run that has no plan need not load those models.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from aiswitch.coordinator.results import AgentResult

PLACEHOLDER: Final = re.compile(
    r"\{([A-Za-z0-9][A-Za-z0-9_-]*)(?:\[(\d+)\])?\.(output|status|agent)\}"
)


def fill_in(prompt: str, results: Mapping[str, list[AgentResult]]) -> str:
    """`prompt` with its dependencies' placeholders replaced literally (one pass: text
    put in is never read again). A fanned task's own id gives all its copies: their
    outputs one after another, `ok` when all are ok, their agents comma-separated."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) + (f"[{match.group(2)}]" if match.group(2) else "")
        found = results.get(name)
        if not found:
            return match.group(0)
        field = match.group(3)
        if field == "output":
            return "\n\n".join(r.output for r in found)
        if field == "status":
            statuses = {str(r.status) for r in found}
            if len(statuses) == 1:
                return statuses.pop()
            return "partial" if "ok" in statuses else "failed"
        agents = (f"{r.agent}@{r.preset}" if r.preset else r.agent for r in found)
        return ", ".join(dict.fromkeys(agents))

    return PLACEHOLDER.sub(value, prompt)
