"""Plan files (`aiswitch run --plan`): the format, the checks before anything starts, and
`--dry-run`. Every bad plan is one line per problem naming the file and the task, exit 3,
and nothing started or recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import Completed, run_cli

from aiswitch.coordinator.plan_model import PlanDefaults, PlanFile, PlanTask, render_schema
from aiswitch.home import Home

DOCS = Path(__file__).resolve().parents[1] / "docs"


def write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_refused(done: Completed, home: Home, *lines: tuple[str, ...]) -> None:
    """Exit 3, nothing on stdout, one `aiswitch: error:` line per expected problem (each
    holding its fragments), no traceback, and nothing started or recorded."""
    assert done.code == 3, (done.code, done.stdout, done.stderr)
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    got = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(got) == len(lines), done.stderr
    assert all(line.startswith("aiswitch: error: ") for line in got), done.stderr
    for fragments in lines:
        matching = [line for line in got if all(f in line for f in fragments)]
        assert len(matching) == 1, (fragments, done.stderr)
    assert not (home.state / "tasks.json").exists()
    assert not home.runs.exists() or not any(home.runs.iterdir())
    assert not (home.state / "agents.json").exists()


def test_docs_plan_schema_json_is_generated_from_the_models() -> None:
    assert (DOCS / "plan.schema.json").read_text() == render_schema(), (
        "docs/plan.schema.json is stale: run `python -m aiswitch.coordinator.plan_model`"
    )


def test_docs_plans_md_documents_every_field_of_the_models() -> None:
    text = (DOCS / "plans.md").read_text()
    for model in (PlanFile, PlanDefaults, PlanTask):
        for name in model.model_fields:
            assert f"`{name}`" in text, f"docs/plans.md does not document {model.__name__}.{name}"


def test_a_plan_that_is_not_yaml_is_refused(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    plan = write(tmp_path, "tasks: [\n  - id: a\n    prompt: {oops\n")
    done = run_cli("run", "--plan", str(plan), env=env)
    assert_refused(done, home, (str(plan), "not valid YAML at line", "docs/plans.md"))


def test_a_plan_that_is_not_a_mapping_is_refused(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    plan = write(tmp_path, "- just\n- a list\n")
    done = run_cli("run", "--plan", str(plan), env=env)
    assert_refused(done, home, (str(plan), "a YAML mapping with `tasks:`"))


def test_unknown_fields_and_bad_types_name_the_task_and_the_field(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    plan = write(
        tmp_path,
        "tasks:\n"
        "  - {id: a, prompt: x, agent: mock, depend_on: [b]}\n"
        "  - {id: b, prompt: y, agent: mock, priority: high}\n",
    )
    done = run_cli("run", "--plan", str(plan), env=env)
    assert_refused(
        done,
        home,
        (str(plan), "task 'a'", "depend_on", "unknown field"),
        (str(plan), "task 'b'", "priority"),
    )


def test_every_graph_problem_is_one_line_naming_the_file_and_the_task(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    plan = write(
        tmp_path,
        "defaults: {agent: mock}\n"
        "tasks:\n"
        "  - {id: a, prompt: x}\n"
        "  - {id: a, prompt: again}\n"
        "  - {id: both, prompt: x, agent: mock, capability: review}\n"
        "  - {id: fan, prompt: 'look at {item}', for_each: []}\n"
        "  - {id: b, prompt: 'use {a.output}'}\n"
        "  - {id: c, prompt: x, depends_on: [nope]}\n"
        "  - {id: d, prompt: x, cwd: no/such/dir}\n",
    )
    done = run_cli("run", "--plan", str(plan), env=env)
    assert_refused(
        done,
        home,
        ("task 'a'", "used twice"),
        ("task 'both'", "both `agent` and `capability`"),
        ("task 'fan'", "for_each is an empty list"),
        ("task 'b'", "{a.output}", "not among its depends_on"),
        ("task 'c'", "depends on 'nope'", "not a task"),
        ("task 'd'", "no/such/dir", "is not a directory"),
    )


def test_a_cycle_is_named(env: dict[str, str], home: Home, tmp_path: Path) -> None:
    plan = write(
        tmp_path,
        "defaults: {agent: mock}\n"
        "tasks:\n"
        "  - {id: start, prompt: x}\n"
        "  - {id: a, prompt: x, depends_on: [start, c]}\n"
        "  - {id: b, prompt: x, depends_on: [a]}\n"
        "  - {id: c, prompt: x, depends_on: [b]}\n",
    )
    done = run_cli("run", "--plan", str(plan), env=env)
    assert_refused(done, home, (str(plan), "cycle: a -> c -> b -> a"))


def test_unknown_agents_presets_and_capabilities_are_refused_before_anything_starts(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    plan = write(
        tmp_path,
        "tasks:\n"
        "  - {id: a, prompt: x, agent: nosuch}\n"
        "  - {id: b, prompt: x, agent: mock@nosuchpreset}\n"
        "  - {id: c, prompt: x, capability: telepathy}\n"
        "  - {id: d, prompt: x}\n",
    )
    done = run_cli("run", "--plan", str(plan), env=env)
    assert_refused(
        done,
        home,
        ("task 'a'", "unknown agent 'nosuch'"),
        ("task 'b'", "nosuchpreset"),
        ("task 'c'", "no agent has capability 'telepathy'", "config/agents.yaml"),
        ("task 'd'", "no agent", "defaults.agent"),
    )


def test_a_plan_with_the_command_lines_agents_or_task_is_refused(
    env: dict[str, str], tmp_path: Path
) -> None:
    plan = write(tmp_path, "tasks: [{id: a, prompt: x, agent: mock}]\n")
    done = run_cli("run", "--plan", str(plan), "--agent", "mock", env=env)
    assert done.code == 2 and "--plan names its tasks" in done.stderr


def test_a_missing_plan_file_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    done = run_cli("run", "--plan", str(tmp_path / "none.yaml"), env=env)
    assert done.code == 2 and done.stderr.count("\n") == 1 and "no such file" in done.stderr


def test_dry_run_prints_the_levels_and_the_agents_and_starts_nothing(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    (home.config).mkdir(parents=True, exist_ok=True)
    (home.config / "agents.yaml").write_text(
        "agents:\n"
        "  mock: {capabilities: [review]}\n"
        "  other:\n"
        "    command: [python3, -m, aiswitch_adapters.mock]\n"
        "    capabilities: [review]\n"
    )
    plan = write(
        tmp_path,
        "name: demo\n"
        "defaults: {agent: mock}\n"
        "tasks:\n"
        "  - {id: write, prompt: write it, priority: 1}\n"
        "  - {id: review, prompt: 'review {write.output}', capability: review,"
        " depends_on: [write], for_each: [x, y]}\n"
        "  - {id: fix, prompt: 'fix {review.output}', depends_on: [review],"
        " fallback: [mock@fast]}\n",
    )
    done = run_cli("run", "--plan", str(plan), "--dry-run", "--json", env=env)
    assert done.code == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["plan"] == "demo" and doc["tasks"] == 4
    levels = [[(t["id"], t["agent"]) for t in row] for row in doc["levels"]]
    # The two reviews go to the two agents with the capability, one each.
    assert levels[0] == [("write", "mock")]
    assert sorted(agent for _, agent in levels[1]) == ["mock", "other"]
    assert levels[2] == [("fix", "mock")]
    assert doc["levels"][2][0]["depends_on"] == ["review[1]", "review[2]"]
    assert doc["levels"][2][0]["fallback"] == ["mock@fast"]
    human = run_cli("run", "--plan", str(plan), "--dry-run", env=env)
    assert human.code == 0
    assert "4 tasks in 3 levels" in human.stdout
    assert "waits for review[1], review[2]" in human.stdout
    assert not (home.state / "tasks.json").exists()
    assert not (home.state / "agents.json").exists()


@pytest.mark.parametrize("flag", ["--parallel", "--sequential"])
def test_dry_run_shows_parallel_and_sequential_runs_as_the_graphs_they_are(
    env: dict[str, str], flag: str
) -> None:
    done = run_cli("run", flag, "mock,mock@fast", "task", "--dry-run", "--json", env=env)
    assert done.code == 0, done.stderr
    levels = json.loads(done.stdout)["levels"]
    shape = [[t["agent_id"] for t in row] for row in levels]
    if flag == "--parallel":
        assert shape == [["mock#1", "mock#2"]]
    else:
        assert shape == [["mock#1"], ["mock#2"]]
