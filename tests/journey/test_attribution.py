"""Closing the loop: first and last touch, windows, anonymous audiences, holdout, KPIs."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.journey.attribution import AttributionBook, Touch
from edge_agent.journey.kpis import JourneyKpis


def book(*touches: Touch, window: float = 3600) -> AttributionBook:
    b = AttributionBook(window)
    for t in touches:
        b.add(t)
    return b


def test_first_and_last_touch_for_the_same_shopper_within_the_window() -> None:
    b = book(
        Touch(100, "coffee", "s1", "alice"),
        Touch(200, "boots", "s1", "bob"),
        Touch(300, "shoes", "s2", "alice"),
        Touch(9000, "late", "s1", "alice"),
    )
    a = b.attribute(1000, "alice")
    assert (a.first.campaign_id, a.last.campaign_id, a.touches) == ("coffee", "shoes", 2)
    # A purchase more than the window after the offer is not attributed to it.
    assert b.attribute(100 + 3601, "alice").first.campaign_id == "shoes"
    assert b.attribute(50, "alice").touches == 0  # before any offer
    assert b.attribute(1000, "carol").last is None


def test_anonymous_purchases_go_to_anonymous_offers_at_the_tills_screens() -> None:
    b = book(
        Touch(100, "sale", "s-entrance", None),
        Touch(150, "personal", "s-entrance", "alice"),
        Touch(200, "coffee", "s-cafe", None),
    )
    a = b.attribute(500, None, screens=["s-entrance"])
    assert (a.first.campaign_id, a.last.campaign_id, a.touches) == ("sale", "sale", 1)
    assert b.attribute(500, None).last.campaign_id == "coffee"  # no till mapping: any screen


def test_holdout_touches_put_the_conversion_in_the_control_group() -> None:
    b = book(Touch(100, "winback", "s1", "dave", group="holdout"))
    assert b.attribute(200, "dave").group == "holdout"


def test_forgetting_a_shopper_drops_their_touches() -> None:
    b = book(Touch(100, "c", "s1", "alice"), Touch(110, "c", "s1", None))
    b.forget("alice")
    assert b.attribute(200, "alice").touches == 0 and len(b) == 1


@given(st.lists(st.floats(0, 10_000), min_size=1, max_size=50), st.floats(0, 20_000))
def test_prune_keeps_exactly_the_touches_a_purchase_now_could_use(times, now) -> None:
    b = book(*(Touch(t, "c", "s1", "p") for t in sorted(times)), window=1000)
    before = b.attribute(now, "p")
    b.prune(now)
    assert b.attribute(now, "p") == before
    assert all(t.ts >= now - 1000 for t in b._touches)


def test_kpis_count_conversion_rates_for_exposed_and_holdout_and_time_to_value() -> None:
    k = JourneyKpis()
    k.roll(date(2026, 11, 23))
    for i in range(10):
        k.store_entry(f"e{i}", 1000.0)
        k.shown("winback", f"e{i}", 1000.0 + 30 * i)
    for i in range(5):
        k.store_entry(f"h{i}", 1000.0)
        k.held_out("winback", f"h{i}")
    for i in range(3):
        k.conversion("winback", "exposed", f"e{i}", 5000.0)
    k.conversion("winback", "holdout", "h0", 5000.0)
    k.conversion("winback", None, None, 5000.0)
    k.audience(new_people=7, new_watchers=3)
    k.track_ended(20.0, 4.0)
    k.track_ended(10.0, 0.0)
    snap = k.snapshot()
    c = snap["campaigns"]["winback"]
    assert c["exposed_conversion_rate"] == 0.3 and c["holdout_conversion_rate"] == 0.2
    assert c["anonymous_conversions"] == 1 and snap["conversions"] == 5
    assert (snap["opportunities_to_see"], snap["watchers"]) == (7, 3)
    assert (snap["avg_dwell_s"], snap["avg_attention_s"]) == (15.0, 4.0)
    # Time to value: the exposed shoppers' first offers at 0..270 s, h0's purchase at 4000 s.
    assert snap["time_to_value_p50_s"] == 150.0
    assert "e1" not in str(snap)  # counts leave the box, shoppers do not
    k.roll(date(2026, 11, 24))
    assert k.snapshot()["offers_shown"] == 0 and k.snapshot()["campaigns"] == {}
    k.shown("x", None, 9000.0)
    k.roll(date(2026, 11, 23))  # a late receipt from yesterday does not wipe today
    assert k.snapshot()["offers_shown"] == 1
