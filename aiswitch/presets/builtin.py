"""The presets and templates shipped inside the installed package.

`presets/*.yaml` in the repository installs as the package `aiswitch_presets`: those are the
built-in presets (the mock agent's `slow`, `fast`, `flaky`, `crashy`), visible in the store
and read-only there. `presets/templates/*.yaml` are provider templates: never used directly,
only copied by `preset add NAME --from-template T`. Each file is one `Preset` document whose
`name` is the preset's (or template's) name. Both are read with `importlib.resources`, so they
work from a wheel, a zip or an editable install alike.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from pydantic import ValidationError

from aiswitch.errors import ConfigError, PresetError
from aiswitch.presets.model import Preset

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PACKAGE = "aiswitch_presets"
TEMPLATES_DIR = "templates"


def _load_dir(folder: Traversable, what: str) -> dict[str, Preset]:
    from aiswitch.agents import validation_summary
    from aiswitch.yaml_text import parse

    presets: dict[str, Preset] = {}
    if not folder.is_dir():
        return presets
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        try:
            preset = Preset.model_validate(parse(entry.read_text(encoding="utf-8"), remember=True))
        except ValidationError as exc:
            raise ConfigError(f"{what} {entry.name}: {validation_summary(exc)}") from None
        except Exception as exc:
            # PyYAML is imported here only when it failed (a remembered document needs none).
            import yaml

            if isinstance(exc, yaml.YAMLError):
                raise ConfigError(f"{what} {entry.name} is not valid YAML: {exc}") from None
            raise
        presets[preset.name] = preset
    return presets


@cache
def builtin_presets() -> dict[str, Preset]:
    from importlib.resources import files

    return _load_dir(files(PACKAGE), "built-in preset")


@cache
def templates() -> dict[str, Preset]:
    from importlib.resources import files

    return _load_dir(files(PACKAGE).joinpath(TEMPLATES_DIR), "template")


def get_template(name: str) -> Preset:
    found = templates().get(name)
    if found is None:
        raise PresetError(
            f"unknown template {name!r}", hint="`aiswitch preset templates` lists them"
        )
    return found
