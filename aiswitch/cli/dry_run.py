"""`aiswitch run --dry-run`: the run's graph in levels, printed; nothing starts."""

from __future__ import annotations

import json
import sys
from typing import Any

from aiswitch.cli import exitcodes


def show_dry_run(plan: Any, *, as_json: bool) -> int:
    from aiswitch.cli.terminal import shown
    from aiswitch.coordinator.dry_run import document

    doc = document(plan)
    if as_json:
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
        return exitcodes.OK
    levels = doc["levels"]
    title = f"plan {doc['plan']}" if doc["plan"] else f"{doc['mode']} run"
    lines = [
        f"{shown(title)}: {doc['tasks']} tasks in {len(levels)} levels (dry run: nothing started)"
    ]
    for number, row in enumerate(levels, start=1):
        lines.append(f"level {number}" + (" (starts first)" if number == 1 else ""))
        for task in row:
            parts = [f"  {task['id']:<20} -> {task['agent']}"]
            if task["capability"]:
                parts.append(f"(capability {task['capability']}: {', '.join(task['candidates'])})")
            if task["priority"]:
                parts.append(f"priority {task['priority']}")
            if task["depends_on"]:
                parts.append("waits for " + ", ".join(task["depends_on"]))
            if task["continue_on_failure"] and doc["mode"] == "plan":
                parts.append("(runs even if they fail)")
            if task["fallback"]:
                parts.append("fallback " + ", ".join(task["fallback"]))
            lines.append(shown(" ".join(parts)))
    sys.stdout.write("\n".join(lines) + "\n")
    return exitcodes.OK
