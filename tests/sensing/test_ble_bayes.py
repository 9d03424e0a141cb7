"""The Bayesian zone filter (edge_agent/sensing/ble/bayes.py): properties, and a generated store."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.sensing.ble.bayes import LO_DB, STEP_DB, BayesParams, BayesZoneEngine, llr_tables
from edge_agent.sensing.ble.calibrate import Calibration
from edge_agent.sensing.ble.zones import Entered, Left, Receiver
from tests.sensing.test_ble_presence import ble_cfg

CAL = Calibration(rssi_1m=-59.0, path_loss_n=2.2)


def _engine(**kw) -> BayesZoneEngine:
    rx = [Receiver("a", "za", CAL), Receiver("b", "zb", CAL), Receiver("c", "zc", CAL)]
    return BayesZoneEngine(rx, BayesParams(**kw))


def _at(d: float) -> float:
    return CAL.rssi_at(d)


# ---- the likelihood tables ------------------------------------------------------------------
def test_llr_rises_with_the_signal_and_is_capped() -> None:
    p = BayesParams()
    t_in, t_near = llr_tables(2.2, p)
    i0 = int((-20 - LO_DB) / STEP_DB)
    seg = t_in[i0:]
    assert all(b >= a - 1e-9 for a, b in zip(seg, seg[1:], strict=False))
    assert max(t_in) <= p.llr_max and min(t_in) >= -p.llr_max
    # A reading at the zone's edge is about as likely in as out; at 1.5 m it says "in".
    edge = t_in[int((-22 * math.log10(p.zone_m) - LO_DB) / STEP_DB)]
    near = t_in[int((-22 * math.log10(1.5) - LO_DB) / STEP_DB)]
    assert abs(edge) < 0.6 and near > 1.5
    # 5 m is the "near the edge" band: that state likes it better than "in".
    i5 = int((-22 * math.log10(5.0) - LO_DB) / STEP_DB)
    assert t_near[i5] > 0 > t_in[i5]


def test_bad_params_name_the_rule() -> None:
    with pytest.raises(ValueError, match="p_leave < p_enter"):
        BayesParams(p_enter=0.3, p_leave=0.5)
    with pytest.raises(ValueError, match="near_m < zone_m"):
        BayesParams(zone_m=0.5)
    with pytest.raises(ValueError, match="must be positive"):
        BayesParams(corr_s=0)


# ---- properties -----------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 4, allow_nan=False),
            st.integers(-127, 0),
            st.sampled_from(["a", "b", "c", "x"]),
            st.booleans(),
        ),
        max_size=120,
    )
)
def test_posterior_stays_normalised_and_events_pair_up(steps) -> None:
    e = _engine()
    ts = 0.0
    zone: str | None = None
    for gap, rssi, rx, tick in steps:
        ts += gap
        changes = e.tick(ts) if tick else []
        changes += e.observe("k", rssi, ts, rx)
        for c in changes:
            if isinstance(c, Entered):
                assert zone is None
                zone = c.zone
            elif isinstance(c, Left):
                assert zone == c.zone and c.dwell_s >= 0
                zone = None
        assert e.zone_of("k") == zone
        post = e.posterior("k")
        if post:
            assert all(-1e-12 <= v <= 1 + 1e-12 for v in post.values())
            assert math.isclose(sum(post.values()), 1.0, abs_tol=1e-9)
            d = e._devices["k"]
            assert math.isclose(sum(d.p), 1.0, abs_tol=1e-9)
    for c in e.tick(ts + 1000):
        if isinstance(c, Left):
            zone = None
    assert zone is None and e.tracked() == 0


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0.5, 12.0),
    st.sampled_from([0.1, 0.25, 1.0, 2.0]),
    st.floats(0, 0.5),
)
def test_no_flap_on_a_constant_signal(distance: float, interval: float, jitter: float) -> None:
    """Whatever the distance and advertising interval, a steady signal gives at most one
    entry and no leave while it lasts, and a far one never enters."""
    e = _engine()
    rssi = round(_at(distance))
    ts, changes = 0.0, []
    while ts < 120:
        changes += e.tick(ts)
        changes += e.observe("k", rssi, ts, "a")
        ts += interval + jitter * interval
    assert not [c for c in changes if isinstance(c, Left)]
    entered = [c for c in changes if isinstance(c, Entered)]
    assert len(entered) <= 1
    if distance <= 2.0:
        assert [c.zone for c in entered] == ["za"]
    if distance >= 6.0:
        assert entered == []


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([0.1, 0.25, 0.5, 1.0, 2.0]), st.floats(5, 60))
def test_leaves_after_silence_within_the_learned_timeout(interval: float, stay: float) -> None:
    e = _engine()
    ts = 0.0
    while ts < stay:
        e.tick(ts)
        e.observe("k", round(_at(1.5)), ts, "a")
        ts += interval
    last = ts - interval
    assert e.zone_of("k") == "za"
    learned = e.advertising_interval_s("k")
    assert learned is not None and abs(learned - interval) < 0.05 * interval + 1e-6
    p = e.params
    timeout = min(p.away_max_s, max(p.away_min_s, p.away_misses * interval))
    left: list[Left] = []
    t = last
    while t <= last + timeout + 0.5 and not left:
        t += 0.25
        left = [c for c in e.tick(t) if isinstance(c, Left)]
    assert left, f"still in the zone {t - last:.2f} s after the last advert"
    assert left[0].zone == "za" and 0 <= left[0].dwell_s <= stay + 0.5
    # Silence is evidence: it leaves no later than the timeout, and never before two
    # intervals (one missed advert is no proof).
    assert t - last >= min(2 * interval, timeout) - 0.25


def test_a_single_fade_does_not_leave_and_a_walk_away_does() -> None:
    e = _engine()
    ts = 0.0
    for _ in range(20):
        e.tick(ts)
        e.observe("k", round(_at(1.5)), ts, "a")
        ts += 1.0
    assert e.zone_of("k") == "za"
    assert e.observe("k", round(_at(1.5)) - 20, ts, "a") == []  # a multipath null
    ts += 1.0
    e.observe("k", round(_at(1.5)), ts, "a")
    assert e.zone_of("k") == "za"
    # Walking away at 1.2 m/s: out within a few seconds of crossing the 3.2 m edge.
    d, left = 1.5, None
    while left is None and d < 20:
        ts += 1.0
        d += 1.2
        for c in e.tick(ts) + e.observe("k", round(_at(d)), ts, "a"):
            if isinstance(c, Left):
                left = (c, d)
    assert left is not None and left[1] < 3.2 + 1.2 * 5
    assert left[0].reason in {"weak", "moved"}


def test_moving_to_another_zone_is_one_leave_and_one_enter() -> None:
    e = _engine()
    ts, events = 0.0, []
    for i in range(60):
        ts += 0.5
        near_a = i < 30
        events += e.tick(ts)
        events += e.observe("k", round(_at(1.5 if near_a else 9.0)), ts, "a")
        events += e.observe("k", round(_at(9.0 if near_a else 1.5)), ts + 0.01, "b")
    kinds = [(type(c).__name__, c.zone) for c in events if isinstance(c, Entered | Left)]
    assert kinds == [("Entered", "za"), ("Left", "za"), ("Entered", "zb")]


def test_unknown_receiver_is_counted_and_the_fallback_takes_it() -> None:
    e = _engine()
    assert e.observe("k", -40, 0.0, "stranger") == []
    assert e.stats.unknown_receiver == 1 and e.tracked() == 0
    fb = BayesZoneEngine([Receiver("a", "za", CAL)], fallback=Receiver("local", "za", CAL))
    for i in range(10):
        fb.observe("k", round(_at(1.2)), i * 0.5, "node-new")
    assert fb.zone_of("k") == "za"


# ---- a generated store with ground truth ----------------------------------------------------
def test_on_a_generated_store_it_flaps_less_than_the_median_and_the_anchors() -> None:
    from bench.ble import _replay, _score
    from bench.ble_anchors import Distance, MqttRoom, Ours, bayes_params, ours_params
    from bench.ble_sim import PATH_LOSS_N, ZONE_R, generate

    tr = generate(25, 600.0, seed=5)
    bayes = _score(tr, _replay(tr, Ours(tr.calibration, PATH_LOSS_N, bayes_params())))
    median = _score(tr, _replay(tr, Ours(tr.calibration, PATH_LOSS_N, ours_params("median"))))
    ha = _score(
        tr, _replay(tr, MqttRoom(Distance(tr.calibration, PATH_LOSS_N), math.hypot(ZONE_R, 1.2)))
    )
    assert bayes["stops"] > 20 and bayes["missed_stops"] <= 1
    assert bayes["zone_accuracy"] > 0.8
    assert bayes["flaps"] < median["flaps"]
    assert bayes["flaps"] * 5 < ha["flaps"]
    # It is not slow to say so: p50 enter within 3 s and leave within 5 s of the truth.
    assert bayes["enter_latency_s"]["p50"] < 3.0
    assert bayes["leave_latency_s"]["p50"] < 5.0


def test_per_advert_cost_does_not_grow_with_the_devices_tracked() -> None:
    """O(1) per advert: the same adverts take about as long with 20,000 other devices."""
    import time

    def cost(others: int) -> float:
        e = _engine()
        for d in range(others):
            e.observe(f"o{d}", -70, 0.0, "a")
        rng = random.Random(1)
        samples = [(rng.randint(-90, -50), rng.choice("abc")) for _ in range(20_000)]
        t0 = time.perf_counter()
        for i, (rssi, rx) in enumerate(samples):
            e.observe(f"k{i % 50}", rssi, 1.0 + i * 1e-3, rx)
        return time.perf_counter() - t0

    small, big = min(cost(0) for _ in range(3)), min(cost(20_000) for _ in range(3))
    assert big < small * 3


# ---- wiring from config ---------------------------------------------------------------------
def test_zone_method_from_config_picks_the_filter(tmp_path: Path) -> None:
    from edge_agent.config import ConfigError
    from edge_agent.sensing.presence import tracker_from_config

    def cfg(**ble):
        return ble_cfg(tmp_path, **ble)

    with pytest.raises(ConfigError, match="zone_method"):
        cfg(zone_method="guess")
    t = tracker_from_config(cfg(zone_method="bayes", receivers={"n": "womens"}).ble, tmp_path)
    assert isinstance(t.engine, BayesZoneEngine)
    for i in range(8):
        t.observe("k", -60, i * 0.5)
        t.observe("m", -60, i * 0.5, "n")
    assert t.present("entrance") == {"k"} and t.present("womens") == {"m"}
    assert isinstance(t.engine.params, BayesParams) and t.engine.params.zone_m > 3


def test_miss_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="miss_out in"):
        BayesParams(miss_out=0)
    with pytest.raises(ValueError, match="miss_in"):
        BayesParams(miss_in=1.5)


def test_two_frames_of_one_advert_do_not_fake_thousands_of_misses() -> None:
    """A learned gap of nanoseconds (duplicate frames) once overflowed the miss count."""
    e = _engine()
    ts = 0.0
    for _ in range(10):
        e.observe("k", round(_at(1.2)), ts, "a")
        e.observe("k", round(_at(1.2)), ts + 1e-9, "a")
        ts += 1e-9
    assert e.zone_of("k") == "za"
    for t in (0.5, 1.0, 30.0):
        e.tick(t)
        post = e.posterior("k")
        assert not post or math.isclose(sum(post.values()), 1.0, abs_tol=1e-9)
