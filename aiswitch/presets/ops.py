"""Preset operations the CLI exposes, as library functions: parsing `KEY=VALUE`, showing
values, checking presets, and the export/import document.

Contract:

- `parse_assignments` rejects a malformed argument without echoing it whole (it may be a key
  typed without its name): the error shows it through `redact_text`.
- `shown_value` is how a stored value is displayed: a value that is exactly one reference is
  shown as written (it says where a secret is, not what it is); anything else goes through
  `masking.should_mask`/`mask_value`, unless `reveal`.
- Export documents have the store's shape (`version`, `presets: {name: body}`). Without
  `include_secrets`, every literal value `should_mask` picks is replaced by a redaction marker
  (`<redacted …>`), and `import` refuses any document that still holds one, so a redacted
  export can never be imported as if its markers were keys.
- `untrusted_sends` is what `import` checks before it writes: a preset that sends a
  `${env:}`/`${file:}` reference in a secret position (a variable whose name looks secret)
  to a base URL host that no template sends that reference to (to none of the templates'
  hosts, for a reference no template reads) could read a key on this machine and send it
  to someone else's server; `import` refuses it without `--trust`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from aiswitch.errors import PresetError, UsageError
from aiswitch.masking import (
    is_secret_name,
    known_secrets,
    mask_value,
    redact_text,
    should_mask,
)
from aiswitch.presets.hosts import CLI_DEFAULT_HOSTS
from aiswitch.presets.model import Preset, check_name, var_problem
from aiswitch.presets.refs import ReferenceSyntaxError, check_value, is_pure_reference
from aiswitch.presets.refs import references as value_references

REDACTED_PREFIX: Final = "<redacted"
_REDACTED_RE: Final = re.compile(r"<redacted(?: [^>]*)?>\Z")
EXPORT_VERSION: Final = 1


def parse_assignments(args: Sequence[str]) -> dict[str, str]:
    """`KEY=VALUE` arguments as a dict, in order; UsageError on the first bad one."""
    out: dict[str, str] = {}
    for index, arg in enumerate(args, start=1):
        name, sep, value = arg.partition("=")
        if not sep or not name:
            raise UsageError(
                f"argument {index} ({redact_text(arg)!r}) is not KEY=VALUE",
                hint="write NAME=VALUE; quote the value for your shell",
            )
        problem = var_problem(name)
        if problem is not None:
            raise UsageError(problem)
        try:
            check_value(value)
        except ReferenceSyntaxError as exc:
            raise UsageError(f"{name}: {exc}") from None
        out[name] = value
    return out


def parse_names(args: Sequence[str]) -> list[str]:
    for name in args:
        problem = var_problem(name)
        if problem is not None:
            raise UsageError(problem)
    return list(dict.fromkeys(args))


def shown_value(name: str, value: str, *, reveal: bool) -> str:
    if reveal or is_pure_reference(value):
        return value
    return mask_value(value) if should_mask(name, value) else value


def shown_variables(variables: Mapping[str, str], *, reveal: bool) -> dict[str, str]:
    """Each value per `shown_value`, and masked wherever it repeats a secret literal of the
    same preset under a name that does not look secret."""
    shown = {name: shown_value(name, value, reveal=reveal) for name, value in variables.items()}
    if reveal:
        return shown
    secrets = {value for name, value in variables.items() if shown[name] != value}
    return {
        name: mask_value(value) if value in secrets else shown[name]
        for name, value in variables.items()
    }


def preset_document(preset: Preset, *, reveal: bool, builtin: bool) -> dict[str, Any]:
    """The JSON form of one preset for `list`/`show` (values shown per `shown_value`)."""
    doc = preset.model_dump(mode="json")
    doc["variables"] = shown_variables(preset.variables, reveal=reveal)
    doc["builtin"] = builtin
    doc["references"] = sorted(
        {str(ref) for value in preset.variables.values() for ref in value_references(value)}
    )
    return doc


def masked_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` as `preset env` shows it: `masking.mask_env`, plus every other variable holding
    one of the values it masked or this process remembered (a reference copies a secret into
    a second variable, such as `NOTE=${env:DB_CREDS}`, whose name need not look secret; the
    parent's own secret need not be in `env` at all), and every value holding one inside it.
    """
    secrets = {value for name, value in env.items() if should_mask(name, value)}
    secrets |= known_secrets()
    shown: dict[str, str] = {}
    for name, value in env.items():
        if value in secrets:
            shown[name] = mask_value(value)
        else:
            shown[name] = redact_text(value, secrets, patterns=False)
    return shown


# --- validate ------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_preset(preset: Preset, env: Mapping[str, str], agents: Iterable[str]) -> Check:
    """Everything that would make `preset use` or a run fail: references and the agent."""
    from aiswitch.presets.refs import resolve_value

    check = Check(preset.name)
    for name, value in preset.variables.items():
        try:
            resolve_value(value, env, where=name)
        except PresetError as exc:
            check.problems.append(exc.message)
    if preset.agent is not None and preset.agent not in set(agents):
        check.problems.append(f"agent {preset.agent!r} is not defined")
    return check


# --- export / import -----------------------------------------------------------------------


def redaction_marker(value: str) -> str:
    masked = mask_value(value)
    return f"{REDACTED_PREFIX} {masked}>" if masked else f"{REDACTED_PREFIX}>"


def is_redacted(value: str) -> bool:
    return bool(_REDACTED_RE.match(value))


def export_document(presets: Iterable[Preset], *, include_secrets: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for preset in presets:
        body = preset.body()
        if not include_secrets and preset.variables:
            secrets = {
                value
                for name, value in preset.variables.items()
                if not is_pure_reference(value) and should_mask(name, value)
            }
            body["variables"] = {
                name: redaction_marker(value) if value in secrets else value
                for name, value in preset.variables.items()
            }
        out[preset.name] = body
    return {"version": EXPORT_VERSION, "presets": out}


def parse_import(raw: Any, origin: str) -> list[Preset]:
    """The presets of an export document; PresetError for anything invalid or redacted."""
    from aiswitch.agents import validation_summary

    if not isinstance(raw, dict) or not isinstance(raw.get("presets"), dict):
        raise PresetError(f"{origin}: not an aiswitch preset export (no `presets:` mapping)")
    version = raw.get("version", EXPORT_VERSION)
    if not isinstance(version, int) or version > EXPORT_VERSION:
        raise PresetError(f"{origin}: export format version {version!r} is not supported")
    presets: list[Preset] = []
    for name, body in raw["presets"].items():
        check_name(str(name))
        if not isinstance(body, dict):
            raise PresetError(f"{origin}: preset {name!r}: expected a mapping")
        variables = body.get("variables") or {}
        if isinstance(variables, dict):
            redacted = [k for k, v in variables.items() if isinstance(v, str) and is_redacted(v)]
            if redacted:
                raise PresetError(
                    f"{origin}: preset {name!r} holds redacted values ({', '.join(redacted)})",
                    hint="export with --include-secrets, or set those values by hand",
                )
        try:
            presets.append(Preset.model_validate({**body, "name": str(name)}))
        except ValidationError as exc:
            raise PresetError(f"{origin}: preset {name!r}: {validation_summary(exc)}") from None
    return presets


# --- import: where secrets go --------------------------------------------------------------

_BASE_URL_SUFFIX: Final = "BASE_URL"


def _destinations(preset: Preset) -> set[str]:
    """Where a preset sends its keys: each base URL's host (a base URL that is itself a
    reference, as written), else its agent CLI's default host; empty when unknown."""
    from urllib.parse import urlsplit

    found: set[str] = set()
    for name, value in preset.variables.items():
        if not name.endswith(_BASE_URL_SUFFIX) or not value:
            continue
        if value_references(value):
            found.add(value)
            continue
        try:
            host = urlsplit(value).hostname
        except ValueError:
            host = None
        found.add((host or value).lower())
    default = CLI_DEFAULT_HOSTS.get(preset.agent or "")
    if not found and default is not None:
        found.add(default)
    return found


def _secret_references(preset: Preset) -> list[tuple[str, str]]:
    """(variable, reference) for each reference in a variable whose name looks secret."""
    return [
        (name, str(ref))
        for name, value in preset.variables.items()
        if is_secret_name(name)
        for ref in value_references(value)
    ]


def untrusted_sends(presets: Iterable[Preset], templates: Iterable[Preset]) -> list[str]:
    """One line per secret reference a preset sends where no template sends it (module
    docstring); empty when every preset only sends keys where the templates do."""
    allowed: dict[str, set[str]] = {}
    every_host: set[str] = set()
    for template in templates:
        hosts = _destinations(template)
        every_host |= hosts
        for _, ref in _secret_references(template):
            allowed.setdefault(ref, set()).update(hosts)
    problems: list[str] = []
    for preset in presets:
        hosts = _destinations(preset)
        for name, ref in _secret_references(preset):
            strange = sorted(hosts - allowed.get(ref, every_host))
            if strange:
                problems.append(
                    f"preset {preset.name!r} sends {ref} ({name}) to {', '.join(strange)}, "
                    f"where no template sends it"
                )
    return problems
