"""Campaign rules one at a time: targeting, schedule (cron dayparts across DST), caps, stock,
holdout, attention, dwell, languages, staff alerts, and load-time checks."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge_agent.journey.campaigns import Campaign, CampaignBundle, cron_matches, cron_trigger, lint
from edge_agent.journey.caps import CapsLedger
from edge_agent.journey.decide import CampaignIndex, ScreenContext, World, decide, staff_alerts
from edge_agent.slice.store import Profile

PARIS = ZoneInfo("Europe/Paris")
NOON = datetime(2026, 11, 20, 12, 0, tzinfo=PARIS)

DEFAULT = [{"content_id": "loop", "variant": {"title": "Welcome"}}]


def shopper(pid: str = "p-1", **kw) -> Profile:
    base = dict(
        profile_id=pid,
        first_name=pid.title(),
        language="en",
        consent_personalisation=True,
        consent_analytics=True,
        consent_staff_alerts=True,
        segments=(),
        loyalty_tier="none",
        churn_risk=0.0,
        open_order=None,
    )
    base.update(kw)
    return Profile(**base)


def bundle(*campaigns: dict) -> CampaignBundle:
    return CampaignBundle.model_validate({"version": 1, "default": DEFAULT, "campaigns": campaigns})


def camp(cid: str = "c", **kw) -> dict:
    return {
        "id": cid,
        "personalised": {"title": f"{cid} for {{first_name}}"},
        "anonymous": {"title": f"{cid} for all"},
        **kw,
    }


def ctx(*who: Profile, people: int | None = 1, **kw) -> ScreenContext:
    return ScreenContext("s1", "z1", 1, people, tuple(who), **kw)


# ---- targeting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "profile_kw", "wins"),
    [
        ({"segments_all": ["a", "b"]}, {"segments": ("a", "b", "c")}, True),
        ({"segments_all": ["a", "b"]}, {"segments": ("a",)}, False),
        ({"segments_none": ["lapsed"]}, {"segments": ("a",)}, True),
        ({"segments_none": ["lapsed"]}, {"segments": ("lapsed",)}, False),
        ({"loyalty_tiers": ["gold", "platinum"]}, {"loyalty_tier": "gold"}, True),
        ({"loyalty_tiers": ["gold", "platinum"]}, {"loyalty_tier": "silver"}, False),
        ({"churn_risk_min": 0.6}, {"churn_risk": 0.7}, True),
        ({"churn_risk_min": 0.6}, {"churn_risk": 0.5}, False),
        ({"churn_risk_min": 0.2, "churn_risk_max": 0.4}, {"churn_risk": 0.5}, False),
        (
            {"trigger": "order_ready"},
            {"open_order": {"id": "O1", "status": "ready", "pickup_point": "counter 2"}},
            True,
        ),
        ({"trigger": "order_ready"}, {"open_order": {"id": "O1", "status": "picking"}}, False),
    ],
)
def test_each_targeting_rule_decides_who_gets_the_personal_variant(
    rule: dict, profile_kw: dict, wins: bool
) -> None:
    b = bundle(camp("offer", **rule, anonymous=None))
    d = decide(ctx(shopper(**profile_kw)), b, NOON)
    assert (d.campaign_id == "offer" and d.variant == "personalised") is wins
    if not wins:
        assert d.variant == "default"
        assert any(r.startswith("offer:lost:") for r in d.reasons)


def test_order_ready_greeting_names_the_order_and_the_pickup_point_and_says_which_rule() -> None:
    b = bundle(
        camp(
            "ready",
            trigger="order_ready",
            personalised={"title": "{first_name}: order {order_id} at {pickup_point}"},
        )
    )
    order = {"id": "CC-9", "status": "ready", "pickup_point": "counter 2"}
    d = decide(ctx(shopper("carol", open_order=order)), b, NOON)
    assert d.content.title == "Carol: order CC-9 at counter 2"
    assert d.rule == "order_ready"


def test_reasons_explain_why_every_higher_campaign_lost_and_carry_no_ids() -> None:
    b = bundle(
        camp("gold-only", priority=9, loyalty_tiers=["gold"], anonymous=None),
        camp("later", priority=8, dayparts=["18:00-20:00"]),
        camp("general", priority=1),
    )
    d = decide(ctx(shopper("p-secret-42")), b, NOON)
    assert d.campaign_id == "general"
    assert d.reasons[0] == "general:won:personalised"
    assert "gold-only:lost:loyalty_tier" in d.reasons
    assert "later:lost:schedule" in d.reasons
    assert not any("p-secret-42" in r for r in d.reasons)


# ---- schedule: cron dayparts in the store's zone, across DST -------------------------------


def at_utc(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC).astimezone(PARIS)


def minutes_from(start_utc: str, m: int) -> datetime:
    t = datetime.fromisoformat(start_utc).replace(tzinfo=UTC) + timedelta(minutes=m)
    return t.astimezone(PARIS)


@pytest.mark.parametrize(
    ("instant_utc", "active"),
    [
        ("2026-03-27T07:30", True),  # Friday 08:30 CET (UTC+1)
        ("2026-03-27T09:30", False),  # 10:30 CET
        ("2026-03-30T06:30", True),  # Monday 08:30 CEST (UTC+2): same wall time, new offset
        ("2026-03-30T07:59", True),  # 09:59 CEST
        ("2026-03-30T08:00", False),  # 10:00 CEST
        ("2026-03-28T07:30", False),  # Saturday
    ],
)
def test_cron_daypart_follows_local_wall_time_across_the_spring_dst_change(
    instant_utc: str, active: bool
) -> None:
    b = bundle(camp("breakfast", dayparts=["* 8-9 * * mon-fri"]))
    d = decide(ctx(shopper()), b, at_utc(instant_utc))
    assert (d.campaign_id == "breakfast") is active


def test_a_wall_clock_hour_that_does_not_exist_never_matches_and_a_repeated_one_matches_twice() -> (
    None
):
    trigger = cron_trigger("* 2 * * *", PARIS)
    # Step in UTC: arithmetic on aware local datetimes is wall-clock arithmetic in Python.
    spring = [minutes_from("2026-03-29T00:00", m) for m in range(0, 180)]
    assert not any(cron_matches(trigger, t) for t in spring)  # 02:00-02:59 skipped on 29 March
    fall = [minutes_from("2026-10-24T23:00", m) for m in range(0, 240)]
    matched = [t for t in fall if cron_matches(trigger, t)]
    # 25 October: 02:00-02:59 happens in CEST and again in CET, 120 minutes in all.
    assert len(matched) == 120
    assert {t.utcoffset() for t in matched} == {timedelta(hours=2), timedelta(hours=1)}


def test_hh_mm_dayparts_and_date_range_still_work() -> None:
    b = bundle(
        camp(
            "lunch",
            dayparts=["11:30-14:00"],
            start="2026-11-01T00:00:00+01:00",
            end="2026-12-01T00:00:00+01:00",
        )
    )
    assert decide(ctx(shopper()), b, NOON).campaign_id == "lunch"
    assert decide(ctx(shopper()), b, NOON.replace(hour=15)).campaign_id is None
    assert decide(ctx(shopper()), b, NOON.replace(month=12, day=2)).campaign_id is None


# ---- caps, stock, attention, dwell ----------------------------------------------------------


def test_per_shopper_daily_cap_resets_at_local_midnight() -> None:
    b = bundle(camp("c", caps={"per_shopper_per_day": 2}, anonymous=None))
    ledger = CapsLedger()
    world = World(caps=ledger)
    alice = shopper("alice")
    shown = 0
    for minute in range(10):
        now = NOON + timedelta(minutes=minute)
        d = decide(ctx(alice), b, now, world)
        if d.campaign_id == "c":
            shown += 1
            ledger.record("c", "s1", alice.profile_id, now)
    assert shown == 2
    assert "c:lost:cap-shopper" in decide(ctx(alice), b, NOON, world).reasons
    # Another shopper is not capped; tomorrow Alice is not either.
    assert decide(ctx(shopper("bob")), b, NOON, world).campaign_id == "c"
    assert decide(ctx(alice), b, NOON + timedelta(days=1), world).campaign_id == "c"


def test_per_screen_hourly_cap_applies_to_anonymous_audiences_too() -> None:
    b = bundle(camp("c", caps={"per_screen_per_hour": 3}))
    ledger = CapsLedger()
    world = World(caps=ledger)
    results = []
    for minute in range(0, 90, 10):
        now = NOON + timedelta(minutes=minute)
        d = decide(ctx(people=2), b, now, world)
        results.append(d.campaign_id)
        if d.campaign_id:
            ledger.record("c", "s1", None, now)
    # 12:00, 12:10, 12:20 shown; capped until 13:00; 13:00, 13:10, 13:20 shown.
    assert results == ["c", "c", "c", None, None, None, "c", "c", "c"]


def test_campaign_runs_only_while_its_promoted_sku_is_in_stock() -> None:
    b = bundle(camp("boots", stock_sku="SKU-1"), camp("fallback"))
    assert decide(ctx(shopper()), b, NOON, World(stock={"SKU-1": True})).campaign_id == "boots"
    d = decide(ctx(shopper()), b, NOON, World(stock={"SKU-1": False}))
    assert d.campaign_id == "fallback" and "boots:lost:out-of-stock" in d.reasons
    # Unknown SKU counts as out of stock: never promote what the store may not have.
    assert decide(ctx(shopper()), b, NOON, World()).campaign_id == "fallback"


def test_attention_required_needs_someone_looking_at_the_screen() -> None:
    b = bundle(camp("look", attention_required=True))
    assert decide(ctx(people=1, watchers=1), b, NOON).campaign_id == "look"
    assert decide(ctx(people=1, watchers=0), b, NOON).campaign_id is None
    assert decide(ctx(people=None), b, NOON).campaign_id is None  # no camera: cannot know


def test_minimum_dwell_uses_the_shoppers_own_dwell_for_personal_and_the_zones_for_anonymous() -> (
    None
):
    b = bundle(camp("interest", min_dwell_s=20))
    alice = shopper("alice")
    assert decide(ctx(alice, dwell_s={"alice": 5}), b, NOON).campaign_id is None
    d = decide(ctx(alice, dwell_s={"alice": 25}), b, NOON)
    assert (d.campaign_id, d.variant) == ("interest", "personalised")
    assert decide(ctx(people=3, zone_dwell_s=25), b, NOON).variant == "anonymous"
    assert decide(ctx(people=3, zone_dwell_s=10), b, NOON).variant == "default"


def test_product_interest_uses_category_affinity() -> None:
    b = bundle(
        camp(
            "coffee",
            trigger="product_interest",
            affinity_category="coffee",
            affinity_min=0.6,
            min_dwell_s=10,
            personalised={"title": "{first_name}, fresh {category} today"},
        )
    )
    fan = _with_affinities(shopper("fan"), {"coffee": 0.8})
    meh = _with_affinities(shopper("meh"), {"coffee": 0.2})
    d = decide(ctx(fan, dwell_s={"fan": 15}), b, NOON)
    assert d.content.title == "Fan, fresh coffee today" and d.rule == "product_interest"
    assert decide(ctx(meh, dwell_s={"meh": 15}), b, NOON).campaign_id is None


def _with_affinities(p: Profile, scores: dict[str, float]) -> Profile:
    import dataclasses

    if "affinities" in {f.name for f in dataclasses.fields(p)}:
        return dataclasses.replace(p, affinities=scores)
    pytest.skip("this Profile has no affinities field yet")


# ---- holdout ---------------------------------------------------------------------------------


def test_holdout_share_is_deterministic_and_within_one_point() -> None:
    c = Campaign.model_validate(camp("h", holdout_share=0.1))
    ids = [f"cdp-p-{i}" for i in range(100_000)]
    held = [pid for pid in ids if c.held_out(pid)]
    assert abs(len(held) / len(ids) - 0.1) < 0.01
    assert held == [pid for pid in ids if c.held_out(pid)]  # same shoppers every time


def test_a_held_out_shopper_sees_nothing_of_the_campaign_and_the_decision_says_so() -> None:
    b = bundle(camp("h", holdout_share=0.5, segments_any=["x"]))
    c = b.campaigns[0]
    out = next(f"p{i}" for i in range(1000) if c.held_out(f"p{i}"))
    inn = next(f"p{i}" for i in range(1000) if not c.held_out(f"p{i}"))
    d_out = decide(ctx(shopper(out, segments=("x",))), b, NOON)
    assert d_out.campaign_id is None and d_out.held_out == ("h",)
    assert "h:lost:holdout" in d_out.reasons
    d_in = decide(ctx(shopper(inn, segments=("x",))), b, NOON)
    assert d_in.campaign_id == "h" and d_in.held_out == ()


# ---- languages, alerts ------------------------------------------------------------------------


def test_shopper_sees_their_language_when_the_variant_has_it() -> None:
    b = bundle(
        camp(
            "hello",
            personalised={
                "title": "Hello {first_name}",
                "translations": {"fr": {"title": "Bonjour {first_name}"}},
            },
        )
    )
    d = decide(ctx(shopper("erin", language="fr")), b, NOON)
    assert (d.content.title, d.content.language) == ("Bonjour Erin", "fr")
    d = decide(ctx(shopper("hans", language="de")), b, NOON)
    assert (d.content.title, d.content.language) == ("Hello Hans", "en")


def test_staff_alerts_only_for_shoppers_who_consented_to_them_even_in_a_crowd() -> None:
    b = bundle(camp("vip", loyalty_tiers=["gold"], staff_alert="VIP {first_name} at the entrance"))
    yes = shopper("ann", loyalty_tier="gold")
    no = shopper("ben", loyalty_tier="gold", consent_staff_alerts=False)
    alerts = staff_alerts(ctx(yes, no, people=4), b, NOON)
    assert [(a.campaign_id, a.text) for a in alerts] == [("vip", "VIP Ann at the entrance")]
    # The crowd hides the personal greeting from the screen, not the alert from staff.
    assert decide(ctx(yes, no, people=4), b, NOON).variant != "personalised"


# ---- load-time checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dayparts": ["0 0 30 2 *"]}, "never fires"),
        ({"dayparts": ["every morning"]}, "neither HH:MM-HH:MM nor cron"),
        ({"churn_risk_min": 0.8, "churn_risk_max": 0.2}, "churn_risk_max < churn_risk_min"),
        ({"segments_all": ["a"], "segments_none": ["a"]}, "both required and excluded"),
        ({"trigger": "churn_risk"}, "needs churn_risk_min"),
        ({"trigger": "product_interest"}, "needs affinity_category"),
        ({"holdout_share": 0.9}, "less than or equal to 0.5"),
        ({"staff_alert": "{email} is here"}, "unknown template field"),
        ({"caps": {"per_shopper_per_day": 0}}, "greater than or equal to 1"),
    ],
)
def test_campaigns_that_can_never_match_or_leak_are_refused_at_load(change: dict, message: str):
    with pytest.raises(ValidationError, match=message):
        bundle(camp("bad", **change))


def test_lint_flags_campaigns_this_store_cannot_run() -> None:
    b = bundle(
        camp("elsewhere", zones=["z-other"]),
        camp("wrong-screen", screens=["s-other"]),
        camp("crowd-personal", min_people=3, anonymous=None),
        camp("no-sku", stock_sku="SKU-404"),
        camp("fine", zones=["z1"]),
    )
    flagged = lint(b, zones=["z1"], screens=["s1"], stock={"SKU-1": True})
    assert [line.split(":")[0] for line in flagged] == [
        "elsewhere",
        "wrong-screen",
        "crowd-personal",
        "no-sku",
    ]


# ---- properties --------------------------------------------------------------------------------

tiers = st.sampled_from(["none", "silver", "gold"])
segs = st.lists(st.sampled_from(["a", "b", "c"]), max_size=3, unique=True).map(tuple)
profiles = st.builds(
    shopper,
    pid=st.sampled_from(["p1", "p2", "p3", "p4"]),
    consent_personalisation=st.booleans(),
    consent_staff_alerts=st.booleans(),
    segments=segs,
    loyalty_tier=tiers,
    churn_risk=st.floats(0, 1),
)
RULES = bundle(
    camp("seg", priority=5, segments_any=["a"], holdout_share=0.3),
    camp("tier", priority=4, loyalty_tiers=["gold"], caps={"per_shopper_per_day": 1}),
    camp("churn", priority=3, churn_risk_min=0.7, anonymous=None),
    camp("crowd", priority=2, min_people=3),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(profiles, max_size=3, unique_by=lambda p: p.profile_id),
    st.none() | st.integers(0, 6),
    st.integers(0, 23),
)
def test_indexed_decision_equals_a_fresh_one_and_is_private(who, people, hour) -> None:
    now = NOON.replace(hour=hour)
    c = ScreenContext("s1", "z1", 1, people, tuple(who))
    a = decide(c, CampaignIndex(RULES), now)
    b = decide(c, copy.deepcopy(RULES), now)
    assert a == b
    if a.variant == "personalised":
        assert len(who) == 1 and who[0].consent_personalisation
        assert people is None or 1 <= people <= 1
    for r in a.reasons:
        assert not any(p.profile_id in r for p in who)


# ---- the ops-facing check -------------------------------------------------------------------


def test_campaigns_check_cli_validates_lints_and_dry_runs(tmp_path, capsys) -> None:
    import json as _json

    from demo.scenario import CAMPAIGNS_V2
    from edge_agent.cli import main

    store = "demo/store.toml"
    good = tmp_path / "good.json"
    body = copy.deepcopy(CAMPAIGNS_V2)
    body["campaigns"].append({"id": "elsewhere", "zones": ["z9"], "anonymous": {"title": "x"}})
    good.write_text(_json.dumps(body))
    assert main(["campaigns", "check", str(good), "-c", store, "--at", "2026-11-20T10:00"]) == 0
    out = capsys.readouterr().out
    assert "v2, 5 campaigns: valid" in out
    assert "warning: elsewhere: none of its zones (z9) is in this store" in out
    assert "screen-entrance at Fri 10:00 CET: members-coffee:anonymous" in out

    bad = tmp_path / "bad.json"
    body["campaigns"][0]["dayparts"] = ["0 0 30 2 *"]
    bad.write_text(_json.dumps(body))
    assert main(["campaigns", "check", str(bad)]) == 2
    assert "never fires" in capsys.readouterr().err
