"""Workspaces end to end: real git repositories made here, real mock agents that write
files (MOCK_WRITE), the installed `aiswitch` console script."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.cli import Completed, assert_one_error_line, run_cli

from aiswitch.agents import builtin_agents
from aiswitch.home import Home

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test User",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test User",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    # No global or system git configuration of this machine reaches the tests.
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_IDENTITY},
        check=True,
    )
    return done.stdout


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "--initial-branch=main")
    for name, content in (files or {"README.md": "hello\n", "src/app.py": "print(1)\n"}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    return path


def tree_bytes(path: Path) -> dict[str, str]:
    """Every file under `path` but .git, as a digest: the working tree byte for byte."""
    found = {}
    for folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            if name == ".git":  # a worktree's pointer to its repository
                continue
            full = Path(folder) / name
            found[str(full.relative_to(path))] = hashlib.sha256(full.read_bytes()).hexdigest()
    return found


def user_tree(repo: Path) -> tuple[dict[str, str], str, str]:
    """The user's working tree, HEAD and index (branches and worktrees aiswitch adds aside)."""
    return tree_bytes(repo), git(repo, "rev-parse", "HEAD"), git(repo, "ls-files", "-s")


def repo_state(repo: Path) -> tuple[dict[str, str], str, str, str, str]:
    """The tree, HEAD, the index, the branches and the worktrees: all a command may touch."""
    return (
        tree_bytes(repo),
        git(repo, "rev-parse", "HEAD"),
        git(repo, "ls-files", "-s"),
        git(repo, "branch", "--list"),
        git(repo, "worktree", "list", "--porcelain"),
    )


@pytest.fixture
def genv(env: dict[str, str]) -> dict[str, str]:
    return {**env, **GIT_IDENTITY}


def writers(home: Home, agents: dict[str, dict[str, str]]) -> None:
    """Mock agents of our own, each with its environment (its files to write)."""
    command = builtin_agents()["mock"].command
    config = {
        "agents": {
            name: {"command": command, "env_passthrough": ["MOCK_*"], "env": env}
            for name, env in agents.items()
        }
    }
    home.config.mkdir(parents=True, exist_ok=True)
    (home.config / "agents.yaml").write_text(yaml.safe_dump(config))


def write_spec(files: dict[str, str]) -> str:
    return json.dumps(files)


def run(genv: dict[str, str], cwd: Path, *args: str, **extra: str) -> Completed:
    return run_cli("run", *args, "--json", env={**genv, **extra}, cwd=cwd)


def results_by_agent(done: Completed) -> dict[str, dict[str, Any]]:
    assert done.stdout, done.stderr
    return {r["agent_id"]: r for r in done.json()["results"]}


# -- isolation --------------------------------------------------------------------------


@pytest.mark.parametrize("count", [2, 5])
def test_parallel_writers_each_get_a_worktree_and_never_see_each_others_files(
    tmp_path: Path, home: Home, genv: dict[str, str], count: int
) -> None:
    repo = make_repo(tmp_path / "repo")
    names = [f"w{i}" for i in range(count)]
    writers(
        home,
        {
            n: {"MOCK_WRITE": write_spec({f"{n}.txt": f"by {n}\n", "README.md": f"{n} was here\n"})}
            for n in names
        },
    )
    before = user_tree(repo)
    done = run(genv, repo, "--parallel", ",".join(names), "change things")
    assert done.code == 0, done.stderr
    results = results_by_agent(done)
    assert user_tree(repo) == before  # nothing of the user's changed until apply
    roots = set()
    for name in names:
        ws = results[f"{name}#1"]["workspace"]
        assert ws["mode"] == "worktree"
        assert ws["branch"] == f"aiswitch/{done.json()['run_id']}/{name}-1"
        root = Path(ws["root"])
        roots.add(root)
        assert root.is_relative_to(home.root / "workspaces")
        files = set(tree_bytes(root))
        assert files == {"README.md", "src/app.py", f"{name}.txt"}
        assert (root / "README.md").read_text() == f"{name} was here\n"
        assert ws["changes"]["files"] == 2
        assert ws["changes"]["insertions"] == 2
        assert ws["changes"]["deletions"] == 1
        assert sorted(ws["changes"]["paths"]) == ["README.md", f"{name}.txt"]
    assert len(roots) == count


def test_the_diff_stat_is_git_diff_stat_of_the_branch_against_the_recorded_base(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    writers(home, {"a": {"MOCK_WRITE": write_spec({"src/app.py": "print(2)\nprint(3)\n"})}})
    done = run(genv, repo, "--parallel", "a,a", "edit")
    assert done.code == 0, done.stderr
    base = git(repo, "rev-parse", "HEAD").strip()
    # git moves on afterwards: the diff stays scoped to the task.
    (repo / "later.txt").write_text("later\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "later")
    for result in done.json()["results"]:
        ws = result["workspace"]
        assert ws["base"] == base
        expected = git(repo, "diff", "--stat", ws["base"], ws["branch"])
        assert ws["changes"]["stat"] == expected
        shown = run_cli("diff", done.json()["run_id"], result["agent_id"], "--stat", env=genv)
        assert shown.code == 0, shown.stderr
        assert shown.stdout == expected
        full = run_cli("diff", done.json()["run_id"], result["task_id"], env=genv)
        assert full.stdout == git(repo, "diff", ws["base"], ws["branch"])


def test_the_agent_works_in_the_subdirectory_the_user_ran_from(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    writers(home, {"a": {"MOCK_WRITE": write_spec({"here.txt": "x\n"})}})
    done = run(genv, repo / "src", "--parallel", "a,a", "edit")
    assert done.code == 0, done.stderr
    for result in done.json()["results"]:
        ws = result["workspace"]
        assert ws["cwd"] == str(Path(ws["root"]) / "src")
        assert ws["changes"]["paths"] == ["src/here.txt"]


def test_one_agent_and_sequential_steps_share_the_users_tree_by_default(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    writers(home, {"a": {"MOCK_WRITE": write_spec({"step.txt": "a\n"})}})
    single = run(genv, repo, "--agent", "a", "edit")
    assert single.code == 0, single.stderr
    # In the user's tree by default, and no snapshot taken (they cost a whole-tree add).
    assert single.json()["results"][0]["workspace"] is None
    assert (repo / "step.txt").read_text() == "a\n"  # written in the user's own tree
    (repo / "step.txt").unlink()
    asked = run(genv, repo, "--agent", "a", "edit", "--workspace", "shared")
    ws = asked.json()["results"][0]["workspace"]
    assert ws["mode"] == "shared" and ws["branch"] is None
    assert ws["changes"]["paths"] == ["step.txt"]
    sequential = run(genv, repo, "--sequential", "a,a", "edit")
    assert sequential.code == 0, sequential.stderr
    assert [r["workspace"] for r in sequential.json()["results"]] == [None, None]
    assert git(repo, "worktree", "list").count("\n") == 1
    assert not (home.root / "workspaces").exists() or not any((home.workspaces).iterdir())


def test_with_changes_carries_uncommitted_work_and_the_diff_excludes_it(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "README.md").write_text("my edit\n")
    (repo / "notes.txt").write_text("untracked\n")
    writers(home, {"a": {"MOCK_WRITE": write_spec({"new.txt": "n\n"})}})
    before = repo_state(repo)
    refused = run_cli("run", "-p", "a,a", "x", env=genv, cwd=repo)
    assert_one_error_line(refused, "uncommitted changes", "--with-changes")
    assert repo_state(repo) == before
    done = run(genv, repo, "-p", "a,a", "x", "--with-changes")
    assert done.code == 0, done.stderr
    assert user_tree(repo) == before[:3]
    for result in done.json()["results"]:
        ws = result["workspace"]
        root = Path(ws["root"])
        assert (root / "README.md").read_text() == "my edit\n"
        assert (root / "notes.txt").read_text() == "untracked\n"
        assert ws["changes"]["paths"] == ["new.txt"]


# -- copy -------------------------------------------------------------------------------


def test_copy_works_outside_git_and_honours_gitignore(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    project = tmp_path / "plain"
    (project / "build").mkdir(parents=True)
    (project / "build" / "out.bin").write_text("built\n")
    (project / ".gitignore").write_text("build/\nsecret.txt\n")
    (project / "secret.txt").write_text("s3cret\n")
    (project / "main.py").write_text("print('hi')\n")
    writers(home, {"a": {"MOCK_WRITE": write_spec({"main.py": "print('bye')\n"})}})
    before = tree_bytes(project)
    done = run(genv, project, "--parallel", "a,a", "edit", "--workspace", "copy")
    assert done.code == 0, done.stderr
    assert tree_bytes(project) == before
    results = done.json()["results"]
    root = Path(results[0]["workspace"]["root"])
    assert set(tree_bytes(root)) == {".gitignore", "main.py"}
    assert results[0]["workspace"]["changes"]["paths"] == ["main.py"]
    run_id = done.json()["run_id"]
    refused = run_cli("apply", run_id, "a#1", "--as", "merge", env=genv)
    assert_one_error_line(refused, "copy", "--as patch")
    applied = run_cli("apply", run_id, "a#1", env=genv)
    assert applied.code == 0, applied.stderr
    assert (project / "main.py").read_text() == "print('bye')\n"
    assert (project / "secret.txt").read_text() == "s3cret\n"
    assert not root.exists()  # the run's workspaces go once one is applied


# -- apply ------------------------------------------------------------------------------


def two_writers(tmp_path: Path, home: Home, genv: dict[str, str]) -> tuple[Path, str]:
    repo = make_repo(tmp_path / "repo")
    writers(
        home,
        {
            "a": {"MOCK_WRITE": write_spec({"a.txt": "from a\n", "README.md": "a's readme\n"})},
            "b": {"MOCK_WRITE": write_spec({"b.txt": "from b\n", "README.md": "b's readme\n"})},
        },
    )
    done = run(genv, repo, "--parallel", "a,b", "edit")
    assert done.code == 0, done.stderr
    return repo, done.json()["run_id"]


@pytest.mark.parametrize("how", ["patch", "merge", "cherry-pick"])
def test_apply_brings_one_agents_changes_into_the_users_tree(
    tmp_path: Path, home: Home, genv: dict[str, str], how: str
) -> None:
    repo, run_id = two_writers(tmp_path, home, genv)
    head = git(repo, "rev-parse", "HEAD").strip()
    done = run_cli("apply", run_id, "b#1", "--as", how, "--keep", env=genv)
    assert done.code == 0, done.stderr
    assert (repo / "README.md").read_text() == "b's readme\n"
    assert (repo / "b.txt").read_text() == "from b\n"
    assert not (repo / "a.txt").exists()
    if how == "patch":
        assert git(repo, "rev-parse", "HEAD").strip() == head
        assert "README.md" in git(repo, "status", "--porcelain")
    elif how == "merge":
        parents = git(repo, "log", "-1", "--format=%P").split()
        assert parents[0] == head and len(parents) == 2
    else:
        assert git(repo, "rev-parse", "HEAD~1").strip() == head
        assert git(repo, "log", "-1", "--format=%s").startswith("aiswitch: b#1")
        assert git(repo, "status", "--porcelain") == ""
    listed = run_cli("workspaces", "list", "--run", run_id, "--json", env=genv)
    rows = {r["agent_id"]: r for r in listed.json()}
    assert rows["b#1"]["applied"] == how
    again = run_cli("apply", run_id, "b#1", env=genv)
    assert_one_error_line(again, "already applied")


@pytest.mark.parametrize("how", ["patch", "merge", "cherry-pick"])
def test_apply_with_conflicts_changes_nothing(
    tmp_path: Path, home: Home, genv: dict[str, str], how: str
) -> None:
    repo, run_id = two_writers(tmp_path, home, genv)
    assert run_cli("apply", run_id, "a#1", "--as", "merge", "--keep", env=genv).code == 0
    if how == "patch":
        (repo / "README.md").write_text("the user's own edit\n")  # uncommitted, in the way
    before = repo_state(repo)
    done = run_cli("apply", run_id, "b#1", "--as", how, env=genv)
    assert_one_error_line(done, "nothing was changed")
    assert repo_state(repo) == before
    assert not (repo / ".git" / "MERGE_HEAD").exists()
    assert not (repo / ".git" / "CHERRY_PICK_HEAD").exists()


def test_apply_refuses_when_the_users_uncommitted_changes_touch_the_same_files(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    repo, run_id = two_writers(tmp_path, home, genv)
    (repo / "README.md").write_text("mine\n")
    before = repo_state(repo)
    done = run_cli("apply", run_id, "a#1", "--as", "merge", env=genv)
    assert_one_error_line(done, "uncommitted changes to README.md", "nothing was changed")
    assert repo_state(repo) == before


# -- clean ------------------------------------------------------------------------------


def test_clean_keeps_unapplied_work_unless_forced(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    repo, run_id = two_writers(tmp_path, home, genv)
    listed = run_cli("workspaces", "list", "--json", env=genv).json()
    assert {r["agent_id"]: r["unapplied_work"] for r in listed} == {"a#1": True, "b#1": True}
    assert all(r["disk_bytes"] > 0 for r in listed)
    assert run_cli("apply", run_id, "a#1", "--as", "merge", "--keep", env=genv).code == 0
    cleaned = run_cli("workspaces", "clean", env=genv)
    assert cleaned.code == 0, cleaned.stderr
    assert "removed 1 workspaces, kept 1" in cleaned.stdout
    assert "b#1" in cleaned.stderr and "--force" in cleaned.stderr
    branches = git(repo, "branch", "--list")
    assert f"aiswitch/{run_id}/a-1" not in branches
    assert f"aiswitch/{run_id}/b-1" in branches
    young = run_cli("workspaces", "clean", "--force", "--older-than", "7d", env=genv)
    assert "removed 0 workspaces" in young.stdout
    forced = run_cli("workspaces", "clean", "--force", env=genv)
    assert "removed 1 workspaces, kept 0" in forced.stdout
    assert "aiswitch/" not in git(repo, "branch", "--list")
    assert git(repo, "worktree", "list").count("\n") == 1
    assert not (home.workspaces / run_id).exists()


def test_a_workspace_deleted_by_hand_a_moved_branch_and_a_moved_repository_are_reported(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    import shutil

    repo, run_id = two_writers(tmp_path, home, genv)
    rows = {r["agent_id"]: r for r in run_cli("workspaces", "list", "--json", env=genv).json()}
    shutil.rmtree(rows["a#1"]["path"])
    git(Path(rows["b#1"]["path"]), "commit", "-q", "--allow-empty", "-m", "by hand")
    listed = {r["agent_id"]: r for r in run_cli("workspaces", "list", "--json", env=genv).json()}
    assert listed["a#1"]["problem"] == "the workspace folder was deleted by hand"
    assert "moved outside aiswitch" in listed["b#1"]["problem"]
    # The deleted worktree's branch still holds the work: its diff still shows.
    assert "from a" in run_cli("diff", run_id, "a#1", env=genv).stdout
    moved = tmp_path / "elsewhere"
    repo.rename(moved)
    listed = {r["agent_id"]: r for r in run_cli("workspaces", "list", "--json", env=genv).json()}
    assert "is gone (moved or deleted)" in listed["b#1"]["problem"]
    applied = run_cli("apply", run_id, "b#1", env=genv)
    assert_one_error_line(applied, "is gone")
    cleaned = run_cli("workspaces", "clean", "--force", env=genv)
    assert cleaned.code == 0 and "Traceback" not in cleaned.stderr


# -- setup ------------------------------------------------------------------------------


def test_setup_include_and_symlink_prepare_each_new_workspace(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {".gitignore": ".env\nnode_modules/\n.setup-done\n", "app.js": "1\n"},
    )
    (repo / ".env").write_text("TOKEN=local\n")
    (repo / "node_modules" / "left-pad").mkdir(parents=True)
    (repo / "node_modules" / "left-pad" / "index.js").write_text("module.exports = 1\n")
    home.config.mkdir(parents=True, exist_ok=True)
    (home.config / "coordination.yaml").write_text(
        yaml.safe_dump(
            {
                "workspace": {
                    "setup": ["test -f .env && test -d node_modules/left-pad", "pwd > .setup-done"],
                    "include": [".env"],
                    "symlink": ["node_modules"],
                }
            }
        )
    )
    writers(home, {"a": {"MOCK_WRITE": write_spec({"app.js": "2\n"})}})
    done = run(genv, repo, "-p", "a,a", "x")
    assert done.code == 0, done.stderr
    for result in done.json()["results"]:
        ws = result["workspace"]
        root = Path(ws["root"])
        assert (root / ".env").read_text() == "TOKEN=local\n"
        assert (root / "node_modules").is_symlink()
        assert (root / "node_modules").resolve() == (repo / "node_modules").resolve()
        assert (root / ".setup-done").read_text().strip() == str(root)
        assert ws["changes"]["paths"] == ["app.js"]  # included and linked: never in a diff


def test_a_setup_failure_fails_only_that_task_with_the_commands_output(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    home.config.mkdir(parents=True, exist_ok=True)
    failing = 'case "$PWD" in *-2) echo "npm ERR! missing lockfile"; exit 3;; esac'
    (home.config / "coordination.yaml").write_text(
        yaml.safe_dump({"workspace": {"setup": [failing]}})
    )
    writers(home, {"a": {"MOCK_WRITE": write_spec({"x.txt": "x\n"})}})
    done = run(genv, repo, "-p", "a,a", "x")
    doc = done.json()
    assert doc["status"] == "partial"
    results = results_by_agent(done)
    assert results["a#1"]["status"] == "ok"
    assert results["a#2"]["status"] == "failed"
    assert "exited 3" in results["a#2"]["error"]
    assert "npm ERR! missing lockfile" in results["a#2"]["error"]
    assert results["a#2"]["workspace"] is None
    assert f"aiswitch/{doc['run_id']}/a-2" not in git(repo, "branch", "--list")
    assert not (home.workspaces / doc["run_id"] / "a-2").exists()


# -- checks -----------------------------------------------------------------------------


def test_checks_rank_the_agents(tmp_path: Path, home: Home, genv: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo")
    writers(
        home,
        {
            "cheap_wrong": {"MOCK_WRITE": write_spec({"ok": "no\n"}), "MOCK_OUTPUT_TOKENS": "5"},
            "right": {"MOCK_WRITE": write_spec({"ok": "yes\n"}), "MOCK_OUTPUT_TOKENS": "500"},
            "right_cheap": {"MOCK_WRITE": write_spec({"ok": "yes\n"}), "MOCK_OUTPUT_TOKENS": "50"},
        },
    )
    done = run(genv, repo, "-p", "cheap_wrong,right,right_cheap", "x", "--check", "grep -q yes ok")
    results = results_by_agent(done)
    assert results["right#1"]["workspace"]["check"]["passed"] is True
    wrong = results["cheap_wrong#1"]["workspace"]["check"]
    assert wrong["passed"] is False and wrong["exit_code"] == 1
    compared = run_cli("compare", done.json()["run_id"], "--json", env=genv)
    assert compared.code == 0, compared.stderr
    order = [row["agent_id"] for row in compared.json()["agents"]]
    assert order == ["right_cheap#1", "right#1", "cheap_wrong#1"]
    shown = run_cli("compare", done.json()["run_id"], env=genv)
    assert shown.stdout.index("right_cheap#1") < shown.stdout.index("cheap_wrong#1")


def test_best_of_runs_the_task_n_times_and_prints_the_ranking(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    writers(home, {"a": {"MOCK_WRITE": write_spec({"f.txt": "1\n"})}})
    done = run_cli("run", "--agent", "a", "x", "--best-of", "3", env=genv, cwd=repo)
    assert done.code == 0, done.stderr
    assert "best first" in done.stdout
    for agent_id in ("a#1", "a#2", "a#3"):
        assert agent_id in done.stdout
    assert git(repo, "branch", "--list").count("aiswitch/") == 3
    # `runs show` prints the results again with the ranking, as `run` did.
    run_id = next(
        w for line in done.stdout.splitlines() for w in line.split()[1:2] if line.startswith("run ")
    )
    shown = run_cli("runs", "show", run_id, env=genv)
    assert shown.code == 0, shown.stderr
    ranking = shown.stdout[shown.stdout.index(f"run {run_id}, best first") :]
    assert ranking == done.stdout[done.stdout.index(f"run {run_id}, best first") :]
    plain = run_cli("run", "--agent", "a", "x", env=genv, cwd=repo)
    plain_id = next(
        line.split()[1] for line in plain.stdout.splitlines() if line.startswith("run ")
    )
    assert "best first" not in run_cli("runs", "show", plain_id, env=genv).stdout


# -- bad input --------------------------------------------------------------------------


def test_a_worktree_outside_git_is_refused_with_nothing_made(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    done = run_cli("run", "-p", "mock,mock", "x", "--workspace", "worktree", env=genv, cwd=plain)
    assert_one_error_line(done, "needs a git repository", "--workspace copy")
    assert not home.workspaces.exists() or not any(home.workspaces.iterdir())


@pytest.mark.parametrize("problem", ["no commit", "detached"])
def test_a_repository_a_worktree_cannot_start_from_is_refused(
    tmp_path: Path, home: Home, genv: dict[str, str], problem: str
) -> None:
    repo = tmp_path / "repo"
    if problem == "no commit":
        repo.mkdir()
        git(repo, "init", "-q")
        expected = "no commit"
    else:
        make_repo(repo)
        git(repo, "checkout", "-q", "--detach")
        expected = "detached"
    done = run_cli("run", "-p", "mock,mock", "x", "-w", "worktree", env=genv, cwd=repo)
    assert_one_error_line(done, expected)
    assert "aiswitch/" not in git(repo, "branch", "--list")


def test_a_branch_name_clash_is_refused_before_anything_starts(
    tmp_path: Path, home: Home, genv: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiswitch.coordinator import run as run_module
    from aiswitch.coordinator.coordinator import Coordinator
    from aiswitch.coordinator.request import RunRequest
    from aiswitch.coordinator.specs import parse_specs
    from aiswitch.errors import WorkspaceError

    repo = make_repo(tmp_path / "repo")
    git(repo, "branch", "aiswitch/R1/mock-2")
    monkeypatch.setattr(run_module, "new_run_id", lambda: "R1")
    coordinator = Coordinator(Home(home.root).ensure())
    # "auto": the default rule, as `aiswitch run` asks for it.
    specs = parse_specs("mock,mock")
    request = RunRequest(mode="parallel", specs=specs, prompt="x", cwd=str(repo), workspace="auto")
    with pytest.raises(WorkspaceError, match="a branch aiswitch/R1/mock-2 already exists"):
        coordinator.new_run(request)
    assert git(repo, "branch", "--list").count("aiswitch/") == 1
    assert not (home.workspaces / "R1").exists()


def test_unknown_runs_agents_and_options_are_one_line_errors(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    repo, run_id = two_writers(tmp_path, home, genv)
    assert_one_error_line(run_cli("diff", "nope", env=genv), "unknown run 'nope'")
    assert_one_error_line(run_cli("apply", run_id, "zed#9", env=genv), "no agent or task", "a#1")
    assert_one_error_line(run_cli("apply", run_id, "a#1", "--as", "rebase", env=genv), "--as")
    assert_one_error_line(
        run_cli("workspaces", "clean", "--older-than", "soon", env=genv), "--older-than"
    )
    assert_one_error_line(
        run_cli("run", "-p", "a,b", "x", "-w", "sideways", env=genv, cwd=repo), "--workspace"
    )
    shared = run_cli("run", "-a", "a", "x", "--json", env=genv, cwd=repo)
    assert shared.code == 0
    assert_one_error_line(run_cli("diff", shared.json()["run_id"], env=genv), "has no workspaces")


def test_a_mock_write_outside_its_directory_fails_the_task(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    writers(home, {"a": {"MOCK_WRITE": write_spec({"../escape.txt": "x"})}})
    done = run(genv, repo, "-p", "a,a", "x")
    for result in done.json()["results"]:
        assert result["status"] == "failed"
        assert "outside the working directory" in result["error"]
    assert not (home.workspaces.parent / "escape.txt").exists()


# -- plans ------------------------------------------------------------------------------


def test_a_plans_branches_get_worktrees_from_the_step_they_wait_for_and_a_task_may_share(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo", {".gitignore": ".ready\n", "README.md": "r\n"})
    writers(
        home,
        {
            "a": {"MOCK_WRITE": write_spec({"base.txt": "base\n"})},
            "b": {"MOCK_WRITE": write_spec({"left.txt": "left\n"})},
            "c": {"MOCK_WRITE": write_spec({"right.txt": "right\n"})},
            "d": {"MOCK_WRITE": write_spec({"note.txt": "note\n"})},
        },
    )
    plan = {
        "workspace": {"setup": ["touch .ready"]},
        "tasks": [
            {"id": "base", "agent": "a", "prompt": "lay the base"},
            {"id": "left", "agent": "b", "prompt": "left", "depends_on": ["base"]},
            {"id": "right", "agent": "c", "prompt": "right", "depends_on": ["base"]},
            {"id": "note", "agent": "d", "prompt": "note", "workspace": "shared"},
        ],
    }
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(plan))
    done = run_cli("run", "--plan", str(plan_file), "--json", env=genv, cwd=repo)
    assert done.code == 0, done.stderr
    by_id = {r["id"]: r for r in done.json()["results"]}
    base, left, right = (by_id[k]["workspace"] for k in ("base", "left", "right"))
    assert {base["mode"], left["mode"], right["mode"]} == {"worktree"}
    assert len({base["root"], left["root"], right["root"]}) == 3
    # Each branch starts from the work of the step it waited for, and its diff is its own.
    assert left["base"] == right["base"] == base["tip"] != base["base"]
    assert (Path(left["root"]) / "base.txt").read_text() == "base\n"
    assert not (Path(left["root"]) / "right.txt").exists()
    assert left["changes"]["paths"] == ["left.txt"]
    assert right["changes"]["paths"] == ["right.txt"]
    assert all((Path(ws["root"]) / ".ready").exists() for ws in (base, left, right))
    note = by_id["note"]["workspace"]
    assert note["mode"] == "shared" and note["changes"]["paths"] == ["note.txt"]
    assert (repo / "note.txt").read_text() == "note\n"
    assert not (repo / "base.txt").exists()


def test_a_plan_with_an_unknown_workspace_mode_is_refused(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(
        yaml.safe_dump({"tasks": [{"id": "t", "agent": "mock", "prompt": "x", "workspace": "x"}]})
    )
    done = run_cli("run", "--plan", str(plan_file), env=genv, cwd=tmp_path)
    assert done.code != 0
    assert "workspace" in done.stderr and "Traceback" not in done.stderr


def test_each_jsonl_task_line_carries_its_workspace(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    writers(home, {"a": {"MOCK_WRITE": write_spec({"x.txt": "x\n"})}})
    done = run_cli("run", "-p", "a,a", "x", "--jsonl", env=genv, cwd=repo)
    assert done.code == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    tasks = [line for line in lines if line["type"] == "task"]
    assert len(tasks) == 2
    for line in tasks:
        assert line["workspace"]["branch"].startswith("aiswitch/")
        assert line["workspace"]["changes"]["paths"] == ["x.txt"]


def b_started(fifo: Path) -> dict[str, Any]:
    """The start line of task 2 (b), read from the mocks' task log, a FIFO: each mock opens
    it for one line and closes it (the end of what one writer wrote), so it is opened
    again, waiting for the next writer, until b's line comes."""
    while True:
        with fifo.open() as log:
            for text in log:
                line = json.loads(text)
                if line["event"] == "start" and line["task_id"].endswith("/2.1"):
                    return dict(line)


def test_a_resumed_run_works_on_in_the_workspaces_it_made_before_it_was_killed(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    import signal

    from support.cli import aiswitch_bin

    repo = make_repo(tmp_path / "repo")
    started = tmp_path / "b-started"
    os.mkfifo(started)  # b's task log: its first line says its task began, workspace made
    writers(
        home,
        {
            "a": {"MOCK_WRITE": write_spec({"a.txt": "a\n"})},
            "b": {"MOCK_WRITE": write_spec({"b.txt": "b\n"}), "MOCK_HANG": "1"},
        },
    )
    proc = subprocess.Popen(
        [aiswitch_bin(), "run", "-p", "a,b", "x", "--json"],
        env={**genv, "MOCK_TASK_LOG": str(started)},
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        line = b_started(started)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run_id = line["task_id"].split("/")[0]
    listed = run_cli("workspaces", "list", "--json", env=genv).json()
    (hung,) = [w for w in listed if w["agent_id"] == "b#1"]
    # b no longer hangs (and the task log is not passed on).
    writers(
        home,
        {
            "a": {"MOCK_WRITE": write_spec({"a.txt": "a\n"})},
            "b": {"MOCK_WRITE": write_spec({"b.txt": "b\n"})},
        },
    )
    resumed = run_cli("runs", "resume", run_id, "--json", env=genv, cwd=repo)
    assert resumed.code == 0, resumed.stderr
    b = results_by_agent(resumed)["b#1"]["workspace"]
    assert b["root"] == hung["path"]  # the same worktree, not a clash or a second one
    assert b["changes"]["paths"] == ["b.txt"]
    assert git(repo, "branch", "--list").count("aiswitch/") == 2


def test_a_shared_batch_takes_no_snapshots(
    tmp_path: Path, home: Home, genv: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("one\ntwo\nthree\n")
    done = run(genv, repo, "--agent", "mock", "--tasks", str(tasks), "-w", "shared")
    assert done.code == 0, done.stderr
    assert [r["workspace"] for r in done.json()["results"]] == [None, None, None]
