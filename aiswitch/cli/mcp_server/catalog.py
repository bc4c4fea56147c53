"""What `aiswitch mcp`'s `agents` tool shows: the agents (installed or why not, allowed
or not), the presets (never their variables: they hold keys) and the session's limits."""

from __future__ import annotations

from typing import Any

from aiswitch.cli.mcp_server.limits import Limits


def agents_document(coordinator: Any, limits: Limits, live_usd: float) -> dict[str, Any]:
    """The `agents` tool's answer for `coordinator`'s home under `limits` (`live_usd`:
    what the session's running runs have spent so far)."""
    from aiswitch.errors import AgentUnavailableError
    from aiswitch.presets.store import PresetStore

    allowed = limits.agents
    agents = []
    for agent in coordinator.registry.agents.values():
        try:
            agent.check_available()
            why_not = None
        except AgentUnavailableError as exc:
            why_not = exc.one_line()
        model = agent.options.get("model")
        agents.append(
            {
                "name": agent.name,
                "description": agent.description,
                "cli": agent.cli,
                # The model its definition asks for; a preset's own wins (presets).
                "model": None if model is None else str(model),
                "installed": why_not is None,
                "why_not": why_not,
                "capabilities": list(agent.capabilities),
                "allowed": allowed is None
                or any(a == agent.name or a.startswith(f"{agent.name}@") for a in allowed),
            }
        )
    store = PresetStore(coordinator.home)
    presets = [
        # Never the variables: they hold keys.
        {
            "name": p.name,
            "agent": p.agent,
            "model": p.model,
            "description": p.description,
            "tags": list(p.tags),
            "billing": p.billing,
        }
        for p in store.all().values()
    ]
    budget = limits.budget_usd
    return {
        "agents": agents,
        "presets": presets,
        "max_permissions": limits.max_permissions,
        "budget_usd_left": None if budget is None else max(0.0, limits.left(live_usd)),
    }
