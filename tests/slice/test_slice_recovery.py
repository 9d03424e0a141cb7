"""A damaged profiles.db (issue 14) does not stop the box: the slice is a replica, so the broken
file is set aside for forensics and an empty slice asks central for a snapshot. Real files."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.slice.store import ProfileSlice, SliceError, SliceGapError
from sync import sqlite_guard
from tests.slice.test_profiles_slice import STORE, delta, row, snapshot
from tests.sqlite_pages import overwrite, table_leaves

KEY = "00112233445566778899aabbccddeeff"


def filled(path: Path, n: int = 600) -> None:
    s = ProfileSlice(path, store_id=STORE)
    try:
        s.apply(snapshot(7, [row(f"p-{i:04d}", identity_key=KEY) for i in range(n)]))
        assert s.count() == n
    finally:
        s.close()
    assert not sqlite_guard.sidecar(path, "-wal").exists()


def header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:100] = bytes(100)
    path.write_bytes(bytes(data))


def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def not_a_database(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def page_head(path: Path) -> None:
    leaves = table_leaves(path, "profiles")
    overwrite(path, leaves[len(leaves) // 2].offset, 64, seed=5)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "header": header,
    "truncated": truncated,
    "not_a_database": not_a_database,
    "page_head": page_head,
}


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("edge_agent.slice") and r.levelno >= logging.WARNING
    ]


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_slice_is_set_aside_and_central_is_asked_for_a_snapshot(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "profiles.db"
    filled(path)
    key_before = path.with_suffix(".key").read_bytes()
    DAMAGE[kind](path)
    damaged = path.read_bytes()
    caplog.set_level(logging.INFO)

    s = ProfileSlice(path, store_id=STORE)  # no exception
    try:
        rec = s.recovered
        assert rec is not None
        aside = Path(rec["moved_to"])
        assert aside.read_bytes() == damaged  # kept, untouched, for forensics
        assert sqlite_guard.aside_sets(path) == [aside]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.with_suffix(".key").read_bytes() == key_before  # the device key stays

        (line,) = lines(caplog)
        assert rec["reason"] in line and aside.name in line and "snapshot" in line

        # Empty, and saying so wherever central and ops look.
        assert s.count() == 0 and s.version == 0
        assert s.snapshot_needed and "damaged" in s.snapshot_needed
        health = s.health()
        assert health["profiles_snapshot_needed"] == "yes"
        assert health["profiles_recovered"].startswith(rec["reason"])
        with pytest.raises(SliceGapError):  # a delta cannot apply: the ack asks for a snapshot
            s.apply(delta(7, 8, {"op": "delete", "profile_id": "p-0001"}))

        # Central's snapshot puts it right.
        s.apply(snapshot(9, [row("p-new", identity_key=KEY)]))
        assert s.count() == 1 and s.snapshot_needed is None
        assert s.identity_keys() == {"p-new": (bytes.fromhex(KEY),)}
    finally:
        s.close()
    again = ProfileSlice(path, store_id=STORE)
    try:
        assert again.recovered is None and again.version == 9
    finally:
        again.close()
    assert len(lines(caplog)) == 1


def test_an_empty_file_is_still_a_new_slice(tmp_path: Path) -> None:
    # Not a damage: an installer may create the file (0600) before the agent first runs.
    path = tmp_path / "profiles.db"
    path.touch(mode=0o600)
    s = ProfileSlice(path, store_id=STORE)
    try:
        assert s.recovered is None and s.version == 0
    finally:
        s.close()
    assert sqlite_guard.aside_sets(path) == []


def test_a_tool_that_only_looks_leaves_a_damaged_slice_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "profiles.db"
    filled(path, 50)
    header(path)
    with pytest.raises(SliceError, match="damaged"):
        ProfileSlice(path, store_id=STORE, create=False)
    assert sqlite_guard.aside_sets(path) == [] and path.read_bytes()[:100] == bytes(100)


def test_a_loosened_wal_is_tightened_too(tmp_path: Path) -> None:
    path = tmp_path / "profiles.db"
    s = ProfileSlice(path, store_id=STORE)
    s.apply(snapshot(1, [row("p-a")]))
    wal = sqlite_guard.sidecar(path, "-wal")
    assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
    os.chmod(wal, 0o644)
    again = ProfileSlice(path, store_id=STORE)  # while the first still holds it open
    try:
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600 and again.count() == 1
    finally:
        again.close()
        s.close()
