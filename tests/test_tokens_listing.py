"""`aiswitch.tokens.listing.files_under`: the same files as `os.walk`, and an index of folder
mtimes that skips unchanged folders but never misses an added, removed or renamed file."""

from __future__ import annotations

import os
from pathlib import Path

from aiswitch.tokens import listing
from aiswitch.tokens.listing import DIRTY, files_under


def _walk(top: Path, suffix: str) -> list[str]:
    out = []
    for dirpath, _dirnames, filenames in os.walk(top):
        out.extend(os.path.join(dirpath, name) for name in filenames if name.endswith(suffix))
    return sorted(out)


def _age(path: Path, seconds: int = 60) -> None:
    """Move a folder's mtime into the past, out of the racy window."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - seconds * 1_000_000_000))


def _tree(root: Path) -> Path:
    top = root / "projects"
    (top / "a" / "deep" / "er").mkdir(parents=True)
    (top / "b").mkdir()
    (top / "a" / "one.jsonl").write_text("x")
    (top / "a" / "deep" / "two.jsonl").write_text("x")
    (top / "a" / "deep" / "er" / "three.jsonl").write_text("x")
    (top / "b" / "four.jsonl").write_text("x")
    (top / "b" / "notes.txt").write_text("x")
    (top / "b" / "dir.jsonl").mkdir()  # a folder named like a log is not a file
    (top / "b" / "dir.jsonl" / "five.jsonl").write_text("x")
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "outside.jsonl").write_text("x")
    (top / "link").symlink_to(root / "elsewhere")  # listed as a folder, not entered
    (top / "file-link.jsonl").symlink_to(top / "b" / "four.jsonl")  # a file
    (top / "broken.jsonl").symlink_to(root / "missing")  # os.walk lists it as a file
    for folder in [top, *[Path(p) for p, _d, _f in os.walk(top)]]:
        _age(folder)
    return top


def test_the_listing_equals_os_walk_with_and_without_an_index(tmp_path: Path) -> None:
    top = _tree(tmp_path)
    expected = _walk(top, ".jsonl")
    assert len(expected) == 7
    assert files_under(str(top), ".jsonl") == expected
    index: dict[str, object] = {}
    assert files_under(str(top), ".jsonl", index) == expected
    assert index.pop(DIRTY) is True
    assert files_under(str(top), ".jsonl", index) == expected
    assert DIRTY not in index  # nothing changed: nothing re-read
    assert files_under(str(tmp_path / "absent"), ".jsonl", index) == []


def test_an_unchanged_folder_is_not_read_again(tmp_path: Path, monkeypatch) -> None:
    top = _tree(tmp_path)
    index: dict[str, object] = {}
    files_under(str(top), ".jsonl", index)
    read: list[str] = []
    real = listing._read

    def counting(folder: str, suffix: str):  # type: ignore[no-untyped-def]
        read.append(folder)
        return real(folder, suffix)

    monkeypatch.setattr(listing, "_read", counting)
    files_under(str(top), ".jsonl", index)
    assert read == []
    (top / "b" / "six.jsonl").write_text("x")
    _age(top / "b")
    assert files_under(str(top), ".jsonl", index) == _walk(top, ".jsonl")
    assert read == [str(top / "b")]


def test_added_removed_and_renamed_files_and_folders_are_seen(tmp_path: Path) -> None:
    top = _tree(tmp_path)
    index: dict[str, object] = {}
    files_under(str(top), ".jsonl", index)
    (top / "a" / "deep" / "er" / "three.jsonl").unlink()
    (top / "a" / "one.jsonl").rename(top / "a" / "uno.jsonl")
    (top / "c" / "d").mkdir(parents=True)
    (top / "c" / "d" / "new.jsonl").write_text("x")
    # Changed within the racy window: read again on every call until older.
    assert files_under(str(top), ".jsonl", index) == _walk(top, ".jsonl")
    assert str(top / "c" / "d") not in index
    assert files_under(str(top), ".jsonl", index) == _walk(top, ".jsonl")
    for folder in (top, top / "a", top / "a" / "deep" / "er", top / "c", top / "c" / "d"):
        _age(folder)
    assert files_under(str(top), ".jsonl", index) == _walk(top, ".jsonl")
    assert str(top / "c" / "d") in index
    import shutil

    shutil.rmtree(top / "c")
    assert files_under(str(top), ".jsonl", index) == _walk(top, ".jsonl")
    assert str(top / "c") not in index and str(top / "c" / "d") not in index


def test_a_folder_changed_just_before_it_was_read_is_not_trusted(tmp_path: Path) -> None:
    top = tmp_path / "projects"
    top.mkdir()
    (top / "one.jsonl").write_text("x")
    index: dict[str, object] = {}
    files_under(str(top), ".jsonl", index)
    assert str(top) not in index  # modified less than RACY_NS ago
    _age(top)
    files_under(str(top), ".jsonl", index)
    assert str(top) in index
