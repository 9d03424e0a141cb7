"""Is the agent alive enough to deserve a watchdog ping? Pure logic over sampled state.

systemd restarts the agent when the pings stop (WatchdogSec=). A restart must only happen for
faults a restart can cure: a loop that stopped ticking, a sensor stuck inside its driver, an
uplink thread that died or stopped working. Conditions a restart cannot cure (central broker
unreachable, CDP not confirming, an empty store at night) must never stop the pings, or the
unit would burn through its start limit and stay down for good.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Thresholds:
    tick_stale_s: float = 15.0
    ble_silent_s: float = 600.0
    camera_stall_s: float = 120.0
    uplink_stall_s: float = 600.0


@dataclass(frozen=True)
class Sample:
    """What the agent looks like at ``now`` (monotonic seconds)."""

    now: float
    # Monotonic time of the tick loop's last iteration (None: not ticked yet).
    tick_at: float | None
    adverts: int
    # Store beacons advertise all day: with some configured, BLE silence means a stuck scanner.
    beacons_configured: bool = False
    camera_state: str | None = None
    uplink_alive: bool | None = None
    uplink_connected: bool = False
    outbox_depth: int = 0
    # Counters that move whenever the uplink does work (publishes, confirmations, re-sends).
    uplink_progress: tuple[int, ...] = ()
    # MQTT links (bus, uplink, downlink) whose network thread is gone: nothing arrives on them
    # any more although the process and the connection flag look fine.
    dead_links: tuple[str, ...] = ()


@dataclass
class Liveness:
    """Remembers since when each signal has been still; ``check`` lists what is wrong."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    _adverts: int = -1
    _adverts_since: float = 0.0
    _camera_stalled_since: float | None = None
    _progress: tuple[int, ...] | None = None
    _progress_since: float = 0.0

    def check(self, s: Sample) -> list[str]:
        t = self.thresholds
        problems: list[str] = []
        if s.tick_at is None:
            problems.append("tick loop has not started")
        elif s.now - s.tick_at > t.tick_stale_s:
            problems.append(f"tick loop stuck for {s.now - s.tick_at:.0f}s")

        if s.adverts != self._adverts:
            self._adverts, self._adverts_since = s.adverts, s.now
        elif (
            t.ble_silent_s > 0
            and s.beacons_configured
            and s.adverts > 0
            and s.now - self._adverts_since > t.ble_silent_s
        ):
            # Only after adverts have flowed: a box with no adapter is a doctor finding, not a
            # reason to restart forever.
            problems.append(f"BLE silent for {s.now - self._adverts_since:.0f}s")

        if s.camera_state == "stalled" and t.camera_stall_s > 0:
            if self._camera_stalled_since is None:
                self._camera_stalled_since = s.now
            elif s.now - self._camera_stalled_since > t.camera_stall_s:
                problems.append(
                    f"camera stuck in a read for {s.now - self._camera_stalled_since:.0f}s"
                )
        else:
            self._camera_stalled_since = None

        if s.uplink_alive is False:
            problems.append("uplink thread died")
        for link in s.dead_links:
            problems.append(f"{link} network thread died")
        progress = (*s.uplink_progress, s.outbox_depth)
        if progress != self._progress or not s.uplink_connected or s.outbox_depth == 0:
            self._progress, self._progress_since = progress, s.now
        elif t.uplink_stall_s > 0 and s.now - self._progress_since > t.uplink_stall_s:
            problems.append(
                f"uplink connected with {s.outbox_depth} events waiting but idle for "
                f"{s.now - self._progress_since:.0f}s"
            )
        return problems


# ---- the test-only fault hook ------------------------------------------------------------
# EDGE_AGENT_TEST_STALL="tick@2" makes the tick loop hang for good 2 s after it starts: a real
# hang (the coroutine never returns), so the watchdog must notice it the same way it would
# notice a hung outbox write. Unset in production; documented in README.md.
STALL_ENV = "EDGE_AGENT_TEST_STALL"


def stall_after(name: str, env: dict[str, str] | None = None) -> float | None:
    raw = (os.environ if env is None else env).get(STALL_ENV, "")
    for part in raw.split(","):
        what, _, after = part.strip().partition("@")
        if what == name:
            try:
                return float(after or 0)
            except ValueError:
                return None
    return None


class StallPoint:
    """Where a loop checks the fault hook; a no-op unless the env var names it."""

    def __init__(self, name: str) -> None:
        after = stall_after(name)
        self._at = None if after is None else time.monotonic() + after

    def due(self) -> bool:
        return self._at is not None and time.monotonic() >= self._at
