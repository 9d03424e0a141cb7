"""The fleet as the console shows it: every box's retained status (``FleetWatcher``, live) and,
for boxes the broker has no word of (or no broker at all), the latest heartbeat the CDP stored.
Both go through ``fleet_status.status_row``, so a row means the same wherever it came from."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from central.cdp_sink import CdpSink
from central.fleet_status import FleetWatcher, min_cert_days, status_row

# A box heartbeats every 30 s by default: three missed beats and the CDP's view calls it silent.
# (The retained will says "offline" at once; this is only for boxes seen through the CDP.)
SILENT_AFTER_S = 180.0

STATES = ("online", "offline", "silent", "unknown")


def fleet_rows(watcher: FleetWatcher | None, sink: CdpSink | None) -> list[dict[str, Any]]:
    now = time.time()
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    if sink is not None:
        for store, device, t, data in sink.latest_heartbeats():
            try:
                ts = datetime.fromisoformat(t).timestamp()
            except ValueError:
                continue
            row = status_row(store, device, {}, {"ts": ts, **data}, now)
            age = row["health_age_s"]
            row["status"] = "online" if age is not None and age <= SILENT_AFTER_S else "silent"
            row["source"] = "CDP heartbeat"
            rows[(store, device)] = row
    if watcher is not None:
        for row in watcher.rows():
            row["source"] = "retained status"
            rows[(row["store"], row["device"])] = row  # the broker's word is the fresher one
    return [rows[k] for k in sorted(rows)]


def filtered(
    rows: list[dict[str, Any]], store: str | None, state: str | None
) -> list[dict[str, Any]]:
    return [
        r
        for r in rows
        if (not store or r["store"] == store) and (not state or r["status"] == state)
    ]


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    depths = [r["outbox_depth"] for r in rows if isinstance(r["outbox_depth"], int)]
    return {
        "stores": len({r["store"] for r in rows}),
        "boxes": len(rows),
        "online": sum(r["status"] == "online" for r in rows),
        "not_online": sum(r["status"] != "online" for r in rows),
        "errors": sum(bool(r["last_error"]) for r in rows),
        "max_outbox_depth": max(depths) if depths else None,
        "min_cert_days_left": min_cert_days(rows),
    }


# What the box's emergency command puts on every screen (edge_agent/downlink/commands.py,
# ``emergency_command``): the player reports it as its mode and content id.
EMERGENCY_CONTENT_ID = "emergency"


def shows_emergency(screen: dict[str, Any]) -> bool:
    return screen.get("mode") == "override" and screen.get("content_id") == EMERGENCY_CONTENT_ID


def screen_rows(
    watcher: FleetWatcher | None, store: str, expected: bool | None
) -> list[dict[str, Any]]:
    """The store's screens as their boxes relay them, each with ``obeys``: whether what it
    shows is what the console last sent (``expected``: True after an emergency, False after a
    clear, None when this console sent neither), None when it cannot say (screen offline)."""
    rows = watcher.screens(store) if watcher is not None else []
    for r in rows:
        on = shows_emergency(r)
        r["emergency"] = on
        online = r.get("status") == "online" and r.get("box_status") != "offline"
        r["obeys"] = None if expected is None or not online else on == expected
    return rows
