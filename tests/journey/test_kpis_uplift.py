"""The heartbeat's daily KPIs carry each campaign's holdout uplift with its 95% interval."""

from __future__ import annotations

from datetime import date

import pytest

from contracts.uplift import uplift
from edge_agent.journey.kpis import JourneyKpis

DAY = date(2026, 11, 23)


def day(exposed: int, exposed_conv: int, holdout: int, holdout_conv: int) -> JourneyKpis:
    k = JourneyKpis()
    k.roll(DAY)
    for i in range(exposed):
        k.shown("winback", f"e{i}", 1000.0 + i)
    for i in range(holdout):
        k.held_out("winback", f"h{i}")
    for i in range(exposed_conv):
        k.conversion("winback", "exposed", f"e{i}", 5000.0)
    for i in range(holdout_conv):
        k.conversion("winback", "holdout", f"h{i}", 5000.0)
    return k


def test_each_campaign_snapshot_has_rates_uplift_and_its_interval() -> None:
    c = day(70, 56, 80, 48).snapshot()["campaigns"]["winback"]
    # Newcombe's worked example (contracts/uplift.py), through the box's own counters.
    assert (c["exposed_conversion_rate"], c["holdout_conversion_rate"]) == (0.8, 0.6)
    assert (c["uplift"], c["uplift_ci_low"], c["uplift_ci_high"]) == (0.2, 0.0524, 0.3339)
    assert c["uplift_relative"] == 0.3333
    assert "e1" not in str(c)  # figures leave the box, shoppers do not


def test_a_campaign_without_a_holdout_yet_has_no_uplift_rather_than_zero() -> None:
    c = day(5, 2, 0, 0).snapshot()["campaigns"]["winback"]
    assert c["exposed_conversion_rate"] == 0.4 and c["holdout_conversion_rate"] is None
    assert c["uplift"] is None and c["uplift_ci_low"] is None and c["uplift_ci_high"] is None


def test_a_shopper_buying_twice_does_not_push_a_rate_past_one() -> None:
    k = day(2, 2, 2, 0)
    k.conversion("winback", "exposed", "e0", 6000.0)  # e0 comes back for a second pair
    c = k.snapshot()["campaigns"]["winback"]
    assert c["exposed_conversions"] == 3  # purchases, as before
    assert c["exposed_conversion_rate"] == 1.0  # but at most every shopper converted
    expected = uplift(2, 2, 0, 2)
    assert (c["uplift"], c["uplift_ci_low"]) == (1.0, pytest.approx(expected.ci_low, abs=1e-4))
    assert c["uplift_ci_high"] == 1.0


def test_a_shopper_held_out_then_shown_the_offer_counts_as_exposed_only() -> None:
    k = day(3, 0, 3, 0)
    k.shown("winback", "h0", 2000.0)  # the holdout share went down during the day
    c = k.snapshot()["campaigns"]["winback"]
    assert (c["exposed_shoppers"], c["holdout_shoppers"]) == (4, 2)


def test_the_daily_snapshot_resets_the_uplift_with_the_day() -> None:
    k = day(10, 3, 10, 1)
    assert k.snapshot()["campaigns"]["winback"]["uplift"] == 0.2
    k.roll(date(2026, 11, 24))
    assert k.snapshot()["campaigns"] == {}
