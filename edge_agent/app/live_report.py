"""What central ops see of a store live (the console's store page): people per zone and the open
staff alerts, retained on ``stores/<store>/devices/<device>/live``. The kiosks' own feeds stay on
the in-store bus; this is a summary of them, sent when it changes (at most every
``MIN_INTERVAL_S``) and at least every ``REFRESH_S`` (its time says how fresh it is).

An alert about a shopper (a VIP, an order pickup) goes without its text: the name it may carry
is for the staff in the store, not for central. Operational alerts (a dark screen, a flat
beacon) go with theirs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from edge_agent.app.alerts import OPERATIONAL_KINDS, StaffAlerts
from sync.ports import UplinkPort

MIN_INTERVAL_S = 2.0
REFRESH_S = 60.0
# Fields of an alert body that say where and what, never who.
ALERT_FIELDS = ("alert_id", "kind", "ts", "zone_id", "screen_id", "campaign_id", "beacon")


class LiveReport:
    def __init__(
        self,
        people: Callable[[str], int],
        alerts: StaffAlerts,
        zones: list[str],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.people = people  # ZoneOccupancy.people: the kiosks' own figure
        self.alerts = alerts
        self.zones = zones
        self.uplink: UplinkPort | None = None  # set once sync starts
        self._monotonic = monotonic
        self._wall = wall
        self._last: dict[str, Any] | None = None
        self._at = float("-inf")

    def snapshot(self) -> dict[str, Any]:
        out = []
        for body in self.alerts.open_alerts():
            a = {k: body[k] for k in ALERT_FIELDS if isinstance(body.get(k), str | int)}
            a["text"] = (
                str(body.get("text", ""))[:200]
                if body.get("kind") in OPERATIONAL_KINDS
                else "(about a shopper: the text stays in the store)"
            )
            out.append(a)
        return {"zones": {z: self.people(z) for z in self.zones}, "alerts": out}

    def tick(self) -> bool:
        """Publish if due; True when it did."""
        if self.uplink is None:
            return False
        now = self._monotonic()
        if now - self._at < MIN_INTERVAL_S:
            return False
        doc = self.snapshot()
        if doc == self._last and now - self._at < REFRESH_S:
            return False
        payload = json.dumps({"ts": self._wall(), **doc}).encode()
        if not self.uplink.publish_status("live", payload, retain=True):
            return False  # not connected: the next tick tries again
        self._last, self._at = doc, now
        return True
