"""Zone presence: hysteresis and timeouts, so shoppers neither flap nor linger."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.sensing.presence import DwellTick, Entered, Left, PresenceTracker


def feed(tracker: PresenceTracker, samples: list[tuple[float, float]], key: str = "k") -> list:
    out = []
    for ts, rssi in samples:
        out += tracker.tick(ts)
        out += tracker.observe(key, rssi, ts)
    return out


def test_a_single_strong_advert_does_not_enter() -> None:
    t = PresenceTracker(enter_rssi=-70, leave_rssi=-80)
    assert t.observe("k", -50, 0.0) == []
    assert t.present() == set()


def test_enter_then_leave_when_signal_fades() -> None:
    t = PresenceTracker(enter_rssi=-70, leave_rssi=-80, ema_alpha=0.5)
    changes = feed(t, [(i * 0.2, -60) for i in range(10)] + [(2 + i * 0.2, -95) for i in range(10)])
    kinds = [type(c) for c in changes]
    assert kinds == [Entered, Left]
    left = changes[1]
    assert isinstance(left, Left) and left.reason == "weak"
    assert 1.5 < left.dwell_s < 3.0


def test_leave_on_timeout_counts_dwell_until_last_heard() -> None:
    t = PresenceTracker(away_timeout_s=5)
    feed(t, [(float(i), -60) for i in range(10)])
    assert t.present() == {"k"}
    changes = t.tick(30.0)
    assert len(changes) == 1 and isinstance(changes[0], Left)
    assert changes[0].reason == "timeout"
    # Entered at the 2nd advert (t=1), last heard at t=9.
    assert changes[0].dwell_s == 8.0


def test_noise_between_the_thresholds_does_not_flap() -> None:
    rng = random.Random(3)
    t = PresenceTracker(enter_rssi=-70, leave_rssi=-80, ema_alpha=0.3)
    samples = [(i * 0.2, -68 + rng.gauss(0, 4)) for i in range(600)]
    changes = [c for c in feed(t, samples) if not isinstance(c, DwellTick)]
    assert [type(c) for c in changes] == [Entered]


def test_a_naive_threshold_would_flap_on_the_same_noise() -> None:
    """The same trace with no smoothing and no hysteresis flips many times: the baseline we beat."""
    rng = random.Random(3)
    samples = [-68 + rng.gauss(0, 4) for _ in range(600)]
    flips = sum(1 for a, b in zip(samples, samples[1:], strict=False) if (a >= -70) != (b >= -70))
    assert flips > 50


def test_dwell_ticks_while_present() -> None:
    t = PresenceTracker(dwell_report_s=10, away_timeout_s=100)
    changes = feed(t, [(float(i), -60) for i in range(35)])
    ticks = [c for c in changes if isinstance(c, DwellTick)]
    assert [round(c.dwell_s) for c in ticks] == [10, 20, 30]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 2, allow_nan=False), st.integers(-100, -30)), max_size=200))
def test_enters_and_leaves_alternate(steps: list[tuple[float, int]]) -> None:
    t = PresenceTracker()
    ts = 0.0
    seq = []
    for gap, rssi in steps:
        ts += gap
        seq += [c for c in t.tick(ts) + t.observe("k", rssi, ts) if not isinstance(c, DwellTick)]
    seq += [c for c in t.tick(ts + 1000) if not isinstance(c, DwellTick)]
    kinds = [type(c) for c in seq]
    assert all(a is not b for a, b in zip(kinds, kinds[1:], strict=False))
    if kinds:
        assert kinds[0] is Entered and kinds[-1] is Left
    assert all(c.dwell_s >= 0 for c in seq if isinstance(c, Left))
