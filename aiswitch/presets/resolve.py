"""Which preset an agent child gets in a run, and the environment that follows from it.

Resolution order for one agent spec (`NAME[@PRESET]`), first match wins:

1. the spec's `@PRESET`;
2. the preset applied in the calling shell (`$AISWITCH_PRESET` in the caller's environment);
3. the agent's default (`preset default NAME --agent A`);
4. the global default (`preset default NAME`);
5. none.

A preset whose `agent` field names another agent is an error when it was asked for
explicitly (1, 3) and is skipped when it was only inherited (2, 4): a shell switched to a
claude preset can still run codex, which then falls through to its own defaults.

References are resolved here, against the caller's environment, so a `ResolvedPreset` can no
longer fail. `run_resolver()` is what `aiswitch run` passes to the `Coordinator`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from aiswitch.errors import PresetError
from aiswitch.home import Home
from aiswitch.presets.model import Preset
from aiswitch.presets.refs import resolve_variables
from aiswitch.presets.shells import PRESET_NAME_VAR
from aiswitch.presets.store import PresetStore, StoreData, unknown_preset

if TYPE_CHECKING:
    from aiswitch.agents import AgentDef

Source = Literal["spec", "shell", "agent default", "global default"]


@dataclass(frozen=True)
class ResolvedPreset:
    """A preset ready for a child: references resolved, nothing left to fail."""

    name: str | None
    variables: Mapping[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    prices: Mapping[str, Any] = field(default_factory=dict)
    billing: str | None = None
    # Task starts allowed on this preset's lanes (`30/min`), if limited.
    rate: str | None = None


class PresetResolver(Protocol):
    """`(the preset asked for, or None; the agent) -> the preset its child gets`."""

    def __call__(self, preset: str | None, agent: AgentDef) -> ResolvedPreset: ...


@dataclass(frozen=True)
class Choice:
    preset: Preset | None
    source: Source | None


def _mismatch(preset: Preset, agent: str) -> bool:
    return preset.agent is not None and preset.agent != agent


def _mismatch_error(preset: Preset, agent: str, how: str) -> PresetError:
    return PresetError(
        f"preset {preset.name!r} ({how}) is meant for agent {preset.agent!r}, not {agent!r}",
        hint=f"use a preset for {agent}, or remove `agent` from {preset.name!r}",
    )


def choose_preset(
    spec_preset: str | None,
    agent: str,
    caller_env: Mapping[str, str],
    store: PresetStore,
    data: StoreData,
) -> Choice:
    """The preset an `agent` child gets, and why (see the module docstring)."""
    presets = store.all(data)

    def lookup(name: str, how: str) -> Preset:
        found = presets.get(name)
        if found is None:
            error = unknown_preset(name)
            if how != "spec":
                error = PresetError(f"the {how} preset {name!r} does not exist", hint=error.hint)
            raise error
        return found

    if spec_preset is not None:
        preset = lookup(spec_preset, "spec")
        if _mismatch(preset, agent):
            raise _mismatch_error(preset, agent, f"{agent}@{preset.name}")
        return Choice(preset, "spec")
    shell = caller_env.get(PRESET_NAME_VAR) or None
    if shell is not None:
        found = presets.get(shell)
        if found is None:
            raise PresetError(
                f"the preset applied in this shell ({PRESET_NAME_VAR}={shell}) no longer exists",
                hint="run `aiswitch preset clear`, or apply another preset",
            )
        if not _mismatch(found, agent):
            return Choice(found, "shell")
    agent_default = data.defaults.agents.get(agent)
    if agent_default is not None:
        preset = lookup(agent_default, f"{agent} default")
        if _mismatch(preset, agent):
            raise _mismatch_error(preset, agent, f"default for {agent}")
        return Choice(preset, "agent default")
    if data.defaults.global_ is not None:
        preset = lookup(data.defaults.global_, "global default")
        if not _mismatch(preset, agent):
            return Choice(preset, "global default")
    return Choice(None, None)


def resolved(preset: Preset | None, caller_env: Mapping[str, str]) -> ResolvedPreset:
    """`preset` ready for a child: references resolved (PresetError when one does not)."""
    if preset is None:
        return ResolvedPreset(None)
    return ResolvedPreset(
        name=preset.name,
        variables=resolve_variables(preset.name, preset.variables, caller_env),
        unset=tuple(preset.unset),
        prices={m: p.model_dump(exclude_none=True) for m, p in preset.prices.items()},
        billing=preset.billing,
        rate=preset.rate,
    )


def run_resolver(
    home: Home | None = None, caller_env: Mapping[str, str] | None = None
) -> PresetResolver:
    """The resolver `aiswitch run` gives the Coordinator: `(preset, agent) -> ResolvedPreset`.

    The store is read once, on the first call, so every child of a run sees the same store.
    `caller_env` defaults to this process's environment (the shell that ran aiswitch).
    """
    store = PresetStore(home)
    env = dict(os.environ if caller_env is None else caller_env)
    cache: list[StoreData] = []

    def resolve(preset: str | None, agent: AgentDef) -> ResolvedPreset:
        if not cache:
            cache.append(store.load())
        choice = choose_preset(preset, agent.name, env, store, cache[0])
        return resolved(choice.preset, env)

    return resolve
