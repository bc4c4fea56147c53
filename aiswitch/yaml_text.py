"""YAML read one way: PyYAML's safe loader, on libyaml's parser when PyYAML was built with it.

Every YAML document aiswitch reads (config files, presets, plans, prices) goes through
`parse`. libyaml's `CSafeLoader` parses ~20x faster than the pure-Python `SafeLoader` (the
built-in presets, read on every run: ~0.4 ms against ~9 ms) and builds the same values (the
constructor and resolver are the safe loader's). Errors are `yaml.YAMLError`s, as from
`yaml.safe_load`. PyYAML is imported on the first parse, not before.

aiswitch's own documents (the built-in presets, read on every run; their callers pass
`remember=True`) are remembered once `remember_in(folder)` is called (the CLI's `run` does,
with its home's `tmp/`); the user's files never are (a preset may hold a secret, which no
other file may copy). A remembered document whose value is plain JSON (mappings with string keys,
lists, strings, finite numbers, booleans, null) is kept in `folder/yaml-parsed.json` under
the SHA-256 of its text, and a later process parsing the same text takes its value from
there without importing PyYAML at all (~20 ms here, a twentieth of a one-agent run). Any
other value (a date, a key that is not a string) is parsed every time. The file is a cache,
keyed by content, so it can never be stale: unreadable or damaged, it is ignored and
rewritten; it keeps the last `CACHE_ENTRIES` documents.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from pathlib import Path

CACHE_FILE: Final = "yaml-parsed.json"
# The built-in presets, and a few earlier versions of each (after upgrades).
CACHE_ENTRIES: Final = 64
# A document bigger than this (as JSON) is not kept: the cache stays a small file to read.
CACHE_DOCUMENT_CHARS: Final = 64 * 1024
# Deeper than this, a value is not kept (a YAML alias can make a value contain itself).
_PLAIN_DEPTH: Final = 64

_folder: Path | None = None
# The cache's documents, digest -> the value as JSON text; None until read.
_documents: dict[str, str] | None = None
# Held while the documents are read or changed (a process may parse in several threads).
_lock = threading.Lock()


def parse(text: str, *, remember: bool = False) -> Any:
    """The value of the YAML document `text` (None for an empty one); `remember`: one of
    aiswitch's own documents, which may be remembered (module docstring)."""
    digest = None
    if remember and _folder is not None:
        import hashlib

        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        with _lock:
            known = _cached().get(digest)
        if known is not None:
            return json.loads(known)
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    value = yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
    if digest is not None and _plain(value, 0):
        with _lock:
            _keep(digest, json.dumps(value, separators=(",", ":")))
    return value


def remember_in(folder: Path | None) -> None:
    """Keep parsed documents in `folder` from now on (None: stop keeping them)."""
    global _folder, _documents
    with _lock:
        if folder != _folder:
            _folder, _documents = folder, None


def _plain(value: Any, depth: int) -> bool:
    """Whether `value` comes back from JSON exactly as it is (an int stays an int)."""
    kind = type(value)
    if kind in (str, int, bool) or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if depth >= _PLAIN_DEPTH:
        return False
    if kind is list:
        return all(_plain(item, depth + 1) for item in value)
    if kind is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    return False


def _cached() -> dict[str, str]:
    """The documents kept (read from the file the first time); the caller holds `_lock`."""
    global _documents
    if _documents is None:
        _documents = {}
        if _folder is None:  # remember_in(None) came meanwhile: this one is not kept
            return _documents
        try:
            data = json.loads((_folder / CACHE_FILE).read_bytes())
        except (OSError, ValueError):
            return _documents
        if isinstance(data, dict) and all(type(v) is str for v in data.values()):
            _documents = data
    return _documents


def _keep(digest: str, document: str) -> None:
    """Add a document and rewrite the file (a temp file renamed over it: a reader sees the
    old file or the new one). A failed write only means the next process parses again.
    The caller holds `_lock`."""
    from aiswitch.home import NOFOLLOW, SECRET_FILE_MODE

    if len(document) > CACHE_DOCUMENT_CHARS:
        return
    documents = _cached()
    documents.pop(digest, None)
    documents[digest] = document
    while len(documents) > CACHE_ENTRIES:
        documents.pop(next(iter(documents)))
    if _folder is None:
        return
    path = _folder / CACHE_FILE
    temp = path.with_name(f".{CACHE_FILE}.{os.getpid()}.tmp")
    # ASCII (escapes for the rest): any text, even a lone surrogate, reads back as it was.
    data = json.dumps(documents).encode("ascii")
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW
        with open(os.open(temp, flags, SECRET_FILE_MODE), "wb") as out:
            out.write(data)
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()
