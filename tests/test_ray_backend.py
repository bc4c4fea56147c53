"""The `ray` backend on a real local Ray cluster (a head and a second node process on
127.0.0.1, started here, torn down at the end): the same batches and plans as `--backend
local`, a node killed mid-run, secrets out of Ray's logs, workspaces made on the nodes.
The cluster and the drivers that reach it run in a network namespace whose only interface
is `lo` (Ray listens on every interface otherwise); that needs root and util-linux.

One cluster serves the whole module (Ray takes seconds to start); the node-killing test
runs last, as it takes the second node away."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.cli import Completed, aiswitch_bin, assert_one_error_line, clean_env, run_cli

from aiswitch.home import Home
from aiswitch.testing.ray_cluster import LocalRayCluster

pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'aiswitch[ray]'")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# A run of a few hundred mock tasks here takes seconds; this only ends a hung one.
RUN_TIMEOUT_S = 180.0
# Attempts in flight per node (its `agent:mock` resource).
SLOTS_PER_NODE = 16
INPUT_TOKENS = 10
OUTPUT_TOKENS = 5


@dataclass
class Cluster:
    ray: LocalRayCluster

    @property
    def address(self) -> str:
        return self.ray.address

    @property
    def temp(self) -> Path:
        return self.ray.temp

    def env(self, home: Home, **extra: str) -> dict[str, str]:
        return clean_env(home.root, **self.ray.env(), **extra)

    def run(self, *args: str, env: dict[str, str], **kwargs: Any) -> Completed:
        """`aiswitch ARGS` as a driver in the cluster's network namespace."""
        return run_cli(*args, env=env, wrap=self.ray.command, **kwargs)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    ray = LocalRayCluster({"agent:mock": SLOTS_PER_NODE})
    try:
        try:
            ray.start_head()
            ray.add_node("node2")
        except RuntimeError as exc:
            pytest.fail(str(exc).splitlines()[0], pytrace=False)
        yield Cluster(ray)
    finally:
        left = ray.stop()
        # No raylet, worker or child of the cluster outlives it.
        assert left == [], [(p.pid, p.name()) for p in left]


def mock_agents(home: Home, **mock_env: str) -> None:
    home.ensure()
    env = {
        "MOCK_LATENCY": "0.01-0.05",
        "MOCK_STEPS": "1",
        "MOCK_INPUT_TOKENS": str(INPUT_TOKENS),
        "MOCK_OUTPUT_TOKENS": str(OUTPUT_TOKENS),
        "MOCK_MAX_CONCURRENT": "4",
        **mock_env,
    }
    agents = {"mock": {"env": env, "pool": {"min": 0, "max": 4, "idle_timeout": 60}}}
    (home.config / "agents.yaml").write_text(json.dumps({"agents": agents}))


def jsonl(done: Completed) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    assert done.code == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[-1]["type"] == "run"
    return [line for line in lines if line["type"] == "task"], lines[-1]


# The mock names the process that ran a task in its output: which one legitimately differs.
_PROCESS = re.compile(r"^\[mock(\.[0-9a-f]+)?\.p\d+\] ")


def comparable(task: dict[str, Any]) -> tuple[Any, ...]:
    output = _PROCESS.sub("", task["output"])
    return (task["id"], task["status"], output, json.dumps(task["usage"]), task["attempts"])


def ledger(home: Home, run_id: str) -> list[dict[str, Any]]:
    lines = home.ledger.read_text().splitlines() if home.ledger.exists() else []
    return [r for r in map(json.loads, lines) if r.get("run_id") == run_id]


def ledger_totals(records: list[dict[str, Any]]) -> tuple[int, int, int]:
    inputs = sum(r["input_tokens"] for r in records)
    return len(records), inputs, sum(r["output_tokens"] for r in records)


def nodes_of(tasks: list[dict[str, Any]]) -> set[str]:
    return {m.group(1) for t in tasks if (m := _PROCESS.match(t["output"])) and m.group(1)}


def test_a_200_task_batch_gives_the_same_results_and_ledger_on_ray_as_locally(
    cluster: Cluster, home: Home, tmp_path: Path
) -> None:
    mock_agents(home)
    env = cluster.env(home)
    tasks = "".join(f"task number {n}\n" for n in range(200))
    runs = {}
    for backend in ("local", "ray"):
        extra = ["--address", cluster.address] if backend == "ray" else []
        done = cluster.run(
            "run",
            "--agent",
            "mock",
            "--tasks",
            "-",
            "--concurrency",
            "32",
            "--jsonl",
            "--backend",
            backend,
            *extra,
            env=env,
            input=tasks,
            timeout=RUN_TIMEOUT_S,
        )
        runs[backend] = jsonl(done)
    local_tasks, local_run = runs["local"]
    ray_tasks, ray_run = runs["ray"]
    assert len(ray_tasks) == 200
    assert sorted(map(comparable, ray_tasks)) == sorted(map(comparable, local_tasks))
    assert ray_run["status"] == local_run["status"] == "ok"
    assert ray_run["usage"] == local_run["usage"]
    assert ray_run["usage"]["input_tokens"] == 200 * INPUT_TOKENS
    local_ledger = ledger(home, local_run["run_id"])
    ray_ledger = ledger(home, ray_run["run_id"])
    assert ledger_totals(ray_ledger) == ledger_totals(local_ledger) == (200, 2000, 1000)
    assert Counter(r["task_id"] for r in ray_ledger).most_common(1)[0][1] == 1
    # Both nodes ran tasks (the processes are named per node).
    assert len(nodes_of(ray_tasks)) == 2, nodes_of(ray_tasks)
    # The driver alone keeps the state: no agents.json entry of a node's process.
    assert json.loads((home.state / "agents.json").read_text())["agents"] == {}


def plan_file(path: Path) -> Path:
    """50 tasks: 10 roots, each with a chain of four dependants fed its output."""
    lines = ["defaults: {agent: mock, options: {output: '<{prompt}>'}}", "tasks:"]
    for root in range(10):
        lines.append(f"  - {{id: r{root}, prompt: 'root {root}'}}")
        previous = f"r{root}"
        for step in range(4):
            ident = f"s{root}_{step}"
            prompt = f"step {step} after {{{previous}.output}}"
            lines.append(f"  - {{id: {ident}, prompt: '{prompt}', depends_on: [{previous}]}}")
            previous = ident
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_50_task_plan_gives_the_same_results_and_ledger_on_ray_as_locally(
    cluster: Cluster, home: Home, tmp_path: Path
) -> None:
    mock_agents(home)
    env = cluster.env(home)
    plan = plan_file(tmp_path / "plan.yaml")
    docs = {}
    for backend in ("local", "ray"):
        extra = ["--address", cluster.address] if backend == "ray" else []
        done = cluster.run(
            "run", "--plan", str(plan), "--json", "--backend", backend, *extra, env=env,
            timeout=RUN_TIMEOUT_S,
        )  # fmt: skip
        assert done.code == 0, done.stderr[-3000:]
        docs[backend] = done.json()
    local, ray = docs["local"], docs["ray"]
    assert ray["status"] == local["status"] == "ok"
    assert len(ray["results"]) == 50
    assert [comparable(r) for r in ray["results"]] == [comparable(r) for r in local["results"]]
    assert ray["results"][-1]["output"] == "<step 3 after <step 2 after <step 1 after " \
        "<step 0 after <root 9>>>>>"  # fmt: skip
    assert ray["usage"] == local["usage"]
    assert ledger_totals(ledger(home, ray["run_id"])) == ledger_totals(
        ledger(home, local["run_id"])
    )
    assert ray["settings"]["backend"] == "ray"


SECRET = "sk-proj-RAYSECRET" + "q7" * 16


def test_a_presets_key_reaches_the_child_and_never_rays_logs(
    cluster: Cluster, home: Home, tmp_path: Path
) -> None:
    from aiswitch.presets.model import Preset
    from aiswitch.presets.store import PresetStore, StoreData

    mock_agents(home, MOCK_DUMP_ENV="1")

    def add(data: StoreData) -> None:
        data.presets["p"] = Preset(name="p", variables={"OPENAI_API_KEY": SECRET})

    PresetStore(home).modify(add)
    done = cluster.run(
        "run", "--parallel", "mock@p,mock@p", "env?", "--json", "--backend", "ray",
        "--address", cluster.address, env=cluster.env(home), timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert done.code == 0, done.stderr[-3000:]
    children = [json.loads(r["output"]) for r in done.json()["results"]]
    # It travelled with the tasks: each child on its node got it.
    assert [child["OPENAI_API_KEY"] for child in children] == [SECRET, SECRET]
    # Ray's session logs (every node's: one machine) never hold it.
    needle = SECRET.encode()
    searched = 0
    for path in cluster.temp.rglob("*"):
        if path.is_file() and not path.is_socket():
            searched += 1
            with contextlib.suppress(OSError):
                assert needle not in path.read_bytes(), path
    assert searched > 10
    assert SECRET not in done.stderr


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def test_workspaces_are_made_on_the_nodes_and_their_changes_come_back_as_patches(
    cluster: Cluster, home: Home, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "--initial-branch=main")
    (repo / "README.md").write_text("hello\n")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("print(1)\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    files = {"src/app.py": "print(2)\n", "added.txt": "new\n"}
    mock_agents(home, MOCK_WRITE=json.dumps(files))
    env = cluster.env(home)
    done = cluster.run(
        "run", "--parallel", "mock,mock", "edit", "--json", "--backend", "ray",
        "--address", cluster.address, env=env, cwd=repo, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert done.code == 0, done.stderr[-3000:]
    results = done.json()["results"]
    assert [r["status"] for r in results] == ["ok", "ok"]
    for result in results:
        ws = result["workspace"]
        assert ws["mode"] == "worktree"
        # The node worked elsewhere; the driver's worktree holds what it did.
        root = Path(ws["root"])
        assert (root / "src" / "app.py").read_text() == "print(2)\n"
        assert (root / "added.txt").read_text() == "new\n"
        assert sorted(ws["changes"]["paths"]) == ["added.txt", "src/app.py"]
    # The user's tree is untouched; `aiswitch diff` shows a task's change.
    assert (repo / "src" / "app.py").read_text() == "print(1)\n"
    run_id = done.json()["run_id"]
    diff = run_cli("diff", run_id, "mock#1", env=env, cwd=repo)
    assert diff.code == 0, diff.stderr
    assert "+print(2)" in diff.stdout


def test_an_agent_no_node_offers_fails_its_tasks_with_the_reason(
    cluster: Cluster, home: Home
) -> None:
    from aiswitch.agents import builtin_agents

    home.ensure()
    command = builtin_agents()["mock"].command
    (home.config / "agents.yaml").write_text(
        json.dumps({"agents": {"other": {"command": command}}})
    )
    done = cluster.run(
        "run", "--agent", "other", "x", "--json", "--retries", "0", "--backend", "ray",
        "--address", cluster.address, env=cluster.env(home), timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert done.code == 1, done.stderr[-3000:]
    [result] = done.json()["results"]
    assert result["status"] == "failed"
    assert "no node of the Ray cluster offers agent:other" in result["error"]


def test_a_run_over_its_token_budget_on_ray_cancels_what_runs_and_starts_nothing_more(
    cluster: Cluster, home: Home, tmp_path: Path
) -> None:
    log = tmp_path / "tasks.log"
    # Usage comes as each task ends; slow tasks are still running when the budget is hit.
    mock_agents(home, MOCK_LATENCY="0.05-3", MOCK_TASK_LOG=str(log))
    tasks = "".join(f"task number {n}\n" for n in range(60))
    done = cluster.run(
        "run", "--agent", "mock", "--tasks", "-", "--concurrency", "20", "--budget-tokens",
        str(5 * (INPUT_TOKENS + OUTPUT_TOKENS)), "--jsonl", "--backend", "ray", "--address",
        cluster.address, env=cluster.env(home), input=tasks, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    run = lines[-1]
    assert run["status"] == "budget_exceeded", done.stderr[-3000:]
    statuses = Counter(line["status"] for line in lines if line["type"] == "task")
    assert statuses["ok"] >= 5 and statuses["cancelled"] > 0, statuses
    assert sum(statuses.values()) == 60
    events = [json.loads(line) for line in log.read_text().splitlines()]
    started = {e["task_id"] for e in events if e["event"] == "start"}
    # Cancelled tasks that had started were told to stop: each one that started ended.
    ended = {e["task_id"] for e in events if e["event"] == "end"}
    assert started == ended
    assert len(started) < 60


def test_the_clusters_processes_can_be_reached_on_loopback_only(cluster: Cluster) -> None:
    from aiswitch.testing.ray_cluster import listening

    # By now (after the runs above) the nodes have their agents and workers too.
    sockets = listening(cluster.ray.processes())
    ports = {port for _, _, port, _ in sockets}
    # The GCS is among them: the sockets were found where they are.
    assert cluster.ray.port in ports, sockets
    exposed = [s for s in sockets if not all(map(is_loopback, s[3]))]
    assert exposed == [], exposed


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).is_loopback


def test_a_cluster_out_of_reach_is_one_line_and_the_run_starts_nothing(
    home: Home, tmp_path: Path
) -> None:
    from aiswitch.testing.ray_cluster import free_port, offline_env

    log = tmp_path / "tasks.log"
    mock_agents(home, MOCK_TASK_LOG=str(log))
    address = f"127.0.0.1:{free_port()}"
    done = run_cli(
        "run", "--agent", "mock", "x", "--backend", "ray", "--address", address,
        env=clean_env(home.root, **offline_env()), timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert_one_error_line(done, f"cannot reach the Ray cluster at {address}", code=5)
    assert not log.exists()


def test_killing_a_node_mid_run_loses_nothing_and_runs_nothing_twice(
    cluster: Cluster, home: Home, tmp_path: Path
) -> None:
    log = tmp_path / "tasks.log"
    mock_agents(home, MOCK_LATENCY="0.3-0.6", MOCK_TASK_LOG=str(log))
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("".join(f"task number {n}\n" for n in range(150)))
    proc = subprocess.Popen(
        cluster.ray.command([
            aiswitch_bin(), "run", "--agent", "mock", "--tasks", str(tasks), "--concurrency",
            str(2 * SLOTS_PER_NODE), "--retries", "3", "--jsonl", "--backend", "ray",
            "--address", cluster.address,
        ]),
        env=cluster.env(home), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        seen = []
        while len(seen) < 40:
            line = proc.stdout.readline()
            assert line, "the run ended before the node was killed"
            seen.append(json.loads(line))
        # The second node with everything on it: raylet, workers, the mocks they started.
        killed = cluster.ray.kill("node2")
        assert killed
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = seen + [json.loads(line) for line in out.splitlines()]
    task_lines = [line for line in lines if line["type"] == "task"]
    run = lines[-1]
    assert run["type"] == "run", err[-3000:]
    # Nothing lost: every task ended, once, ok.
    assert len(task_lines) == 150
    assert len({line["task_id"] for line in task_lines}) == 150
    assert {line["status"] for line in task_lines} == {"ok"}, err[-3000:]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    starts = Counter(e["attempt_id"] for e in events if e["event"] == "start")
    # Nothing run twice: no attempt started twice; a task ran again only when its attempt
    # was on the killed node, and each ok task's recorded attempt ended ok.
    assert set(starts.values()) == {1}
    killed_pids = {e["pid"] for e in events if e["pid"] in killed}
    assert killed_pids, "the killed node ran no task"
    recorded = {line["task_id"]: line["attempts"] for line in task_lines}
    by_task: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_task.setdefault(e["task_id"].rsplit(".", 1)[0], []).append(e)
    retried = 0
    for task_id, attempts in recorded.items():
        mine = by_task[task_id]
        last_ok = [e for e in mine if e["event"] == "end" and e["attempt"] == attempts]
        assert [e["status"] for e in last_ok] == ["ok"], mine
        for e in mine:
            if e["event"] == "start" and e["attempt"] < attempts:
                assert e["pid"] in killed_pids, mine
                retried += 1
        # An earlier attempt that ended ok had its reply lost with its node, if any.
        lost = [e for e in mine if e["event"] == "end" and e["attempt"] != attempts]
        assert all(e["pid"] in killed_pids for e in lost), mine
    assert retried >= 1
    # Usage: once per attempt in the ledger, and the run's totals are the ledger's.
    records = ledger(home, run["run_id"])
    keys = Counter((r["task_id"], r["attempt"]) for r in records)
    assert set(keys.values()) == {1}
    assert run["usage"]["input_tokens"] == sum(r["input_tokens"] for r in records)
    assert len(records) >= 150
