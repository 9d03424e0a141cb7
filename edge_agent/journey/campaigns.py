"""Campaign bundles as central ops pushes them (signed, versioned), validated with pydantic.

A campaign says who it is for (targeting), when (schedule), how often (caps), on what condition
(stock), what share of its audience is held out (so the CDP can measure uplift), and what it shows
(variants, per language). Everything that can be checked without the store is checked at load;
``lint`` adds the checks that need the store's layout and stock.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import date, datetime, time, tzinfo
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agent.slice.model import Profile

_DAYPART = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
# Fields a template may use; anything else in braces is refused at load, not at show time.
TEMPLATE_FIELDS = {"first_name", "order_id", "pickup_point", "category"}
_PLACEHOLDER = re.compile(r"{([a-z_]*)}")
_UTC = ZoneInfo("UTC")
Trigger = Literal["order_ready", "churn_risk", "product_interest"]


SHA256 = r"^[0-9a-f]{64}$"


class Variant(BaseModel):
    """What a screen shows when the campaign wins: everything a loop item can carry. The price
    comes from the slice's stock table for the campaign's ``stock_sku`` when it has one (today's
    price), else from ``price`` here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The screen protocol's templates a campaign may choose (an emergency is the emergency
    # command's, never a campaign's): see ``contracts.screen_protocol.Template``.
    template: Literal["offer_card", "image", "video", "welcome", "order_ready", "survey"] = (
        "offer_card"
    )
    title: str = Field(min_length=1, max_length=120)
    body: str = Field("", max_length=400)
    background: str = Field("#1d3557", pattern=r"^#[0-9a-fA-F]{6}$")
    accent: str = Field("#e63946", pattern=r"^#[0-9a-fA-F]{6}$")
    language: str = "en"
    # A product photo or a short clip in the screens' content cache (pushed with a manifest).
    image_sha256: str | None = Field(None, pattern=SHA256)
    image_focus: tuple[float, float] = (0.5, 0.5)
    video_sha256: str | None = Field(None, pattern=SHA256)
    price: float | None = Field(None, ge=0)
    was_price: float | None = Field(None, ge=0)
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    valid_until: date | None = None
    badge: str = Field("", max_length=24)
    # Drawn large on an accent tag: an order_ready card's "{order_id}".
    highlight: str = Field("", max_length=24)
    cta: str = Field("", max_length=80)
    # Drawn as a QR code: the offer or the way, on the shopper's phone.
    qr_url: str | None = Field(None, max_length=512, pattern=r"^https://[^\s]+$")
    # Other languages of the same message; the shopper's preferred language wins when present.
    translations: dict[str, Translation] = Field(default_factory=dict)

    @field_validator("title", "body", "badge", "cta", "highlight")
    @classmethod
    def _known_placeholders(cls, v: str) -> str:
        unknown = set(_PLACEHOLDER.findall(v)) - TEMPLATE_FIELDS
        if unknown:
            raise ValueError(f"unknown template field(s): {', '.join(sorted(unknown))}")
        return v

    @field_validator("image_focus")
    @classmethod
    def _focus(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= c <= 1.0 for c in v):
            raise ValueError("each coordinate is between 0 and 1")
        return v

    @model_validator(mode="after")
    def _media(self) -> Variant:
        if self.template == "image" and self.image_sha256 is None:
            raise ValueError("template image needs image_sha256")
        if self.template == "video" and self.video_sha256 is None:
            raise ValueError("template video needs video_sha256")
        if self.template == "survey" and self.qr_url is None:
            # The call to action is the code: a survey card without one asks and offers no way.
            raise ValueError("template survey needs qr_url (the survey's link)")
        return self

    def assets(self) -> set[str]:
        """The sha256 of every file this variant shows (the content cache must have them)."""
        return {h for h in (self.image_sha256, self.video_sha256) if h}

    def in_language(self, language: str | None) -> Variant:
        """This variant with the words of ``language`` when it has them."""
        t = self.translations.get(language or "")
        if t is None or language == self.language:
            return self
        update: dict[str, object] = {"title": t.title, "body": t.body, "language": language}
        if t.cta is not None:
            update["cta"] = t.cta
        if t.badge is not None:
            update["badge"] = t.badge
        return self.model_copy(update=update)


class Translation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=1, max_length=120)
    body: str = Field("", max_length=400)
    # None: the variant's own (a brand's call to action is often not translated).
    cta: str | None = Field(None, max_length=80)
    badge: str | None = Field(None, max_length=24)

    @field_validator("title", "body", "cta", "badge")
    @classmethod
    def _known_placeholders(cls, v: str | None) -> str | None:
        return None if v is None else Variant._known_placeholders(v)


Variant.model_rebuild()


def is_in_daypart(daypart: str, t: time) -> bool:
    """``"HH:MM-HH:MM"``, start inclusive, end exclusive; wraps past midnight when end < start."""
    m = _DAYPART.match(daypart)
    if not m:
        raise ValueError(f"daypart {daypart!r} is not HH:MM-HH:MM")
    start = int(m[1]) * 60 + int(m[2])
    end = int(m[3]) * 60 + int(m[4])
    now = t.hour * 60 + t.minute
    if start == end:
        return True
    if start < end:
        return start <= now < end
    return now >= start or now < end


def cron_trigger(expr: str, tz: ZoneInfo | str = "UTC") -> CronTrigger:
    """A 5-field crontab expression as an APScheduler trigger in the store's time zone."""
    return CronTrigger.from_crontab(expr, timezone=tz)


def cron_matches(trigger: CronTrigger, now_local: datetime) -> bool:
    """True when the minute containing ``now_local`` is one the expression fires on.

    APScheduler does the calendar (and DST) arithmetic: a wall-clock minute that does not exist
    on a spring-forward day never matches; a repeated one on a fall-back day matches both times.
    """
    minute = now_local.replace(second=0, microsecond=0)
    nxt = trigger.get_next_fire_time(None, minute)
    return nxt is not None and nxt == minute


@lru_cache(maxsize=4096)
def _cached_trigger(expr: str, tz: tzinfo | None) -> CronTrigger:
    # Triggers are stateless: one per (expression, zone) serves every campaign and every call.
    return cron_trigger(expr, tz or _UTC)  # type: ignore[arg-type]


def _is_cron(daypart: str) -> bool:
    return not _DAYPART.match(daypart)


class Caps(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    per_shopper_per_day: int | None = Field(None, ge=1)
    per_screen_per_hour: int | None = Field(None, ge=1)


class WayTo(BaseModel):
    """Where a campaign's screens show the way to: a map reference (a feature id, a name or alt
    name in any language, ``sku:<sku>`` once the planogram resolves it). Data only: the
    director routes from the screen on the map the box has, or sends the card without a map."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: str = Field(min_length=1, max_length=200)


class Campaign(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    priority: int = Field(0, ge=0, le=1000)
    trigger: Trigger | None = None
    # Targeting (profile data is only ever read for shoppers who consented to personalisation).
    segments_any: list[str] = Field(default_factory=list)
    segments_all: list[str] = Field(default_factory=list)
    segments_none: list[str] = Field(default_factory=list)
    loyalty_tiers: list[str] = Field(default_factory=list)
    churn_risk_min: float | None = Field(None, ge=0, le=1)
    churn_risk_max: float | None = Field(None, ge=0, le=1)
    affinity_category: str | None = None
    affinity_min: float = Field(0.5, ge=0, le=1)
    requires_order_status: Literal["ready"] | None = None
    zones: list[str] = Field(default_factory=list)
    screens: list[str] = Field(default_factory=list)
    min_dwell_s: float = Field(0.0, ge=0)
    attention_required: bool = False
    min_people: int = Field(1, ge=0)
    max_people: int | None = Field(None, ge=0)
    # Schedule: a date range and dayparts, each "HH:MM-HH:MM" local or a 5-field cron expression
    # ("* 7-10 * * mon-fri": active in every minute it fires), in the store's time zone.
    # With a UTC offset: a bare "2026-12-24T18:00" means different moments in different stores.
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    dayparts: list[str] = Field(default_factory=list)
    caps: Caps = Field(default_factory=Caps)
    # The promoted SKU must be in stock (per the store's stock table) for the campaign to run.
    stock_sku: str | None = None
    # A deterministic share of eligible identified shoppers sees nothing from this campaign.
    holdout_share: float = Field(0.0, ge=0, le=0.5)
    # A staff kiosk alert when the campaign wins for an identified shopper (e.g. VIP arrived).
    staff_alert: str | None = Field(None, max_length=200)
    personalised: Variant | None = None
    anonymous: Variant | None = None
    min_on_screen_s: float = Field(8.0, ge=0)
    # The way from the screen to the offer's place, drawn beside the card when the box has a map.
    wayfinding: WayTo | None = None

    @field_validator("dayparts")
    @classmethod
    def _dayparts(cls, v: list[str]) -> list[str]:
        for d in v:
            if _is_cron(d):
                try:
                    trigger = cron_trigger(d)
                except ValueError as exc:
                    raise ValueError(
                        f"daypart {d!r} is neither HH:MM-HH:MM nor cron: {exc}"
                    ) from None
                # Feb 30th and friends: a trigger that never fires.
                first = trigger.get_next_fire_time(None, datetime(2026, 1, 1, tzinfo=_UTC))
                if first is None:
                    raise ValueError(f"daypart {d!r} never fires: the campaign can never run")
        return v

    @field_validator("staff_alert")
    @classmethod
    def _alert_fields(cls, v: str | None) -> str | None:
        return None if v is None else Variant._known_placeholders(v)

    @model_validator(mode="after")
    def _can_match(self) -> Campaign:
        if self.personalised is None and self.anonymous is None:
            raise ValueError("campaign has neither a personalised nor an anonymous variant")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end is not after start: the campaign can never run")
        if self.max_people is not None and self.max_people < self.min_people:
            raise ValueError("max_people < min_people: the campaign can never match")
        if (
            self.churn_risk_min is not None
            and self.churn_risk_max is not None
            and self.churn_risk_max < self.churn_risk_min
        ):
            raise ValueError("churn_risk_max < churn_risk_min: the campaign can never match")
        if clash := set(self.segments_all) & set(self.segments_none):
            raise ValueError(f"segments both required and excluded: {', '.join(sorted(clash))}")
        if self.segments_any and set(self.segments_any) <= set(self.segments_none):
            raise ValueError("every segment in segments_any is excluded: can never match")
        if self.trigger == "churn_risk" and self.churn_risk_min is None:
            raise ValueError("trigger churn_risk needs churn_risk_min")
        if self.trigger == "product_interest" and self.affinity_category is None:
            raise ValueError("trigger product_interest needs affinity_category")
        return self

    # ---- schedule ----------------------------------------------------------------------
    def is_active(self, now: datetime) -> bool:
        """``now`` is aware and in the store's time zone (dayparts are local wall time)."""
        if self.start and now < self.start:
            return False
        if self.end and now >= self.end:
            return False
        if not self.dayparts:
            return True
        for d in self.dayparts:
            if not _is_cron(d):
                if is_in_daypart(d, now.time()):
                    return True
                continue
            if cron_matches(_cached_trigger(d, now.tzinfo), now):
                return True
        return False

    # ---- targeting ---------------------------------------------------------------------
    @property
    def order_status(self) -> str | None:
        # trigger "order_ready" is the order's state said once, not twice.
        return self.requires_order_status or ("ready" if self.trigger == "order_ready" else None)

    @property
    def uses_profile_data(self) -> bool:
        return bool(
            self.order_status
            or self.segments_any
            or self.segments_all
            or self.segments_none
            or self.loyalty_tiers
            or self.churn_risk_min is not None
            or self.churn_risk_max is not None
            or self.affinity_category
        )

    def mismatch(self, p: Profile) -> str | None:
        """Why this profile is not targeted (a reason code without ids), or None if it is."""
        segs = set(p.segments)
        if self.segments_any and not set(self.segments_any) & segs:
            return "segments_any"
        if self.segments_all and not set(self.segments_all) <= segs:
            return "segments_all"
        if self.segments_none and set(self.segments_none) & segs:
            return "segments_none"
        if self.loyalty_tiers and p.loyalty_tier not in self.loyalty_tiers:
            return "loyalty_tier"
        if self.churn_risk_min is not None and p.churn_risk < self.churn_risk_min:
            return "churn_risk"
        if self.churn_risk_max is not None and p.churn_risk > self.churn_risk_max:
            return "churn_risk"
        if self.affinity_category is not None and (
            affinity(p, self.affinity_category) < self.affinity_min
        ):
            return "affinity"
        status = self.order_status
        if status and not any(o.get("status") == status for o in open_orders(p)):
            return "order_status"
        return None

    def targets(self, p: Profile) -> bool:
        return self.mismatch(p) is None

    def rule(self) -> str:
        """The rule that makes this campaign match, for the impression's explanation."""
        if self.trigger:
            return self.trigger
        if self.order_status:
            return f"order:{self.order_status}"
        parts = []
        if self.segments_any or self.segments_all:
            parts.append("segment")
        if self.loyalty_tiers:
            parts.append("tier")
        if self.churn_risk_min is not None or self.churn_risk_max is not None:
            parts.append("churn")
        if self.affinity_category:
            parts.append(f"affinity:{self.affinity_category}")
        return "+".join(parts) or "everyone"

    def held_out(self, profile_id: str) -> bool:
        """Deterministic per (campaign, shopper): the same shopper is always in or always out."""
        if self.holdout_share <= 0:
            return False
        h = hashlib.sha256(f"{self.id}\x00{profile_id}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64 < self.holdout_share


def open_orders(p: Profile) -> list[dict[str, str]]:
    """A profile's open orders, whichever shape the slice gives them in."""
    orders = getattr(p, "open_orders", None)
    if orders:
        return [dict(o) for o in orders]
    one = getattr(p, "open_order", None)
    return [one] if one else []


def affinity(p: Profile, category: str) -> float:
    scores = getattr(p, "affinities", None) or getattr(p, "category_affinities", None) or {}
    try:
        return float(dict(scores).get(category, 0.0))
    except (TypeError, ValueError):
        return 0.0


class DefaultItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    content_id: str
    variant: Variant


class CampaignBundle(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=0)
    default: list[DefaultItem] = Field(min_length=1)
    campaigns: list[Campaign] = Field(default_factory=list)

    def assets(self) -> set[str]:
        """Every file the bundle's variants show, by sha256."""
        out: set[str] = set()
        for item in self.default:
            out |= item.variant.assets()
        for c in self.campaigns:
            for v in (c.personalised, c.anonymous):
                if v is not None:
                    out |= v.assets()
        return out

    @model_validator(mode="after")
    def _unique(self) -> CampaignBundle:
        ids = [c.id for c in self.campaigns]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"duplicate campaign id(s): {', '.join(sorted(dupes))}")
        return self


def lint(
    bundle: CampaignBundle,
    *,
    zones: Iterable[str],
    screens: Iterable[str],
    max_people_for_personal: int = 1,
    stock: dict[str, bool] | None = None,
    now: datetime | None = None,
    assets: set[str] | None = None,
) -> list[str]:
    """Campaigns that cannot match in this store, or would show something broken, one line
    each (the bundle still loads). ``assets``: the sha256 of every file the screens' content
    cache holds or a manifest announces; a variant showing another one is named."""
    zones, screens = set(zones), set(screens)
    out: list[str] = []
    for item in bundle.default:
        out += _variant_problems(f"default {item.content_id}", item.variant, None, assets)
    for c in bundle.campaigns:
        for kind, v in (("personalised", c.personalised), ("anonymous", c.anonymous)):
            if v is not None:
                out += _variant_problems(f"{c.id}: {kind}", v, c, assets)
        if c.zones and not set(c.zones) & zones:
            out.append(f"{c.id}: none of its zones ({', '.join(c.zones)}) is in this store")
        if c.screens and not set(c.screens) & screens:
            out.append(f"{c.id}: none of its screens ({', '.join(c.screens)}) is in this store")
        if c.anonymous is None and c.min_people > max_people_for_personal:
            out.append(
                f"{c.id}: personalised only, but needs {c.min_people} people and personal "
                f"content allows at most {max_people_for_personal}"
            )
        if c.stock_sku is not None and stock is not None and c.stock_sku not in stock:
            out.append(f"{c.id}: SKU {c.stock_sku} is not in this store's stock table")
        if now is not None and c.end is not None and c.end <= now:
            out.append(f"{c.id}: ended {c.end.isoformat()}")
        if c.anonymous is not None and c.uses_profile_data and c.min_people == 0:
            out.append(f"{c.id}: targets profile data but allows an empty audience")
    return out


# Placeholders filled from a shopper's profile, and from an open order among those.
_PROFILE_FIELDS = {"first_name", "order_id", "pickup_point"}
_ORDER_FIELDS = {"order_id", "pickup_point"}


def _variant_problems(
    where: str, v: Variant, c: Campaign | None, assets: set[str] | None
) -> list[str]:
    out: list[str] = []
    if assets is not None:
        for field in ("image_sha256", "video_sha256"):
            sha = getattr(v, field)
            if sha and sha not in assets:
                out.append(
                    f"{where}: {field} {sha[:12]}... is neither in the screens' content cache "
                    "nor announced by a manifest"
                )
    out += _template_problems(where, v, c)
    texts = [v.title, v.body, v.badge, v.cta, v.highlight]
    for t in v.translations.values():
        texts += [t.title, t.body, t.cta or "", t.badge or ""]
    used = {f for t in texts for f in _PLACEHOLDER.findall(t)}
    personal = c is not None and v is c.personalised
    if not personal and used & _PROFILE_FIELDS:
        names = ", ".join("{" + f + "}" for f in sorted(used & _PROFILE_FIELDS))
        out.append(f"{where}: {names} would be empty: no shopper's profile fills it here")
    elif personal and c is not None and used & _ORDER_FIELDS and c.order_status is None:
        names = ", ".join("{" + f + "}" for f in sorted(used & _ORDER_FIELDS))
        out.append(f"{where}: {names} may be empty: the campaign does not require an order")
    if "category" in used and (c is None or c.affinity_category is None):
        out.append(f"{where}: {{category}} would be empty: the campaign has no affinity_category")
    return out


def _template_problems(where: str, v: Variant, c: Campaign | None) -> list[str]:
    """What a template needs from its campaign to say anything (the fields themselves are
    checked at load): an order to announce, a name to greet."""
    out: list[str] = []
    personal = c is not None and v is c.personalised
    if v.template == "order_ready":
        if not personal:
            out.append(
                f"{where}: template order_ready, but only a personalised variant has an order"
            )
        elif c is not None and c.order_status != "ready":
            out.append(
                f"{where}: template order_ready, but the campaign does not require a ready order "
                "(trigger order_ready)"
            )
        said = " ".join([v.title, v.body, v.highlight])
        if "{order_id}" not in said and "{pickup_point}" not in said:
            out.append(
                f"{where}: template order_ready names neither {{order_id}} nor {{pickup_point}} "
                "in its title, body or highlight: which order, and where?"
            )
    if v.template == "welcome" and personal and "{first_name}" not in v.title:
        out.append(f"{where}: a personal welcome without {{first_name}} in its title greets nobody")
    return out


__all__ = [
    "Campaign",
    "CampaignBundle",
    "Caps",
    "DefaultItem",
    "Translation",
    "Variant",
    "WayTo",
    "affinity",
    "cron_matches",
    "cron_trigger",
    "is_in_daypart",
    "lint",
    "open_orders",
]
