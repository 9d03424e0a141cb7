"""The heartbeat: the box's health and the day's KPIs, as an event for the CDP (history) and
retained on ``.../health`` for ops (the latest state), every ``[uplink] heartbeat_s``."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from contracts.events import DeviceHeartbeat
from edge_agent.journey.engine import JourneyEngine
from edge_agent.sensing.audience_stage import AudienceStage
from edge_agent.sensing.presence_stage import PresenceStage
from edge_agent.slice.store import ProfileSlice
from sync.journal import EventJournal
from sync.ports import OutboxPort, UplinkPort

VERSION = "0.1.0"


class Heartbeat:
    def __init__(
        self,
        *,
        now: Callable[[], float],
        state_dir: Path,
        presence: PresenceStage,
        audience: AudienceStage,
        profiles: ProfileSlice,
        journey: JourneyEngine,
        journal: EventJournal,
    ) -> None:
        self._now = now
        self.state_dir = state_dir
        self.presence = presence
        self.audience = audience
        self.profiles = profiles
        self.journey = journey
        self.journal = journal
        self.outbox: OutboxPort | None = None  # set once sync starts
        self.uplink: UplinkPort | None = None
        self._started = time.monotonic()

    def beat(
        self,
        problems: list[str] | None = None,
        dropped_inputs: dict[str, int] | None = None,
        sensors: dict[str, str] | None = None,
        cert_days_left: float | None = None,
    ) -> DeviceHeartbeat:
        """``problems``: what the watchdog finds wrong now (a dead link names itself);
        ``dropped_inputs``: messages from the bus dropped since start, by reason;
        ``cert_days_left``: of the TLS client certificate (None without one)."""
        ob = self.outbox
        depth = ob.depth() if ob is not None else 0
        oldest = ob.oldest_pending_age_s() if ob is not None else 0.0
        free = shutil.disk_usage(self.state_dir).free / 1e6
        hb = DeviceHeartbeat(
            version=VERSION,
            uptime_s=round(time.monotonic() - self._started, 1),
            outbox_depth=depth,
            oldest_pending_s=round(oldest or 0.0, 1),
            disk_free_mb=round(free, 1),
            sensors={
                "ble": "ok" if self.presence.counts.adverts else "silent",
                "ble_beacons": self.presence.beacon_health.summary(),
                **self.profiles.health(),
                **self.audience.health(),
                **(ob.health() if ob is not None else {}),  # "outbox_recovered" after a repair
                "watchdog": "; ".join(problems) if problems else "ok",
                **(sensors or {}),
            },
            kpis=self.journey.kpis.snapshot(),
            dropped={**self.journal.dropped(), **(dropped_inputs or {})},
            cert_days_left=cert_days_left,
            **self._clock_fields(),
        )
        self.journal.emit(hb)
        if self.uplink is not None:
            doc = {"ts": self._now(), **hb.model_dump(mode="json")}
            self.uplink.publish_health({**doc, "uplink": self.uplink.stats()})
        return hb

    def _clock_fields(self) -> dict[str, float]:
        est = self.uplink.clock_offset() if self.uplink is not None else None
        if est is None:
            return {}
        return {"clock_offset_s": round(est[0], 4), "clock_uncertainty_s": round(est[1], 4)}
