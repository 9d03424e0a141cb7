"""``edge-ops console --demo``: a seeded demo fleet, so a newcomer sees the console in one
command. Three stores, six boxes, a week of journeys; every event goes through the CDP sink's
own ingest (``CdpSink.handle_batch``: validated, deduplicated, stored) exactly as a box's batch
would, only without a broker in between. Deterministic for a given seed and day."""

from __future__ import annotations

import json
import random
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from central.cdp_sink import CdpSink
from contracts import topics
from contracts.batch import encode_batch, publish_properties
from contracts.events import (
    AudienceTrack,
    CloudEvent,
    ContentImpression,
    Conversion,
    DeviceHeartbeat,
    HoldoutAssigned,
    OfferShown,
    Payload,
    SurveyAnswer,
    make_event,
)
from contracts.mqtt import BrokerConfig

STORES = {
    "store-0042": ("box-entrance", "box-shoes"),
    "store-0107": ("box-entrance", "box-coffee"),
    "store-0311": ("box-entrance", "box-outdoor"),
}
# (campaign, content, screen, how likely an exposed shopper buys, a held-out one buys)
CAMPAIGNS = (
    ("trail-shoes", "ridge-gtx", "screen-shoes", 0.30, 0.12),
    ("winter-jackets", "storm-parka", "screen-entrance", 0.18, 0.15),
    ("members-coffee", "coffee-card", "screen-coffee", 0.40, 0.38),
)

# Which campaigns each box's screen runs.
BOX_CAMPAIGNS = {
    "box-entrance": ("winter-jackets",),
    "box-shoes": ("trail-shoes",),
    "box-coffee": ("members-coffee",),
    "box-outdoor": ("trail-shoes", "members-coffee"),
}


@dataclass
class DemoFleet:
    cdp_db: Path | str  # a SQLite file, or a PostgreSQL DSN
    stores: dict[str, tuple[str, ...]]
    events: int


def seed(db: Path | str, *, today: date | None = None, days: int = 7, seed: int = 21) -> DemoFleet:
    """Fill a fresh CDP database with ``days`` of journeys up to ``today`` and one heartbeat per
    box (most just now, one box silent for two hours, one with a failed content install)."""
    rng = random.Random(seed)
    # The audience and survey figures draw from a generator of their own: the journeys above
    # stay what they were for a given seed.
    rng2 = random.Random(seed + 1)
    today = today or datetime.now(UTC).date()
    tz = ZoneInfo("Europe/Berlin")
    sink = CdpSink(BrokerConfig(), db, group=None)  # not started: ingest without a broker
    total = 0
    try:
        for store, boxes in STORES.items():
            for device in boxes:
                evs: list[CloudEvent] = []
                ttv = 0.0
                for d in range(days - 1, -1, -1):
                    day = today - timedelta(days=d)
                    evs.extend(_day(rng, store, device, day, tz))
                    more, ttv = _experience(rng2, store, device, day, tz, closed=d > 0)
                    evs.extend(more)
                evs.append(_heartbeat(store, device, rng, today, ttv))
                total += _ingest(sink, store, device, evs)
    finally:
        sink.stop()
    return DemoFleet(db, dict(STORES), total)


def _day(rng: random.Random, store: str, device: str, day: date, tz: ZoneInfo) -> list[CloudEvent]:
    out: list[CloudEvent] = []

    def add(payload: Payload, t: datetime) -> None:
        out.append(make_event(payload, store_id=store, device_id=device, time=t))

    def impression(campaign: str, content: str, screen: str, t: datetime, variant: str) -> None:
        seconds = rng.uniform(6, 14)
        add(
            ContentImpression(
                impression_id=str(uuid.UUID(int=rng.getrandbits(128))),
                screen_id=screen,
                content_id=content,
                campaign_id=campaign,
                variant=variant,
                start=t,
                end=t + timedelta(seconds=seconds),
                duration_s=round(seconds, 1),
            ),
            t,
        )

    opening = datetime(day.year, day.month, day.day, 9, 0, tzinfo=tz)
    busy = 1.0 + 0.4 * (day.weekday() >= 5)  # Saturdays and Sundays are busier
    for campaign, content, screen, p_exposed, p_holdout in CAMPAIGNS:
        if campaign not in BOX_CAMPAIGNS[device]:
            continue
        for i in range(int(rng.randint(14, 30) * busy)):
            t = opening + timedelta(minutes=rng.uniform(0, 600))
            profile = f"p-{store[-4:]}-{campaign[:4]}-{day.isoformat()}-{i}"
            held = rng.random() < 0.25
            if held:
                add(HoldoutAssigned(campaign_id=campaign, screen_id=screen, profile_id=profile), t)
            else:
                add(
                    OfferShown(
                        screen_id=screen,
                        campaign_id=campaign,
                        content_id=content,
                        variant="personalised",
                        profile_id=profile,
                        rule="segment",
                    ),
                    t,
                )
                impression(campaign, content, screen, t, "personalised")
            if rng.random() < (p_holdout if held else p_exposed):
                add(
                    Conversion(
                        receipt_id=f"r-{rng.getrandbits(40):x}",
                        profile_id=profile,
                        amount=round(rng.uniform(8, 160), 2),
                        till="till-1",
                        attributed_campaign_id=campaign,
                        touches=1,
                        group="holdout" if held else "exposed",
                    ),
                    t + timedelta(minutes=rng.uniform(3, 40)),
                )
        # Anonymous passers-by: impressions without anyone to count as a shopper.
        for _ in range(int(rng.randint(30, 60) * busy)):
            t = opening + timedelta(minutes=rng.uniform(0, 600))
            impression(campaign, content, screen, t, "anonymous")
    return out


def _experience(
    rng: random.Random, store: str, device: str, day: date, tz: ZoneInfo, *, closed: bool
) -> tuple[list[CloudEvent], float]:
    """A day of camera tracks at the box's screen, kiosk survey answers (the entrance boxes'
    kiosks) and, for a day that is over, the box's last heartbeat of it carrying its journey
    KPIs (time to value); also that day's time to value, for today's live heartbeat."""
    out: list[CloudEvent] = []
    opening = datetime(day.year, day.month, day.day, 9, 0, tzinfo=tz)
    screen = f"screen-{device.removeprefix('box-')}"
    for _ in range(rng.randint(40, 90)):
        t = opening + timedelta(minutes=rng.uniform(0, 600))
        looked = rng.random() < 0.45
        dwell = round(rng.uniform(2, 30), 1)
        attention = round(min(dwell, rng.uniform(0.5, 8)), 1) if looked else 0.0
        out.append(make_event(AudienceTrack(screen_id=screen, dwell_s=dwell,
                                            attention_s=attention),
                              store_id=store, device_id=device, time=t))  # fmt: skip
    if device == "box-entrance":
        # NPS leans positive in the flagship store, effort a little lower there.
        lean = {"store-0042": 1.0, "store-0107": 0.0, "store-0311": -0.5}[store]
        for _ in range(rng.randint(6, 16)):
            t = opening + timedelta(minutes=rng.uniform(0, 600))
            score = max(0, min(10, round(rng.gauss(7.6 + lean, 1.8))))
            out.append(make_event(SurveyAnswer(kiosk_id="kiosk-1", survey="nps", score=score),
                                  store_id=store, device_id=device, time=t))  # fmt: skip
        for _ in range(rng.randint(3, 9)):
            t = opening + timedelta(minutes=rng.uniform(0, 600))
            score = max(1, min(7, round(rng.gauss(2.6 - lean / 2, 1.0))))
            out.append(make_event(SurveyAnswer(kiosk_id="kiosk-1", survey="effort", score=score),
                                  store_id=store, device_id=device, time=t))  # fmt: skip
    ttv = round(rng.uniform(90, 420), 1)
    if closed:
        hb = DeviceHeartbeat(
            version="0.1.0", uptime_s=36000.0, outbox_depth=0, oldest_pending_s=0.0,
            disk_free_mb=12000.0,
            kpis={"day": day.isoformat(), "time_to_value_p50_s": ttv},
        )  # fmt: skip
        closing = datetime(day.year, day.month, day.day, 20, 0, tzinfo=tz)
        out.append(make_event(hb, store_id=store, device_id=device, time=closing))
    return out, ttv


def _heartbeat(
    store: str, device: str, rng: random.Random, today: date | None = None, ttv: float = 0.0
) -> CloudEvent:
    now = datetime.now(UTC)
    silent = store == "store-0311" and device == "box-outdoor"
    failed = store == "store-0107" and device == "box-coffee"
    sensors = {
        "ble": "ok",
        "camera": "ok",
        "watchdog": "ok",
        "content_version": "12" if not failed else "13",
        "content_state": "failed" if failed else "installed",
    }
    if failed:
        sensors["content_reason"] = "asset 3f2a...: sha256 mismatch after 3 downloads"
    hb = DeviceHeartbeat(
        version="0.1.0",
        uptime_s=rng.uniform(3600, 86400 * 4),
        outbox_depth=240 if silent else rng.randint(0, 6),
        oldest_pending_s=7200.0 if silent else rng.uniform(0, 4),
        disk_free_mb=rng.uniform(8000, 20000),
        sensors=sensors,
        clock_offset_s=round(rng.uniform(-0.05, 0.05), 4),
        # Not from rng: the demo's other numbers stay what they were. One box is past two
        # thirds of its certificate's life (its renewal request waits for ops).
        cert_days_left=21.4 if failed else 71.5,
        # Today's journey KPIs so far (the box's own time to value).
        kpis={"day": today.isoformat(), "time_to_value_p50_s": ttv} if today else {},
    )
    return make_event(
        hb, store_id=store, device_id=device,
        time=now - timedelta(hours=2) if silent else now - timedelta(seconds=20),
    )  # fmt: skip


def _ingest(sink: CdpSink, store: str, device: str, evs: list[CloudEvent]) -> int:
    """Through the sink's own batch handling, 500 events a batch, numbered like a box does."""
    stored = 0
    for n in range(0, len(evs), 500):
        bodies = []
        for k, ev in enumerate(evs[n : n + 500], start=n + 1):
            doc = json.loads(ev.to_json())
            doc["sequence"] = f"{k:012d}"
            bodies.append(json.dumps(doc, separators=(",", ":")))
        raw, encoding = encode_batch(str(uuid.uuid4()), store, device, bodies, 4096)
        sink.handle_batch(topics.events(store, device), raw, publish_properties(encoding))
        stored += len(bodies)
    return stored


def demo_password() -> str:
    """A fresh password for the demo admin, printed once (never a fixed one: a demo left
    running on a shared machine must not open to a password from the README)."""
    return secrets.token_urlsafe(12)
