"""The one function that builds an agent child's environment: an allowlist, not a copy.

    child env = the parent's variables that pass:
                  the base allowlist (`BASE_NAMES`, `BASE_PREFIXES`: PATH, HOME, USER,
                  LOGNAME, SHELL, TERM, LANG, LC_*, TZ, TMPDIR, XDG_*, proxies, CA files,
                  the CLIs' home folders, AISWITCH_LOG_LEVEL)
                  + with no preset: the child CLI's own provider family (`CLI_FAMILIES`:
                    claude → ANTHROPIC_*/CLAUDE_*, codex → OPENAI_*/CODEX_*/…, gemini →
                    GEMINI_*/GOOGLE_*), so its own login and key keep working
                  + the names the agent definition lists in `env_passthrough`
                  − the variables the calling shell's preset set (AISWITCH_PRESET_VARS)
                + the agent definition's `env`
                − the preset's `unset` list
                + the preset's variables (references already resolved)
                + aiswitch's own: AISWITCH_AGENT_ID, AISWITCH_RUN_ID, AISWITCH_HOME,
                  AISWITCH_PRESET and AISWITCH_PRESET_VARS (what the preset set)

Later layers win. Nothing else of the parent's reaches a child: a claude@kimi child sees
neither the parent's ANTHROPIC_API_KEY nor its OPENAI_API_KEY, AWS_SECRET_ACCESS_KEY or
MOONSHOT_API_KEY (the MCP SDK gives stdio servers an allowlist for the same reason). A
preset replaces the CLI's own family instead of adding to it, whatever variables it sets:
a preset that only sets HTTPS_PROXY does not pass the parent's key along. The variables
the calling shell's preset applied describe that shell's preset; they never pass (when the
child gets the same preset, its resolved values come back in the preset layer). The agent
definition's `env` and `env_passthrough` are configuration, not inheritance: they apply
as written.

`aiswitch preset env` uses this same function, so what a child gets can always be inspected
without starting it. `aiswitch preset exec` (`inherit="all"`) stands in for `preset use`
in a subshell: it starts from the whole parent environment and removes the parent's
variables of each provider family the preset sets a variable of, and the shell preset's.

Every secret value the function handles (a parent's variable under a secret name, the
preset's and the agent's secret values) is remembered by `aiswitch.masking`, so this
process masks it wherever it shows up later (logs, errors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

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

# The family a CLI reads its own login, key and settings from (an agent's `cli`).
CLI_FAMILIES: Final[Mapping[str, str]] = {
    "claude": "anthropic",
    "codex": "openai",
    "gemini": "google",
}

# Where a CLI keeps its config and login: not a credential for any endpoint, and dropping it
# would send the CLI to the user's real home directory instead.
KEPT_NAMES: Final = frozenset({"CLAUDE_CONFIG_DIR", "CODEX_HOME", "GEMINI_CLI_HOME"})

# What any program needs to run as this user, in this terminal and locale, behind this
# network's proxy and trusting this machine's CAs. None of it is a credential (a proxy URL
# with a password in it is the user's network setting, needed by every CLI alike).
BASE_NAMES: Final = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "TERM",
        "LANG",
        "TZ",
        "TMPDIR",
        # proxies, both spellings: curl and Node read the lower case, Python both
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        # CA bundles: OpenSSL, Python requests, curl, Node
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        # aiswitch's own: the adapters' log level, and how deeply `aiswitch mcp` servers
        # are nested (an agent that starts one more is refused beyond the limit)
        "AISWITCH_LOG_LEVEL",
        "AISWITCH_MCP_DEPTH",
        *KEPT_NAMES,
    }
)
BASE_PREFIXES: Final = ("LC_", "XDG_")

# The separator of AISWITCH_PRESET_VARS (shared with presets.shells and the adapter SDK).
_VARS_SEPARATOR: Final = ","
# `env_passthrough: [MOCK_*]`: a trailing star passes every name with that prefix.
_PREFIX_MARK: Final = "*"

Inherit = Literal["allowlist", "all"]


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
    # The agent's CLI (`AgentDef.cli`): with no preset, its family passes.
    cli: str | None = None
    # The agent's `env_passthrough`: names (or `PREFIX*`) passed from the parent.
    passthrough: tuple[str, ...] = ()
    # "all": `preset exec` (see the module docstring).
    inherit: Inherit = "allowlist"


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


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    for pattern in patterns:
        if pattern.endswith(_PREFIX_MARK):
            if name.startswith(pattern[:-1]):
                return True
        elif name == pattern:
            return True
    return False


def passes(request: ChildEnvRequest, name: str) -> bool:
    """Whether the parent's variable `name` reaches the child (the allowlist)."""
    if name in BASE_NAMES or name.startswith(BASE_PREFIXES):
        return True
    if _matches(name, request.passthrough):
        return True
    if request.preset is None and request.cli is not None:
        own = CLI_FAMILIES.get(request.cli)
        return own is not None and provider_family(name) == own
    return False


def _inherited_all(request: ChildEnvRequest) -> dict[str, str]:
    """`preset exec`: everything but the families the preset touches (module docstring)."""
    families = {provider_family(name) for name in request.preset_vars} - {None}
    return {
        name: value
        for name, value in request.parent.items()
        if name in request.preset_vars
        or name in KEPT_NAMES
        or provider_family(name) not in families
    }


def build_child_env(request: ChildEnvRequest) -> dict[str, str]:
    from aiswitch.masking import remember_env_secrets

    for layer in (request.parent, request.agent_env, request.preset_vars):
        remember_env_secrets(layer)
    if request.inherit == "all":
        env = _inherited_all(request)
    else:
        env = {name: value for name, value in request.parent.items() if passes(request, name)}
    for name in shell_applied_vars(request.parent):
        env.pop(name, None)
    for name in (PRESET_NAME, PRESET_VARS, PRESET_BILLING):
        env.pop(name, None)
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
