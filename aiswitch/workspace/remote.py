"""A task's workspace on another machine (the `ray` backend): made there from what the
driver sends, its changes brought back as a patch.

Contract:
- Driver: `Bundles(put).order(ws, cwd)` is what travels for one attempt: the tree of the
  workspace's base commit (`git archive`, made once per base and stored once with `put`,
  Ray's object store), the driver's workspace as it stands against that base (a binary
  patch: committed, uncommitted and untracked files, ignored ones left out), and the
  attempt's directory inside it.
- Node: `checkout(order, tree, root, name)` makes a fresh repository from the tree with
  the patch applied and committed, so every attempt starts clean from what the driver has
  (a retry never sees what a lost attempt wrote); `changes(checkout)` is what the attempt
  did since (a binary patch, untracked files included, ignored ones not).
- Driver: `apply_patch(ws, patch)` applies it to the driver's workspace, where
  `diff`, `compare` and `apply` find it as they find a local attempt's changes.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiswitch.errors import WorkspaceError
from aiswitch.workspace.git import COMMIT_CONFIG, git, git_bytes
from aiswitch.workspace.model import Workspace


class PatchError(WorkspaceError):
    """A node's changes do not apply to the driver's workspace."""


@dataclass(frozen=True)
class RemoteWorkspace:
    base: str
    # The base commit's tree (a tar), as `Bundles.put` stored it: a Ray object reference.
    tree: Any
    patch: bytes
    subdir: str


@dataclass(frozen=True)
class Checkout:
    root: Path
    cwd: Path


class Bundles:
    def __init__(self, put: Callable[[bytes], Any]) -> None:
        self._put = put
        self._trees: dict[str, Any] = {}

    def order(self, ws: Workspace, cwd: str) -> RemoteWorkspace:
        assert ws.base is not None
        tree = self._trees.get(ws.base)
        if tree is None:
            archive = git_bytes(["archive", "--format=tar", ws.base], ws.root)
            tree = self._trees[ws.base] = self._put(archive)
        subdir = os.path.relpath(cwd, ws.root)
        return RemoteWorkspace(ws.base, tree, standing_patch(ws), "" if subdir == "." else subdir)


def standing_patch(ws: Workspace) -> bytes:
    """The driver's workspace against its base, untracked files included (a scratch
    index: the workspace's own index is not touched)."""
    assert ws.base is not None
    with tempfile.TemporaryDirectory(prefix="aiswitch-index-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        git(["read-tree", ws.base], ws.root, env=env)
        git(["add", "-A", "."], ws.root, env=env)
        return git_bytes(["diff", "--cached", "--binary", ws.base], ws.root, env=env)


def checkout(order: RemoteWorkspace, tree: bytes, parent: Path, name: str) -> Checkout:
    root = parent / name.replace("/", "_")
    root.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        archive.extractall(root, filter="data")
    git(["init", "-q"], root)
    git(["add", "-A", "."], root)
    if order.patch:
        git(["apply", "--binary", "--index", "-"], root, input=order.patch, what="the patch")
    git([*COMMIT_CONFIG, "commit", "-q", "--allow-empty", "-m", "start"], root)
    return Checkout(root, root / order.subdir if order.subdir else root)


def changes(done: Checkout) -> bytes:
    git(["add", "-A", "."], done.root)
    return git_bytes(["diff", "--cached", "--binary", "HEAD"], done.root)


def apply_patch(ws: Workspace, patch: bytes) -> None:
    try:
        git(["apply", "--binary", "-"], ws.root, input=patch, what="applying the node's changes")
    except WorkspaceError as exc:
        raise PatchError(exc.message) from None
