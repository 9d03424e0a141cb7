"""A shopper's phone running the store app, as the agent's BLE path hears it: its current
Eddystone-EID (from the demo's identity key) at 10 Hz, while it is there. Tests and benches
that need a known shopper at a screen, without a radio."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from demo import scenario
from edge_agent.clock import ScaledClock
from edge_agent.sensing.ble.advert import Advert
from edge_agent.sensing.ble.eid import compute_eid


class AppPhone:
    """A BLE source: ``there`` set, it advertises; cleared, it is silent (the shopper left)."""

    def __init__(self, profile_id: str, clock: ScaledClock, *, there: bool = True) -> None:
        self.clock = clock
        self.key = scenario.demo_identity_key(profile_id)
        self.there = threading.Event()
        if there:
            self.there.set()

    async def run(self, callback: Any) -> None:
        while True:
            if self.there.is_set():
                now = self.clock.now()
                eid = compute_eid(self.key, int(now), scenario.ROTATION_K)
                callback(
                    Advert(
                        address="5E:00:00:00:00:01",
                        rssi=-50,
                        service_data={scenario.EDDYSTONE: b"\x30\xee" + eid},
                        service_uuids=(scenario.EDDYSTONE,),
                        timestamp=now,
                    )
                )
            await asyncio.sleep(0.1)
