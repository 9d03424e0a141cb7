"""The heartbeat: the box's health and the day's KPIs, as an event for the CDP (history) and
retained on ``.../health`` for ops (the latest state), every ``[uplink] heartbeat_s``.

It also carries ``metrics`` (``BoxMetrics``): the handful of Prometheus numbers ops alert on,
so central has them from the CDP for every box without scraping a loopback endpoint."""

from __future__ import annotations

import math
import os
import shutil
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from contracts.events import BoxMetrics, DeviceHeartbeat
from edge_agent.journey.engine import JourneyEngine
from edge_agent.sensing.audience_stage import AudienceStage
from edge_agent.sensing.presence_stage import PresenceStage
from edge_agent.slice.store import ProfileSlice
from sync.journal import EventJournal
from sync.ports import OutboxPort, UplinkPort

VERSION = "0.1.0"


class LatencyWindow:
    """Durations (ms) since the last beat, bounded: the heartbeat's p99 of one interval."""

    def __init__(self, maxlen: int = 2048) -> None:
        self._ms: deque[float] = deque(maxlen=maxlen)

    def add(self, ms: float) -> None:
        self._ms.append(ms)

    def take_p99(self) -> float | None:
        """The 99th percentile (nearest rank) of what was added, then start again; None when
        nothing was (no decision in the interval is not a latency of 0)."""
        if not self._ms:
            return None
        xs = sorted(self._ms)
        self._ms.clear()
        return round(xs[max(0, math.ceil(0.99 * len(xs)) - 1)], 3)


class ProcessSampler:
    """Resident memory and CPU of this process, read from the kernel (no extra dependency)."""

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._at = time.monotonic()
        self._cpu = self._cpu_s()

    @staticmethod
    def _cpu_s() -> float:
        t = os.times()
        return t.user + t.system

    def rss_mb(self) -> float:
        try:
            with open("/proc/self/statm", encoding="ascii") as f:
                return round(int(f.read().split()[1]) * self._page / 1e6, 1)
        except (OSError, ValueError, IndexError):
            import resource  # not Linux: the peak is the best there is

            return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, 1)

    def cpu_percent(self) -> float:
        """Of one core, since the previous call."""
        now, cpu = time.monotonic(), self._cpu_s()
        dt = now - self._at
        pct = 100.0 * (cpu - self._cpu) / dt if dt > 0 else 0.0
        self._at, self._cpu = now, cpu
        return round(max(0.0, pct), 1)


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
        # The downlink's last applied version per kind, for ops (the agent sets it with sync).
        self.applied: Callable[[], dict[str, int]] | None = None
        self._started = time.monotonic()

    def beat(
        self,
        problems: list[str] | None = None,
        dropped_inputs: dict[str, int] | None = None,
        sensors: dict[str, str] | None = None,
        metrics: BoxMetrics | None = None,
        cert_days_left: float | None = None,
    ) -> DeviceHeartbeat:
        """``problems``: what the watchdog finds wrong now (a dead link names itself);
        ``dropped_inputs``: messages from the bus dropped since start, by reason; ``metrics``:
        the summary of the box's Prometheus metrics (the agent builds it); ``cert_days_left``:
        of the TLS client certificate (None without one)."""
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
            metrics=metrics,
            cert_days_left=cert_days_left,
            **self._clock_fields(),
        )
        self.journal.emit(hb)
        if self.uplink is not None:
            doc = {"ts": self._now(), **hb.model_dump(mode="json")}
            # In the retained health only (the latest state, like the uplink's counters), not
            # in the heartbeat event: ops read which pushes each box has applied.
            applied = self.applied() if self.applied is not None else {}
            self.uplink.publish_health(
                {**doc, "uplink": self.uplink.stats(), "downlink_applied": applied}
            )
        return hb

    def _clock_fields(self) -> dict[str, float]:
        est = self.uplink.clock_offset() if self.uplink is not None else None
        if est is None:
            return {}
        return {"clock_offset_s": round(est[0], 4), "clock_uncertainty_s": round(est[1], 4)}
