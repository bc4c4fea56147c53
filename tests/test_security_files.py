"""Files under the home against a hostile or broken file system.

A full disk (a real one: a 64 KiB tmpfs, mounted when the tests run as root, skipped with
the reason otherwise) gives one `aiswitch: error:` line naming the file and what to do,
exit 4, never a traceback; the state files still parse; a ledger line cut short by the
full disk is moved aside by the next writer, not left inside the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support.cli import Completed, clean_env, run_cli

from aiswitch.errors import StateError
from aiswitch.home import Home
from aiswitch.state.store import StateStore
from aiswitch.tokens.ledger import LedgerWriter, ledger_line
from aiswitch.tokens.records import LedgerRecord
from aiswitch.tokens.transfer import read_ledger_records

pytestmark = pytest.mark.timeout(120)

DISK_BYTES = 64 * 1024
PAGE = 4096  # tmpfs allocates whole pages
MOUNT_TIMEOUT_S = 10.0


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A real file system of 64 KiB, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("a full-disk test mounts a small tmpfs, which needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        timeout=MOUNT_TIMEOUT_S,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], timeout=MOUNT_TIMEOUT_S, check=False)


def fill(disk: Path) -> Path:
    """Fill the disk to its last byte; returns the filler (delete it to free the disk)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * PAGE)
    return filler


def assert_one_error_line(out: Completed, *names: str) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("aiswitch: error:")]
    assert len(errors) == 1, out.stderr
    for name in names:
        assert name in errors[0], errors[0]
    return errors[0]


def assert_state_parses(home: Home) -> None:
    for path in [*home.state.glob("*.json"), *home.runs.glob("*.json")]:
        json.loads(path.read_text())
    presets = home.config / "presets.yaml"
    if presets.exists():
        yaml.safe_load(presets.read_text())
    _, malformed = read_ledger_records(home.ledger)
    assert malformed == 0


def test_a_full_disk_is_one_line_naming_the_file_exit_4_and_the_state_still_parses(
    disk: Path,
) -> None:
    home = Home(disk / "home")
    env = clean_env(home.root, MOCK_LATENCY="0")
    assert run_cli("run", "--agent", "mock", "x", env=env).code == 0
    assert run_cli("preset", "add", "kimi", "FOO=1", env=env).code == 0
    fill(disk)

    added = run_cli("preset", "add", "other", "BAR=2", env=env)
    assert added.code == 4
    line = assert_one_error_line(added, str(home.config / "presets.yaml"), "No space left")
    assert "free space" in line

    ran = run_cli("run", "--agent", "mock", "x", env=env)
    assert ran.code == 4
    assert_one_error_line(ran, str(home.state), "No space left", "free space")

    assert_state_parses(home)
    assert "other" not in (home.config / "presets.yaml").read_text()


def record(n: int, model: str = "m") -> LedgerRecord:
    return LedgerRecord(agent="mock", model=model, message_id=f"m-{n}", input_tokens=n)


async def test_a_ledger_line_cut_short_by_a_full_disk_is_moved_aside_by_the_next_writer(
    disk: Path,
) -> None:
    home = Home(disk / "home")
    store = StateStore(home)
    # Whole lines up to 30 bytes short of a page: the next line fits only in part.
    short = PAGE - 30
    base = len(ledger_line(record(0, ""))) + 1
    home.ledger.write_bytes(ledger_line(record(0, "p" * (short - base))) + b"\n")
    assert home.ledger.stat().st_size == short
    filler = fill(disk)
    writer = LedgerWriter(store)
    try:
        with pytest.raises(StateError) as failed:
            writer.add(record(1))
        assert str(home.ledger) in failed.value.one_line()
        assert "free space" in failed.value.one_line()
        torn = home.ledger.read_bytes()[short:]
        assert torn and b"\n" not in torn  # the disk took part of the line
        filler.unlink()
        writer.add(record(2))
    finally:
        await writer.close()

    records, malformed = read_ledger_records(home.ledger)
    assert [r.input_tokens for r in records] == [0, 2] and malformed == 0
    (aside,) = home.state.glob("tokens.jsonl.torn-*")
    assert aside.read_bytes() == torn
    assert aside.stat().st_mode & 0o777 == 0o600


# -- symbolic links and ownership ---------------------------------------------------------


def plant_link(path: Path, target: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


@pytest.mark.parametrize(
    "planted",
    ["state/tokens.jsonl", "logs/coordinator.log"],
)
def test_a_link_planted_in_place_of_a_file_is_refused_and_its_target_untouched(
    tmp_path: Path, home: Home, env: dict[str, str], planted: str
) -> None:
    target = tmp_path / "victim"
    target.write_bytes(b"precious\n")
    home.ensure()
    plant_link(home.root / planted, target)

    out = run_cli("run", "--agent", "mock", "x", env=env)

    assert target.read_bytes() == b"precious\n"
    assert out.code == 4, out.stderr
    assert_one_error_line(out, str(home.root / planted), "symbolic link")


@pytest.mark.parametrize("folder", ["state", "logs/agents"])
def test_a_home_folder_writable_by_others_is_refused_and_doctor_says_how_to_fix_it(
    home: Home, env: dict[str, str], folder: str
) -> None:
    home.ensure()
    path = home.root / folder
    path.chmod(0o777)

    out = run_cli("run", "--agent", "mock", "x", env=env)
    assert out.code == 4
    assert_one_error_line(out, str(path), "writable by others", "aiswitch doctor")

    doctor = run_cli("doctor", env=env)
    assert doctor.code == 4
    assert f"problem home: {path} is writable by others\n" in doctor.stdout
    assert f"fix: chmod 700 {path}" in doctor.stdout
    path.chmod(0o700)
    assert run_cli("doctor", env=env).code == 0


def test_a_home_folder_owned_by_another_user_is_refused(home: Home, env: dict[str, str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    home.ensure()
    os.chown(home.state, 65534, 65534)

    out = run_cli("run", "--agent", "mock", "x", env=env)
    assert out.code == 4
    assert_one_error_line(out, str(home.state), "owned by uid 65534")
    assert f"chown -R 0 {home.state}" in run_cli("doctor", env=env).stdout
