"""Zone presence from smoothed RSSI, with hysteresis so shoppers neither flap nor linger.

Pure logic: feed observations and clock ticks, get presence changes back. The agent turns
changes into journey events; nothing here knows about MQTT, SQLite or BLE bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Entered:
    key: str
    ts: float
    rssi: float


@dataclass(frozen=True, slots=True)
class Left:
    key: str
    ts: float
    dwell_s: float
    reason: str  # "weak" (signal fell below leave_rssi) or "timeout" (not heard)


@dataclass(frozen=True, slots=True)
class DwellTick:
    key: str
    ts: float
    dwell_s: float


PresenceChange = Entered | Left | DwellTick


@dataclass(slots=True)
class _Track:
    smoothed: float
    samples: int
    last_seen: float
    present_since: float | None = None
    last_dwell_report: float = 0.0


@dataclass
class PresenceTracker:
    """One receiver's view of one zone.

    Enter when the EMA-smoothed RSSI reaches ``enter_rssi`` after ``min_samples`` adverts; leave
    when it falls below ``leave_rssi`` (the gap between the two is the hysteresis) or when the
    device has not been heard for ``away_timeout_s``.
    """

    enter_rssi: float = -70.0
    leave_rssi: float = -80.0
    away_timeout_s: float = 12.0
    ema_alpha: float = 0.3
    dwell_report_s: float = 30.0
    min_samples: int = 2
    _tracks: dict[str, _Track] = field(default_factory=dict)

    def observe(self, key: str, rssi: float, ts: float) -> list[PresenceChange]:
        t = self._tracks.get(key)
        if t is None:
            t = self._tracks[key] = _Track(smoothed=float(rssi), samples=0, last_seen=ts)
        else:
            t.smoothed += self.ema_alpha * (rssi - t.smoothed)
        t.samples += 1
        t.last_seen = max(t.last_seen, ts)
        if t.present_since is None:
            if t.samples >= self.min_samples and t.smoothed >= self.enter_rssi:
                t.present_since = ts
                t.last_dwell_report = ts
                return [Entered(key, ts, round(t.smoothed, 1))]
            return []
        if t.smoothed < self.leave_rssi:
            return [self._leave(key, t, ts, "weak")]
        return []

    def tick(self, now: float) -> list[PresenceChange]:
        out: list[PresenceChange] = []
        for key, t in list(self._tracks.items()):
            if now - t.last_seen > self.away_timeout_s:
                if t.present_since is not None:
                    out.append(self._leave(key, t, t.last_seen, "timeout"))
                del self._tracks[key]
            elif t.present_since is not None and now - t.last_dwell_report >= self.dwell_report_s:
                t.last_dwell_report = now
                out.append(DwellTick(key, now, now - t.present_since))
        return out

    def _leave(self, key: str, t: _Track, ts: float, reason: str) -> Left:
        assert t.present_since is not None
        dwell = max(0.0, ts - t.present_since)
        t.present_since = None
        # Start smoothing afresh so a returning shopper must earn entry again.
        t.samples = 0
        return Left(key, ts, dwell, reason)

    def present(self) -> set[str]:
        return {k for k, t in self._tracks.items() if t.present_since is not None}

    def dwell_s(self, key: str, now: float) -> float:
        t = self._tracks.get(key)
        return 0.0 if t is None or t.present_since is None else now - t.present_since
