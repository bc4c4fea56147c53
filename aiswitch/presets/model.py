"""The preset model: a named set of environment variables, and how names are checked.

A name is letters, digits, `-`, `_` and `.`, not starting with `-` or `.` (so it can
never be a path or an option, and `..` is impossible). Values are literals, or references
resolved at use time: `${env:NAME}` (the caller's environment) and `${file:PATH}` (a file's
content, trailing newline removed). Any other `$` text is literal; `$${` escapes a literal
`${` (see `aiswitch.presets.refs`).

Variable names (set or unset) are `[A-Za-z_][A-Za-z0-9_]*` and not one of the shell's
reserved names (`shells.RESERVED_NAMES`: PATH, HOME, IFS, aiswitch's own, …), because a
preset must be applicable to a shell as well as to a child; the check happens when the
preset is saved, so a stored preset never fails on `preset use` for its names.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aiswitch.errors import PresetError
from aiswitch.factories import new_list

NAME_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
VAR_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Names show up in tables, file names of exports and shell variables: keep them short.
MAX_NAME_LEN: Final = 64
# Free text shown in one line of `preset list`; longer belongs in docs, not here.
MAX_DESCRIPTION_LEN: Final = 500


def check_name(name: str) -> str:
    if not name or len(name) > MAX_NAME_LEN or not NAME_RE.match(name):
        raise PresetError(
            f"invalid preset name {name!r}",
            hint="use letters, digits, '-', '_' and '.', not starting with '-' or '.'",
        )
    return name


def var_problem(name: str) -> str | None:
    """Why `name` cannot be a preset variable, or None when it can."""
    from aiswitch.presets.shells import RESERVED_NAMES

    if not VAR_RE.match(name):
        return (
            f"invalid variable name {name!r} (use letters, digits and _, not starting with a digit)"
        )
    if name in RESERVED_NAMES:
        return f"variable {name!r} is reserved: a preset may not set or unset it"
    return None


def check_var(name: str) -> str:
    problem = var_problem(name)
    if problem is not None:
        raise PresetError(problem)
    return name


class ModelPrice(BaseModel):
    """Per million tokens, in USD."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    variables: dict[str, str] = {}
    unset: list[str] = Field(
        default_factory=new_list, description="Variables removed from a child."
    )
    description: str = Field("", max_length=MAX_DESCRIPTION_LEN)
    tags: list[str] = []
    agent: str | None = None
    model: str | None = None
    billing: Literal["api", "subscription"] | None = None
    prices: dict[str, ModelPrice] = {}
    rate: str | None = Field(
        None, description="Task starts allowed on lanes with this preset: COUNT/s, /min, /hour."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return check_name(value)
        except PresetError as exc:
            raise ValueError(exc.message) from None

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        from aiswitch.presets.refs import ReferenceSyntaxError, check_value

        for name, text in value.items():
            problem = var_problem(name)
            if problem is not None:
                raise ValueError(problem)
            try:
                check_value(text)
            except ReferenceSyntaxError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return value

    @field_validator("unset")
    @classmethod
    def _unset(cls, value: list[str]) -> list[str]:
        for name in value:
            problem = var_problem(name)
            if problem is not None:
                raise ValueError(problem)
        return list(dict.fromkeys(value))

    @field_validator("agent")
    @classmethod
    def _agent(cls, value: str | None) -> str | None:
        from aiswitch.agents import AGENT_NAME

        if value is not None and not AGENT_NAME.match(value):
            raise ValueError(f"invalid agent name {value!r}")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not NAME_RE.match(tag):
                raise ValueError(f"invalid tag {tag!r} (use letters, digits, '-', '_', '.')")
        return value

    def body(self) -> dict[str, object]:
        """The preset as stored under its name: everything but the name, defaults left out."""
        return self.model_dump(mode="json", exclude={"name"}, exclude_defaults=True)
