"""The one function that builds an agent child's environment.

    child env = parent's environment
                + the agent definition's `env`
                + the preset's variables (references already resolved)
                + aiswitch's own: AISWITCH_AGENT_ID, AISWITCH_RUN_ID, AISWITCH_HOME,
                  AISWITCH_PRESET and AISWITCH_PRESET_VARS (what the preset set)

Later layers win. `aiswitch preset env` prints exactly this, so what a child gets can
always be inspected without starting it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiswitch.adapter_sdk.environment import PRESET_NAME, PRESET_VARS


@dataclass(frozen=True)
class ChildEnvRequest:
    parent: Mapping[str, str]
    agent_env: Mapping[str, str] = field(default_factory=dict)
    preset: str | None = None
    preset_vars: Mapping[str, str] = field(default_factory=dict)
    preset_unset: tuple[str, ...] = ()
    agent_id: str = ""
    run_id: str = ""
    home: str = ""


def build_child_env(request: ChildEnvRequest) -> dict[str, str]:
    env = dict(request.parent)
    # What the calling shell applied describes that shell, not this child.
    for name in (PRESET_NAME, PRESET_VARS):
        env.pop(name, None)
    env.update(request.agent_env)
    for name in request.preset_unset:
        env.pop(name, None)
    env.update(request.preset_vars)
    if request.preset is not None:
        env[PRESET_NAME] = request.preset
        env[PRESET_VARS] = ",".join(sorted(request.preset_vars))
    if request.agent_id:
        env["AISWITCH_AGENT_ID"] = request.agent_id
    if request.run_id:
        env["AISWITCH_RUN_ID"] = request.run_id
    if request.home:
        env["AISWITCH_HOME"] = request.home
    return env
