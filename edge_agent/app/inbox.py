"""What the players, kiosks and tills say on the in-store bus, taken in for the journey.

A player's impression and a kiosk's survey answer are journey events of this box: checked
(envelope, source) and handed to the journal. Receipts go to the checkout. A player's screenshot
or error report is relayed to central as device status. Runs in the bus thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from contracts.events import EventError, parse_event, source_for
from edge_agent.journey.kpis import JourneyKpis
from edge_agent.sensing.pos import ReceiptDeduper
from sync.journal import EventJournal

log = logging.getLogger("edge_agent")


class StatusUplink(Protocol):
    def publish_status(self, subtopic: str, payload: bytes, *, retain: bool = True) -> bool: ...


@dataclass
class InboxCounts:
    impressions: int = 0
    rejects: int = 0


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
    ) -> None:
        self.source = source_for(store_id, device_id)
        self.journal = journal
        self.kpis = kpis
        self.receipts = receipts
        self.max_relay_bytes = max_relay_bytes
        self.uplink: StatusUplink | None = None  # set once sync starts
        self.counts = InboxCounts()

    def on_event(self, topic: str, payload: bytes) -> None:
        """A player's or kiosk's journey event (impression, survey answer) for the outbox."""
        try:
            event = parse_event(payload)
        except EventError as exc:
            self.counts.rejects += 1
            log.warning("bus: refused event on %s: %s", topic, exc)
            return
        if event.source != self.source:
            # The CDP would refuse it under this device's topic: refuse it here, visibly.
            self.counts.rejects += 1
            log.warning("bus: refused event on %s: source %r is not this box", topic, event.source)
            return
        if event.type.endswith("content.impression.v1"):
            self.counts.impressions += 1
        elif event.type.endswith("survey.answer.v1"):
            self.kpis.nps()
        self.journal.emit_event(event)

    def on_receipt(self, topic: str, payload: bytes) -> None:
        if self.receipts.feed(payload) is None and self.receipts.last_error:
            log.warning("pos: %s", self.receipts.last_error)

    def relay(self, what: str, screen_id: str, payload: bytes) -> None:
        """A player's screenshot (screen content only) or error report goes to central for ops
        (status, not an event: if central is unreachable it is simply not relayed)."""
        if self.uplink is not None and len(payload) <= self.max_relay_bytes:
            self.uplink.publish_status(f"{what}/{screen_id}", payload, retain=False)
