"""What the players, kiosks and tills say on the in-store bus, taken in for the journey.

A player's impression, a kiosk's survey answer and the store API's hourly route counts are
events of this box: checked (envelope, source) and handed to the journal. Receipts go to the checkout. A player's screenshot
or error report is relayed to central as device status, and so is what each screen shows (``screens/<screen>``,
retained). Runs in the bus thread.

Players and kiosks stamp their events with their wall clock. When the agent runs on another
clock (a replay, the demo), their times are put on the agent's clock here, so an impression
lines up with the offer it shows; in production the agent keeps wall time and they pass as is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from contracts.events import (
    TYPE_OF,
    CloudEvent,
    ContentImpression,
    ContentInteraction,
    EventError,
    RoutesAsked,
    SurveyAnswer,
    parse_event,
    source_for,
)
from contracts.payload import PayloadError
from contracts.screen_protocol import screen_report
from edge_agent.journey.kpis import JourneyKpis
from edge_agent.sensing.pos import ReceiptDeduper
from sync.journal import EventJournal
from sync.ports import UplinkPort

log = logging.getLogger("edge_agent")


# What a player or a kiosk may say on the bus. Anything else is dropped, and what passes is
# rebuilt from its typed payload: no field a bus client adds reaches the CDP.
FROM_THE_BUS = frozenset(
    {
        TYPE_OF[ContentImpression],
        TYPE_OF[ContentInteraction],
        TYPE_OF[SurveyAnswer],
        TYPE_OF[RoutesAsked],
    }
)


@dataclass
class InboxCounts:
    impressions: int = 0
    rejects: int = 0
    # Dropped bus events by reason: "invalid", "source", "type:<type>", "extra fields".
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.rejects += 1
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


class BusInbox:
    def __init__(
        self,
        store_id: str,
        device_id: str,
        *,
        journal: EventJournal,
        kpis: JourneyKpis,
        receipts: ReceiptDeduper,
        max_relay_bytes: int,
        to_clock: Callable[[datetime], datetime] | None = None,
        screens: Mapping[str, Mapping[str, str | int]] | None = None,
    ) -> None:
        self.source = source_for(store_id, device_id)
        # Wall time -> the agent's clock; None when the agent keeps wall time (nothing to map).
        self.to_clock = to_clock
        self.journal = journal
        self.kpis = kpis
        self.receipts = receipts
        self.max_relay_bytes = max_relay_bytes
        self.uplink: UplinkPort | None = None  # set once sync starts
        self.counts = InboxCounts()
        # The screen report last relayed per screen (None: not delivered, send the next one).
        self._screens: dict[str, dict[str, str | int | None] | None] = {}
        # Each configured screen's zone and personal limit, relayed with what it shows.
        self.screen_config = dict(screens or {})

    def on_event(self, topic: str, payload: bytes) -> None:
        """A player's or kiosk's journey event (impression, survey answer) for the outbox."""
        try:
            event = parse_event(payload)
        except EventError as exc:
            self.counts.drop("invalid")
            log.warning("bus: refused event on %s: %s", topic, exc)
            return
        if event.source != self.source:
            # The CDP would refuse it under this device's topic: refuse it here, visibly.
            self.counts.drop("source")
            log.warning("bus: refused event on %s: source %r is not this box", topic, event.source)
            return
        if event.type not in FROM_THE_BUS:
            self.counts.drop(f"type:{event.type[:64]}")
            log.warning(
                "bus: refused event on %s: %s is not a player's or kiosk's", topic, event.type
            )
            return
        data, when = event.payload(), event.time
        to_clock = self.to_clock
        if to_clock is not None:
            when = to_clock(when)
            if isinstance(data, ContentImpression):
                start, end = to_clock(data.start), to_clock(data.end)
                duration = round(max(0.0, (end - start).total_seconds()), 3)
                data = data.model_copy(update={"start": start, "end": end, "duration_s": duration})
        clean = CloudEvent(
            id=event.id,  # kept: a player re-sending the same impression is deduplicated
            source=event.source,
            type=event.type,
            time=when,
            data=data.model_dump(mode="json", exclude_none=True),
        )
        if event.model_extra or event.subject is not None:
            self.counts.dropped["extra fields"] = self.counts.dropped.get("extra fields", 0) + 1
        if event.type == TYPE_OF[ContentImpression]:
            self.counts.impressions += 1
        elif event.type == TYPE_OF[SurveyAnswer]:
            self.kpis.nps()
        self.journal.emit_event(clean)

    def on_receipt(self, topic: str, payload: bytes) -> None:
        if self.receipts.feed(payload) is None and self.receipts.last_error:
            log.warning("pos: %s", self.receipts.last_error)

    def on_screen_state(self, screen_id: str, payload: bytes) -> None:
        """A player's retained state, relayed retained to central as ``screens/<screen>``
        (status, mode, what it shows): ops see which screens obey an emergency. Only when
        that changed (players repeat their state every few seconds with new counters), or
        when the last one did not reach central."""
        try:
            report = screen_report(payload)
        except PayloadError:
            return
        if report is None:
            return
        report.update(self.screen_config.get(screen_id, {}))  # the box's word, not the player's
        if self._screens.get(screen_id) == report:
            return
        self._screens[screen_id] = None
        if self.uplink is not None and self.uplink.publish_status(
            f"screens/{screen_id}", json.dumps(report).encode(), retain=True
        ):
            self._screens[screen_id] = report

    def relay(self, what: str, screen_id: str, payload: bytes) -> None:
        """A player's screenshot (screen content only) or error report goes to central for ops
        (status, not an event: if central is unreachable it is simply not relayed)."""
        if self.uplink is not None and len(payload) <= self.max_relay_bytes:
            self.uplink.publish_status(f"{what}/{screen_id}", payload, retain=False)
