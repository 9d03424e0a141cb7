"""The uplink's wait for the CDP's confirmations (``contracts.backoff.ConfirmTimer``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.backoff import ConfirmTimer


def test_the_floor_holds_until_round_trips_outgrow_it() -> None:
    t = ConfirmTimer(floor_s=15.0)
    assert t.timeout_s() == 15.0
    for _ in range(20):
        t.sample(0.2)  # a healthy CDP: the configured timeout stays
    assert t.timeout_s() == 15.0
    t = ConfirmTimer(floor_s=15.0)
    for _ in range(50):
        t.sample(40.0)  # a tier that takes 40 s under load: wait for it, not 15 s
    assert 40.0 <= t.timeout_s() < 45.0


def test_unconfirmed_batches_double_the_wait_and_a_clean_sample_ends_it() -> None:
    t = ConfirmTimer(floor_s=15.0, max_s=100.0)
    t.back_off()
    assert t.timeout_s() == 30.0
    t.back_off()
    assert t.timeout_s() == 60.0
    t.back_off()
    assert t.timeout_s() == 100.0  # capped
    t.sample(1.0)
    assert t.timeout_s() == 15.0


def test_a_jittery_round_trip_widens_the_wait() -> None:
    steady, jittery = ConfirmTimer(floor_s=1.0), ConfirmTimer(floor_s=1.0)
    for i in range(40):
        steady.sample(5.0)
        jittery.sample(2.0 if i % 2 else 8.0)  # the same mean
    assert jittery.timeout_s() > steady.timeout_s() + 5.0


def test_a_bad_range_is_refused() -> None:
    with pytest.raises(ValueError, match="floor_s <= max_s"):
        ConfirmTimer(floor_s=20.0, max_s=10.0)
    with pytest.raises(ValueError, match="0 < floor_s"):
        ConfirmTimer(floor_s=0.0)


@given(
    floor=st.floats(0.5, 60.0),
    extra=st.floats(0.0, 600.0),
    steps=st.lists(
        st.one_of(st.floats(0.0, 1e4), st.just("backoff")),
        max_size=60,
    ),
)
def test_the_wait_stays_between_floor_and_max(floor: float, extra: float, steps: list) -> None:
    t = ConfirmTimer(floor_s=floor, max_s=floor + extra)
    for s in steps:
        if s == "backoff":
            t.back_off()
        else:
            t.sample(s)
        assert floor <= t.timeout_s() <= floor + extra
