"""The agent's supervisor task: READY, watchdog pings while healthy, STATUS lines, and the
sampled snapshot the metrics endpoint serves.

It runs as one more task on the agent's event loop, on purpose: if that loop is blocked, this
task cannot run either, so the pings stop exactly when the agent is stuck. Other hangs (a loop
awaiting forever, a dead uplink thread, a camera stuck in its driver) are judged from a sample
taken every second (edge_agent/box/liveness.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_agent.box.liveness import Liveness, Sample, Thresholds
from edge_agent.box.sdnotify import Notifier, watchdog_usec

if TYPE_CHECKING:
    from edge_agent.app.agent import Agent

log = logging.getLogger("edge_agent.box.watchdog")

# STATUS= is for humans (systemctl status): refresh it this often, and on every health change.
STATUS_EVERY_S = 10.0


@dataclass
class Snapshot:
    """Taken on the loop thread (the presence engine is not thread-safe); read by metrics."""

    at: float = 0.0
    occupancy: dict[str, int] = field(default_factory=dict)
    adverts_per_s: float = 0.0
    uplink: dict[str, Any] = field(default_factory=dict)
    healthy: bool = True
    problems: list[str] = field(default_factory=list)


class RateMeter:
    """Events per second over a sliding window of (time, counter) samples."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, count: int) -> float:
        self._samples.append((now, count))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window_s:
            self._samples.popleft()
        t0, c0 = self._samples[0]
        return (count - c0) / (now - t0) if now > t0 else 0.0


def status_line(agent: Agent, snap: Snapshot) -> str:
    """One line for `systemctl status`: counts only, never an identifier."""
    up = snap.uplink
    people = sum(snap.occupancy.values())
    central = "up" if up.get("connected") else "down"
    text = (
        f"{snap.adverts_per_s:.0f} adverts/s, {people} present, "
        f"{agent.stats.decisions} decisions, outbox {up.get('depth', 0)} "
        f"(oldest {float(up.get('oldest_pending_s') or 0):.0f}s), central {central}"
    )
    if not snap.healthy:
        text = "UNHEALTHY: " + "; ".join(snap.problems) + " | " + text
    return text


class Supervisor:
    def __init__(
        self,
        agent: Agent,
        notifier: Notifier | None = None,
        *,
        thresholds: Thresholds | None = None,
        step_s: float = 1.0,
    ) -> None:
        self.agent = agent
        self.notifier = notifier or Notifier.from_env()
        usec = watchdog_usec()
        self.watchdog_s = usec / 1e6 if usec else None
        # Ping well inside the period (sd_watchdog_enabled(3) suggests half of it).
        self.step_s = min(step_s, self.watchdog_s / 4) if self.watchdog_s else step_s
        self.liveness = Liveness(thresholds or Thresholds())
        self.rates = RateMeter()
        self.snapshot = Snapshot()
        self.ready_at: float | None = None
        self.pings = 0

    def sample(self, uplink_stats: dict[str, Any]) -> Sample:
        a = self.agent
        cam = a.camera
        up = a.uplink
        return Sample(
            now=time.monotonic(),
            tick_at=a.tick_at,
            adverts=a.stats.adverts,
            beacons_configured=bool(a.cfg.ble.beacons) and a.cfg.ble.source != "replay",
            camera_state=cam.health().state if cam is not None else None,
            uplink_alive=up.alive if up is not None else None,
            dead_links=tuple(
                name
                for name, alive in (
                    ("bus", a.bus.network_alive),
                    ("uplink", up.network_alive if up is not None else None),
                    ("downlink", a.downlink.network_alive if a.downlink is not None else None),
                )
                if alive is False
            ),
            uplink_connected=bool(uplink_stats.get("connected")),
            outbox_depth=int(uplink_stats.get("depth") or 0),
            uplink_progress=tuple(
                int(uplink_stats.get(k) or 0)
                for k in (
                    "publish_attempts",
                    "published_batches",
                    "published_events",
                    "confirmed_batches",
                    "resent_unconfirmed",
                )
            ),
        )

    async def run(self) -> None:
        a = self.agent
        was_healthy = True
        last_status = float("-inf")
        while True:
            up = a.uplink
            # Off the loop: stats() reads the outbox. A hung outbox hangs this await, and so
            # the pings stop, which is the point.
            uplink_stats = await asyncio.to_thread(up.stats) if up is not None else {}
            s = self.sample(uplink_stats)
            problems = self.liveness.check(s)
            healthy = not problems
            snap = Snapshot(
                at=s.now,
                occupancy={z.id: len(a.presence.present(z.id)) for z in a.cfg.zones},
                adverts_per_s=self.rates.add(s.now, s.adverts),
                uplink=uplink_stats,
                healthy=healthy,
                problems=problems,
            )
            self.snapshot = snap
            if self.ready_at is None and s.tick_at is not None:
                self.ready_at = s.now
                self.notifier.ready(status_line(a, snap))
                last_status = s.now
                log.info("agent ready")
            if healthy != was_healthy:
                if healthy:
                    log.info("watchdog: healthy again")
                else:
                    log.error("watchdog: withholding pings: %s", "; ".join(problems))
                was_healthy = healthy
                last_status = float("-inf")
            if self.ready_at is not None:
                if healthy and self.watchdog_s and self.notifier.watchdog():
                    self.pings += 1
                if s.now - last_status >= STATUS_EVERY_S:
                    self.notifier.status(status_line(a, snap))
                    last_status = s.now
            # Quick until READY: cold start to READY is a measured goal (BENCHMARKS.md).
            await asyncio.sleep(self.step_s if self.ready_at is not None else 0.05)
