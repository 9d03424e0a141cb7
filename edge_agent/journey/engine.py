"""The journey engine: decisions with their consequences, in one place for the agent and tests.

``decide`` is pure; this keeps the state around it consistent: what was shown counts against
caps, becomes a touch for attribution and a number in the KPIs; a held-out shopper becomes a
control touch; a receipt becomes a conversion attributed first-touch and last-touch. No I/O
and no clock of its own: the agent passes time in, a day-long scenario test passes a simulated
one.

What changes is also written down as data (``drain_changes``): the agent persists it
(journey/memory.py, so a restart keeps caps, touches and KPIs) and shares this box's touches with
the other boxes of the store (journey/touch_share.py), which add them with ``add_peer_touches``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from edge_agent.journey.attribution import Attribution, AttributionBook, Touch
from edge_agent.journey.campaigns import CampaignBundle
from edge_agent.journey.caps import CapsLedger
from edge_agent.journey.decide import CampaignIndex, Decision, ScreenContext, World, decide
from edge_agent.journey.kpis import JourneyKpis
from edge_agent.slice.model import Profile, StockPrice


@dataclass(frozen=True, slots=True)
class TouchAdded:
    touch: Touch


@dataclass(frozen=True, slots=True)
class CapCounted:
    campaign_id: str
    screen_id: str
    profile_id: str | None
    now_local: datetime


@dataclass(frozen=True, slots=True)
class Forgot:
    profile_id: str


@dataclass(frozen=True, slots=True)
class Converted:
    """A receipt counted in the KPIs: worth saving them at once, not within seconds."""

    receipt_ts: float
    # The receipt's id: marked seen once its conversion is in the outbox (journey/memory.py).
    receipt: str | None = None


Change = TouchAdded | CapCounted | Forgot | Converted


@dataclass(frozen=True)
class ConversionResult:
    attribution: Attribution
    first_campaign_id: str | None
    last_campaign_id: str | None
    group: str | None


class JourneyEngine:
    def __init__(self, bundle: CampaignBundle, attribution_window_s: float = 3600.0) -> None:
        self.index = CampaignIndex(bundle)
        self.caps = CapsLedger()
        self.book = AttributionBook(attribution_window_s)
        self.kpis = JourneyKpis()
        self._changes: list[Change] = []

    def drain_changes(self) -> list[Change]:
        """What changed since the last call, in order (for persistence and sharing)."""
        out, self._changes = self._changes, []
        return out

    def _touch(self, touch: Touch) -> None:
        if self.book.add(touch):
            self._changes.append(TouchAdded(touch))

    def add_peer_touches(self, touches: Iterable[Touch]) -> int:
        """Touches another box of the store showed; returns how many were new here."""
        n = 0
        for t in touches:
            if self.book.add(t):
                self._changes.append(TouchAdded(t))
                n += 1
        return n

    def set_bundle(self, bundle: CampaignBundle) -> None:
        if bundle is not self.index.bundle:
            self.index = CampaignIndex(bundle)

    def decide(
        self,
        ctx: ScreenContext,
        now_local: datetime,
        stock: Mapping[str, bool] | None = None,
        prices: Mapping[str, StockPrice] | None = None,
    ) -> Decision:
        world = World(stock=stock or {}, caps=self.caps, prices=prices or {})
        return decide(ctx, self.index, now_local, world)

    def shown(
        self,
        screen_id: str,
        d: Decision,
        ts: float,
        now_local: datetime,
        present: Iterable[Profile] = (),
        event_id: str = "",
    ) -> list[tuple[str, Profile]]:
        """``d`` went on ``screen_id`` at ``ts``; ``present`` are the identified shoppers at
        the screen: those held out of a campaign they were eligible for get a control touch,
        and are returned as (campaign id, shopper) for the agent to report."""
        self.kpis.roll(now_local.date())
        if d.campaign_id is not None:
            self.caps.record(d.campaign_id, screen_id, d.profile_id, now_local)
            self._changes.append(CapCounted(d.campaign_id, screen_id, d.profile_id, now_local))
            self._touch(Touch(ts, d.campaign_id, screen_id, d.profile_id, "exposed", event_id))
            self.kpis.shown(d.campaign_id, d.profile_id, ts)
        return self.hold(screen_id, d, ts, now_local, present, event_id)

    def hold(
        self,
        screen_id: str,
        d: Decision,
        ts: float,
        now_local: datetime,
        present: Iterable[Profile] = (),
        event_id: str = "",
        skip: Collection[str] = (),
    ) -> list[tuple[str, Profile]]:
        """The shoppers at the screen held out of a campaign they were eligible for get a
        control touch: when the content goes up, and for a shopper who arrives while it is up
        (``skip``: those the show already counted), so late arrivals are controls too."""
        self.kpis.roll(now_local.date())
        held: list[tuple[str, Profile]] = []
        for cid in d.held_out:
            c = next((c for c in self.index.ordered if c.id == cid), None)
            if c is None:
                continue
            for p in present:
                if p.profile_id in skip:
                    continue
                if p.consent_personalisation and c.targets(p) and c.held_out(p.profile_id):
                    self._touch(Touch(ts, cid, screen_id, p.profile_id, "holdout", event_id))
                    self.kpis.held_out(cid, p.profile_id)
                    held.append((cid, p))
        return held

    def entered_store(self, profile_id: str, ts: float, now_local: datetime) -> None:
        self.kpis.roll(now_local.date())
        self.kpis.store_entry(profile_id, ts)

    def conversion(
        self,
        ts: float,
        profile_id: str | None,
        now_local: datetime,
        screens: Iterable[str] | None = None,
        receipt: str | None = None,
    ) -> ConversionResult:
        self.kpis.roll(now_local.date())
        a = self.book.attribute(ts, profile_id, screens)
        first = a.first.campaign_id if a.first else None
        last = a.last.campaign_id if a.last else None
        self.kpis.conversion(last, a.group, profile_id, ts)
        self._changes.append(Converted(ts, receipt))
        return ConversionResult(a, first, last, a.group)

    def forget(self, profile_id: str) -> None:
        """Consent withdrawn: nothing about the shopper stays in caps, touches or KPIs."""
        self.caps.forget(profile_id)
        self.book.forget(profile_id)
        self.kpis.forget(profile_id)
        self._changes.append(Forgot(profile_id))

    def housekeeping(self, ts: float, now_local: datetime) -> None:
        self.book.prune(ts)
        self.caps.prune(now_local)
        self.kpis.roll(now_local.date())
