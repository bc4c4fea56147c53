"""docs/protocol.md is generated from the models; it must not drift from them."""

from __future__ import annotations

from pathlib import Path

from aiswitch.protocol.docgen import render
from aiswitch.protocol.models import METHODS, NOTIFICATIONS
from aiswitch.rpc import codes

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def test_the_protocol_doc_matches_the_models() -> None:
    assert DOC.read_text() == render(), (
        "docs/protocol.md is stale: run `python -m aiswitch.protocol.docgen > docs/protocol.md`"
    )


def test_the_doc_covers_every_method_notification_and_error_code() -> None:
    text = DOC.read_text()
    for spec in (*METHODS, *NOTIFICATIONS):
        assert f"### `{spec.name}`" in text
    for code in codes.DESCRIPTIONS:
        assert f"| {code} |" in text


def test_the_design_table_methods_are_all_in_the_protocol() -> None:
    names = {m.name for m in METHODS} | {n.name for n in NOTIFICATIONS}
    assert names == {
        "agent.initialize",
        "agent.status",
        "agent.shutdown",
        "task.assign",
        "task.cancel",
        "task.status",
        "task.result",
        "env.switch",
        "env.snapshot",
        "env.rollback",
        "metrics.query",
        "task.progress",
        "tokens.usage",
        "metrics.report",
        "log",
    }


def test_the_run_json_schema_matches_the_model() -> None:
    from aiswitch.coordinator.schema import render as render_schema

    path = DOC.parent / "run.schema.json"
    assert path.read_text() == render_schema(), (
        "docs/run.schema.json is stale: run `python -m aiswitch.coordinator.schema`"
    )


def test_a_real_run_document_validates_against_the_schema(tmp_path: Path) -> None:
    import json

    from support.cli import clean_env, run_cli

    schema = json.loads((DOC.parent / "run.schema.json").read_text())
    doc = run_cli("run", "--agent", "mock", "x", "--json", env=clean_env(tmp_path)).json()
    # A structural check without a schema library: every required field is present.
    assert set(schema["required"]) <= set(doc)
    result_schema = schema["$defs"]["AgentResult"]
    assert set(result_schema["required"]) <= set(doc["results"][0])
