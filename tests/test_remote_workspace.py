"""A workspace on another machine (aiswitch.workspace.remote): made from the base commit's
tree plus the driver's workspace as it stands, its changes brought back as a patch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aiswitch.workspace import remote
from aiswitch.workspace.model import Workspace


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def driver_workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "driver"
    (root / "src").mkdir(parents=True)
    git(root, "init", "-q")
    (root / "src" / "app.py").write_text("print(1)\n")
    (root / "logo.bin").write_bytes(bytes(range(256)))
    (root / ".gitignore").write_text("*.log\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    base = git(root, "rev-parse", "HEAD").strip()
    # What an earlier step left: a commit, an uncommitted edit, an untracked file, an
    # ignored one (which stays behind).
    (root / "src" / "app.py").write_text("print(2)\n")
    git(root, "commit", "-qam", "step one")
    (root / "README.md").write_text("readme\n")
    (root / "notes.txt").write_text("untracked\n")
    (root / "debug.log").write_text("ignored\n")
    return Workspace(
        mode="worktree", run_id="r", name="w", root=str(root), cwd=str(root / "src"),
        source=str(root), base=base,
    )  # fmt: skip


def test_a_node_checkout_starts_from_what_the_driver_has_and_its_changes_come_back(
    tmp_path: Path,
) -> None:
    ws = driver_workspace(tmp_path)
    stored: list[bytes] = []

    def put(data: bytes) -> int:
        stored.append(data)
        return len(stored) - 1

    bundles = remote.Bundles(put)
    order = bundles.order(ws, ws.cwd)
    again = bundles.order(ws, ws.cwd)
    assert order.tree == again.tree == 0 and len(stored) == 1  # one tree per base
    assert order.subdir == "src"
    node = remote.checkout(order, stored[order.tree], tmp_path / "node", "r/1.1")
    assert node.cwd == node.root / "src"
    assert (node.root / "src" / "app.py").read_text() == "print(2)\n"
    assert (node.root / "notes.txt").read_text() == "untracked\n"
    assert (node.root / "logo.bin").read_bytes() == bytes(range(256))
    assert not (node.root / "debug.log").exists()
    # The attempt's own work, and only it, comes back.
    (node.root / "src" / "app.py").write_text("print(3)\n")
    (node.root / "logo.bin").write_bytes(bytes(reversed(range(256))))
    (node.root / "added.txt").write_text("new\n")
    patch = remote.changes(node)
    assert b"README.md" not in patch and b"notes.txt" not in patch
    remote.apply_patch(ws, patch)
    root = Path(ws.root)
    assert (root / "src" / "app.py").read_text() == "print(3)\n"
    assert (root / "logo.bin").read_bytes() == bytes(reversed(range(256)))
    assert (root / "added.txt").read_text() == "new\n"


def test_changes_that_do_not_apply_on_the_driver_are_a_patch_error(tmp_path: Path) -> None:
    ws = driver_workspace(tmp_path)
    stored: list[bytes] = []
    order = remote.Bundles(lambda data: stored.append(data) or 0).order(ws, ws.root)
    node = remote.checkout(order, stored[0], tmp_path / "node", "x")
    (node.root / "src" / "app.py").write_text("print(4)\n")
    patch = remote.changes(node)
    (Path(ws.root) / "src" / "app.py").write_text("changed meanwhile\n")
    with pytest.raises(remote.PatchError, match="applying the node's changes failed"):
        remote.apply_patch(ws, patch)
