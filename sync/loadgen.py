"""Synthetic journey events through the agent's own outbox API, for chaos tests, benchmarks and
installers checking a new box.

Events are deterministic in ``(seed, index)``: the same index always yields the same event id
(a valid UUIDv7 whose time is derived from the index) and payload. A run resumes at the
outbox's ``total_accepted()``, so after a kill -9 the restarted generator carries on where the
last commit left off, and the expected set at the CDP is exactly ``ids(seed, range(count))``:
nothing lost, nothing invented, each id once.

The mix follows a store day: mostly audience samples and zone events, some impressions and
offers, a few conversions (all priorities, so the outbox's cap policy is exercised too).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from contracts.events import (
    TYPE_OF,
    AudienceSample,
    CloudEvent,
    ContentImpression,
    Conversion,
    Dwell,
    OfferShown,
    Payload,
    ZoneEntered,
    make_event,
)
from sync.outbox import Outbox

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: event ids and times count up from here
MAX_GROUP = 1000  # events per commit when catching up


def event_id(seed: int, i: int) -> str:
    """A UUIDv7 for event ``i`` of run ``seed``: 48-bit ms time, version 7, variant 10."""
    rnd = hashlib.sha256(f"{seed}:{i}".encode()).digest()
    ms = (BASE_MS + i) & ((1 << 48) - 1)
    b = bytearray(ms.to_bytes(6, "big") + rnd[:10])
    b[6] = 0x70 | (b[6] & 0x0F)
    b[8] = 0x80 | (b[8] & 0x3F)
    return str(uuid.UUID(bytes=bytes(b)))


def device_seed(store_id: str, device_id: str) -> int:
    """The default seed of a device's run: its own, so two devices never make the same ids (a
    CDP that dedups on the id alone would drop one box's events as the other's duplicates)."""
    return int.from_bytes(hashlib.sha256(f"{store_id}/{device_id}".encode()).digest()[:6], "big")


def ids(seed: int, indices: Iterable[int]) -> set[str]:
    return {event_id(seed, i) for i in indices}


def _payload(i: int, h: int) -> Payload:
    kind = h % 100
    zone = f"zone-{h % 4}"
    if kind < 50:
        return AudienceSample(screen_id=f"screen-{h % 3}", people=h % 5, watchers=h % 2)
    if kind < 70:
        return ZoneEntered(zone_id=zone, presence_key=f"k{h % 5000:05d}")
    if kind < 80:
        return Dwell(zone_id=zone, presence_key=f"k{h % 5000:05d}", dwell_s=float(h % 300))
    start = datetime.fromtimestamp(BASE_MS / 1000 + i / 1000, UTC)
    if kind < 92:
        return ContentImpression(
            impression_id=f"imp-{i}",
            screen_id=f"screen-{h % 3}",
            content_id=f"c-{h % 20}",
            variant="default",
            start=start,
            end=start + timedelta(seconds=8),
            duration_s=8.0,
        )
    if kind < 97:
        return OfferShown(
            screen_id=f"screen-{h % 3}",
            campaign_id=f"cmp-{h % 6}",
            content_id=f"c-{h % 20}",
            variant="anonymous",
        )
    return Conversion(receipt_id=f"r-{i}", amount=float(h % 20_000) / 100, skus=[f"sku-{h % 99}"])


SEED_DEFAULT = 1


def _h(seed: int, i: int) -> int:
    return int.from_bytes(hashlib.sha256(f"p{seed}:{i}".encode()).digest()[:8], "big")


def synthetic_type(seed: int, i: int) -> str:
    """The CloudEvents type event ``i`` will have, without building it."""
    return TYPE_OF[type(_payload(i, _h(seed, i)))]


def synthetic_event(seed: int, i: int, store_id: str, device_id: str) -> CloudEvent:
    ev = make_event(
        _payload(i, _h(seed, i)),
        store_id=store_id,
        device_id=device_id,
        time=datetime.fromtimestamp((BASE_MS + i) / 1000, UTC),
    )
    return ev.model_copy(update={"id": event_id(seed, i)})


@dataclass
class LoadResult:
    accepted: int  # events accepted by this run
    total: int  # events of the run accepted so far, this and earlier (killed) runs
    seconds: float

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0


def generate(
    outbox: Outbox,
    *,
    store_id: str,
    device_id: str,
    count: int,
    rate: float,
    seed: int = SEED_DEFAULT,
    tick_s: float = 0.01,
    on_commit: Callable[[int], None] | None = None,
    now: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> LoadResult:
    """Append events ``total_accepted() .. count-1`` at ``rate`` events/s (0 = as fast as
    possible), one commit per tick, catching up in groups when behind."""
    start_index = outbox.total_accepted()
    i = start_index
    t0 = now()
    while i < count:
        if rate > 0:
            due = start_index + int((now() - t0) * rate) + 1
            n = min(MAX_GROUP, count - i, max(0, due - i))
            if n == 0:
                sleep(tick_s)
                continue
        else:
            n = min(MAX_GROUP, count - i)
        outbox.append([synthetic_event(seed, j, store_id, device_id) for j in range(i, i + n)])
        i += n
        if on_commit is not None:
            on_commit(i)
    return LoadResult(accepted=i - start_index, total=i, seconds=max(1e-9, now() - t0))
