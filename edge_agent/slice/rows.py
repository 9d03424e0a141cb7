"""The slice's rows as SQLite stores them: the column lists, a validated profile row to a table
row and back to a ``Profile``, times and integers from a downlink body. Pure shaping, no I/O."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from types import MappingProxyType
from typing import Any

from edge_agent.slice.model import Profile, ProfileRow, SliceError, frozen_orders

COLS = (
    "profile_id, first_name, language, consent_personalisation, consent_analytics, "
    "consent_staff_alerts, segments, loyalty_tier, churn_risk, open_orders, affinities, "
    "expires_at, version"
)
INSERT = f"INSERT OR REPLACE INTO profiles ({COLS}) VALUES ({', '.join('?' * 13)})"
INSERT_KEY = "INSERT INTO identity_keys (profile_id, slot, sealed) VALUES (?, ?, ?)"
STAGE = f"INSERT INTO staged_profiles ({COLS}, part) VALUES ({', '.join('?' * 14)})"
STAGE_KEY = "INSERT INTO staged_identity_keys (profile_id, slot, sealed) VALUES (?, ?, ?)"
STOCK_COLS = "sku, available, quantity, aisle, version, price, was_price, currency"
STOCK_MARKS = ", ".join("?" * len(STOCK_COLS.split(", ")))


def digest(body: Any) -> str:
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(data).hexdigest()


def epoch(dt: datetime | None) -> float | None:
    return dt.timestamp() if dt is not None else None


def parse_time(v: Any, where: str) -> float | None:
    if v is None:
        return None
    if not isinstance(v, str):
        raise SliceError(f"{where}: expected an RFC 3339 time string")
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise SliceError(f"{where}: not an RFC 3339 time") from None
    if dt.tzinfo is None:
        raise SliceError(f"{where}: needs a time zone (RFC 3339)")
    return dt.timestamp()


def int_field(body: dict[str, Any], key: str, minimum: int) -> int:
    v = body.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise SliceError(f"{key}: expected an integer >= {minimum}")
    return v


def row_values(p: ProfileRow, version: int, default_expiry: float | None) -> tuple:
    orders = p.orders()
    exp = epoch(p.expires_at)
    return (
        p.profile_id,
        p.first_name,
        p.language,
        int(p.consent_personalisation),
        int(p.consent_analytics),
        int(p.consent_staff_alerts),
        json.dumps(p.segments, separators=(",", ":")),
        p.loyalty_tier,
        p.churn_risk,
        json.dumps([o.model_dump() for o in orders], separators=(",", ":")) if orders else None,
        json.dumps(p.affinities, separators=(",", ":")) if p.affinities else None,
        exp if exp is not None else default_expiry,
        version,
    )


def to_profile(r: tuple) -> Profile:
    orders = frozen_orders(json.loads(r[9])) if r[9] else ()
    return Profile(
        profile_id=r[0],
        first_name=r[1],
        language=r[2],
        consent_personalisation=bool(r[3]),
        consent_analytics=bool(r[4]),
        consent_staff_alerts=bool(r[5]),
        segments=tuple(json.loads(r[6])) if r[6] else (),
        loyalty_tier=r[7],
        churn_risk=r[8],
        open_order=orders[0] if orders else None,
        open_orders=orders,
        affinities=MappingProxyType(json.loads(r[10]) if r[10] else {}),
        expires_at=r[11],
        version=r[12] or 0,
    )
