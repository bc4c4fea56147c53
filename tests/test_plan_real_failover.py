"""A plan's failover with the real codex and gemini CLIs: the fake provider answers 429 until
the task moves to its fallback preset, where it succeeds. codex names the status only in its
message ("last status: 429"), gemini in its exit code (the status modulo 256); both reach the
result as `provider_status`, so the scheduler fails over as it does for claude.
Offline, on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_real_agents_e2e import (  # noqa: F401 (fixtures)
    FAKE_PRESET,
    TEXTS,
    USAGES,
    Sandbox,
    pinned_clis,
    run_cli,
    sandbox,
)

from aiswitch.testing.fake_script import ApiKind, ErrorReply, TextReply

pytestmark = [pytest.mark.realcli, pytest.mark.timeout(120)]

SECOND_PRESET = "fake2"


@pytest.mark.parametrize(("cli", "api"), [("codex", ApiKind.OPENAI), ("gemini", ApiKind.GEMINI)])
def test_a_429_moves_a_codex_or_gemini_task_to_its_fallback_preset(
    sandbox: Sandbox,  # noqa: F811 (the fixture)
    cli: str,
    api: ApiKind,
) -> None:
    sandbox.add_preset()
    pairs = [f"{k}={v}" for k, v in sandbox.variables(cli).items()]
    added = run_cli("preset", "add", SECOND_PRESET, *pairs, env=sandbox.env(), cwd=sandbox.work)
    assert added.code == 0, added.stderr
    # Every request on the first preset is refused (the CLI may retry on its own before it
    # gives up); the fallback's first request is answered. Both presets reach one fake, so
    # the refusals are counted: `times` of them, then the answer.
    sandbox.fake.script.add(ErrorReply(429, "fake rate limit"), api=api, times=1)
    sandbox.fake.script.add(TextReply(TEXTS[api], usage=USAGES[api]), api=api)
    plan = Path(sandbox.work) / "plan.yaml"
    plan.write_text(
        "tasks:\n"
        f"  - {{id: write, agent: '{cli}@{FAKE_PRESET}', prompt: Add tests,"
        f" fallback: ['{cli}@{SECOND_PRESET}']}}\n"
    )

    out = sandbox.run("--plan", str(plan), "--json")

    assert out.code == 0, out.stdout + out.stderr
    (result,) = out.json()["results"]
    assert result["status"] == "ok", result
    assert result["output"].strip() == TEXTS[api].strip()
    assert result["attempts"] == 2
    assert result["preset"] == SECOND_PRESET
    records = [r for r in sandbox.ledger() if r["task_id"] == result["task_id"]]
    assert {r["attempt"] for r in records} == {2}
    assert {r["preset"] for r in records} == {SECOND_PRESET}


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ("exceeded retry limit, last status: 429 Too Many Requests, request id: r1", 429),
        ("exceeded retry limit, last status: 503 Service Unavailable", 503),
        ("stream disconnected before completion", None),
        ("the model said 429 times", None),
    ],
)
def test_codex_names_the_status_only_in_its_message(message: str, status: int | None) -> None:
    from aiswitch_adapters.codex import provider_status

    assert provider_status(message) == status


@pytest.mark.parametrize(
    ("code", "status"), [(173, 429), (146, 402), (247, 503), (1, None), (41, None), (130, None)]
)
def test_gemini_exits_with_the_status_modulo_256(code: int, status: int | None) -> None:
    from aiswitch_adapters.gemini import provider_status

    assert provider_status(code) == status
