"""The embedded demo store: who walks past the entrance screen, when, and what they carry.

``python -m demo.scenario`` regenerates ``data/trace.jsonl.gz`` (the recorded BLE
adverts) deterministically from this script; the camera timeline below drives the synthetic
camera built from real photos. Identity keys are derived from a public demo seed: they are demo
data, not secrets.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.sensing.ble.advert import Advert
from edge_agent.sensing.ble.eid import compute_eid
from edge_agent.sensing.camera.scene import ENTRANCE_TIMELINE

DATA = Path(__file__).parent / "data"
TRACE = DATA / "trace.jsonl.gz"
PLANOGRAM = DATA / "planogram.csv"  # the ERP export of where each product is
# 10:00 in Paris on a Friday morning: inside the "opening hours" dayparts.
T0 = datetime(2026, 11, 20, 9, 0, 0, tzinfo=UTC).timestamp()
DURATION_S = 180.0
ROTATION_K = 10
STORE_BEACON_UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"


def demo_identity_key(profile_id: str) -> bytes:
    return hashlib.sha256(f"edge-agent demo identity key:{profile_id}".encode()).digest()[:16]


PROFILES: list[dict] = [
    {
        "profile_id": "cdp-p-1001",
        "first_name": "Alice",
        "language": "en",
        "consent_personalisation": True,
        "consent_analytics": True,
        "segments": ["outdoor", "loyal"],
        "loyalty_tier": "gold",
        "churn_risk": 0.1,
    },
    {
        "profile_id": "cdp-p-1002",
        "first_name": "Bob",
        "language": "en",
        "consent_personalisation": False,
        "consent_analytics": False,
        "segments": ["outdoor"],
        "loyalty_tier": "none",
        "churn_risk": 0.4,
    },
    {
        "profile_id": "cdp-p-1003",
        "first_name": "Carol",
        "language": "en",
        "consent_personalisation": True,
        "consent_analytics": True,
        "consent_staff_alerts": True,
        "segments": ["family"],
        "loyalty_tier": "silver",
        "churn_risk": 0.2,
        "open_order": {"id": "CC-4711", "status": "ready", "pickup_point": "counter 2"},
    },
    {
        "profile_id": "cdp-p-1004",
        "first_name": "Dave",
        "language": "en",
        "consent_personalisation": True,
        "consent_analytics": False,
        "segments": ["winter"],
        "loyalty_tier": "gold",
        "churn_risk": 0.7,
    },
    {
        "profile_id": "cdp-p-1005",
        "first_name": "Erin",
        "language": "fr",
        "consent_personalisation": True,
        "consent_analytics": True,
        "segments": ["outdoor"],
        "loyalty_tier": "none",
        "churn_risk": 0.3,
    },
    {
        # Like Alice to the trail-shoes campaign, but in its holdout (the control group).
        "profile_id": "cdp-p-1006",
        "first_name": "Frank",
        "language": "en",
        "consent_personalisation": True,
        "consent_analytics": True,
        "segments": ["outdoor"],
        "loyalty_tier": "none",
        "churn_risk": 0.2,
    },
]


def profile_slice() -> list[dict]:
    return [{**p, "identity_key": demo_identity_key(p["profile_id"]).hex()} for p in PROFILES]


@dataclass(frozen=True)
class Visit:
    """A shopper with the store app at the entrance screen from ``start`` to ``end`` (trace s)."""

    who: str  # profile id, or "unknown-*" for an app user whose profile is not in this slice
    start: float
    end: float
    peak_rssi: float = -58.0
    # A visit added later draws its noise from a generator of its own: every other advert of
    # the recorded trace, which tests and benches pin their expectations to, stays as it was.
    seed: int | None = None


VISITS = [
    Visit("cdp-p-1001", 18, 62),  # Alice, consented, alone: personalised
    Visit("cdp-p-1002", 75, 115),  # Bob, no consent: anonymous content only
    Visit("unknown-7", 100, 115),  # an app user from another store: two shoppers -> no personal
    Visit("cdp-p-1003", 120, 152),  # Carol with friends, order ready: privacy guard in the crowd
    Visit("cdp-p-1004", 158, 180),  # Dave, after the winter campaign push: personalised
    # Frank comes in with Bob. He would count for trail-shoes' anonymous offer, but he is in its
    # holdout: the screen shows the members' coffee, and Frank becomes the campaign's control.
    Visit("cdp-p-1006", 72, 96, seed=1006),
]

# The till (instore/<store>/pos): (trace second to send it, receipt). Alice buys the shoes
# the screen showed her; Frank, held out, buys nothing. Uplift in the demo summary.
RECEIPTS: list[tuple[float, dict]] = [
    (
        70.0,
        {
            "receipt": "R-DEMO-0001",
            "trace_s": 66.0,
            "till": "till-1",
            "loyalty": "cdp-p-1001",
            "currency": "EUR",
            "total": 129.9,
            "items": [{"sku": "SKU-RIDGE-GTX-42", "qty": 1, "amount": 129.9}],
        },
    ),
]


def receipt_line(r: dict) -> bytes:
    """A receipt as the till sends it, stamped at its trace second."""
    body = {k: v for k, v in r.items() if k != "trace_s"}
    body["ts"] = datetime.fromtimestamp(T0 + r["trace_s"], UTC).isoformat()
    return json.dumps(body).encode()


# (start, end, people the camera sees) in trace seconds: the scene `demo:entrance` plays.
CAMERA_TIMELINE = ENTRANCE_TIMELINE

# Central ops pushes campaign bundle v2 (adds the winter sale) at this trace second.
PUSH_V2_AT = 140.0

BEACONS = [
    # name, major, minor, zone, battery mV
    ("entrance-door", 100, 1, "entrance", 3010),
    ("entrance-shelf", 100, 2, "entrance", 2950),
    ("womens-rack", 200, 1, "womens", 2150),  # low battery: raises a staff alert
]


def _ibeacon(major: int, minor: int, power: int = -59) -> bytes:
    return (
        b"\x02\x15"
        + bytes.fromhex(STORE_BEACON_UUID.replace("-", ""))
        + major.to_bytes(2, "big")
        + minor.to_bytes(2, "big")
        + (power & 0xFF).to_bytes(1, "big")
    )


def _tlm(battery_mv: int, temp_c: float, adv_count: int, uptime_s: float) -> bytes:
    return (
        b"\x20\x00"
        + battery_mv.to_bytes(2, "big")
        + int(round(temp_c * 256)).to_bytes(2, "big", signed=True)
        + adv_count.to_bytes(4, "big")
        + int(uptime_s * 10).to_bytes(4, "big")
    )


EDDYSTONE = "0000feaa-0000-1000-8000-00805f9b34fb"


def _rssi_for(v: Visit, t: float, rng: random.Random) -> float | None:
    ramp = 5.0
    if t < v.start - ramp or t > v.end + ramp:
        return None
    if t < v.start:
        base = -92 + (v.peak_rssi + 92) * (t - (v.start - ramp)) / ramp
    elif t > v.end:
        base = v.peak_rssi - (v.peak_rssi + 92) * (t - v.end) / ramp
    else:
        base = v.peak_rssi
    # Body shadowing and multipath: gaussian noise plus an occasional deep fade.
    fade = -12.0 if rng.random() < 0.05 else 0.0
    return base + rng.gauss(0, 3.5) + fade


def generate(seed: int = 7) -> list[Advert]:
    rng = random.Random(seed)
    adverts: list[Advert] = []
    step = 0.2
    n = int(DURATION_S / step)
    phones = [f"7{i}:3A:{rng.randrange(256):02X}:10:BE:{i:02X}" for i in range(6)]
    own = {v.who: random.Random(v.seed) for v in VISITS if v.seed is not None}
    for i in range(n):
        t = i * step
        ts = round(T0 + t + rng.uniform(0, 0.05), 3)
        for v in VISITS:
            rssi = _rssi_for(v, t, own.get(v.who, rng))
            if rssi is None:
                continue
            key = demo_identity_key(v.who)
            eid = compute_eid(key, int(ts), ROTATION_K)
            # Phones rotate their private address with the token; a fresh one per period.
            addr = "5E:" + hashlib.sha256(eid).hexdigest()[:10].upper()
            addr = ":".join([addr[:2], addr[3:5], addr[5:7], addr[7:9], addr[9:11], addr[11:13]])
            adverts.append(
                Advert(
                    address=addr,
                    rssi=int(round(max(-100, min(-30, rssi)))),
                    service_data={EDDYSTONE: b"\x30\xee" + eid},
                    service_uuids=(EDDYSTONE,),
                    timestamp=ts,
                )
            )
        if i % 5 == 0:  # store beacons at 1 Hz, TLM piggybacked every 10 s
            for j, (_name, major, minor, _zone, mv) in enumerate(BEACONS):
                sd = {}
                if i % 50 == j * 5:
                    sd = {EDDYSTONE: _tlm(mv, 21.5 + j, 1000 + i, 86400 + t)}
                adverts.append(
                    Advert(
                        address=f"C0:FF:EE:00:{major % 256:02X}:{minor:02X}",
                        rssi=int(rng.gauss(-66 - 8 * j, 3)),
                        manufacturer_data={76: _ibeacon(major, minor)},
                        service_data=sd,
                        service_uuids=(EDDYSTONE,) if sd else (),
                        timestamp=ts,
                    )
                )
            for p in phones:  # passers-by without the app: Apple "nearby" frames, not beacons
                adverts.append(
                    Advert(
                        address=p,
                        rssi=int(rng.uniform(-98, -72)),
                        manufacturer_data={
                            76: bytes([0x10, 0x05, rng.randrange(256), 0x1C, 0x4F, 0x2A, 0x11])
                        },
                        timestamp=ts,
                    )
                )
        if i % 97 == 0:  # a broken tag: truncated iBeacon frames must be survived
            adverts.append(
                Advert(
                    address="DE:AD:BE:EF:00:01",
                    rssi=-80,
                    manufacturer_data={76: b"\x02\x15\x01\x02"},
                    timestamp=ts,
                )
            )
    adverts.sort(key=lambda a: a.timestamp)
    return adverts


def write_trace(path: Path = TRACE) -> int:
    adverts = generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the gzip bytes identical across regenerations.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for a in adverts:
            gz.write((a.to_json() + "\n").encode())
    return len(adverts)


CAMPAIGNS_V1: dict = {
    "version": 1,
    "default": [
        {
            "content_id": "welcome",
            "variant": {
                "title": "Welcome to Northwind Outfitters",
                "body": "New season, new trails. Ask us anything.",
                "background": "#1d3557",
                "accent": "#a8dadc",
            },
        }
    ],
    "campaigns": [
        {
            "id": "order-ready",
            "priority": 90,
            "trigger": "order_ready",
            "staff_alert": "{first_name} is here for order {order_id} ({pickup_point})",
            "personalised": {
                # The order card: the pickup number large on its tag, the way to the counter.
                "template": "order_ready",
                "highlight": "{order_id}",
                "title": "{first_name}, your order {order_id} is ready",
                "body": "Collect it at {pickup_point} - no queue.",
                "background": "#2a9d8f",
                "accent": "#e9c46a",
            },
            "anonymous": {
                "title": "Click & collect orders are ready",
                "body": "Pick up at counter 2, next to the fitting rooms.",
                "background": "#264653",
                "accent": "#e9c46a",
            },
            "min_on_screen_s": 10,
            # The way to the pickup counter from the screen (demo/store-map.toml, alt name).
            "wayfinding": {"to": "Pickup"},
        },
        {
            "id": "trail-shoes",
            "priority": 50,
            "segments_any": ["outdoor"],
            "dayparts": ["08:00-20:00"],
            "personalised": {
                "title": "Hi {first_name}! Your trail shoes are in",
                "body": "The Ridge GTX you viewed: try a pair, shelf 1.",
                "background": "#6a0dad",
                "accent": "#ffd166",
            },
            "anonymous": {
                "title": "New trail shoes have landed",
                "body": "Waterproof, light, ready for winter paths. Shelf 1.",
                "background": "#3d405b",
                "accent": "#ffd166",
            },
            "min_on_screen_s": 10,
            # A quarter of its audience is held out, to measure what the campaign earns.
            "holdout_share": 0.25,
            # The way to the shoe itself: its shelf is the planogram's word (demo/data/planogram.csv),
            # so the card follows the product when the ERP moves it.
            "wayfinding": {"to": "sku:SKU-RIDGE-GTX-42"},
        },
        {
            "id": "members-coffee",
            "priority": 10,
            "anonymous": {
                "title": "Free coffee for members today",
                "body": "Join in the app and grab a cup at the cafe.",
                "background": "#bc6c25",
                "accent": "#fefae0",
            },
            "min_on_screen_s": 8,
        },
    ],
}

CAMPAIGNS_V2: dict = {
    **CAMPAIGNS_V1,
    "version": 2,
    "campaigns": [
        *CAMPAIGNS_V1["campaigns"],
        {
            "id": "winter-sale",
            "priority": 60,
            "segments_any": ["winter"],
            "personalised": {
                "title": "{first_name}, winter jackets -30% for you",
                "body": "Your member price, today only. Rack by the entrance.",
                "background": "#c1121f",
                "accent": "#fdf0d5",
            },
            "anonymous": {
                "title": "Winter sale: jackets -30%",
                "body": "Today only, rack by the entrance.",
                "background": "#780000",
                "accent": "#fdf0d5",
            },
            "min_on_screen_s": 10,
        },
    ],
}


def people_at(t: float) -> int:
    for start, end, n in CAMERA_TIMELINE:
        if start <= t < end:
            return n
    return 0


if __name__ == "__main__":
    print(f"wrote {write_trace()} adverts to {TRACE}")
    print(json.dumps({"profiles": len(PROFILES)}))
