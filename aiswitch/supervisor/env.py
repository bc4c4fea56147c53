"""The one function that builds an agent child's environment.

    child env = parent's environment
                − the variables the calling shell's preset set (AISWITCH_PRESET_VARS)
                − the parent's variables of every provider family the preset touches
                + the agent definition's `env`
                − the preset's `unset` list
                + the preset's variables (references already resolved)
                + aiswitch's own: AISWITCH_AGENT_ID, AISWITCH_RUN_ID, AISWITCH_HOME,
                  AISWITCH_PRESET and AISWITCH_PRESET_VARS (what the preset set)

Later layers win. `aiswitch preset env` and `preset exec` use this same function, so what a
child gets can always be inspected without starting it.

Isolation, the reason for the two subtractions: a key is never sent to a provider it was
not meant for. When the preset sets any variable of a provider family (`PROVIDER_FAMILIES`:
ANTHROPIC_*/CLAUDE_*, OPENAI_*/CODEX_*, GEMINI_*/GOOGLE_*, …), every variable of that family
inherited from the parent and not set by the preset is removed, so a claude@kimi child never
sees the parent's ANTHROPIC_API_KEY. Variables that only say where a CLI keeps its own files
(`KEPT_NAMES`) stay. The variables a `preset use` applied to the calling shell describe that
shell's preset; they are removed whatever this child's preset is (when it is the same preset,
its resolved values come back in the preset layer). The agent definition's `env` is
configuration, not inheritance, so it is never filtered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from aiswitch.adapter_sdk.environment import NAME_PATTERN, PRESET_BILLING, PRESET_NAME, PRESET_VARS

# Provider families: the prefixes of the variables one provider (or one CLI talking to it)
# reads. The mock's MOCK_* knobs are behaviour, not credentials, so they are not a family.
PROVIDER_FAMILIES: Final[Mapping[str, tuple[str, ...]]] = {
    "anthropic": ("ANTHROPIC_", "CLAUDE_"),
    "openai": ("OPENAI_", "CODEX_", "AZURE_OPENAI_"),
    "google": ("GEMINI_", "GOOGLE_"),
    "deepseek": ("DEEPSEEK_",),
    "moonshot": ("MOONSHOT_", "KIMI_"),
    "qwen": ("DASHSCOPE_", "QWEN_"),
    "zhipu": ("ZHIPU_", "GLM_", "BIGMODEL_", "ZAI_"),
    "openrouter": ("OPENROUTER_",),
    "mistral": ("MISTRAL_",),
    "groq": ("GROQ_",),
    "xai": ("XAI_",),
    "minimax": ("MINIMAX_",),
}

# Where a CLI keeps its config and login: not a credential for any endpoint, and dropping it
# would send the CLI to the user's real home directory instead.
KEPT_NAMES: Final = frozenset({"CLAUDE_CONFIG_DIR", "CODEX_HOME", "GEMINI_CLI_HOME"})

# The separator of AISWITCH_PRESET_VARS (shared with presets.shells and the adapter SDK).
_VARS_SEPARATOR: Final = ","


@dataclass(frozen=True)
class ChildEnvRequest:
    parent: Mapping[str, str]
    agent_env: Mapping[str, str] = field(default_factory=dict)
    preset: str | None = None
    preset_vars: Mapping[str, str] = field(default_factory=dict)
    preset_unset: tuple[str, ...] = ()
    preset_billing: str | None = None
    agent_id: str = ""
    run_id: str = ""
    home: str = ""


def provider_family(name: str) -> str | None:
    """The provider family `name` belongs to, or None."""
    for family, prefixes in PROVIDER_FAMILIES.items():
        if name.startswith(prefixes):
            return family
    return None


def shell_applied_vars(parent: Mapping[str, str]) -> list[str]:
    """The names in the parent's AISWITCH_PRESET_VARS that are plausible variable names.

    Lenient on purpose: a garbled list must not stop a run, and a name that is not a
    variable name cannot be in the environment anyway.
    """
    raw = parent.get(PRESET_VARS, "")
    return [n for n in (p.strip() for p in raw.split(_VARS_SEPARATOR)) if NAME_PATTERN.match(n)]


def build_child_env(request: ChildEnvRequest) -> dict[str, str]:
    env = dict(request.parent)
    for name in shell_applied_vars(request.parent):
        env.pop(name, None)
    for name in (PRESET_NAME, PRESET_VARS, PRESET_BILLING):
        env.pop(name, None)
    families = {provider_family(name) for name in request.preset_vars} - {None}
    if families:
        for name in list(env):
            if (
                name not in request.preset_vars
                and name not in KEPT_NAMES
                and provider_family(name) in families
            ):
                del env[name]
    env.update(request.agent_env)
    for name in request.preset_unset:
        env.pop(name, None)
    env.update(request.preset_vars)
    if request.preset is not None:
        env[PRESET_NAME] = request.preset
        env[PRESET_VARS] = _VARS_SEPARATOR.join(sorted(request.preset_vars))
        # Adapters give API-key presets a CLI home of their own, and leave a
        # subscription preset on the CLI's own home (its login).
        env[PRESET_BILLING] = request.preset_billing or "api"
    if request.agent_id:
        env["AISWITCH_AGENT_ID"] = request.agent_id
    if request.run_id:
        env["AISWITCH_RUN_ID"] = request.run_id
    if request.home:
        env["AISWITCH_HOME"] = request.home
    return env
