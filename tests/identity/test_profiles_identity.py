"""The profile slice in SQLite and O(1) resolution of rotating shopper tokens."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from demo.scenario import demo_identity_key, profile_slice
from edge_agent.identity.resolver import TokenResolver
from edge_agent.sensing.ble.eid import compute_eid
from edge_agent.slice.store import ProfileSlice, SliceError


def test_snapshot_loads_and_reads_back(tmp_path: Path) -> None:
    s = ProfileSlice(tmp_path / "p.db")
    assert s.load_snapshot(profile_slice(), version=3) == 6
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
    assert again.count() == 6 and again.version == 3


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
    assert s.count() == 6 and s.version == 1


def test_an_older_snapshot_is_refused(tmp_path: Path) -> None:
    s = ProfileSlice(tmp_path / "p.db")
    s.load_snapshot(profile_slice(), version=5)
    with pytest.raises(SliceError, match="not newer"):
        s.load_snapshot(profile_slice()[:1], version=4)
    assert s.count() == 6


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
    window = r._window
    assert window is not None and [len(t) for t in window.tables] == [200, 200, 200]
    for i in range(100):
        r.resolve(compute_eid(keys[f"p{i}"], now, 10), now)
    assert r._window is window  # no rebuild within the period


# ---- the token table off the loop (background builds, atomic swaps) ----------------------------

import threading  # noqa: E402
import time  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge_agent.identity.resolver import eids_for  # noqa: E402

NOW = 1_800_000_000


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(min_size=16, max_size=16),
    period=st.integers(0, 2**22),
    k=st.integers(0, 15),
)
def test_batched_eids_equal_compute_eid(key: bytes, period: int, k: int) -> None:
    periods = [p for p in (period - 1, period, period + 1, period + 2) if p >= 0]
    assert eids_for(key, periods, k) == [compute_eid(key, p << k, k) for p in periods]


def _keys(n: int, salt: str = "") -> dict[str, bytes]:
    return {f"p{i}": demo_identity_key(f"p{i}{salt}") for i in range(n)}


@pytest.mark.timeout(60)
def test_a_snapshot_is_built_off_the_caller_and_swapped_in_whole() -> None:
    n = 20_000
    old, new = _keys(n), _keys(n, "x")
    new["p0"] = old["p0"]  # one shopper keeps their key through the snapshot
    r = TokenResolver(10, background=True, clock=lambda: NOW)
    r.set_keys(old)
    assert r.wait_ready(30)
    eid_old = {pid: compute_eid(k, NOW, 10) for pid, k in list(old.items())[:50]}
    eid_new = {pid: compute_eid(k, NOW, 10) for pid, k in list(new.items())[:50]}
    gone = compute_eid(old["p1"], NOW, 10)
    assert r.resolve(gone, NOW) == "p1"
    # Drop p9 from the snapshot: it stops resolving at once, even from the old window.
    del new["p9"]
    t0 = time.perf_counter()
    r.set_keys(new)
    slowest = 0.0
    states = set()
    while not r._idle.is_set():
        t = time.perf_counter()
        got_new = r.resolve(eid_new["p1"], NOW)
        slowest = max(slowest, time.perf_counter() - t)
        # Old window (old key resolves to p1, which still has keys) or new one: never a mix
        # where p0, whose key did not change, is missing.
        assert r.resolve(eid_old["p0"], NOW) == "p0"
        assert r.resolve(eid_old["p9"], NOW) is None
        states.add(got_new)
    build_s = time.perf_counter() - t0
    assert r.resolve(eid_new["p1"], NOW) == "p1" and r.resolve(eid_old["p2"], NOW) is None
    assert states <= {None, "p1"}
    print(f"20k keys built in the background in {build_s:.2f}s; slowest lookup {slowest:.4f}s")
    # A lookup never waits for the build (the GIL switch interval is its only cost).
    assert slowest < 0.1, slowest


@pytest.mark.timeout(30)
def test_the_next_period_is_precomputed_so_a_roll_is_a_swap() -> None:
    keys = _keys(2000)
    now = [NOW]
    r = TokenResolver(10, background=True, clock=lambda: now[0])
    r.set_keys(keys)
    assert r.wait_ready(10)
    assert r._next is not None and r._next.period == r._window.period + 1
    later = NOW + 1024
    t = time.perf_counter()
    assert r.resolve(compute_eid(keys["p5"], later, 10), later) == "p5"
    assert time.perf_counter() - t < 0.01
    assert r._window.period == period_of(later)
    assert r.wait_ready(10) and r._next.period == period_of(later) + 1
    # A jump it did not see coming: the old window answers what it can, the new one follows.
    jump = NOW + 10 * 1024
    assert r.resolve(compute_eid(keys["p5"], jump, 10), jump) is None
    assert r.wait_ready(10)
    assert r.resolve(compute_eid(keys["p5"], jump, 10), jump) == "p5"


def period_of(t: float) -> int:
    return int(t) >> 10


@pytest.mark.timeout(30)
def test_a_delta_during_a_background_build_is_not_lost() -> None:
    keys = _keys(30_000)
    r = TokenResolver(10, background=True, clock=lambda: NOW)
    r.set_keys(keys)
    fresh = demo_identity_key("fresh")
    # While the worker builds: a withdrawal, a new shopper and a changed key.
    r.update_keys({"new-1": fresh, "p7": fresh[::-1]}, removed=["p3"])
    assert not r._idle.is_set()  # it really was still building
    assert r.wait_ready(30)
    assert r.resolve(compute_eid(fresh, NOW, 10), NOW) == "new-1"
    assert r.resolve(compute_eid(fresh[::-1], NOW, 10), NOW) == "p7"
    assert r.resolve(compute_eid(keys["p7"], NOW, 10), NOW) is None
    assert r.resolve(compute_eid(keys["p3"], NOW, 10), NOW) is None
    assert all(pid != "p3" for t in r._window.tables for pid in t.values())
    assert r.resolve(compute_eid(keys["p4"], NOW + 1024, 10), NOW) == "p4"  # next period too


def test_a_withdrawal_stops_resolving_at_once() -> None:
    keys = _keys(100)
    r = TokenResolver(10, background=True, clock=lambda: NOW)
    r.set_keys(keys)
    assert r.wait_ready(10)
    eid = compute_eid(keys["p8"], NOW, 10)
    assert r.resolve(eid, NOW) == "p8"
    done = threading.Event()
    r.update_keys({}, removed=["p8"])
    done.set()
    assert r.resolve(eid, NOW) is None and "p8" not in r.keys
