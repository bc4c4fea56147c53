"""Files under a folder, listed with `os.scandir`, optionally through an index of directory
mtimes so that a listing repeated over unchanged folders reads no directory at all.

Contract:

- `files_under(top, suffix, index=None)` returns the paths (strings, `os.path.join` of the
  folder and the name) of every file under `top` whose name ends with `suffix`, sorted, as
  `os.walk(top)` would find them: a link to a folder is listed as a folder but not entered, a
  missing or unreadable `top` (or folder below it) contributes nothing.
- `index` (a dict the caller keeps between calls, e.g. loaded from a cache file): per folder
  `[mtime_ns, inode, [sub-folder names], [matching file names]]`. A folder whose mtime and
  inode are unchanged is not read again: its recorded names are used. Adding, removing or
  renaming an entry of a folder changes the folder's mtime, so only changed folders are read;
  a file appended to in place changes no folder (callers stat the files themselves). A folder
  modified less than `RACY_NS` before it was read is not recorded (a later change within the
  same clock tick would leave its mtime equal: git's "racy" rule), so it is read every time
  until it is older. Folders under `top` no longer reached are dropped from the index.
  `files_under` sets `index["dirty"] = True` when it changed the index.

Standard library only (the CLI's fast paths call this before anything heavy is loaded).
"""

from __future__ import annotations

import os
import time

# Not `typing` at run time: it imports `re` (~5 ms), which this fast path otherwise never
# loads; mypy reads the names as if typing.TYPE_CHECKING were used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# A folder changed this recently (ns) when it was read is not trusted to the index.
RACY_NS = 2_000_000_000
DIRTY = "dirty"


def _read(folder: str, suffix: str) -> tuple[list[str], list[str]] | None:
    """The sub-folders to enter and the matching files of `folder` (None: unreadable)."""
    subdirs: list[str] = []
    files: list[str] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    try:
                        followed = entry.is_symlink()
                    except OSError:
                        followed = False
                    if not followed:
                        subdirs.append(entry.name)
                elif entry.name.endswith(suffix):
                    files.append(entry.name)
    except OSError:
        return None
    return subdirs, files


def files_under(top: str, suffix: str, index: dict[str, Any] | None = None) -> list[str]:
    """Every file under `top` named `*suffix`, sorted (see the module docstring)."""
    out: list[str] = []
    stack = [top]
    seen: set[str] = set()
    while stack:
        folder = stack.pop()
        seen.add(folder)
        listing: tuple[list[str], list[str]] | None = None
        if index is not None:
            try:
                stat = os.stat(folder)
            except OSError:
                if index.pop(folder, None) is not None:
                    index[DIRTY] = True
                continue
            known = index.get(folder)
            if known is not None and known[0] == stat.st_mtime_ns and known[1] == stat.st_ino:
                listing = (known[2], known[3])
            else:
                read_at = time.time_ns()
                listing = _read(folder, suffix)
                if listing is not None and read_at - stat.st_mtime_ns >= RACY_NS:
                    index[folder] = [stat.st_mtime_ns, stat.st_ino, *listing]
                    index[DIRTY] = True
                elif known is not None:
                    del index[folder]
                    index[DIRTY] = True
        else:
            listing = _read(folder, suffix)
        if listing is None:
            continue
        subdirs, files = listing
        prefix = folder if folder.endswith(os.sep) else folder + os.sep  # os.path.join's result
        out.extend([prefix + name for name in files])
        stack.extend([prefix + name for name in subdirs])
    if index is not None:  # forget folders under `top` that are gone
        below = top if top.endswith(os.sep) else top + os.sep
        gone = [key for key in index if key not in seen and key.startswith(below)]
        for key in gone:
            del index[key]
        if gone:
            index[DIRTY] = True
    out.sort()
    return out
