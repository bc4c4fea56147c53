"""`aiswitch preset …`: manage presets, apply them to a shell, inspect what a child gets.

The CLI layer only parses and prints; the logic lives in `aiswitch.presets` and
`aiswitch.supervisor.env`. Values are shown through `aiswitch.masking` (via
`presets.ops.shown_value` and `presets.ops.masked_env`) unless `--reveal`; the only outputs
with real values are `preset use`/`clear` code (never on a terminal), `preset exec`'s child and
`preset export --include-secrets`. Every failure raises an `AiswitchError` before anything is
printed on stdout, so `eval "$(aiswitch preset use X)"` of a failed switch changes nothing.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer

from aiswitch.cli import completion

if TYPE_CHECKING:
    from aiswitch.presets.model import Preset
    from aiswitch.presets.store import PresetStore, StoreData

preset_app = typer.Typer(
    name="preset",
    help="Presets: named sets of environment variables for a shell or an agent child.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

JSON_HELP = "Print JSON."
_PRESETS = completion.preset_names
REVEAL_HELP = "Show secret values instead of masking them."


def print_out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


def print_json(value: Any) -> None:
    import json

    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def print_note(text: str) -> None:
    sys.stderr.write(f"aiswitch: {text}\n")


def open_store() -> PresetStore:
    from aiswitch.presets.store import PresetStore

    return PresetStore()


def audit(action: str, **details: Any) -> None:
    """One record in the audit log: names only, never a value."""
    from aiswitch.state.audit import audit as record

    record(action, **details)


def _current() -> str | None:
    import os

    from aiswitch.presets.shells import PRESET_NAME_VAR

    return os.environ.get(PRESET_NAME_VAR) or None


def _validated(fields: dict[str, Any]) -> Preset:
    from pydantic import ValidationError

    from aiswitch.agents import validation_summary
    from aiswitch.errors import PresetError
    from aiswitch.presets.model import Preset

    try:
        return Preset.model_validate(fields)
    except ValidationError as exc:
        raise PresetError(f"preset {fields.get('name')!r}: {validation_summary(exc)}") from None


# --- changing presets ----------------------------------------------------------------------


@preset_app.command("add")
def add(
    name: str = typer.Argument(..., help="The new preset's name."),
    assignments: list[str] = typer.Argument(None, help="KEY=VALUE … (values may be references)."),
    agent: str | None = typer.Option(None, "--agent", help="The agent it is meant for."),
    description: str | None = typer.Option(None, "--description", "-d"),
    template: str | None = typer.Option(None, "--from-template", "-t", help="Start from T."),
    model: str | None = typer.Option(None, "--model", help="The model it selects (reports)."),
    billing: str | None = typer.Option(None, "--billing", help="api | subscription."),
    tags: list[str] = typer.Option(None, "--tag", help="A tag (repeatable)."),
    unset: list[str] = typer.Option(None, "--unset", help="A variable removed from a child."),
) -> None:
    """Add a user preset: KEY=VALUE pairs, optionally on top of a template."""
    from aiswitch.presets.builtin import get_template
    from aiswitch.presets.model import check_name
    from aiswitch.presets.ops import parse_assignments, parse_names
    from aiswitch.presets.store import ensure_free

    check_name(name)
    variables = parse_assignments(assignments or [])
    fields: dict[str, Any] = {}
    if template is not None:
        fields = get_template(template).model_dump(exclude={"name"})
    fields["name"] = name
    fields["variables"] = {**fields.get("variables", {}), **variables}
    for key, value in (
        ("agent", agent),
        ("description", description),
        ("model", model),
        ("billing", billing),
    ):
        if value is not None:
            fields[key] = value
    if tags:
        fields["tags"] = list(tags)
    if unset:
        fields["unset"] = [*fields.get("unset", []), *parse_names(unset)]
    preset = _validated(fields)

    def change(data: StoreData) -> None:
        ensure_free(data, name)
        data.presets[name] = preset

    open_store().modify(change)
    audit("preset.add", preset=name, variables=sorted(preset.variables))
    print_out(f"added preset {name}")


@preset_app.command("set")
def set_(
    name: str = typer.Argument(..., autocompletion=_PRESETS),
    assignments: list[str] = typer.Argument(None, help="KEY=VALUE …"),
    agent: str | None = typer.Option(None, "--agent", help="Meant for agent A ('' clears)."),
    description: str | None = typer.Option(None, "--description", "-d"),
    model: str | None = typer.Option(None, "--model"),
    billing: str | None = typer.Option(None, "--billing", help="api | subscription."),
) -> None:
    """Set variables (and fields) of a user preset."""
    from aiswitch.errors import UsageError
    from aiswitch.presets.ops import parse_assignments
    from aiswitch.presets.store import writable

    variables = parse_assignments(assignments or [])
    fields: dict[str, Any] = {}
    for key, value in (
        ("agent", agent),
        ("description", description),
        ("model", model),
        ("billing", billing),
    ):
        if value is not None:
            fields[key] = value or None if key != "description" else value
    if not variables and not fields:
        raise UsageError("nothing to set", hint="give KEY=VALUE pairs or an option")

    def change(data: StoreData) -> None:
        current = writable(data, name)
        merged = current.model_dump()
        merged["variables"] = {**current.variables, **variables}
        merged.update(fields)
        data.presets[name] = _validated(merged)

    open_store().modify(change)
    audit("preset.set", preset=name, variables=sorted(variables), fields=sorted(fields))
    print_out(f"updated preset {name}")


@preset_app.command("unset")
def unset_(
    name: str = typer.Argument(..., autocompletion=_PRESETS),
    variables: list[str] = typer.Argument(..., help="Variable names to remove from the preset."),
) -> None:
    """Remove variables from a user preset."""
    from aiswitch.errors import PresetError
    from aiswitch.presets.ops import parse_names
    from aiswitch.presets.store import writable

    names = parse_names(variables)

    def change(data: StoreData) -> None:
        current = writable(data, name)
        missing = [n for n in names if n not in current.variables]
        if missing:
            raise PresetError(f"preset {name!r} does not set {', '.join(missing)}")
        kept = {k: v for k, v in current.variables.items() if k not in names}
        data.presets[name] = current.model_copy(update={"variables": kept})

    open_store().modify(change)
    audit("preset.unset", preset=name, variables=names)
    print_out(f"updated preset {name}")


@preset_app.command("remove")
def remove(name: str = typer.Argument(..., autocompletion=_PRESETS)) -> None:
    """Remove a user preset (not one applied in this shell, nor a default)."""
    from aiswitch.presets.store import check_not_in_use, writable

    current = _current()

    def change(data: StoreData) -> None:
        writable(data, name)
        check_not_in_use(data, name, current, "remove")
        del data.presets[name]

    open_store().modify(change)
    audit("preset.remove", preset=name)
    print_out(f"removed preset {name}")


@preset_app.command("rename")
def rename(
    old: str = typer.Argument(..., autocompletion=_PRESETS), new: str = typer.Argument(...)
) -> None:
    """Rename a user preset; defaults that name it follow it."""
    from aiswitch.errors import PresetError
    from aiswitch.presets.store import ensure_free, writable

    current = _current()

    def change(data: StoreData) -> None:
        preset = writable(data, old)
        ensure_free(data, new)
        if current == old:
            raise PresetError(
                f"cannot rename preset {old!r}: it is applied in this shell",
                hint="run `aiswitch preset clear` first",
            )
        del data.presets[old]
        data.presets[new] = preset.model_copy(update={"name": new})
        if data.defaults.global_ == old:
            data.defaults.global_ = new
        for agent, preset_name in list(data.defaults.agents.items()):
            if preset_name == old:
                data.defaults.agents[agent] = new

    open_store().modify(change)
    audit("preset.rename", preset=old, to=new)
    print_out(f"renamed preset {old} to {new}")


@preset_app.command("copy")
def copy(
    source: str = typer.Argument(..., autocompletion=_PRESETS), target: str = typer.Argument(...)
) -> None:
    """Copy a preset (built-in or user) to a new user preset."""
    from aiswitch.presets.store import ensure_free

    store = open_store()

    def change(data: StoreData) -> None:
        preset = store.get(source, data)
        ensure_free(data, target)
        data.presets[target] = preset.model_copy(update={"name": target})

    store.modify(change)
    audit("preset.copy", preset=source, to=target)
    print_out(f"copied preset {source} to {target}")


@preset_app.command("default")
def default(
    name: str | None = typer.Argument(
        None, help="The preset; omit to show the defaults.", autocompletion=_PRESETS
    ),
    agent: str | None = typer.Option(None, "--agent", help="Only for agent A."),
    clear: bool = typer.Option(False, "--unset", help="Remove the default instead."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Set, remove (--unset) or show the default preset, for all agents or one."""
    from aiswitch.agents import AgentRegistry
    from aiswitch.errors import PresetError, UsageError

    store = open_store()
    if name is None and not clear:
        data = store.load()
        agents = dict(sorted(data.defaults.agents.items()))
        if as_json:
            print_json({"global": data.defaults.global_, "agents": agents})
            return
        print_out(f"global: {data.defaults.global_ or '(none)'}")
        for agent_name, preset_name in agents.items():
            print_out(f"{agent_name}: {preset_name}")
        return
    if name is not None and clear:
        raise UsageError("give a preset name or --unset, not both")
    if agent is not None:
        AgentRegistry.load(store.home).get(agent)

    def change(data: StoreData) -> str | None:
        if clear:
            old = data.defaults.agents.pop(agent, None) if agent else data.defaults.global_
            if agent is None:
                data.defaults.global_ = None
            return old
        assert name is not None
        preset = store.get(name, data)
        if agent is not None and preset.agent is not None and preset.agent != agent:
            raise PresetError(f"preset {name!r} is meant for agent {preset.agent!r}, not {agent!r}")
        if agent is None:
            data.defaults.global_ = name
        else:
            data.defaults.agents[agent] = name
        return name

    result = store.modify(change)
    audit("preset.default", preset=None if clear else result, agent=agent, cleared=clear or None)
    scope = f"agent {agent}" if agent else "all agents"
    if clear:
        print_out(f"no default preset for {scope}" + (f" (was {result})" if result else ""))
    else:
        print_out(f"default preset for {scope}: {result}")


@preset_app.command("import")
def import_(
    file: str = typer.Argument(..., help="An export (YAML or JSON), or - for stdin."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the changes; write nothing."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite presets that exist."),
    trust: bool = typer.Option(
        False, "--trust", help="Import presets that send a key reference to an unusual host."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Import presets from an export; refuses redacted values, and keys sent to unusual
    hosts without --trust."""
    from pathlib import Path

    from aiswitch.agents import load_yaml
    from aiswitch.errors import PresetError
    from aiswitch.presets.builtin import templates
    from aiswitch.presets.ops import parse_import, untrusted_sends
    from aiswitch.presets.store import builtin_presets

    if file == "-":
        import yaml

        from aiswitch.yaml_text import parse

        try:
            raw = parse(sys.stdin.read())
        except yaml.YAMLError as exc:
            raise PresetError(f"stdin: invalid YAML: {str(exc).splitlines()[0]}") from None
        origin = "stdin"
    else:
        path = Path(file)
        if not path.is_file():
            raise PresetError(f"{file}: no such file")
        raw = load_yaml(path)
        origin = file
    presets = parse_import(raw, origin)
    builtins = builtin_presets()
    clash = [p.name for p in presets if p.name in builtins]
    if clash:
        raise PresetError(f"{origin}: {', '.join(clash)}: names of built-in presets")
    suspicious = untrusted_sends(presets, templates().values())
    if suspicious and not trust:
        raise PresetError(
            f"{origin}: {'; '.join(suspicious)}",
            hint="read the preset first; pass --trust to import it anyway",
        )
    for problem in suspicious:
        print_note(f"warning: {problem} (imported: --trust)")

    def plan(data: StoreData) -> dict[str, list[str]]:
        existing = [p.name for p in presets if p.name in data.presets]
        if existing and not replace:
            raise PresetError(
                f"{origin}: presets already exist: {', '.join(existing)}",
                hint="pass --replace to overwrite them",
            )
        for preset in presets:
            data.presets[preset.name] = preset
        added = [p.name for p in presets if p.name not in existing]
        return {"added": added, "replaced": existing}

    store = open_store()
    result = plan(store.load()) if dry_run else store.modify(plan)
    if not dry_run:
        audit("preset.import", source=origin, trusted=trust or None, **result)
    if as_json:
        print_json({**result, "dry_run": dry_run})
        return
    verb = ("would add", "would replace") if dry_run else ("added", "replaced")
    print_out(f"{verb[0]}: {', '.join(result['added']) or '(none)'}")
    print_out(f"{verb[1]}: {', '.join(result['replaced']) or '(none)'}")


# --- reading presets -----------------------------------------------------------------------


@preset_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List built-in and user presets."""
    from aiswitch.presets.ops import preset_document

    store = open_store()
    data = store.load()
    current = _current()
    rows = []
    for preset in store.all(data).values():
        doc = preset_document(preset, reveal=False, builtin=store.is_builtin(preset.name))
        doc["current"] = preset.name == current
        doc["default"] = data.defaults.uses(preset.name)
        rows.append(doc)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        marks = "*" if row["current"] else " "
        source = "built-in" if row["builtin"] else "user"
        extra = f" [default: {', '.join(row['default'])}]" if row["default"] else ""
        print_out(
            f"{marks} {row['name']:<20} {source:<8} {row['agent'] or '-':<8} "
            f"{len(row['variables']):>2} vars  {row['description']}{extra}".rstrip()
        )


@preset_app.command("show")
def show(
    name: str = typer.Argument(..., autocompletion=_PRESETS),
    reveal: bool = typer.Option(False, "--reveal", help=REVEAL_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show one preset as stored (references unresolved; secrets masked)."""
    from aiswitch.presets.ops import preset_document

    store = open_store()
    preset = store.get(name)
    doc = preset_document(preset, reveal=reveal, builtin=store.is_builtin(name))
    if reveal:
        audit("preset.reveal", preset=name, command="preset show")
    if as_json:
        print_json(doc)
        return
    print_out(f"name: {doc['name']}")
    print_out(f"source: {'built-in' if doc['builtin'] else 'user'}")
    for key in ("agent", "model", "billing", "description"):
        if doc[key]:
            print_out(f"{key}: {doc[key]}")
    if doc["tags"]:
        print_out(f"tags: {', '.join(doc['tags'])}")
    print_out("variables:")
    for var, value in doc["variables"].items():
        print_out(f"  {var}={value}")
    if doc["unset"]:
        print_out(f"unset: {', '.join(doc['unset'])}")


@preset_app.command("validate")
def validate(
    name: str | None = typer.Argument(
        None, help="One preset; omit for all.", autocompletion=_PRESETS
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Check presets: the store parses, every reference resolves here, agents exist."""
    import os

    from aiswitch.agents import AgentRegistry
    from aiswitch.presets.ops import check_preset

    store = open_store()
    data = store.load()
    presets = [store.get(name, data)] if name else list(store.all(data).values())
    agents = list(AgentRegistry.load(store.home).agents)
    checks = [check_preset(p, os.environ, agents) for p in presets]
    if as_json:
        print_json([{"name": c.name, "ok": c.ok, "problems": c.problems} for c in checks])
    else:
        for check in checks:
            print_out(f"ok    {check.name}" if check.ok else f"FAIL  {check.name}")
            for problem in check.problems:
                print_out(f"      {problem}")
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@preset_app.command("export")
def export(
    names: list[str] = typer.Argument(
        None, help="Presets to export; omit for every user preset.", autocompletion=_PRESETS
    ),
    include_secrets: bool = typer.Option(
        False, "--include-secrets", help="Write secret values instead of redacting them."
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of YAML."),
) -> None:
    """Export presets as YAML (or JSON) for `preset import`; secrets redacted by default."""
    from aiswitch.presets.ops import export_document

    store = open_store()
    data = store.load()
    presets = [store.get(n, data) for n in names] if names else list(data.presets.values())
    doc = export_document(presets, include_secrets=include_secrets)
    if include_secrets:
        audit("preset.reveal", presets=[p.name for p in presets], command="preset export")
    if as_json:
        print_json(doc)
        return
    import yaml

    print_out(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False))


@preset_app.command("templates")
def templates_(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List the provider templates for `preset add NAME --from-template T`."""
    from aiswitch.presets.builtin import templates
    from aiswitch.presets.ops import preset_document

    docs = [preset_document(t, reveal=False, builtin=True) for t in templates().values()]
    if as_json:
        print_json(docs)
        return
    for doc in docs:
        print_out(f"{doc['name']:<20} {doc['agent'] or '-':<7} {doc['description']}")


@preset_app.command("current")
def current(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """The preset applied in this shell (from $AISWITCH_PRESET), if any."""
    import os
    from pathlib import Path

    from aiswitch.presets.project import project_preset
    from aiswitch.supervisor.env import shell_applied_vars

    name = _current()
    if as_json:
        store = open_store()
        data = store.load()
        found = project_preset(Path.cwd())
        print_json(
            {
                "preset": name,
                "exists": name is not None and name in store.all(data),
                "variables": shell_applied_vars(os.environ),
                "project": {"preset": found[0], "file": str(found[1])} if found else None,
                "default": data.defaults.global_,
            }
        )
        return
    if name is None:
        print_note("no preset is applied in this shell")
        return
    print_out(name)


def register(app: typer.Typer) -> None:
    # The shell-facing commands (use, clear, env, exec) live in their own module.
    import aiswitch.cli.preset_shell_cmd  # noqa: F401

    app.add_typer(preset_app, name="preset")
