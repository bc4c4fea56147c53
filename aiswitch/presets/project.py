"""`.aiswitch.yaml`: the preset a directory (and everything below it) asks for.

    preset: kimi

The file is looked up in the current directory, then each parent up to the filesystem root;
the nearest one wins. Only `preset use` with no name reads it: a run does not, so that what
a child gets never depends on the directory a run happens to start in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, ValidationError

from aiswitch.errors import ConfigError, UsageError
from aiswitch.presets.model import check_name

PROJECT_FILE: Final = ".aiswitch.yaml"


class _ProjectFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str


def find_project_file(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
    return None


def project_preset(start: Path) -> tuple[str, Path] | None:
    """The preset named by the nearest `.aiswitch.yaml`, and that file; None when none."""
    from aiswitch.agents import load_yaml, validation_summary

    path = find_project_file(start)
    if path is None:
        return None
    raw = load_yaml(path)
    try:
        parsed = _ProjectFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_summary(exc)}") from None
    check_name(parsed.preset)
    return parsed.preset, path


def require_project_preset(start: Path) -> str:
    found = project_preset(start)
    if found is None:
        raise UsageError(
            f"no preset given and no {PROJECT_FILE} in this directory or its parents",
            hint=f"name a preset, or write `preset: NAME` into {PROJECT_FILE}",
        )
    return found[0]
