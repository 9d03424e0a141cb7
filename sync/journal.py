"""The event journal: where every journey event of the box goes first.

Stages emit events from the loop, the bus thread and the downlink thread; the journal buffers
them and group-commits them to the durable outbox at each tick (one transaction for many
events). An event counts as accepted once ``flush`` has committed it. When the disk is full the
events that must never be lost (conversions, impressions, offers, ...) wait in memory, bounded,
and the rest are refused and counted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from contracts.events import CloudEvent, Payload, make_event
from sync.outbox import PRIORITY_HIGH, OutboxFull, priority_of
from sync.ports import OutboxPort

log = logging.getLogger("edge_agent")

# Events that must not be lost kept in memory while the disk is full, at most.
MAX_HELD_IN_MEMORY = 10_000


@dataclass
class JournalCounts:
    accepted: int = 0
    refused_disk_full: int = 0  # droppable events a full disk refused (never accepted)


class EventJournal:
    def __init__(self, store_id: str, device_id: str, now: Callable[[], float]) -> None:
        self.store_id = store_id
        self.device_id = device_id
        self._now = now
        self.outbox: OutboxPort | None = None  # set once sync starts; events wait until then
        self.counts = JournalCounts()
        # Set to a list to keep every accepted id (the demo and tests audit delivery with it).
        self.accepted_ids: list[str] | None = None
        self._pending: list[CloudEvent] = []
        self._lock = threading.Lock()
        self._disk_full = False

    def emit(
        self,
        payload: Payload,
        *,
        subject: str | None = None,
        ts: float | None = None,
        event_id: str | None = None,
    ) -> None:
        """A journey event of this box, stamped ``ts`` (clock seconds) or now; ``event_id`` when
        the id must be the same on every box that reports the fact (a receipt)."""
        when = datetime.fromtimestamp(ts if ts is not None else self._now(), UTC)
        self.emit_event(
            make_event(
                payload,
                store_id=self.store_id,
                device_id=self.device_id,
                subject=subject,
                time=when,
                event_id=event_id,
            )
        )

    def emit_event(self, ev: CloudEvent) -> None:
        """An event already built (e.g. a player's impression from the bus). Any thread."""
        with self._lock:
            self._pending.append(ev)

    def flush(self) -> int:
        """Group-commit buffered events to the outbox; they count as accepted once this returns."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch or self.outbox is None:
            return 0  # no outbox (a run without sync, e.g. a bench): nothing is accepted
        try:
            self.outbox.append(batch)
        except OutboxFull as exc:
            # Keep what must not be lost in memory (bounded) and retry at the next flush.
            keep = [e for e in batch if priority_of(e.type) >= PRIORITY_HIGH][-MAX_HELD_IN_MEMORY:]
            self.counts.refused_disk_full += len(batch) - len(keep)
            with self._lock:
                self._pending[:0] = keep
            if not self._disk_full:
                log.error("%s; keeping %d important event(s) in memory", exc, len(keep))
            self._disk_full = True
            return 0
        if self._disk_full:
            log.info("outbox: disk has room again")
            self._disk_full = False
        self.counts.accepted += len(batch)
        if self.accepted_ids is not None:
            self.accepted_ids.extend(e.id for e in batch)
        return len(batch)

    def dropped(self) -> dict[str, int]:
        """Drops by reason:type, for the heartbeat: the outbox's cap and a full disk's refusals."""
        out = dict(self.outbox.drops()) if self.outbox is not None else {}
        if self.counts.refused_disk_full:
            out["refused:disk_full"] = self.counts.refused_disk_full
        return out
