"""The screen director: context -> decide -> show, for every screen of this box.

Each tick it re-decides the screens whose world changed (``invalidate``) once their content's
minimum hold is over, sends a retained ``ScreenCommand`` when the content changes, and records
what was shown (caps, touches, holdouts, offers). Campaign alerts for staff (order ready, VIP)
go out once per shopper, campaign and day. The decision itself is the pure ``decide``.
"""

from __future__ import annotations

import logging
import queue
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from contracts import topics
from contracts.events import HoldoutAssigned, OfferShown, new_event_id
from contracts.payload import PayloadError
from contracts.screen_protocol import ScreenCommand, screen_status
from edge_agent.app.alerts import StaffAlerts
from edge_agent.app.bus import Publisher
from edge_agent.config import AgentConfig
from edge_agent.journey.content_store import ContentStore
from edge_agent.journey.decide import Decision, ScreenContext, World, staff_alerts
from edge_agent.journey.engine import JourneyEngine
from edge_agent.journey.wayfinding_stage import ScreenWayfinder
from edge_agent.sensing.audience_stage import AudienceStage
from edge_agent.sensing.fusion_stage import FusionStage
from edge_agent.sensing.presence_stage import PresenceStage
from edge_agent.slice.model import Profile, StockPrice
from edge_agent.slice.store import ProfileSlice
from sync.journal import EventJournal

log = logging.getLogger("edge_agent")


@dataclass
class _ScreenState:
    decision: Decision | None = None
    shown_at: float = 0.0
    # Shoppers this show has already been decided for (holdout controls are counted once each).
    seen: set[str] = field(default_factory=set)


@dataclass
class DirectorCounts:
    decisions: int = 0
    decide_errors: int = 0
    content_changes: int = 0
    holdouts: int = 0
    current: dict[str, str] = field(default_factory=dict)  # screen -> content id on it
    variants: Counter[str] = field(default_factory=Counter)


class ScreenDirector:
    def __init__(
        self,
        cfg: AgentConfig,
        *,
        now: Callable[[], float],
        speed: float,
        presence: PresenceStage,
        audience: AudienceStage,
        profiles: ProfileSlice,
        content: ContentStore,
        journey: JourneyEngine,
        journal: EventJournal,
        bus: Publisher,
        alerts: StaffAlerts,
        radar: Callable[[str], bool | None] = lambda zone: None,
        wayfinder: ScreenWayfinder | None = None,
        fusion: FusionStage | None = None,
    ) -> None:
        self.cfg = cfg
        self.tz = ZoneInfo(cfg.store.timezone)
        self._now = now
        self.speed = speed
        self.presence = presence
        self.audience = audience
        self.profiles = profiles
        self.content = content
        self.journey = journey
        self.journal = journal
        self.bus = bus
        self.alerts = alerts
        # mmWave per zone: someone there, nobody, or None (no radar covers it).
        self.radar = radar
        # The way to a campaign's place, from the map this box has (none: cards go without).
        self.wayfinder = wayfinder or ScreenWayfinder()
        # Who the one person at a camera or radar screen is (None: every screen BLE-only).
        self.fusion = fusion
        self.counts = DirectorCounts()
        self._screens = {s.id: _ScreenState() for s in cfg.screens}
        self._dirty = True
        # Profiles deleted or withdrawn on the downlink/scheduler threads; the loop forgets them.
        self._forget: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._screen_status: dict[str, str] = {}
        # Screens whose shopper withdrew consent: their next command cuts through any hold.
        self._preempt: set[str] = set()
        # Screens whose last decision failed, with the error (logged once, sent in health).
        self._failing: dict[str, str] = {}

    def invalidate(self) -> None:
        """Something a decision depends on changed: re-decide at the next tick."""
        self._dirty = True

    def forget(self, profile_ids: Iterable[str], *, cut_hold: bool = False) -> None:
        """Profiles the slice no longer holds (any thread): their journey state goes at the next
        tick; with ``cut_hold`` a screen showing one of them does not keep it for its hold."""
        ids = set(profile_ids)
        for pid in ids:
            self._forget.put(pid)
        self.alerts.forget(ids)  # no open alert keeps their name up
        if cut_hold:
            for screen_id, st in self._screens.items():
                if st.decision is not None and st.decision.profile_id in ids:
                    st.shown_at = float("-inf")
                    self._preempt.add(screen_id)
        self._dirty = True

    def _forget_profiles(self) -> None:
        while True:
            try:
                self.journey.forget(self._forget.get_nowait())
            except queue.Empty:
                return

    def stock(self) -> dict[str, bool]:
        return self.profiles.stock_levels()

    def prices(self) -> dict[str, StockPrice]:
        return self.profiles.stock_prices()

    # ---- deciding ------------------------------------------------------------------------
    def context(self, screen_id: str) -> ScreenContext:
        sc = self.cfg.screen(screen_id)
        shoppers = []
        unresolved = 0
        dwell: dict[str, float] = {}
        zone_dwell = 0.0
        now = self._now()
        # Presence is per zone: a zone that no receiver covers has nobody in it.
        for key in sorted(self.presence.present(sc.zone)):
            stay = max(0.0, now - self.presence.entered_at.get(key, now))
            zone_dwell = max(zone_dwell, stay)
            p = self.presence.profile_for(key)
            if p is not None:
                shoppers.append(p)
                dwell[p.profile_id] = stay
            else:
                unresolved += 1
        people = watchers = None
        if self.audience.screen == screen_id:
            people, watchers = self.audience.people_in_view()
        fused = self.fusion.view(screen_id) if self.fusion is not None else None
        at_screen = None
        if fused is not None and fused.identity is not None:
            p = self.presence.profile_for(fused.identity)
            at_screen = p.profile_id if p is not None else None
        return ScreenContext(
            screen_id=screen_id,
            zone_id=sc.zone,
            max_people_for_personal=sc.max_people_for_personal,
            people_in_view=people,
            shoppers=tuple(shoppers),
            unresolved_shoppers=unresolved,
            dwell_s=dwell,
            zone_dwell_s=zone_dwell,
            watchers=watchers,
            # What a screen without a camera has to judge the crowd by (decide's privacy guard).
            ble_devices=self.presence.devices_in(sc.zone, now),
            radar=self.radar(sc.zone),
            personal_without_crowd_sensor=sc.personal_without_crowd_sensor,
            fused=fused is not None,
            at_screen=at_screen,
            fused_reason=fused.reason if fused is not None else "",
        )

    def decide_screens(self) -> None:
        now = self._now()
        now_local = datetime.fromtimestamp(now, self.tz)
        dirty, self._dirty = self._dirty, False
        self._forget_profiles()
        for screen_id, st in self._screens.items():
            held = st.decision is not None and now - st.shown_at < st.decision.min_on_screen_s
            if not dirty and not held and st.decision is not None:
                continue
            if held:
                # Re-check when the hold ends; until then the screen keeps what it shows.
                self._dirty = True
                continue
            try:
                ctx = self.context(screen_id)
                self.journey.set_bundle(self.content.bundle)
                d = self.journey.decide(ctx, now_local, self.stock(), self.prices())
                self._raise_staff_alerts(ctx, now_local)
            except Exception as exc:
                # One screen's failure (a bundle the validator let through, a slice read error)
                # must not stop the loop or the other screens: this one keeps what it shows.
                self._decide_failed(screen_id, exc)
                continue
            self.counts.decisions += 1
            if self._failing.pop(screen_id, None) is not None:
                log.info("screen %s: deciding again", screen_id)
            if st.decision is not None and d.content == st.decision.content:
                self._preempt.discard(screen_id)
                self._hold_arrivals(screen_id, st, d, ctx, now, now_local)
                continue
            st.decision, st.shown_at = d, now
            self._show(screen_id, d, ctx, now, now_local)
            self._preempt.discard(screen_id)

    def _decide_failed(self, screen_id: str, exc: Exception) -> None:
        kind = f"{type(exc).__name__}: {str(exc)[:160]}"
        self.counts.decide_errors += 1
        if self._failing.get(screen_id) != kind:
            self._failing[screen_id] = kind
            log.error("screen %s: decision failed, keeping what it shows: %s", screen_id, kind)

    def _raise_staff_alerts(self, ctx: ScreenContext, now_local: datetime) -> None:
        """Campaign alerts for staff (order ready, VIP), once per shopper, campaign and day;
        StaffAlerts keeps the keys on disk, so a restarted agent does not alert twice."""
        world = World(stock=self.stock())
        day = now_local.date().isoformat()
        for a in staff_alerts(ctx, self.journey.index, now_local, world):
            self.alerts.raise_once(
                (a.campaign_id, a.profile_id),
                day,
                a.kind,
                a.text,
                subject=a.profile_id,
                campaign_id=a.campaign_id,
                zone_id=a.zone_id,
            )

    def health(self) -> dict[str, str]:
        """For the heartbeat: decisions that failed, and the screens failing now (with why)."""
        out = {"decide_errors": str(self.counts.decide_errors)}
        for screen_id, why in sorted(self._failing.items()):
            out[f"decide_failing:{screen_id}"] = why
        return out

    def new_day(self, today: str) -> None:
        """Alerts are once per day: forget yesterday's."""
        self.alerts.new_day(today)

    def _show(
        self, screen_id: str, d: Decision, ctx: ScreenContext, now: float, now_local: datetime
    ) -> None:
        c = self.counts
        c.content_changes += 1
        c.current[screen_id] = d.content.content_id
        c.variants[d.variant] += 1
        log.info(
            "screen %s: %s (%s) because %s",
            screen_id,
            d.content.content_id,
            d.variant,
            ", ".join(d.reasons[:3]),
        )
        content = d.content.model_copy(update={"rule": d.rule, "reasons": d.reasons[:8]})
        content = self.wayfinder.attach(content, screen_id, self._way_to(d.campaign_id))
        cmd = ScreenCommand(
            kind="show" if d.variant != "default" else "default",
            content=content,
            min_duration_s=d.min_on_screen_s / self.speed,
            issued_at=datetime.now(UTC),
            preempt=True if screen_id in self._preempt else None,
        )
        topic = topics.screen_cmd(self.cfg.store.store_id, screen_id)
        # Retained, so a restarting player resumes what it should show; never a personal one
        # (a first name must not stay readable on the bus after the shopper has gone).
        personal = d.variant == "personalised"
        self.bus.publish(topic, cmd.to_bytes(), qos=1, retain=not personal)
        # One id for the offer event and its touch: peers dedupe the touch by it.
        offer_id = new_event_id()
        shown = self.journey.shown(
            screen_id, d, now, now_local, present=ctx.shoppers, event_id=offer_id
        )
        self._screens[screen_id].seen = {p.profile_id for p in ctx.shoppers}
        self._report_holdouts(screen_id, shown)
        if d.campaign_id is not None:
            # Shown to them, yes; tracked by id at the CDP only with their analytics consent.
            profile = self.profiles.get(d.profile_id) if d.profile_id else None
            pid = profile.profile_id if profile and profile.consent_analytics else None
            self.journal.emit(
                OfferShown(
                    screen_id=screen_id,
                    campaign_id=d.campaign_id,
                    content_id=d.content.content_id,
                    variant=d.variant,  # type: ignore[arg-type]
                    profile_id=pid,
                    reasons=list(d.reasons[:8]),
                    rule=d.rule,
                ),
                subject=pid,
                event_id=offer_id,
            )

    def _way_to(self, campaign_id: str | None) -> str | None:
        """Where the campaign's screens show the way to (its ``wayfinding.to``), if anywhere."""
        if campaign_id is None:
            return None
        for c in self.content.bundle.campaigns:
            if c.id == campaign_id:
                return c.wayfinding.to if c.wayfinding is not None else None
        return None

    def _hold_arrivals(
        self,
        screen_id: str,
        st: _ScreenState,
        d: Decision,
        ctx: ScreenContext,
        now: float,
        now_local: datetime,
    ) -> None:
        """A shopper held out of a campaign who arrives while the screen's content is already
        up is a control too; without this, only those present when it changed were counted."""
        new = [p for p in ctx.shoppers if p.profile_id not in st.seen]
        if not new:
            return
        st.seen.update(p.profile_id for p in new)
        if d.held_out:
            held = self.journey.hold(
                screen_id, d, now, now_local, present=new, event_id=new_event_id()
            )
            self._report_holdouts(screen_id, held)

    def _report_holdouts(self, screen_id: str, held: list[tuple[str, Profile]]) -> None:
        for cid, p in held:
            self.counts.holdouts += 1
            hid = p.profile_id if p.consent_analytics else None
            self.journal.emit(
                HoldoutAssigned(campaign_id=cid, screen_id=screen_id, profile_id=hid), subject=hid
            )

    # ---- the players ---------------------------------------------------------------------
    def screen_status(self, screen_id: str) -> str | None:
        """What the screen's player last said of itself: "online", "offline" or None yet."""
        return self._screen_status.get(screen_id)

    def on_screen_state(self, screen_id: str, payload: bytes) -> None:
        """A player's retained state (its last will says "offline"): staff hear of a dark
        screen. Runs in the bus thread."""
        try:
            status = screen_status(payload)
        except PayloadError:
            return
        if status is None:
            return
        was = self._screen_status.get(screen_id)
        self._screen_status[screen_id] = status
        if status == "offline" and was != "offline":
            self.alerts.raise_alert(
                "screen_offline", f"Screen {screen_id} is offline", screen_id=screen_id
            )
