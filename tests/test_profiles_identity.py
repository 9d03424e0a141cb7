"""The profile slice in SQLite and O(1) resolution of rotating shopper tokens."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edge_agent.ble.eid import compute_eid
from edge_agent.demo.scenario import demo_identity_key, profile_slice
from edge_agent.identity import TokenResolver
from edge_agent.profiles import ProfileSlice, SliceError


def test_snapshot_loads_and_reads_back(tmp_path: Path) -> None:
    s = ProfileSlice(tmp_path / "p.db")
    assert s.load_snapshot(profile_slice(), version=3) == 5
    alice = s.get("cdp-p-1001")
    assert alice is not None and alice.first_name == "Alice" and alice.consent_personalisation
    assert "outdoor" in alice.segments
    carol = s.get("cdp-p-1003")
    assert carol is not None and carol.open_order == {
        "id": "CC-4711",
        "status": "ready",
        "pickup_point": "counter 2",
    }
    assert s.version == 3
    s.close()
    # Survives a reopen: it is a real file.
    again = ProfileSlice(tmp_path / "p.db")
    assert again.count() == 5 and again.version == 3


def test_the_slice_file_is_private(tmp_path: Path) -> None:
    ProfileSlice(tmp_path / "p.db").load_snapshot(profile_slice(), version=1)
    mode = stat.S_IMODE(os.stat(tmp_path / "p.db").st_mode)
    assert mode == 0o600


def test_a_bad_row_is_refused_by_row_and_field_and_the_slice_stays(tmp_path: Path) -> None:
    s = ProfileSlice(tmp_path / "p.db")
    s.load_snapshot(profile_slice(), version=1)
    rows = profile_slice()
    rows[2]["churn_risk"] = 7
    with pytest.raises(SliceError, match=r"profiles\[2\] \(cdp-p-1003\): churn_risk"):
        s.load_snapshot(rows, version=2)
    assert s.count() == 5 and s.version == 1


def test_an_older_snapshot_is_refused(tmp_path: Path) -> None:
    s = ProfileSlice(tmp_path / "p.db")
    s.load_snapshot(profile_slice(), version=5)
    with pytest.raises(SliceError, match="not newer"):
        s.load_snapshot(profile_slice()[:1], version=4)
    assert s.count() == 5


def test_token_resolves_in_current_previous_and_next_period() -> None:
    keys = {f"p{i}": demo_identity_key(f"p{i}") for i in range(50)}
    r = TokenResolver(rotation_exponent=10)
    r.set_keys(keys)
    now = 1_800_000_000
    for delta in (-1024, 0, 1024):
        eid = compute_eid(keys["p7"], now + delta, 10)
        assert r.resolve(eid, now) == "p7"
    # Two periods away is outside the window: a stale token does not resolve.
    assert r.resolve(compute_eid(keys["p7"], now + 2048, 10), now) is None
    assert r.resolve(b"\x00" * 8, now) is None


def test_resolution_is_a_table_lookup_not_a_scan() -> None:
    keys = {f"p{i}": demo_identity_key(f"p{i}") for i in range(200)}
    r = TokenResolver(rotation_exponent=10)
    r.set_keys(keys)
    now = 1_800_000_000
    r.resolve(b"x" * 8, now)
    assert len(r._table) == 3 * 200
    table_id = id(r._table)
    for i in range(100):
        r.resolve(compute_eid(keys[f"p{i}"], now, 10), now)
    assert id(r._table) == table_id  # no rebuild within the period
