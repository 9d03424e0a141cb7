"""The decision: pure, deterministic, explainable, and privacy first."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demo.scenario import CAMPAIGNS_V1, CAMPAIGNS_V2, PROFILES
from edge_agent.journey.campaigns import CampaignBundle, is_in_daypart
from edge_agent.journey.content_store import BundleError, parse_bundle
from edge_agent.journey.decide import ScreenContext, decide
from edge_agent.slice.store import Profile, ProfileRow

PARIS = ZoneInfo("Europe/Paris")
MORNING = datetime(2026, 11, 20, 10, 0, tzinfo=PARIS)


def profile(pid: str) -> Profile:
    row = ProfileRow.model_validate(next(p for p in PROFILES if p["profile_id"] == pid))
    return Profile(
        profile_id=row.profile_id,
        first_name=row.first_name,
        language=row.language,
        consent_personalisation=row.consent_personalisation,
        consent_analytics=row.consent_analytics,
        consent_staff_alerts=row.consent_staff_alerts,
        segments=tuple(row.segments),
        loyalty_tier=row.loyalty_tier,
        churn_risk=row.churn_risk,
        open_order=row.open_order,
    )


ALICE, BOB, CAROL, DAVE = (profile(f"cdp-p-100{i}") for i in (1, 2, 3, 4))
V1 = CampaignBundle.model_validate(CAMPAIGNS_V1)
V2 = CampaignBundle.model_validate(CAMPAIGNS_V2)


def ctx(*shoppers: Profile, people: int | None = 1, unresolved: int = 0) -> ScreenContext:
    return ScreenContext("screen-entrance", "entrance", 1, people, tuple(shoppers), unresolved)


def test_one_consented_shopper_alone_gets_personal_content() -> None:
    d = decide(ctx(ALICE), V1, MORNING)
    assert d.variant == "personalised" and d.campaign_id == "trail-shoes"
    assert d.content.title == "Hi Alice! Your trail shoes are in"
    assert d.profile_id == "cdp-p-1001"
    assert d.reasons[0] == "trail-shoes:won:personalised"


def test_no_consent_means_no_personal_content_and_no_use_of_segments() -> None:
    d = decide(ctx(BOB), V1, MORNING)
    assert d.variant == "anonymous" and d.campaign_id == "members-coffee"
    assert "Bob" not in d.content.title + d.content.body
    assert "trail-shoes:lost:no-consented-match" in d.reasons


@pytest.mark.parametrize("people", [2, 3, 8])
def test_a_crowd_never_sees_a_name(people: int) -> None:
    d = decide(ctx(CAROL, people=people), V1, MORNING)
    assert d.variant == "anonymous"
    assert "Carol" not in d.content.title + d.content.body
    assert d.campaign_id == "order-ready"
    assert f"privacy:{people}-people-in-view" in d.reasons


def test_the_camera_must_see_someone_for_personal_content() -> None:
    d = decide(ctx(ALICE, people=0), V1, MORNING)
    assert d.variant != "personalised"
    assert "privacy:camera-sees-nobody" in d.reasons


def test_two_app_users_at_the_screen_get_anonymous_content() -> None:
    d = decide(ctx(ALICE, unresolved=1, people=2), V1, MORNING)
    assert d.variant == "anonymous"
    assert "privacy:2-shoppers-at-screen" in d.reasons


def test_order_ready_greets_by_name_when_alone() -> None:
    d = decide(ctx(CAROL), V1, MORNING)
    assert d.content.title == "Carol, your order CC-4711 is ready"
    assert d.content.body == "Collect it at counter 2 - no queue."


def test_nobody_there_shows_the_default() -> None:
    d = decide(ctx(people=0), V1, MORNING)
    assert d.variant == "default" and d.content.content_id == "welcome"


def test_a_pushed_campaign_changes_the_decision() -> None:
    assert decide(ctx(DAVE), V1, MORNING).campaign_id == "members-coffee"
    d = decide(ctx(DAVE), V2, MORNING)
    assert d.campaign_id == "winter-sale" and d.content.title.startswith("Dave,")


def test_dayparts_apply_in_store_time() -> None:
    evening = datetime(2026, 11, 20, 21, 30, tzinfo=PARIS)
    d = decide(ctx(ALICE), V1, evening)
    assert d.campaign_id != "trail-shoes"
    assert "trail-shoes:lost:schedule" in d.reasons


@pytest.mark.parametrize(
    ("daypart", "hhmm", "expected"),
    [
        ("08:00-20:00", "08:00", True),
        ("08:00-20:00", "20:00", False),
        ("22:00-02:00", "23:59", True),
        ("22:00-02:00", "01:59", True),
        ("22:00-02:00", "02:00", False),
        ("22:00-02:00", "12:00", False),
    ],
)
def test_overnight_dayparts(daypart: str, hhmm: str, expected: bool) -> None:
    assert is_in_daypart(daypart, time.fromisoformat(hhmm)) is expected


def test_decisions_are_deterministic() -> None:
    a = decide(ctx(ALICE, CAROL, people=2), V2, MORNING)
    b = decide(ctx(ALICE, CAROL, people=2), V2, MORNING)
    assert a == b


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda b: b["campaigns"][0].update(personalised=None, anonymous=None),
            "neither a personalised nor an anonymous",
        ),
        (
            lambda b: b["campaigns"][1].update(dayparts=["25:00-26:00"]),
            "is neither HH:MM-HH:MM nor cron",
        ),
        (lambda b: b["campaigns"][2].update(min_people=3, max_people=1), "can never match"),
        (
            lambda b: b["campaigns"][1]["personalised"].update(title="Hi {last_name}"),
            "unknown template field",
        ),
        (lambda b: b["campaigns"].append(dict(b["campaigns"][0])), "duplicate campaign id"),
    ],
)
def test_bad_bundles_are_refused_with_a_clear_error(mutate, message: str) -> None:
    import copy

    body = copy.deepcopy(CAMPAIGNS_V1)
    mutate(body)
    with pytest.raises(BundleError, match=message):
        parse_bundle(body)


@given(
    people=st.integers(0, 10),
    unresolved=st.integers(0, 2),
    who=st.lists(st.sampled_from([ALICE, BOB, CAROL, DAVE]), unique=True, max_size=4),
    hour=st.integers(0, 23),
)
def test_privacy_guard_holds_for_any_context(
    people: int, unresolved: int, who: list[Profile], hour: int
) -> None:
    d = decide(ctx(*who, people=people, unresolved=unresolved), V2, MORNING.replace(hour=hour))
    if d.variant == "personalised":
        assert people == 1 and unresolved == 0 and len(who) == 1
        assert who[0].consent_personalisation
    else:
        for p in (ALICE, BOB, CAROL, DAVE):
            assert p.first_name not in d.content.title + d.content.body


def test_a_held_out_shopper_arriving_while_the_content_is_up_is_a_control_once() -> None:
    from edge_agent.journey.engine import JourneyEngine

    frank = profile("cdp-p-1006")
    engine = JourneyEngine(V1)
    # Bob alone: the members' coffee goes up. Then Frank joins: the same content, decided again.
    first = engine.decide(ctx(BOB, people=1), MORNING)
    assert engine.shown("screen-entrance", first, 0.0, MORNING, present=[BOB]) == []
    again = engine.decide(ctx(BOB, frank, people=2), MORNING)
    assert again.content == first.content and "trail-shoes" in again.held_out
    held = engine.hold("screen-entrance", again, 5.0, MORNING, [BOB, frank], skip={"cdp-p-1002"})
    assert [(cid, p.profile_id) for cid, p in held] == [("trail-shoes", "cdp-p-1006")]
    kpi = engine.kpis.snapshot()["campaigns"]["trail-shoes"]
    assert kpi["holdout_shoppers"] == 1
    # He buys: a control conversion for the campaign.
    assert engine.conversion(60.0, "cdp-p-1006", MORNING).group == "holdout"
