"""Which host an agent's requests go to: the base URL host of its environment, never the key.

Contract: `base_url_host(agent, *envs)` reads the agent CLI's base URL variable
(`BASE_URL_VARS`: claude `ANTHROPIC_BASE_URL`, codex `OPENAI_BASE_URL`, gemini
`GOOGLE_GEMINI_BASE_URL`; for another agent, the one `*_BASE_URL` variable its environment
sets) from the first environment that sets it, and returns the URL's host in lower case.
With none set, a built-in CLI talks to its vendor (`CLI_DEFAULT_HOSTS`); any other agent
has no known host (None). The ledger records this as `host` (issue 12, part 10).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

# The endpoint a CLI talks to when no base URL is set (the templates that set none use it).
CLI_DEFAULT_HOSTS: Final[Mapping[str, str]] = {
    "claude": "api.anthropic.com",
    "codex": "api.openai.com",
    "gemini": "generativelanguage.googleapis.com",
}
BASE_URL_VARS: Final[Mapping[str, str]] = {
    "claude": "ANTHROPIC_BASE_URL",
    "codex": "OPENAI_BASE_URL",
    "gemini": "GOOGLE_GEMINI_BASE_URL",
}
_SUFFIX: Final = "_BASE_URL"


def _host(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower() if host else None


def base_url_host(agent: str, *envs: Mapping[str, str]) -> str | None:
    variable = BASE_URL_VARS.get(agent)
    for env in envs:
        if variable is not None:
            url = env.get(variable)
        else:
            found = [value for name, value in env.items() if name.endswith(_SUFFIX) and value]
            url = found[0] if len(found) == 1 else None
        if url:
            return _host(url)
    return CLI_DEFAULT_HOSTS.get(agent)
