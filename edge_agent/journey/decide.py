"""What a screen shows now, and why: a pure, deterministic function.

``decide(screen context, campaigns, local time, world)`` reads nothing else: no clock, no
database, no randomness (holdout is a hash), so the same inputs give the same content and the
same reasons, and every rule is testable alone.

Privacy guard first: personalised content only for exactly one app user at the screen, who
consented, and only when the box can tell that nobody else is reading along:

- with a camera, it must see at least one and no more than the screen's limit of people;
- without one, nothing can prove that a shopper is alone (a stranger without a phone, or with
  Bluetooth off, is invisible to BLE; an mmWave radar says "someone", not how many), so the
  screen stays anonymous ("privacy:no-crowd-sensor") unless its config declares a spot one
  person uses at a time (``personal_without_crowd_sensor``). Even there, BLE devices in the zone
  (app tokens, resolved or not, plus other phones, watches, ...) above the limit veto it
  ("privacy:3-devices-in-zone"): in doubt, anonymous.

Otherwise the anonymous variant of the best campaign, for an audience of the crowd estimate
(``ScreenContext.crowd``: the camera's count, else the BLE devices in the zone, at least one
when a radar sees someone), otherwise the default loop. Reasons say why each campaign won or
lost and never carry an id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from contracts.screen_protocol import Content
from edge_agent.journey.campaigns import Campaign, CampaignBundle, Variant, open_orders
from edge_agent.slice.model import Profile, StockPrice


@dataclass(frozen=True)
class Crowd:
    """People at a screen as the box counts them, and the sensor that counted."""

    people: int
    source: Literal["camera", "ble", "radar"]


@dataclass(frozen=True)
class ScreenContext:
    screen_id: str
    zone_id: str
    max_people_for_personal: int
    # None when the screen has no camera.
    people_in_view: int | None
    # Identified shoppers (from the slice) present in the screen's zone.
    shoppers: tuple[Profile, ...] = ()
    # Shoppers with the store app whose token did not resolve, also present.
    unresolved_shoppers: int = 0
    # Seconds each identified shopper has been in the zone, by profile id (never leaves the box).
    dwell_s: Mapping[str, float] = field(default_factory=dict, compare=False)
    # The longest current stay of anyone in the zone, identified or not.
    zone_dwell_s: float = 0.0
    # Faces turned to the screen (camera); None without a camera.
    watchers: int | None = None
    # Other BLE devices close by in the zone (phones' other adverts, watches, earbuds; not app
    # tokens, not beacons): strangers without the app show up here, if at all.
    ble_devices: int = 0
    # An mmWave radar covering the zone: someone there (True) or not; None when none does.
    radar: bool | None = None
    # The screen is a spot one person uses at a time (its config says so): see the module doc.
    personal_without_crowd_sensor: bool = False
    # Fused presence (a camera or radar at the screen, edge_agent/sensing/fusion.py): the one
    # person at the screen is this shopper (profile id), or None with why not. Only it may be
    # addressed: a shopper BLE places in the zone may be standing a few metres off.
    fused: bool = False
    at_screen: str | None = None
    fused_reason: str = ""

    def crowd(self) -> Crowd:
        """How many people are at the screen, as best this box can tell, and from what.

        The camera counts the people who can read the screen, so its count stands alone.
        Without it, every BLE device in the zone counts as one person (a shopper's own watch
        too: over-counting errs on the side of privacy), and a radar that sees someone makes it
        at least one."""
        if self.people_in_view is not None:
            return Crowd(self.people_in_view, "camera")
        devices = len(self.shoppers) + self.unresolved_shoppers + self.ble_devices
        if devices == 0 and self.radar:
            return Crowd(1, "radar")
        return Crowd(devices, "ble")


class CapsView(Protocol):
    """How often a campaign was shown; the agent's ledger answers, a dict does in tests."""

    def shopper_today(self, campaign_id: str, profile_id: str, now_local: datetime) -> int: ...

    def screen_this_hour(self, campaign_id: str, screen_id: str, now_local: datetime) -> int: ...


@dataclass(frozen=True)
class World:
    """Everything else a decision depends on: stock levels and how often things were shown."""

    stock: Mapping[str, bool] = field(default_factory=dict)
    caps: CapsView | None = None
    # Today's prices (the slice's stock table): a card shows its SKU's, not a typed one.
    prices: Mapping[str, StockPrice] = field(default_factory=dict)


NO_WORLD = World()


@dataclass(frozen=True)
class Decision:
    content: Content
    campaign_id: str | None
    variant: str
    profile_id: str | None
    min_on_screen_s: float
    reasons: tuple[str, ...] = field(default_factory=tuple)
    # The targeting rule that matched ("order:ready", "segment+tier", "everyone", "default").
    rule: str = "default"
    # Campaigns the shopper at the screen was eligible for but held out of (uplift control).
    held_out: tuple[str, ...] = ()


class _SafeFields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def render_variant(
    v: Variant,
    content_id: str,
    campaign_id: str | None,
    kind: str,
    profile: Profile | None,
    category: str | None = None,
    price: StockPrice | None = None,
) -> Content:
    fields = _SafeFields()
    if category:
        fields["category"] = category
    if profile is not None:
        v = v.in_language(profile.language)
        fields["first_name"] = profile.first_name
        orders = open_orders(profile)
        ready = next((o for o in orders if o.get("status") == "ready"), orders[0] if orders else {})
        fields["order_id"] = ready.get("id", "")
        fields["pickup_point"] = ready.get("pickup_point", "")
    return Content(
        content_id=content_id,
        campaign_id=campaign_id,
        variant=kind,  # type: ignore[arg-type]
        template=v.template,
        title=v.title.format_map(fields),
        body=v.body.format_map(fields),
        language=v.language,
        background=v.background,
        accent=v.accent,
        image_sha256=v.image_sha256,
        image_focus=v.image_focus,
        video_sha256=v.video_sha256,
        # The shelf's price today wins over one typed into the campaign weeks ago.
        price=price.price if price is not None else v.price,
        was_price=price.was_price if price is not None else v.was_price,
        currency=price.currency if price is not None else v.currency,
        valid_until=v.valid_until,
        badge=v.badge.format_map(fields),
        highlight=v.highlight.format_map(fields),
        cta=v.cta.format_map(fields),
        qr_url=v.qr_url,
    )


def _personal_target(ctx: ScreenContext, reasons: list[str]) -> Profile | None:
    identified = len(ctx.shoppers) + ctx.unresolved_shoppers
    consented = [p for p in ctx.shoppers if p.consent_personalisation]
    if not consented:
        if ctx.shoppers:
            reasons.append("privacy:no-consent")
        return None
    # Fused presence weighs every app device in the zone itself (its confidence is shared out
    # among them), so two in the zone with one of them at the screen is not a refusal there.
    if identified != 1 and not ctx.fused:
        reasons.append(f"privacy:{identified}-shoppers-at-screen")
        return None
    if ctx.people_in_view is not None:
        if ctx.people_in_view < 1:
            reasons.append("privacy:camera-sees-nobody")
            return None
        if ctx.people_in_view > ctx.max_people_for_personal:
            reasons.append(f"privacy:{ctx.people_in_view}-people-in-view")
            return None
    if ctx.fused:
        return _fused_target(ctx, consented, reasons)
    if ctx.people_in_view is not None:
        return consented[0]
    # No camera. The devices come first: when there is a crowd to see, that is the reason.
    crowd = ctx.crowd()
    if crowd.people > ctx.max_people_for_personal:
        reasons.append(f"privacy:{crowd.people}-devices-in-zone")
        return None
    if not ctx.personal_without_crowd_sensor:
        reasons.append("privacy:no-crowd-sensor")
        return None
    return consented[0]


def _fused_target(
    ctx: ScreenContext, consented: list[Profile], reasons: list[str]
) -> Profile | None:
    if ctx.at_screen is None:
        reasons.append(f"privacy:fusion-{ctx.fused_reason or 'no-identity'}")
        return None
    for p in consented:
        if p.profile_id == ctx.at_screen:
            return p
    here = any(p.profile_id == ctx.at_screen for p in ctx.shoppers)
    reasons.append("privacy:no-consent" if here else "privacy:fusion-not-in-zone")
    return None


class CampaignIndex:
    """A bundle compiled for fast decisions: sorted once, filtered by zone and screen."""

    def __init__(self, bundle: CampaignBundle) -> None:
        self.bundle = bundle
        self.ordered: tuple[Campaign, ...] = tuple(
            sorted(bundle.campaigns, key=lambda c: (-c.priority, c.id))
        )
        self._by_place: dict[tuple[str, str], tuple[Campaign, ...]] = {}
        # Dayparts change at minute boundaries: one evaluation per campaign per minute.
        self._minute: datetime | None = None
        self._daypart_ok: dict[str, bool] = {}

    def at(self, zone_id: str, screen_id: str) -> tuple[Campaign, ...]:
        key = (zone_id, screen_id)
        hit = self._by_place.get(key)
        if hit is None:
            hit = self._by_place[key] = tuple(
                c
                for c in self.ordered
                if (not c.zones or zone_id in c.zones) and (not c.screens or screen_id in c.screens)
            )
        return hit

    def is_active(self, c: Campaign, now_local: datetime) -> bool:
        if (c.start and now_local < c.start) or (c.end and now_local >= c.end):
            return False
        if not c.dayparts:
            return True
        minute = now_local.replace(second=0, microsecond=0)
        if minute != self._minute:
            self._minute, self._daypart_ok = minute, {}
        ok = self._daypart_ok.get(c.id)
        if ok is None:
            ok = self._daypart_ok[c.id] = c.is_active(minute)
        return ok


_INDEXES: dict[int, CampaignIndex] = {}


def index_for(bundle: CampaignBundle | CampaignIndex) -> CampaignIndex:
    if isinstance(bundle, CampaignIndex):
        return bundle
    idx = _INDEXES.get(id(bundle))
    if idx is None or idx.bundle is not bundle:
        if len(_INDEXES) > 8:
            _INDEXES.clear()
        idx = _INDEXES[id(bundle)] = CampaignIndex(bundle)
    return idx


def decide(
    ctx: ScreenContext,
    bundle: CampaignBundle | CampaignIndex,
    now_local: datetime,
    world: World = NO_WORLD,
) -> Decision:
    index = index_for(bundle)
    reasons: list[str] = []
    held: list[str] = []
    target = _personal_target(ctx, reasons)
    # App users whose token did not resolve and strangers' devices are an audience too.
    audience = ctx.crowd().people
    consented = [p for p in ctx.shoppers if p.consent_personalisation]
    caps = world.caps
    for c in index.at(ctx.zone_id, ctx.screen_id):
        lost = _gate(c, ctx, index, now_local, world)
        if lost:
            reasons.append(f"{c.id}:lost:{lost}")
            continue
        if target is not None and c.personalised is not None:
            why = _personal_mismatch(c, target, ctx, now_local, caps)
            if why is None:
                # Reasons travel in events: no profile id in them (the id goes only where consented).
                reasons.insert(0, f"{c.id}:won:personalised")
                return Decision(
                    render_variant(
                        c.personalised,
                        f"{c.id}:personalised",
                        c.id,
                        "personalised",
                        target,
                        c.affinity_category,
                        world.prices.get(c.stock_sku or ""),
                    ),
                    c.id,
                    "personalised",
                    target.profile_id,
                    c.min_on_screen_s,
                    tuple(reasons),
                    c.rule(),
                    tuple(held),
                )
            if why == "holdout":
                held.append(c.id)
            if c.anonymous is None or why in ("holdout", "cap-shopper"):
                # A held-out or capped shopper sees no variant of this campaign at all.
                reasons.append(f"{c.id}:lost:{why}")
                continue
        if c.anonymous is None:
            reasons.append(f"{c.id}:lost:no-anonymous-variant")
            continue
        if audience < c.min_people or (c.max_people is not None and audience > c.max_people):
            reasons.append(f"{c.id}:lost:audience-{audience}")
            continue
        if c.min_dwell_s and ctx.zone_dwell_s < c.min_dwell_s:
            reasons.append(f"{c.id}:lost:dwell")
            continue
        if c.uses_profile_data:
            # Targeting an anonymous variant uses only consented shoppers' data, and a shopper
            # held out of the campaign does not count towards it.
            misses = {p.profile_id: c.mismatch(p) for p in consented}
            matching = [p for p in consented if misses[p.profile_id] is None]
            if not matching:
                reasons.append(f"{c.id}:lost:{_no_match(misses)}")
                continue
            if all(c.held_out(p.profile_id) for p in matching):
                held.append(c.id)
                reasons.append(f"{c.id}:lost:holdout")
                continue
        reasons.insert(0, f"{c.id}:won:anonymous")
        return Decision(
            render_variant(
                c.anonymous,
                f"{c.id}:anonymous",
                c.id,
                "anonymous",
                None,
                c.affinity_category,
                world.prices.get(c.stock_sku or ""),
            ),
            c.id,
            "anonymous",
            None,
            c.min_on_screen_s,
            tuple(reasons),
            c.rule(),
            tuple(held),
        )
    item = index.bundle.default[0]
    reasons.insert(0, "default")
    return Decision(
        render_variant(item.variant, item.content_id, None, "default", None),
        None,
        "default",
        None,
        0.0,
        tuple(reasons),
        "default",
        tuple(held),
    )


def _gate(
    c: Campaign, ctx: ScreenContext, index: CampaignIndex, now_local: datetime, world: World
) -> str | None:
    """Conditions that hold for the screen whoever is in front of it; a reason when one fails."""
    if not index.is_active(c, now_local):
        return "schedule"
    if c.stock_sku is not None and not world.stock.get(c.stock_sku, False):
        return "out-of-stock"
    cap = c.caps.per_screen_per_hour
    if cap and world.caps and world.caps.screen_this_hour(c.id, ctx.screen_id, now_local) >= cap:
        return "cap-screen"
    if c.attention_required and not ctx.watchers:
        return "no-attention"
    return None


def _no_match(misses: Mapping[str, str | None]) -> str:
    """Why no consented shopper at the screen matched: the targeting rule each one missed
    (``churn_risk``, ``segments_any+loyalty_tier`` when they missed different ones), or
    ``no-consented-match`` when nobody there consented. Rule names only, never an id."""
    rules = sorted({why for why in misses.values() if why is not None})
    return "+".join(rules) or "no-consented-match"


def _personal_mismatch(
    c: Campaign, p: Profile, ctx: ScreenContext, now_local: datetime, caps: CapsView | None
) -> str | None:
    why = c.mismatch(p)
    if why is not None:
        return why
    if c.min_dwell_s and ctx.dwell_s.get(p.profile_id, 0.0) < c.min_dwell_s:
        return "dwell"
    if c.held_out(p.profile_id):
        return "holdout"
    cap = c.caps.per_shopper_per_day
    if cap and caps and caps.shopper_today(c.id, p.profile_id, now_local) >= cap:
        return "cap-shopper"
    return None


@dataclass(frozen=True)
class StaffAlert:
    """A kiosk alert a campaign raises for a consented shopper (e.g. order ready, VIP)."""

    campaign_id: str
    zone_id: str
    text: str
    # The trigger that raised it ("order_ready", "churn_risk", ...), or "campaign".
    kind: str
    # Kept in the agent to alert once per shopper and day; never published.
    profile_id: str


def staff_alerts(
    ctx: ScreenContext,
    bundle: CampaignBundle | CampaignIndex,
    now_local: datetime,
    world: World = NO_WORLD,
) -> list[StaffAlert]:
    """Alerts for staff about shoppers at this screen; only those who consented to staff alerts.

    Independent of what the screen shows: a crowd hides the personal greeting, not the alert.
    """
    index = index_for(bundle)
    out: list[StaffAlert] = []
    for c in index.at(ctx.zone_id, ctx.screen_id):
        if c.staff_alert is None or _gate(c, ctx, index, now_local, world) == "schedule":
            continue
        if c.stock_sku is not None and not world.stock.get(c.stock_sku, False):
            continue
        for p in ctx.shoppers:
            if not p.consent_staff_alerts or c.mismatch(p) is not None:
                continue
            if c.min_dwell_s and ctx.dwell_s.get(p.profile_id, 0.0) < c.min_dwell_s:
                continue
            v = Variant(title=c.staff_alert)
            text = render_variant(v, c.id, c.id, "personalised", p, c.affinity_category).title
            out.append(StaffAlert(c.id, ctx.zone_id, text, c.trigger or "campaign", p.profile_id))
    return out
