"""`edge-agent campaigns check BUNDLE [-c agent.toml] [--at TIME] [--manifest FILE]`: validate a
campaign bundle before central ops signs it (with -c: every photo or clip a variant shows is in
the box's content cache or announced by a manifest, every placeholder can be filled), and say
what each screen would show now and why."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_agent.journey.campaigns import CampaignBundle
    from edge_agent.slice.model import Profile


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("campaigns", help="campaign bundle tools")
    p_sub = p.add_subparsers(dest="campaigns_command", required=True)
    check = p_sub.add_parser(
        "check", help="validate a bundle (exit 2 on errors); with -c, lint it against the store"
    )
    check.add_argument("bundle", help="campaign bundle JSON file")
    check.add_argument("--config", "-c", help="the store's agent.toml, for store-specific checks")
    check.add_argument(
        "--at", help="ISO time in the store's zone for the dry run (default: now)", default=None
    )
    check.add_argument(
        "--manifest",
        action="append",
        default=[],
        help="a content manifest (JSON) whose assets will be on the box too; repeatable",
    )
    check.set_defaults(func=_cmd_check)
    render = p_sub.add_parser(
        "render",
        help="check a bundle and print every variant as the box renders it (JSON; the ops "
        "console's previews); the personalised ones for a sample shopper",
    )
    render.add_argument("bundle", help="campaign bundle JSON file, or - for standard input")
    render.set_defaults(func=_cmd_render)
    dry = p_sub.add_parser(
        "dry-run",
        help="what each screen would show for a few audiences (JSON in: bundle, screens, at; "
        "JSON out; the ops console's dry run)",
    )
    dry.add_argument("request", help="the request JSON file, or - for standard input")
    dry.set_defaults(func=_cmd_dry_run)


# The shopper a personalised variant is rendered for: every placeholder a template may use filled.
SAMPLE_ORDER = {"id": "CC-4711", "status": "ready", "pickup_point": "Counter 2"}


def _sample(language: str) -> Profile:
    """The sample shopper: Alex, gold tier, an order ready, every consent for the screen."""
    from types import MappingProxyType

    from edge_agent.slice.model import Profile, frozen_orders

    return Profile(
        profile_id="sample",
        first_name="Alex",
        language=language,
        consent_personalisation=True,
        consent_analytics=True,
        consent_staff_alerts=False,
        segments=("sample",),
        loyalty_tier="gold",
        churn_risk=0.1,
        open_order=MappingProxyType(dict(SAMPLE_ORDER)),
        open_orders=frozen_orders([SAMPLE_ORDER]),
    )


def rendered_variants(bundle: CampaignBundle) -> dict[str, object]:
    """Every variant of ``bundle`` as the box renders it (``decide.render_variant``): the
    anonymous one as a passer-by sees it, the personalised one for a sample shopper (Alex, an
    order ready). What `campaigns render` prints and the ops console draws."""
    from contracts.screen_protocol import Content
    from edge_agent.journey.decide import render_variant

    sample = _sample
    items: list[dict[str, object]] = []

    def add(label: str, kind: str, content: Content) -> None:
        items.append({"label": label, "kind": kind, "content": content.model_dump(mode="json")})

    for item in bundle.default:
        v = render_variant(item.variant, item.content_id, None, "default", None, None)
        add(f"default {item.content_id}", "default", v)
    for c in bundle.campaigns:
        if c.anonymous is not None:
            v = render_variant(c.anonymous, f"{c.id}:anonymous", c.id, "anonymous", None,
                               c.affinity_category)  # fmt: skip
            add(f"{c.id}: anonymous", "anonymous", v)
        if c.personalised is not None:
            v = render_variant(c.personalised, f"{c.id}:personalised", c.id, "personalised",
                               sample(c.personalised.language), c.affinity_category)  # fmt: skip
            add(f"{c.id}: personalised (sample shopper Alex)", "personalised", v)
    return {
        "version": bundle.version,
        "campaigns": [c.id for c in bundle.campaigns],
        "default": [d.content_id for d in bundle.default],
        "items": items,
    }


# The audiences a dry run asks each screen about: (label, people a camera sees, the sample
# shopper there). A crowd is one more than the screen allows for a personal card.
AUDIENCES = ("nobody there", "one passer-by", "the sample shopper (Alex, consented)", "a crowd")


def dry_run(request: dict[str, object]) -> dict[str, object]:
    """What each screen would show at ``at`` to each of ``AUDIENCES``: the box's own
    ``decide`` on a ``ScreenContext`` per screen (its zone and personal limit, a camera's
    count), everything in stock, nothing shown yet today (no caps reached). ValueError naming
    what is wrong with the request."""
    from edge_agent.journey.decide import ScreenContext, World, decide

    if not isinstance(request, dict):
        raise ValueError("the request is not a JSON object")
    bundle = check_bundle(json.dumps(request.get("bundle")))
    try:
        at = datetime.fromisoformat(str(request.get("at")))
    except ValueError:
        raise ValueError("at: not an ISO time") from None
    if at.tzinfo is None:
        raise ValueError("at: needs a UTC offset (the store's local time)")
    screens = request.get("screens")
    if not isinstance(screens, list) or not all(isinstance(x, dict) for x in screens):
        raise ValueError("screens: a list of {id, zone, max_people_for_personal}")
    alex = _sample(bundle.campaigns[0].personalised.language if bundle.campaigns
                   and bundle.campaigns[0].personalised else "en")  # fmt: skip
    world = World(stock={c.stock_sku: True for c in bundle.campaigns if c.stock_sku})
    out = []
    for sc in screens:
        sid, zone = str(sc.get("id", "")), str(sc.get("zone", ""))
        if not sid or not zone:
            raise ValueError("screens: every screen needs an id and a zone")
        limit = sc.get("max_people_for_personal", 1)
        limit = limit if isinstance(limit, int) and not isinstance(limit, bool) else 1
        contexts = (
            ScreenContext(sid, zone, limit, 0, watchers=0),
            ScreenContext(sid, zone, limit, 1, watchers=1, zone_dwell_s=60.0),
            ScreenContext(
                sid,
                zone,
                limit,
                1,
                shoppers=(alex,),
                watchers=1,
                dwell_s={alex.profile_id: 60.0},
                zone_dwell_s=60.0,
            ),  # fmt: skip
            ScreenContext(sid, zone, limit, limit + 3, watchers=limit + 3, zone_dwell_s=60.0),
        )
        rows = []
        for label, ctx in zip(AUDIENCES, contexts, strict=True):
            d = decide(ctx, bundle, at, world)
            if label == "a crowd":
                label = f"a crowd ({limit + 3} people)"
            rows.append({
                "audience": label, "content_id": d.content.content_id,
                "campaign_id": d.campaign_id, "variant": d.variant, "rule": d.rule,
                "title": d.content.title, "reasons": list(d.reasons[:6]),
            })  # fmt: skip
        out.append({"screen": sid, "zone": zone, "audiences": rows})
    return {"at": at.isoformat(), "version": bundle.version, "screens": out}


def _cmd_dry_run(args: argparse.Namespace) -> int:
    raw = sys.stdin.read() if args.request == "-" else Path(args.request).read_text()
    try:
        doc = json.loads(raw)
        result = dry_run(doc)
    except ValueError as exc:
        print(f"campaigns dry-run: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    raw = sys.stdin.read() if args.bundle == "-" else Path(args.bundle).read_text()
    try:
        bundle = check_bundle(raw)
    except ValueError as exc:
        print(f"campaigns render: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(rendered_variants(bundle)))
    return 0


def check_bundle(raw: bytes | str) -> CampaignBundle:
    """The checks every bundle gets, with or without the store's config: JSON, then the full
    validation a box runs when the bundle arrives. Raises ValueError naming the field
    (``campaigns.campaigns.0.anonymous.title: ...``). The ops console calls this too, so a
    bundle it accepts is one ``campaigns check`` accepts."""
    from edge_agent.journey.content_store import parse_bundle

    try:
        body = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError says the line and column
        raise ValueError(f"not JSON: {exc}") from None
    return parse_bundle(body)  # BundleError is a ValueError naming the field


def _cmd_check(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from edge_agent.config import load_or_report
    from edge_agent.downlink.content_manifest import parse_manifest
    from edge_agent.journey.campaigns import lint
    from edge_agent.journey.decide import ScreenContext, decide
    from sync.assets import AssetStore

    try:
        bundle = check_bundle(Path(args.bundle).read_bytes())
    except (OSError, ValueError) as exc:
        print(f"{args.bundle}: {exc}", file=sys.stderr)
        return 2
    print(f"{args.bundle}: v{bundle.version}, {len(bundle.campaigns)} campaigns: valid")
    if not args.config:
        return 0
    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    tz = ZoneInfo(cfg.store.timezone)
    now = datetime.fromisoformat(args.at) if args.at else datetime.now(tz)
    now = now.replace(tzinfo=tz) if now.tzinfo is None else now.astimezone(tz)
    assets = AssetStore(cfg.paths_resolved.content_dir).cached()
    for m in args.manifest:
        try:
            assets |= {a.sha256 for a in parse_manifest(json.loads(Path(m).read_bytes())).assets}
        except (OSError, ValueError) as exc:
            print(f"{m}: {exc}", file=sys.stderr)
            return 2
    warnings = lint(
        bundle,
        zones=[z.id for z in cfg.zones],
        screens=[s.id for s in cfg.screens],
        max_people_for_personal=max(s.max_people_for_personal for s in cfg.screens),
        now=now,
        assets=assets,
    )
    for line in warnings:
        print(f"warning: {line}")
    # A dry run: what each screen shows to an anonymous passer-by at that time, and why.
    for s in cfg.screens:
        d = decide(ScreenContext(s.id, s.zone, s.max_people_for_personal, 1), bundle, now)
        why = ", ".join(d.reasons[:4])
        print(f"{s.id} at {now:%a %H:%M %Z}: {d.content.content_id} ({why})")
    return 0
