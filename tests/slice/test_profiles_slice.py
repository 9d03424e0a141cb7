"""The profile slice (issue 5): data model, sealed keys, snapshots and deltas in order, consent
purges, retention, bad input, the warm cache. Real SQLite files throughout."""

from __future__ import annotations

import copy
import logging
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edge_agent.slice.model import StockPrice
from edge_agent.slice.store import (
    ProfileSlice,
    SliceError,
    SliceGapError,
    SliceOrderError,
    SliceStoreError,
)

STORE = "store-42"
KEY_A = "00112233445566778899aabbccddeeff"
KEY_B = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
KEY_C = "0badc0ffee0000000000000000001234"


def row(pid: str, **kw) -> dict:
    base = {
        "profile_id": pid,
        "first_name": pid.split("-")[-1].title(),
        "language": "en",
        "consent_personalisation": True,
        "consent_analytics": True,
        "consent_staff_alerts": False,
        "segments": ["outdoor"],
        "loyalty_tier": "silver",
        "churn_risk": 0.2,
    }
    base.update(kw)
    return base


def snapshot(version: int, rows: list[dict], **kw) -> dict:
    return {"type": "snapshot", "store_id": STORE, "version": version, "profiles": rows, **kw}


def delta(base: int, version: int, *ops: dict, **kw) -> dict:
    return {
        "type": "delta",
        "store_id": STORE,
        "base_version": base,
        "version": version,
        "ops": list(ops),
        **kw,
    }


ROWS = [
    row(
        "p-ann",
        identity_keys=[KEY_A, KEY_B],
        affinities={"coffee": 0.9, "shoes": 0.1},
        open_orders=[
            {"id": "CC-1", "status": "ready", "pickup_point": "counter 2"},
            {"id": "CC-2", "status": "picking"},
        ],
        consent_staff_alerts=True,
        expires_at="2099-01-01T00:00:00Z",
    ),
    row("p-ben", consent_personalisation=False, identity_key=KEY_C),
    row("p-cat", open_order={"id": "CC-9", "status": "ready", "pickup_point": "desk"}),
]
STOCK = [
    {"sku": "SKU-1", "available": True, "quantity": 4, "aisle": "A3"},
    {"sku": "SKU-2", "available": False, "aisle": "B1"},
]


@pytest.fixture
def s(tmp_path: Path):
    sl = ProfileSlice(tmp_path / "var" / "profiles.db", store_id=STORE)
    sl.apply(snapshot(10, copy.deepcopy(ROWS), stock=STOCK))
    yield sl
    sl.close()


def state(sl: ProfileSlice) -> tuple:
    """Everything a refused input must leave exactly as it was."""
    q = sl.db.execute
    return (
        sl.version,
        q("SELECT * FROM profiles ORDER BY profile_id").fetchall(),
        q("SELECT profile_id, slot FROM identity_keys ORDER BY 1, 2").fetchall(),
        q("SELECT * FROM stock ORDER BY sku").fetchall(),
    )


# ---- data model ------------------------------------------------------------------------------


def test_every_field_of_the_data_model_round_trips(s: ProfileSlice) -> None:
    ann = s.get("p-ann")
    assert ann is not None
    assert dict(ann.affinities) == {"coffee": 0.9, "shoes": 0.1}
    assert [dict(o) for o in ann.open_orders] == [
        {"id": "CC-1", "status": "ready", "pickup_point": "counter 2"},
        {"id": "CC-2", "status": "picking", "pickup_point": ""},
    ]
    assert ann.open_order == {"id": "CC-1", "status": "ready", "pickup_point": "counter 2"}
    assert ann.consent_staff_alerts and ann.segments == ("outdoor",)
    assert ann.expires_at == datetime(2099, 1, 1, tzinfo=UTC).timestamp() and ann.version == 10
    # The version-1 single order and single key are still accepted.
    cat = s.get("p-cat")
    assert cat is not None and cat.open_orders[0]["pickup_point"] == "desk"
    keys = s.identity_keys()
    assert keys["p-ann"] == (bytes.fromhex(KEY_A), bytes.fromhex(KEY_B))
    assert keys["p-ben"] == (bytes.fromhex(KEY_C),)
    assert "p-cat" not in keys
    assert s.stock_levels() == {"SKU-1": True, "SKU-2": False}
    assert s.stock("SKU-1") == {"sku": "SKU-1", "available": True, "quantity": 4, "aisle": "A3"}
    # Profiles are shared by every decision: nobody may change one in place.
    with pytest.raises(TypeError):
        ann.affinities["coffee"] = 0.0  # type: ignore[index]


def test_campaign_helpers_read_affinities_and_orders(s: ProfileSlice) -> None:
    from edge_agent.journey.campaigns import affinity, open_orders

    ann = s.get("p-ann")
    assert ann is not None
    assert affinity(ann, "coffee") == 0.9 and affinity(ann, "tea") == 0.0
    assert [o["id"] for o in open_orders(ann)] == ["CC-1", "CC-2"]


# ---- secrets -------------------------------------------------------------------------------


def _file_bytes(sl: ProfileSlice) -> bytes:
    out = b""
    for suffix in ("", "-wal"):
        p = Path(f"{sl.path}{suffix}")
        if p.exists():
            out += p.read_bytes()
    return out


def test_identity_keys_are_sealed_at_rest_with_a_key_kept_apart(s: ProfileSlice) -> None:
    raw = _file_bytes(s)
    for k in (KEY_A, KEY_B, KEY_C):
        assert k.encode() not in raw and bytes.fromhex(k) not in raw
    assert s.key_path != s.path and s.key_path.stat().st_size == 32
    for f in (s.path, s.key_path):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    # A sealed key is bound to its profile: moved to another row it does not open.
    s.db.execute("UPDATE identity_keys SET profile_id='p-cat' WHERE profile_id='p-ben'")
    assert any("do not open" in p for p in s.verify())
    assert "p-cat" not in s.identity_keys()


def test_another_device_key_opens_nothing(s: ProfileSlice, tmp_path: Path) -> None:
    s.close()
    other = ProfileSlice(s.path, key_path=tmp_path / "elsewhere.key", store_id=STORE)
    assert other.identity_keys() == {}
    assert other.snapshot_needed and "do not open" in other.snapshot_needed
    other.close()


def test_a_loosened_db_file_is_tightened_on_open(s: ProfileSlice) -> None:
    s.close()
    os.chmod(s.path, 0o644)
    again = ProfileSlice(s.path, store_id=STORE)
    assert stat.S_IMODE(os.stat(s.path).st_mode) == 0o600
    again.close()


def test_keys_never_reach_the_log_or_show(s: ProfileSlice, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    bad = copy.deepcopy(ROWS)
    bad[0]["identity_keys"] = [KEY_A.upper()]  # not lower-case hex: refused
    with pytest.raises(SliceError) as exc:
        s.apply(snapshot(11, bad))
    assert "identity_keys" in str(exc.value)
    s.apply(delta(10, 11, {"op": "upsert", "profile": row("p-new", identity_key=KEY_B)}))
    s.verify()
    shown = s.show("p-ann")
    assert shown is not None and shown["identity_keys"] == 2
    text = caplog.text + str(exc.value) + repr(shown) + repr(s.stats()) + repr(s._key)
    for k in (KEY_A, KEY_B, KEY_C):
        assert k not in text and k.upper() not in text


# ---- snapshots and deltas, in order ------------------------------------------------------------


def test_delta_upsert_delete_consent_and_stock(s: ProfileSlice) -> None:
    res = s.apply(
        delta(
            10,
            11,
            {"op": "upsert", "profile": row("p-dan", identity_keys=[KEY_B], loyalty_tier="gold")},
            {"op": "upsert", "profile": row("p-ann", first_name="Annie", identity_keys=[KEY_A])},
            {"op": "delete", "profile_id": "p-cat"},
            {"op": "consent", "profile_id": "p-ben", "personalisation": True},
            {"op": "stock", "sku": "SKU-2", "available": True, "aisle": "B2"},
            {"op": "stock_delete", "sku": "SKU-1"},
        )
    )
    assert (res.kind, res.version, res.rows, res.duplicate) == ("delta", 11, 6, False)
    assert res.forgotten == ("p-cat",)
    assert res.keys_changed == {"p-dan", "p-ann", "p-cat"}
    assert s.version == 11 and s.count() == 3  # +dan -cat
    ann = s.get("p-ann")
    assert ann is not None and ann.first_name == "Annie" and ann.version == 11
    assert s.identity_keys(["p-ann"]) == {"p-ann": (bytes.fromhex(KEY_A),)}
    assert s.get("p-cat") is None
    ben = s.get("p-ben")
    assert ben is not None and ben.consent_personalisation  # a grant only updates the flag
    assert s.stock_levels() == {"SKU-2": True}
    assert s.verify() == []


def test_the_same_delta_twice_changes_nothing(s: ProfileSlice) -> None:
    d = delta(10, 11, {"op": "upsert", "profile": row("p-dan")})
    assert not s.apply(d).duplicate
    before = state(s)
    again = s.apply(copy.deepcopy(d))
    assert again.duplicate and state(s) == before
    # Same version, other content: not a redelivery, a conflict.
    with pytest.raises(SliceOrderError, match="not newer"):
        s.apply(delta(10, 11, {"op": "delete", "profile_id": "p-ann"}))
    assert state(s) == before


def test_an_older_delta_or_snapshot_is_refused_and_reported(s: ProfileSlice) -> None:
    s.apply(delta(10, 12, {"op": "delete", "profile_id": "p-cat"}))
    before = state(s)
    with pytest.raises(SliceOrderError, match="delta version 11 is not newer than 12"):
        s.apply(delta(10, 11, {"op": "upsert", "profile": row("p-cat")}))
    with pytest.raises(SliceOrderError, match="snapshot version 9 is not newer than 12"):
        s.apply(snapshot(9, ROWS))
    assert state(s) == before


def test_a_gap_is_refused_and_asks_for_a_snapshot(s: ProfileSlice) -> None:
    before = state(s)
    with pytest.raises(SliceGapError, match=r"delta v11->v12 does not follow slice v10"):
        s.apply(delta(11, 12, {"op": "delete", "profile_id": "p-ann"}))
    assert state(s) == before
    assert s.snapshot_needed == "delta from v11, slice at v10"
    assert s.health()["profiles_snapshot_needed"] == "yes"
    assert any("snapshot needed" in p for p in s.verify())
    s.apply(snapshot(12, ROWS[:1]))
    assert s.snapshot_needed is None and s.count() == 1 and s.verify() == []


def test_a_redelivered_snapshot_is_a_no_op(s: ProfileSlice) -> None:
    before = state(s)
    assert s.apply(snapshot(10, copy.deepcopy(ROWS), stock=STOCK)).duplicate
    assert state(s) == before


def test_a_snapshot_without_stock_keeps_the_stock_table(s: ProfileSlice) -> None:
    s.apply(snapshot(11, ROWS[:1]))
    assert s.stock_levels() == {"SKU-1": True, "SKU-2": False}


def test_readers_never_see_a_half_applied_snapshot(s: ProfileSlice) -> None:
    rows = [row(f"p-{i:05d}") for i in range(12_000)]
    seen: list[tuple[int, int, bool]] = []

    def mid_apply(done: int) -> None:
        # Runs inside the write transaction, as a lookup on the agent loop would.
        out: list[tuple[int, int, bool]] = []
        t = threading.Thread(
            target=lambda: out.append((done, s.count(), s.get("p-ann") is not None))
        )
        t.start()
        t.join()
        seen.extend(out)

    s.apply(snapshot(11, rows), on_progress=mid_apply)
    assert seen and all(count == 3 and ann for _, count, ann in seen)
    assert s.count() == 12_000 and s.get("p-ann") is None


# ---- consent ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op",
    [
        {"personalisation": False},
        {"analytics": False},
        {"staff_alerts": False},
        {"opt_out": True},
    ],
)
def test_any_withdrawal_purges_the_profile_and_its_keys(s: ProfileSlice, op: dict) -> None:
    assert s.get("p-ann") is not None  # warm in the cache
    res = s.apply(delta(10, 11, {"op": "consent", "profile_id": "p-ann", **op}))
    assert res.forgotten == ("p-ann",) and "p-ann" in (res.keys_changed or ())
    assert s.get("p-ann") is None
    assert (
        s.db.execute("SELECT count(*) FROM identity_keys WHERE profile_id='p-ann'").fetchone()[0]
        == 0
    )


def test_a_purged_profile_leaves_no_trace_in_the_file(tmp_path: Path) -> None:
    sl = ProfileSlice(tmp_path / "p.db", store_id=STORE)
    marker = "Zebediah"
    sl.apply(snapshot(1, [row("p-z", first_name=marker), row("p-y")]))
    sl.apply(delta(1, 2, {"op": "upsert", "profile": row("p-x")}))
    assert marker.encode() in _file_bytes(sl)
    sl.apply(delta(2, 3, {"op": "consent", "profile_id": "p-z", "opt_out": True}))
    assert marker.encode() not in _file_bytes(sl)
    sl.close()


def test_consent_for_a_profile_not_here_is_a_no_op(s: ProfileSlice) -> None:
    res = s.apply(delta(10, 11, {"op": "consent", "profile_id": "p-nobody", "opt_out": True}))
    assert res.forgotten == () and s.count() == 3 and s.version == 11


# ---- retention ---------------------------------------------------------------------------------


def test_expired_profiles_are_hidden_then_purged_and_counted(tmp_path: Path) -> None:
    sl = ProfileSlice(tmp_path / "p.db", store_id=STORE)
    sl.apply(
        snapshot(
            1,
            [
                row("p-old", expires_at="2020-01-01T00:00:00+01:00", identity_key=KEY_A),
                row("p-new", expires_at="2099-01-01T00:00:00Z"),
                row("p-slice"),  # takes the snapshot's expiry
            ],
            expires_at="2098-01-01T00:00:00Z",
        )
    )
    assert sl.get("p-old") is None  # already dead before the purge runs
    slice_exp = sl.get("p-slice")
    in_2098 = datetime(2098, 1, 1, tzinfo=UTC).timestamp()
    assert slice_exp is not None and slice_exp.expires_at == in_2098
    res = sl.purge_expired()
    assert (res.expired, res.forgotten) == (1, ("p-old",))
    assert sl.count() == 2 and "p-old" not in sl.identity_keys()
    assert sl.health()["profiles_expired_purged"] == "1"
    assert sl.purge_expired().expired == 0
    assert sl.purge_expired(now=in_2098 + 1).expired == 1
    assert sl.health()["profiles_expired_purged"] == "2"
    sl.close()


def test_the_apply_journal_is_trimmed_but_keeps_the_newest(s: ProfileSlice) -> None:
    for v in range(11, 15):
        s.apply(delta(v - 1, v, {"op": "upsert", "profile": row(f"p-{v}")}))
    res = s.purge_expired(log_retention_s=-1)  # everything is "old"
    assert res.log_rows == 4  # v10..v13
    assert s.db.execute("SELECT version FROM slice_log").fetchall() == [(14,)]
    # The newest entry is what makes a redelivery of the last delta a no-op.
    assert s.apply(delta(13, 14, {"op": "upsert", "profile": row("p-14")})).duplicate


# ---- bad input -------------------------------------------------------------------------------


def _bad(rows_patch, where: str):
    def make():
        rows = copy.deepcopy(ROWS)
        rows_patch(rows)
        return snapshot(11, rows)

    return pytest.param(make, where, id=where)


BAD = [
    _bad(
        lambda r: r[1].update(favourite_colour="red"), r"profiles\[1\] \(p-ben\): favourite_colour"
    ),
    _bad(lambda r: r[2].update(churn_risk="0.3"), r"profiles\[2\] \(p-cat\): churn_risk"),
    _bad(lambda r: r[0].update(churn_risk=1.5), r"profiles\[0\] \(p-ann\): churn_risk"),
    _bad(
        lambda r: r[0].update(consent_analytics="yes"),
        r"profiles\[0\] \(p-ann\): consent_analytics",
    ),
    _bad(lambda r: r[1].update(affinities={"coffee": 2}), r"profiles\[1\] \(p-ben\): affinities"),
    _bad(lambda r: r[1].update(segments="vip"), r"profiles\[1\] \(p-ben\): segments"),
    _bad(
        lambda r: r[0]["open_orders"].append({"id": "X"}),
        r"profiles\[0\] \(p-ann\): open_orders\.2\.status",
    ),
    _bad(lambda r: r[2].update(open_order={"id": 5}), r"profiles\[2\] \(p-cat\): open_order"),
    _bad(lambda r: r[1].update(identity_key="zz"), r"profiles\[1\] \(p-ben\): identity_key"),
    _bad(lambda r: r[0].update(expires_at="2030-01-01T00:00:00"), r"profiles\[0\].*expires_at"),
    _bad(lambda r: r[2].pop("profile_id"), r"profiles\[2\] \(\?\): profile_id"),
    _bad(lambda r: r.append(copy.deepcopy(r[0])), r"profiles\[3\] \(p-ann\): profile_id: dup"),
    _bad(lambda r: r.append("not a row"), r"profiles\[3\] \(\?\)"),
]


@pytest.mark.parametrize(("make", "where"), BAD)
def test_a_bad_snapshot_row_is_refused_by_row_and_field(s: ProfileSlice, make, where) -> None:
    before = state(s)
    with pytest.raises(SliceError, match=where):
        s.apply(make())
    assert state(s) == before


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (
            delta(10, 11, {"op": "upsert", "profile": row("p-x", language=7)}),
            r"ops\[0\] \(upsert p-x\): profile\.language",
        ),
        (
            delta(10, 11, {"op": "upsert", "profile": row("p-x")}, {"op": "explode"}),
            r"ops\[1\] \(explode \?\): ",
        ),
        (
            delta(10, 11, {"op": "consent", "profile_id": "p-ann", "analytics": 0}),
            r"ops\[0\] \(consent p-ann\): analytics",
        ),
        (delta(10, 11, {"op": "stock", "sku": "S", "available": "yes"}), r"ops\[0\] .*available"),
        (delta(10, 11, {"op": "delete"}), r"ops\[0\] \(delete \?\): profile_id"),
        ({**delta(10, 11), "store_id": "store-7"}, "store_id: slice for store 'store-7'"),
        ({**delta(10, 11), "colour": 1}, "colour: unknown field in a delta"),
        ({**delta(10, 11), "version": "11"}, "version: expected an integer"),
        ({**delta(10, 11), "version": True}, "version: expected an integer"),
        (delta(10, 10), "version: must be greater than base_version"),
        ({**delta(10, 11), "ops": {}}, "ops: expected a list"),
        ({**snapshot(11, ROWS), "store_id": None}, "store_id: missing"),
        ({**snapshot(11, ROWS), "type": "diff"}, "type: expected 'snapshot' or 'delta'"),
        ({**snapshot(11, ROWS), "expires_at": "soon"}, "expires_at: not an RFC 3339 time"),
        ({**snapshot(11, ROWS), "stock": [{"sku": "S"}]}, r"stock\[0\] \(S\): available"),
        ({k: v for k, v in snapshot(11, ROWS).items() if k != "profiles"}, "profiles: missing"),
        ([1, 2], "body: expected a JSON object"),
    ],
)
def test_bad_bodies_are_refused_by_field_and_the_slice_stays(s: ProfileSlice, body, where) -> None:
    before = state(s)
    with pytest.raises(SliceError, match=where) as exc:
        s.apply(body)
    assert "\n" not in str(exc.value)
    assert state(s) == before


def test_a_slice_for_another_store_is_its_own_error(s: ProfileSlice) -> None:
    with pytest.raises(SliceStoreError):
        s.apply({**snapshot(11, ROWS), "store_id": "store-7"})
    assert s.version == 10


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_field = st.sampled_from(
    [
        "profile_id",
        "first_name",
        "language",
        "consent_personalisation",
        "segments",
        "affinities",
        "churn_risk",
        "open_orders",
        "open_order",
        "identity_keys",
        "identity_key",
        "expires_at",
        "loyalty_tier",
        "extra",
    ]
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["snapshot", "delta"]),
    patches=st.lists(st.tuples(st.integers(0, 2), _field, _json), max_size=3),
    op=st.sampled_from(["upsert", "delete", "consent", "stock", "stock_delete", "bogus"]),
    extra=st.dictionaries(
        st.sampled_from(["version", "base_version", "store_id", "ops", "x"]), _json, max_size=2
    ),
)
def test_fuzzed_bodies_apply_or_fail_cleanly(s: ProfileSlice, kind, patches, op, extra) -> None:
    rows = copy.deepcopy(ROWS)
    for i, f, v in patches:
        rows[i][f] = v
    if kind == "snapshot":
        body = {**snapshot(s.version + 1, rows), **extra}
    else:
        a, b, c = rows
        pid = a.get("profile_id")
        body_op = {
            "upsert": {"profile": a},
            "delete": {"profile_id": pid},
            "consent": {"profile_id": pid, "personalisation": b.get("consent_personalisation")},
            "stock": {"sku": c.get("first_name"), "available": c.get("consent_analytics")},
            "stock_delete": {"sku": c.get("loyalty_tier")},
            "bogus": {"profile_id": pid},
        }[op]
        body = {**delta(s.version, s.version + 1, {"op": op, **body_op}), **extra}
    before = state(s)
    try:
        s.apply(body)
    except SliceError as exc:
        event("refused")
        assert "\n" not in str(exc) and len(str(exc)) < 400
        assert state(s) == before
    else:
        event(f"applied {kind}")
        assert s.verify() == []


# ---- warm cache ------------------------------------------------------------------------------


def test_the_cache_serves_repeats_and_is_invalidated_on_update(s: ProfileSlice) -> None:
    first = s.get("p-ben")
    assert first is not None and s.get("p-ben") is first  # a cache hit, no query
    assert s.get("p-nobody") is None and "p-nobody" in s._cache  # misses are cached too
    s.apply(
        delta(
            10,
            11,
            {"op": "upsert", "profile": row("p-ben", first_name="Benjamin")},
            {"op": "upsert", "profile": row("p-nobody")},
        )
    )
    ben = s.get("p-ben")
    assert ben is not None and ben.first_name == "Benjamin"
    assert s.get("p-nobody") is not None
    s.apply(snapshot(12, ROWS[:1]))
    assert s.get("p-ben") is None


def test_the_cache_is_bounded(tmp_path: Path) -> None:
    sl = ProfileSlice(tmp_path / "p.db", store_id=STORE, cache_size=10)
    sl.apply(snapshot(1, [row(f"p-{i}") for i in range(50)]))
    for i in range(50):
        assert sl.get(f"p-{i}") is not None
    assert len(sl._cache) == 10 and "p-49" in sl._cache and "p-0" not in sl._cache
    sl.close()


def test_load_snapshot_keeps_the_version_1_call(tmp_path: Path) -> None:
    sl = ProfileSlice(tmp_path / "p.db")
    assert sl.load_snapshot(copy.deepcopy(ROWS), version=3, stock=STOCK) == 3
    assert sl.version == 3 and sl.stock_levels()["SKU-1"]
    with pytest.raises(SliceOrderError, match="not newer"):
        sl.load_snapshot(copy.deepcopy(ROWS), version=3)
    sl.close()


def test_prices_ride_the_stock_table_and_follow_deltas(s: ProfileSlice) -> None:
    """Today's price and the one it replaces (issue 17): a card shows the shelf's price."""
    assert s.stock_prices() == {}  # the fixture's stock rows carry none
    s.apply(
        delta(
            10,
            11,
            {"op": "stock", "sku": "SKU-1", "available": True, "price": 89.0, "was_price": 119.0},
            {"op": "stock", "sku": "SKU-2", "available": True, "price": 12.5, "currency": "CHF"},
        )
    )
    assert s.stock_prices() == {
        "SKU-1": StockPrice(89.0, 119.0, "EUR"),
        "SKU-2": StockPrice(12.5, None, "CHF"),
    }
    assert s.stock("SKU-1") == {
        "sku": "SKU-1", "available": True, "quantity": None, "aisle": "",
        "price": 89.0, "was_price": 119.0, "currency": "EUR",
    }  # fmt: skip
    # The markdown ends: the next delta's row has no old price, and the cache follows.
    s.apply(delta(11, 12, {"op": "stock", "sku": "SKU-1", "available": True, "price": 119.0}))
    assert s.stock_prices()["SKU-1"] == StockPrice(119.0, None, "EUR")
    with pytest.raises(SliceError, match=r"ops\[0\] .*currency: String should match"):
        s.apply(
            delta(12, 13, {"op": "stock", "sku": "SKU-1", "available": True, "currency": "euro"})
        )
