"""What a screen shows now, and why: a pure, deterministic function.

Privacy guard first: personalised content only for exactly one identified shopper at the screen,
who consented, while the camera sees at least one and no more than the screen's limit of people.
Otherwise the anonymous variant of the best campaign, otherwise the default loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from edge_agent.campaigns import Campaign, CampaignBundle, Variant
from edge_agent.profiles import Profile
from edge_agent.screen_protocol import Content


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


@dataclass(frozen=True)
class Decision:
    content: Content
    campaign_id: str | None
    variant: str
    profile_id: str | None
    min_on_screen_s: float
    reasons: tuple[str, ...] = field(default_factory=tuple)


class _SafeFields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def render_variant(
    v: Variant, content_id: str, campaign_id: str | None, kind: str, profile: Profile | None
) -> Content:
    fields = _SafeFields()
    if profile is not None:
        fields["first_name"] = profile.first_name
        if profile.open_order:
            fields["order_id"] = profile.open_order.get("id", "")
            fields["pickup_point"] = profile.open_order.get("pickup_point", "")
    return Content(
        content_id=content_id,
        campaign_id=campaign_id,
        variant=kind,  # type: ignore[arg-type]
        title=v.title.format_map(fields),
        body=v.body.format_map(fields),
        language=profile.language if profile else v.language,
        background=v.background,
        accent=v.accent,
    )


def _personal_target(ctx: ScreenContext, reasons: list[str]) -> Profile | None:
    identified = len(ctx.shoppers) + ctx.unresolved_shoppers
    consented = [p for p in ctx.shoppers if p.consent_personalisation]
    if not consented:
        if ctx.shoppers:
            reasons.append("privacy:no-consent")
        return None
    if identified != 1:
        reasons.append(f"privacy:{identified}-shoppers-at-screen")
        return None
    if ctx.people_in_view is not None:
        if ctx.people_in_view < 1:
            reasons.append("privacy:camera-sees-nobody")
            return None
        if ctx.people_in_view > ctx.max_people_for_personal:
            reasons.append(f"privacy:{ctx.people_in_view}-people-in-view")
            return None
    return consented[0]


def decide(ctx: ScreenContext, bundle: CampaignBundle, now_local: datetime) -> Decision:
    reasons: list[str] = []
    target = _personal_target(ctx, reasons)
    audience = ctx.people_in_view if ctx.people_in_view is not None else len(ctx.shoppers)
    consented = [p for p in ctx.shoppers if p.consent_personalisation]
    candidates: list[Campaign] = sorted(
        (c for c in bundle.campaigns if not c.zones or ctx.zone_id in c.zones),
        key=lambda c: (-c.priority, c.id),
    )
    for c in candidates:
        if not c.is_active(now_local):
            reasons.append(f"{c.id}:lost:schedule")
            continue
        if target is not None and c.personalised and c.targets(target):
            # Reasons travel in events: no profile id in them (the id goes only where consented).
            reasons.insert(0, f"{c.id}:won:personalised")
            return Decision(
                render_variant(
                    c.personalised, f"{c.id}:personalised", c.id, "personalised", target
                ),
                c.id,
                "personalised",
                target.profile_id,
                c.min_on_screen_s,
                tuple(reasons),
            )
        if c.anonymous is None:
            reasons.append(f"{c.id}:lost:no-anonymous-variant")
            continue
        if audience < c.min_people or (c.max_people is not None and audience > c.max_people):
            reasons.append(f"{c.id}:lost:audience-{audience}")
            continue
        # Segment or order targeting of an anonymous variant uses only consented shoppers' data.
        if (c.segments_any or c.requires_order_status) and not any(c.targets(p) for p in consented):
            reasons.append(f"{c.id}:lost:no-consented-match")
            continue
        reasons.insert(0, f"{c.id}:won:anonymous")
        return Decision(
            render_variant(c.anonymous, f"{c.id}:anonymous", c.id, "anonymous", None),
            c.id,
            "anonymous",
            None,
            c.min_on_screen_s,
            tuple(reasons),
        )
    item = bundle.default[0]
    reasons.insert(0, "default")
    return Decision(
        render_variant(item.variant, item.content_id, None, "default", None),
        None,
        "default",
        None,
        0.0,
        tuple(reasons),
    )
