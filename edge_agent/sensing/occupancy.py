"""Live people per zone for the staff kiosks, retained on the bus: BLE devices present, the
camera's count where a camera watches the zone and sees more, at least one where a radar
(mmWave) sees someone. Published on every change and at least every 30 s (kiosks blank a figure
older than two minutes)."""

from __future__ import annotations

import json
from collections.abc import Callable

from contracts import topics
from edge_agent.app.bus import Publisher
from edge_agent.config import AgentConfig
from edge_agent.sensing.audience_stage import AudienceStage
from edge_agent.sensing.presence_stage import PresenceStage

REPUBLISH_S = 30.0


class ZoneOccupancy:
    def __init__(
        self,
        cfg: AgentConfig,
        *,
        presence: PresenceStage,
        audience: AudienceStage,
        bus: Publisher,
        invalidate: Callable[[], None] = lambda: None,
    ) -> None:
        self.cfg = cfg
        self.presence = presence
        self.audience = audience
        self.bus = bus
        self.invalidate = invalidate
        self._published: dict[str, tuple[int, float]] = {}  # zone -> (people, when published)
        self._mmwave: dict[tuple[str, str], bool] = {}  # (zone, sensor) -> someone there
        cam = cfg.camera
        # The zone in front of the camera's screen, where its count can exceed BLE's.
        self._camera_zone = next((s.zone for s in cfg.screens if cam and s.id == cam.screen), None)

    def on_mmwave(self, zone: str, sensor: str, payload: bytes) -> None:
        """An mmWave sensor's ON/OFF (bus thread)."""
        on = payload.strip().upper() == b"ON"
        if self._mmwave.get((zone, sensor)) != on:
            self._mmwave[(zone, sensor)] = on
            self.invalidate()  # a screen without a camera estimates its audience from it

    def radar(self, zone: str) -> bool | None:
        """Whether an mmWave sensor sees someone in ``zone``; None when none has spoken for it."""
        seen = [on for (z, _), on in list(self._mmwave.items()) if z == zone]
        return any(seen) if seen else None

    def people(self, zone: str) -> int:
        people = len(self.presence.present(zone))
        if zone == self._camera_zone and self.audience.people is not None:
            people = max(people, self.audience.people)
        if people == 0 and self.radar(zone):
            people = 1  # a radar sees someone that no phone or camera does: at least one
        return people

    def publish(self, now: float) -> None:
        for zone in self.cfg.zones:
            people = self.people(zone.id)
            last = self._published.get(zone.id)
            if last is not None and last[0] == people and now - last[1] < REPUBLISH_S:
                continue
            doc = {"zone_id": zone.id, "people": people, "ts": now}
            topic = topics.zone_occupancy(self.cfg.store.store_id, zone.id)
            if self.bus.publish(topic, json.dumps(doc), qos=1, retain=True):
                self._published[zone.id] = (people, now)
