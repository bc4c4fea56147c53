"""Shell completion candidates (`aiswitch --install-completion`, typer's): run ids, agent
names, agent process ids and preset names.

A completion is one `aiswitch` start per Tab, so each function here reads the home's files
directly (JSON and YAML, no pydantic model, no lock, nothing written) and never raises:
a missing or unreadable file completes nothing.

`fix_zsh_script()` replaces typer's zsh script with one that also completes on the first
Tab: typer's, autoloaded from `fpath` as `_aiswitch`, only defines and registers its
function on that Tab (the user sees nothing until the second); this one then also calls it,
as click's own zsh template does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _home() -> Any:
    from aiswitch.home import Home

    return Home.current()


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _yaml_keys(path: Path, section: str) -> list[str]:
    import yaml

    from aiswitch.yaml_text import parse

    try:
        data = parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    found = data.get(section) if isinstance(data, dict) else None
    return [str(k) for k in found] if isinstance(found, dict) else []


def _starting(candidates: Iterable[str], incomplete: str) -> list[str]:
    return [c for c in dict.fromkeys(candidates) if c.startswith(incomplete)]


def run_ids(incomplete: str) -> list[str]:
    """Recorded runs, newest first."""
    index = _json(_home().state / "tasks.json")
    runs = index.get("runs", []) if isinstance(index, dict) else []
    ids = [str(r.get("run_id")) for r in runs if isinstance(r, dict) and r.get("run_id")]
    return _starting(reversed(ids), incomplete)


def agent_names(incomplete: str) -> list[str]:
    """Defined agents: the built-in ones and config/agents.yaml's."""
    from importlib import resources

    pins = json.loads(resources.files("aiswitch.data").joinpath("clis.json").read_text())
    builtin = ["mock", *(name for name in pins if not name.startswith("_"))]
    return _starting([*builtin, *_yaml_keys(_home().config / "agents.yaml", "agents")], incomplete)


def preset_names(incomplete: str) -> list[str]:
    """Presets: the built-in ones and config/presets.yaml's."""
    from importlib import resources

    try:
        builtin = [
            entry.name.removesuffix(".yaml")
            for entry in resources.files("aiswitch_presets").iterdir()
            if entry.name.endswith(".yaml")
        ]
    except (ModuleNotFoundError, OSError):
        builtin = []
    return _starting(
        [*builtin, *_yaml_keys(_home().config / "presets.yaml", "presets")], incomplete
    )


def agent_specs(incomplete: str) -> list[str]:
    """`--agent` / `--parallel` / `--sequential`: `NAME[@PRESET]`, comma-separated; the
    last item is completed, what comes before it kept."""
    done, comma, last = incomplete.rpartition(",")
    head = done + comma
    name, at, preset = last.partition("@")
    if at:
        return [f"{head}{name}@{p}" for p in preset_names(preset)]
    return [head + n for n in agent_names(name)]


def agent_ids(incomplete: str) -> list[str]:
    """Agent processes in state/agents.json (`mock.p1`), as `agents stop` takes them."""
    table = _json(_home().state / "agents.json")
    agents = table.get("agents", {}) if isinstance(table, dict) else {}
    ids = [
        str(entry["agent_id"])
        for entry in (agents.values() if isinstance(agents, dict) else [])
        if isinstance(entry, dict) and entry.get("agent_id")
    ]
    return _starting(sorted(ids), incomplete)


ZSH_SCRIPT = """
#compdef %(prog_name)s

%(complete_func)s() {
  local args="${words[1,$CURRENT]}"
  eval $(env _TYPER_COMPLETE_ARGS="$args" %(autocomplete_var)s=complete_zsh %(prog_name)s)
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  # Autoloaded from fpath on the first Tab: complete this Tab too.
  compdef %(complete_func)s %(prog_name)s
  %(complete_func)s "$@"
else
  compdef %(complete_func)s %(prog_name)s
fi
"""


def fix_zsh_script() -> None:
    """Make `--install-completion` / `--show-completion` write `ZSH_SCRIPT` for zsh."""
    from typer import _completion_shared

    _completion_shared._completion_scripts["zsh"] = ZSH_SCRIPT
