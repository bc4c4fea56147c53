"""What agents' adapters advertised (`capabilities.provides` in `agent.initialize`).

A plan is checked before any process starts, so the capabilities adapters advertise are
remembered from their handshakes: `state/capabilities.json` maps an agent name to the
capabilities its adapter last advertised. Routing uses them together with the agents'
own `capabilities` in config/agents.yaml. A run writes the file only when a handshake
tells it something new.
"""

from __future__ import annotations

from typing import Any, Final

from aiswitch.state.store import StateStore

RESOURCE: Final = "capabilities"


def _path(store: StateStore) -> Any:
    return store.home.state / "capabilities.json"


def advertised(store: StateStore) -> dict[str, list[str]]:
    data: Any = store.read_json(_path(store), {})
    agents = data.get("agents", {}) if isinstance(data, dict) else {}
    if not isinstance(agents, dict):
        return {}
    return {
        str(name): [str(c) for c in caps if isinstance(c, str)]
        for name, caps in agents.items()
        if isinstance(caps, list)
    }


def remember(store: StateStore, agent: str, provides: list[str]) -> None:
    """Record what `agent`'s adapter advertised (replacing what it said before)."""

    def change(data: dict[str, Any]) -> dict[str, Any]:
        agents = data.get("agents")
        if not isinstance(agents, dict):
            agents = data["agents"] = {}
        agents[agent] = sorted(set(provides))
        return data

    store.update_json(RESOURCE, _path(store), dict, change)
