"""The checkout stage: receipts from the tills -> attributed conversions.

Receipts arrive on the serial thread and the bus thread, deduplicated by receipt id; the loop
drains them, attributes each to the offers shown before it (this box's and, shared over the
in-store bus, every other box's: journey/touch_share.py) and emits one conversion event.

Every box of a store hears the store's tills. The conversion's event id is derived from the
receipt (store, till, receipt number), so however many boxes report it, and however often a
till resends it across restarts, the CDP stores one conversion per receipt.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from contracts.events import Conversion, receipt_event_id
from edge_agent.config import AgentConfig
from edge_agent.journey.engine import JourneyEngine
from edge_agent.sensing.pos import Receipt, ReceiptDeduper
from edge_agent.slice.store import ProfileSlice
from sync.journal import EventJournal


@dataclass
class CheckoutCounts:
    conversions: int = 0


class Checkout:
    def __init__(
        self,
        cfg: AgentConfig,
        *,
        profiles: ProfileSlice,
        journey: JourneyEngine,
        journal: EventJournal,
    ) -> None:
        self.tz = ZoneInfo(cfg.store.timezone)
        self.store_id = cfg.store.store_id
        self.tills = cfg.pos.tills
        self.profiles = profiles
        self.journey = journey
        self.journal = journal
        self.counts = CheckoutCounts()
        self._receipts: queue.SimpleQueue[Receipt] = queue.SimpleQueue()
        # Every till line (serial or bus) feeds this; it passes each receipt id once.
        self.receipts = ReceiptDeduper(self._receipts.put)

    def drain(self) -> None:
        while True:
            try:
                r = self._receipts.get_nowait()
            except queue.Empty:
                return
            self.on_receipt(r)

    def on_receipt(self, r: Receipt) -> None:
        """A purchase: attributed to the offers before it, reported as a conversion."""
        ts = r.ts.timestamp()
        local = r.ts.astimezone(self.tz)
        profile = self.profiles.get(r.loyalty) if r.loyalty else None
        # A loyalty id not in this store's slice: no consent known, so treated as anonymous.
        known = profile.profile_id if profile is not None else None
        screens = self.tills.get(r.till)
        result = self.journey.conversion(ts, known, local, screens, receipt=r.receipt)
        self.counts.conversions += 1
        pid = known if profile is not None and profile.consent_analytics else None
        self.journal.emit(
            Conversion(
                receipt_id=r.receipt,
                profile_id=pid,
                skus=[i.sku for i in r.items],
                amount=r.total,
                currency=r.currency,
                till=r.till,
                attributed_campaign_id=result.last_campaign_id,
                first_touch_campaign_id=result.first_campaign_id,
                touches=result.attribution.touches,
                group=result.group,  # type: ignore[arg-type]
            ),
            subject=pid,
            ts=ts,
            event_id=receipt_event_id(self.store_id, r.till, r.receipt),
        )
