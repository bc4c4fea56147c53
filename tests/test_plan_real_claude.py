"""A plan's failover with the real claude CLI: the fake provider answers the first request
429, claude reports it (`api_error_status`), and the task moves to its fallback preset,
where it succeeds: a new attempt, its usage alone in the ledger. Offline, on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_real_agents_e2e import (  # noqa: F401 (fixtures)
    FAKE_PRESET,
    TEXTS,
    USAGES,
    Sandbox,
    normalised,
    pinned_clis,
    run_cli,
    sandbox,
)

from aiswitch.testing.fake_script import ApiKind, ErrorReply, TextReply

pytestmark = [pytest.mark.realcli, pytest.mark.timeout(120)]

SECOND_PRESET = "fake2"


def test_a_429_from_the_provider_moves_the_task_to_its_fallback_preset(
    sandbox: Sandbox,  # noqa: F811 (the fixture)
) -> None:
    sandbox.add_preset()
    pairs = [f"{k}={v}" for k, v in sandbox.variables("claude").items()]
    added = run_cli("preset", "add", SECOND_PRESET, *pairs, env=sandbox.env(), cwd=sandbox.work)
    assert added.code == 0, added.stderr
    api = ApiKind.ANTHROPIC
    sandbox.fake.script.add(ErrorReply(429, "fake rate limit"), api=api, times=1)
    sandbox.fake.script.add(TextReply(TEXTS[api], usage=USAGES[api]), api=api)
    plan = Path(sandbox.work) / "plan.yaml"
    plan.write_text(
        "tasks:\n"
        f"  - {{id: write, agent: 'claude@{FAKE_PRESET}', prompt: Add tests,"
        f" fallback: ['claude@{SECOND_PRESET}']}}\n"
    )

    out = sandbox.run("--plan", str(plan), "--json")

    assert out.code == 0, out.stdout
    (result,) = out.json()["results"]
    assert result["status"] == "ok" and result["output"] == TEXTS[api]
    # Attempt 1 on claude@fake got the 429; attempt 2 ran on the fallback preset.
    assert result["attempts"] == 2
    assert result["preset"] == SECOND_PRESET and result["agent_id"] == "claude#2"
    assert len(sandbox.fake.requests_for(api)) == 2
    # The ledger: the second attempt's usage, once, as the fake sent it.
    records = [r for r in sandbox.ledger() if r["task_id"] == result["task_id"]]
    assert [r["attempt"] for r in records] == [2]
    assert records[0]["preset"] == SECOND_PRESET
    usage = {k: records[0].get(k, 0) for k in normalised(api, USAGES[api])}
    assert usage == normalised(api, USAGES[api])
