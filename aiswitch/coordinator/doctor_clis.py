"""`aiswitch doctor`'s checks of what lies outside the home: the agent CLIs, the presets
and the providers they point at (aiswitch.coordinator.doctor holds the rest).

- `check_clis`: each pinned CLI (aiswitch/data/clis.json) is on PATH (or at the agent's
  `cli_path`), and its installed version is the pinned one. The version is read from the
  npm package's `package.json` next to the binary (no program is run); a binary not
  installed by npm is asked `--version` (bounded by `VERSION_TIMEOUT_S`). A missing CLI is
  a note (an agent you do not use need not be installed); another version is a warning.
- `check_presets`: the user presets file is valid (its errors are the config check's),
  each preset's references resolve in this environment (aiswitch.presets.refs) and its
  agent exists; each default
  names a preset that exists.
- `check_providers` (`--online`): each user preset's `*_BASE_URL` answers HTTP at all
  (any status is an answer) within `ONLINE_TIMEOUT_S`. Built-in presets are left out: they
  name the vendors' public endpoints, which are not yours to fix.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from aiswitch.coordinator.doctor import Finding
from aiswitch.home import Home

# `--version` of a CLI starts a Node or native program: seconds on a cold cache.
VERSION_TIMEOUT_S: Final = 15.0
# A provider that takes longer than this to answer a plain request is unusable anyway.
ONLINE_TIMEOUT_S: Final = 5.0
_VERSION = re.compile(r"\d+\.\d+\.\d+")


def installed_version(binary: Path, package: str) -> str | None:
    """The version of `package` that `binary` belongs to, from its package.json, else
    from `binary --version`; None when neither says."""
    real = binary.resolve()
    for folder in real.parents:
        manifest = folder / "package.json"
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                break
            if isinstance(data, dict) and data.get("name") == package:
                version = data.get("version")
                return str(version) if version else None
        if folder.name == "node_modules":
            break
    try:
        done = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = _VERSION.search(done.stdout or done.stderr)
    return found.group(0) if found else None


def check_clis(home: Home, env: Mapping[str, str]) -> list[Finding]:
    from aiswitch.agents import AgentRegistry, pinned_clis
    from aiswitch.errors import ConfigError

    try:
        agents = AgentRegistry.load(home).agents
    except ConfigError:
        agents = {}  # the config check reports it
    found = []
    for name, (package, version) in pinned_clis().items():
        agent = agents.get(name)
        configured = agent.cli_path if agent is not None else None
        where = configured or shutil.which(name, path=env.get("PATH"))
        install = f"npm install -g {package}@{version}"
        if where is None or not Path(where).exists():
            found.append(Finding("clis", "note", f"{name} is not installed", install))
            continue
        have = installed_version(Path(where), package)
        if have == version:
            found.append(Finding("clis", "ok", f"{name} {have} (tested) at {where}"))
        else:
            found.append(
                Finding(
                    "clis",
                    "warning",
                    f"{name} at {where} is {have or 'of an unknown version'}; "
                    f"aiswitch is tested with {version}",
                    install,
                )
            )
    return found


def check_presets(home: Home, env: Mapping[str, str]) -> list[Finding]:
    from aiswitch.agents import AgentRegistry
    from aiswitch.errors import ConfigError, PresetError
    from aiswitch.presets.refs import resolve_value
    from aiswitch.presets.store import PresetStore

    store = PresetStore(home)
    try:
        data = store.load()
        agents = list(AgentRegistry.load(home).agents)
    except ConfigError:
        return []  # the config check reports it
    found = []
    for preset in data.presets.values():
        for variable, value in preset.variables.items():
            try:
                resolve_value(value, env, where=variable)
            except PresetError as exc:
                found.append(
                    Finding(
                        "presets",
                        "problem",
                        f"preset {preset.name}: {exc.message}",
                        f"aiswitch preset set {preset.name} {variable}=VALUE  "
                        "# or provide what it refers to",
                    )
                )
        if preset.agent is not None and preset.agent not in agents:
            found.append(
                Finding(
                    "presets",
                    "problem",
                    f"preset {preset.name}: agent {preset.agent!r} is not defined",
                    f"aiswitch preset set {preset.name} --agent ''",
                )
            )
    every = store.all(data)
    defaults = [("global", data.defaults.global_), *data.defaults.agents.items()]
    for scope, name in defaults:
        if name is not None and name not in every:
            found.append(
                Finding(
                    "presets",
                    "problem",
                    f"the default preset for {scope} is {name!r}, which does not exist",
                    "aiswitch preset default --unset"
                    + ("" if scope == "global" else f" --agent {scope}"),
                )
            )
    if not found:
        found.append(Finding("presets", "ok", f"{len(data.presets)} user presets resolve"))
    return found


def check_providers(home: Home, env: Mapping[str, str]) -> list[Finding]:
    import urllib.error
    import urllib.request

    from aiswitch.errors import ConfigError, PresetError
    from aiswitch.presets.refs import resolve_value
    from aiswitch.presets.store import PresetStore

    try:
        presets = PresetStore(home).load().presets
    except ConfigError:
        return []
    found = []
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for preset in presets.values():
        for variable, value in preset.variables.items():
            if not variable.endswith("_BASE_URL"):
                continue
            try:
                url = resolve_value(value, env, where=variable)
            except PresetError:
                continue  # the presets check reports it
            if not url.startswith(("http://", "https://")):
                found.append(
                    Finding(
                        "providers",
                        "problem",
                        f"preset {preset.name}: {variable} {url!r} is not an http(s) URL",
                        f"aiswitch preset set {preset.name} {variable}=https://…",
                    )
                )
                continue
            try:
                request = urllib.request.Request(url, method="GET")  # noqa: S310 (http(s) only)
                with opener.open(request, timeout=ONLINE_TIMEOUT_S):
                    pass
            except urllib.error.HTTPError:
                pass  # it answered: reachable
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                found.append(
                    Finding(
                        "providers",
                        "problem",
                        f"preset {preset.name}: {variable} {url} is not reachable: {reason}",
                        f"aiswitch preset set {preset.name} {variable}=<the provider's URL>",
                    )
                )
                continue
            found.append(Finding("providers", "ok", f"preset {preset.name}: {url} answers"))
    return found
