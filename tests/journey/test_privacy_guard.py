"""The privacy guard without a camera, and reasons that say which rule a shopper missed
(issue 22, points 3 and 7), on the pure decision."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.journey.decide import Crowd, ScreenContext, decide
from tests.journey.test_decision import ALICE, BOB, CAROL, DAVE, MORNING, V1, V2
from tests.journey.test_decision_rules import NOON, bundle, camp, shopper


def no_camera(*shoppers, unresolved=0, devices=0, radar=None, spot=False, limit=1):
    return ScreenContext(
        "screen-entrance",
        "entrance",
        limit,
        None,
        tuple(shoppers),
        unresolved,
        ble_devices=devices,
        radar=radar,
        personal_without_crowd_sensor=spot,
    )


def test_without_a_camera_a_lone_app_user_is_not_greeted_by_default() -> None:
    d = decide(no_camera(ALICE), V1, MORNING)
    # Nothing can tell that she is alone: anonymous, and the reason says so (no id).
    assert d.variant == "anonymous" and d.campaign_id == "trail-shoes"
    assert "Alice" not in d.content.title + d.content.body
    assert "privacy:no-crowd-sensor" in d.reasons
    assert d.profile_id is None


def test_a_single_person_spot_greets_a_lone_app_user() -> None:
    d = decide(no_camera(ALICE, spot=True), V1, MORNING)
    assert d.variant == "personalised" and d.content.title == "Hi Alice! Your trail shoes are in"


def test_strangers_phones_in_the_zone_keep_her_name_off_the_screen() -> None:
    d = decide(no_camera(ALICE, devices=2, spot=True), V1, MORNING)
    assert d.variant == "anonymous" and "Alice" not in d.content.title
    assert "privacy:3-devices-in-zone" in d.reasons
    # The crowd is the reason even where the screen would stay anonymous anyway.
    assert "privacy:3-devices-in-zone" in decide(no_camera(ALICE, devices=2), V1, MORNING).reasons


def test_a_screen_made_for_two_allows_one_more_device() -> None:
    assert decide(no_camera(ALICE, devices=1, spot=True, limit=2), V1, MORNING).variant == (
        "personalised"
    )
    d = decide(no_camera(ALICE, devices=2, spot=True, limit=2), V1, MORNING)
    assert d.variant == "anonymous" and "privacy:3-devices-in-zone" in d.reasons


def test_a_camera_still_decides_where_there_is_one() -> None:
    # The camera counts the people who can read the screen: BLE devices further off in the zone
    # do not veto what it sees, and the flag for screens without one does not matter.
    ctx = ScreenContext("s", "entrance", 1, 1, (ALICE,), ble_devices=3)
    assert decide(ctx, V1, MORNING).variant == "personalised"
    assert ctx.crowd() == Crowd(1, "camera")


def test_the_crowd_without_a_camera_counts_every_device_and_a_radar() -> None:
    assert no_camera(ALICE, unresolved=1, devices=2).crowd() == Crowd(4, "ble")
    assert no_camera(radar=True).crowd() == Crowd(1, "radar")
    assert no_camera(radar=False).crowd() == Crowd(0, "ble")
    assert no_camera(devices=2, radar=True).crowd() == Crowd(2, "ble")


def test_unresolved_app_users_are_an_audience_for_anonymous_campaigns() -> None:
    # Only app users whose token this store cannot resolve: the members' offer (min_people 1)
    # runs; it used to lose with "audience-0".
    d = decide(no_camera(unresolved=1), V1, MORNING)
    assert d.campaign_id == "members-coffee" and d.variant == "anonymous"
    assert "members-coffee:lost:audience-0" not in d.reasons
    # Strangers' phones and a radar are an audience too.
    assert decide(no_camera(devices=2), V1, MORNING).campaign_id == "members-coffee"
    assert decide(no_camera(radar=True), V1, MORNING).campaign_id == "members-coffee"
    # Nobody at all: the default loop.
    assert decide(no_camera(radar=False), V1, MORNING).variant == "default"


def test_an_anonymous_campaign_for_small_groups_sees_the_devices() -> None:
    b = bundle(camp("duo", personalised=None, min_people=2, max_people=2))
    assert decide(no_camera(unresolved=1, devices=1), b, NOON).campaign_id == "duo"
    d = decide(no_camera(unresolved=1, devices=2), b, NOON)
    assert d.campaign_id is None and "duo:lost:audience-3" in d.reasons


@given(
    unresolved=st.integers(0, 2),
    devices=st.integers(0, 4),
    radar=st.sampled_from([None, False, True]),
    spot=st.booleans(),
    limit=st.integers(1, 3),
    who=st.lists(st.sampled_from([ALICE, BOB, CAROL, DAVE]), unique=True, max_size=3),
)
def test_without_a_camera_personal_content_only_for_one_app_user_at_a_declared_spot(
    unresolved: int, devices: int, radar: bool | None, spot: bool, limit: int, who: list
) -> None:
    ctx = no_camera(
        *who, unresolved=unresolved, devices=devices, radar=radar, spot=spot, limit=limit
    )
    d = decide(ctx, V2, MORNING)
    if d.variant == "personalised":
        assert spot and len(who) == 1 and unresolved == 0 and who[0].consent_personalisation
        assert 1 + devices <= limit
    else:
        assert not any(p.first_name in d.content.title + d.content.body for p in who)
    assert not any("cdp-p-" in r for r in d.reasons)


# ---- which rule a consented shopper missed ---------------------------------------------------

WINBACK = camp("winback", churn_risk_min=0.6)


def test_a_consented_shopper_who_misses_the_rule_is_told_which_rule() -> None:
    calm = shopper("p-calm", churn_risk=0.0)
    b = bundle(WINBACK)
    # Alone: the personal variant and then the anonymous one lose on her churn score.
    d = decide(ScreenContext("s1", "z1", 1, 1, (calm,)), b, NOON)
    assert d.variant == "default"
    assert "winback:lost:churn_risk" in d.reasons
    assert "winback:lost:no-consented-match" not in d.reasons
    # In a crowd (no personal target): the anonymous variant says the same.
    d = decide(ScreenContext("s1", "z1", 1, 3, (calm,)), b, NOON)
    assert "winback:lost:churn_risk" in d.reasons


def test_consented_shoppers_missing_different_rules_are_all_named_without_ids() -> None:
    b = bundle(camp("gold-winback", churn_risk_min=0.6, loyalty_tiers=["gold"]))
    calm_gold = shopper("p-gold", churn_risk=0.1, loyalty_tier="gold")
    risky_silver = shopper("p-silver", churn_risk=0.9, loyalty_tier="silver")
    d = decide(ScreenContext("s1", "z1", 1, 2, (calm_gold, risky_silver)), b, NOON)
    assert "gold-winback:lost:churn_risk+loyalty_tier" in d.reasons
    assert not any("p-gold" in r or "p-silver" in r for r in d.reasons)


def test_nobody_consented_still_says_no_consented_match() -> None:
    b = bundle(WINBACK)
    shy = shopper("p-shy", churn_risk=0.9, consent_personalisation=False)
    d = decide(ScreenContext("s1", "z1", 1, 1, (shy,)), b, NOON)
    # Her profile data is not used at all: not even to say which rule she would have missed.
    assert "winback:lost:no-consented-match" in d.reasons


# ---- a fused screen (camera or radar): only the one person it names may be addressed ---------
def fused(*shoppers, at=None, why="", people=1, limit=1):
    return ScreenContext(
        "screen-entrance",
        "entrance",
        limit,
        people,
        tuple(shoppers),
        fused=True,
        at_screen=at,
        fused_reason=why,
    )


def test_a_fused_screen_greets_only_the_shopper_it_names_at_the_screen() -> None:
    # Alice and Carol both in the zone: the old rule refused (two shoppers); the fused engine
    # weighed them and says the one person at the screen is Carol.
    d = decide(fused(ALICE, CAROL, at=CAROL.profile_id), V1, MORNING)
    assert d.profile_id == CAROL.profile_id and d.variant == "personalised"
    assert "Alice" not in d.content.title + d.content.body
    refused = decide(fused(ALICE, CAROL, at=None, why="ambiguous"), V1, MORNING)
    assert refused.profile_id is None and "Alice" not in refused.content.title
    assert "privacy:fusion-ambiguous" in refused.reasons
    # Without fusion the same zone is two shoppers: anonymous.
    plain = ScreenContext("screen-entrance", "entrance", 1, 1, (ALICE, CAROL))
    assert decide(plain, V1, MORNING).profile_id is None


def test_a_fused_screen_keeps_the_camera_count_and_consent() -> None:
    two = decide(fused(ALICE, at=ALICE.profile_id, people=2), V1, MORNING)
    assert two.profile_id is None and "privacy:2-people-in-view" in two.reasons
    bob = decide(fused(ALICE, BOB, at=BOB.profile_id), V1, MORNING)
    assert bob.profile_id is None and "privacy:no-consent" in bob.reasons
    gone = decide(fused(ALICE, at=DAVE.profile_id), V1, MORNING)
    assert gone.profile_id is None and "privacy:fusion-not-in-zone" in gone.reasons
    held = decide(fused(ALICE, at=None, why="turnover-hold"), V1, MORNING)
    assert held.profile_id is None and "privacy:fusion-turnover-hold" in held.reasons


@given(
    st.lists(st.sampled_from([ALICE, BOB, CAROL, DAVE]), unique=True, max_size=4),
    st.sampled_from([None, ALICE, BOB, CAROL, DAVE]),
    st.integers(0, 3),
)
def test_a_fused_screen_never_names_anyone_but_the_one_it_names(shoppers, at, people) -> None:
    d = decide(fused(*shoppers, at=at.profile_id if at else None, people=people), V1, MORNING)
    if d.profile_id is not None:
        assert at is not None and d.profile_id == at.profile_id and people == 1
        assert at in shoppers and at.consent_personalisation
