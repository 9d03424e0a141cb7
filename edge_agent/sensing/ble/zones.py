"""Zone assignment per screen: smoothed RSSI -> distance -> zone, with hysteresis.

Pure logic, one instance for the box. Each receiver (the box's own radio, or an ESP32 node)
belongs to a zone (its screen's zone) and has a calibration. Per device and receiver a filter
smooths RSSI; the calibrated distance then decides, per device:

- enter a zone when a receiver of it hears the device within ``enter_m`` (after
  ``min_samples`` adverts), and that receiver is the nearest qualifying one;
- leave it ("weak") when every receiver of the zone puts the device beyond ``exit_m``;
  ``exit_m > enter_m`` is the hysteresis band where nothing changes;
- switch ("moved") to another zone only when that zone is within ``enter_m`` and nearer by
  ``switch_ratio`` than the current one: two screens' boundary does not make a shopper flap;
- a weak leave or a switch happens no sooner than ``min_dwell_s`` after entering;
- leave ("timeout") when the zone's receivers stop hearing the device for its away timeout,
  learned per device and receiver from its advertising interval: ``away_misses`` intervals,
  clamped to ``[away_min_s, away_max_s]``. A tag advertising every 100 ms is gone after a
  second or two; a phone advertising every 2 s gets its full allowance.

Keys are whatever the caller uses (the agent passes internal keys, never raw addresses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from edge_agent.sensing.ble.calibrate import Calibration
from edge_agent.sensing.ble.filters import FilterSpec, RssiFilter


def learned_away_s(gap: float, misses: float, floor: float, ceiling: float) -> float:
    """How long a device may stay silent before it is away: ``misses`` of its own advertising
    intervals (``gap``, learned), within ``floor``..``ceiling``; the ceiling until one is known."""
    if gap == 0.0:
        return ceiling
    t = misses * gap
    return floor if t < floor else ceiling if t > ceiling else t


def learned_gap(learned: float, gap: float) -> float:
    """The advertising interval learned so far (0.0: none yet), moved towards one more ``gap``.
    Clipped at 4x: one long absence must not teach us the device advertises rarely."""
    if learned == 0.0:
        return gap
    return learned + 0.2 * ((gap if gap < 4 * learned else 4 * learned) - learned)


@dataclass(frozen=True, slots=True)
class Entered:
    key: str
    ts: float
    rssi: float
    zone: str = ""
    distance_m: float = 0.0


@dataclass(frozen=True, slots=True)
class Left:
    key: str
    ts: float
    dwell_s: float
    reason: str  # "weak" (beyond exit_m), "moved" (nearer another zone) or "timeout" (not heard)
    zone: str = ""


@dataclass(frozen=True, slots=True)
class DwellTick:
    key: str
    ts: float
    dwell_s: float
    zone: str = ""


PresenceChange = Entered | Left | DwellTick


class ZoneTracker(Protocol):
    """The one interface of every zone engine here (``ZoneEngine``, ``BayesZoneEngine``, the
    agent's ``PresenceTracker``): observations and clock ticks in, presence changes out."""

    def observe(
        self, key: str, rssi: float, ts: float, receiver: str = "local"
    ) -> list[PresenceChange]: ...

    def tick(self, now: float) -> list[PresenceChange]: ...

    def present(self, zone: str | None = None) -> set[str]: ...

    def dwell_s(self, key: str, now: float) -> float: ...


@dataclass(frozen=True, slots=True)
class ZoneParams:
    enter_m: float = 2.5
    exit_m: float = 4.0
    min_dwell_s: float = 2.0
    leave_hold_s: float = 0.0
    switch_ratio: float = 0.7
    min_samples: int = 2
    away_min_s: float = 2.0
    away_max_s: float = 12.0
    away_misses: float = 8.0
    dwell_report_s: float = 30.0
    filter: FilterSpec = field(default_factory=FilterSpec)

    def __post_init__(self) -> None:
        if not 0 < self.enter_m < self.exit_m:
            raise ValueError("zones: need 0 < enter_m < exit_m (the gap is the hysteresis)")
        if not 0 < self.switch_ratio <= 1:
            raise ValueError("zones: switch_ratio must be in (0, 1]")
        if not 0 < self.away_min_s <= self.away_max_s:
            raise ValueError("zones: need 0 < away_min_s <= away_max_s")


@dataclass(frozen=True, slots=True)
class Receiver:
    """One radio: which zone it covers and how it hears (its calibration)."""

    id: str
    zone: str
    calibration: Calibration = field(default_factory=Calibration)


class _Track:
    """One device as one receiver hears it."""

    __slots__ = ("filt", "value", "last", "gap", "n", "zone", "cal", "enter_rssi", "exit_rssi")

    def __init__(self, filt: RssiFilter, rc: _Rx, ts: float) -> None:
        self.filt = filt
        self.value = 0.0
        self.last = ts
        self.gap = 0.0  # learned advertising interval (0 until two adverts)
        self.n = 0
        self.zone = rc.zone
        self.cal = rc.cal
        self.enter_rssi = rc.enter_rssi
        self.exit_rssi = rc.exit_rssi


class _Device:
    __slots__ = ("tracks", "zone", "since", "zone_last", "last_dwell", "last", "weak_since")

    def __init__(self) -> None:
        self.tracks: dict[str, _Track] = {}
        self.zone: str | None = None
        self.since = 0.0  # when it entered its zone
        self.zone_last = 0.0  # last advert from a receiver of its zone
        self.last_dwell = 0.0
        self.last = 0.0
        self.weak_since = -1.0  # when its zone's signal last went beyond exit_m, or -1


@dataclass(frozen=True, slots=True)
class _Rx:
    zone: str
    cal: Calibration
    enter_rssi: float
    exit_rssi: float


@dataclass
class ZoneStats:
    adverts: int = 0
    unknown_receiver: int = 0


class ZoneEngine:
    def __init__(
        self,
        receivers: list[Receiver],
        params: ZoneParams | None = None,
        *,
        fallback: Receiver | None = None,
    ) -> None:
        """``fallback`` takes adverts from receivers not listed (a node added before the config
        knew it); without one, such adverts are counted and ignored."""
        self.params = p = params or ZoneParams()
        self._rx = {r.id: self._compile(r) for r in receivers}
        self._fallback = self._compile(fallback) if fallback is not None else None
        self._devices: dict[str, _Device] = {}
        self._make_filter = p.filter.make
        self.stats = ZoneStats()

    def _compile(self, r: Receiver) -> _Rx:
        p = self.params
        c = r.calibration
        # Thresholds in this receiver's RSSI, once: the hot path compares dBm, not metres.
        return _Rx(r.zone, c, c.rssi_at(p.enter_m), c.rssi_at(p.exit_m))

    # ---- hot path ----------------------------------------------------------------------
    def observe(
        self, key: str, rssi: float, ts: float, receiver: str = "local"
    ) -> list[PresenceChange]:
        self.stats.adverts += 1
        dev = self._devices.get(key)
        if dev is None:
            dev = self._devices[key] = _Device()
        tr = dev.tracks.get(receiver)
        if tr is None:
            rc = self._rx.get(receiver) or self._fallback
            if rc is None:
                self.stats.unknown_receiver += 1
                if not dev.tracks:
                    del self._devices[key]
                return []
            tr = dev.tracks[receiver] = _Track(self._make_filter(), rc, ts)
        else:
            gap = ts - tr.last
            if gap > 0:
                tr.gap = learned_gap(tr.gap, gap)
                tr.last = ts
        tr.n += 1
        s = tr.value = tr.filt.update(rssi, ts)
        if ts > dev.last:
            dev.last = ts
        zone = dev.zone
        p = self.params
        if zone is None:
            if tr.n >= p.min_samples and s >= tr.enter_rssi:
                if len(dev.tracks) > 1 and not self._nearest_qualifying(dev, tr):
                    return []
                return [self._enter(key, dev, tr, ts)]
            return []
        if tr.zone == zone:
            if ts > dev.zone_last:
                dev.zone_last = ts
            if s >= tr.exit_rssi or (len(dev.tracks) > 1 and self._zone_near(dev, zone)):
                dev.weak_since = -1.0  # close again (or another receiver of the zone says so)
                return []
            if dev.weak_since < 0:
                dev.weak_since = ts
            if ts - dev.since >= p.min_dwell_s and ts - dev.weak_since >= p.leave_hold_s:
                return [self._leave(key, dev, ts, "weak")]
            return []
        # A receiver of another zone: take over only if clearly nearer, after the minimum dwell.
        if tr.n >= p.min_samples and s >= tr.enter_rssi and ts - dev.since >= p.min_dwell_s:
            d_new = tr.cal.distance_m(s)
            d_cur = self._zone_distance(dev, zone)
            if d_new < p.switch_ratio * d_cur:
                left = self._leave(key, dev, ts, "moved")
                return [left, self._enter(key, dev, tr, ts)]
        return []

    def _enter(self, key: str, dev: _Device, tr: _Track, ts: float) -> Entered:
        dev.zone = tr.zone
        dev.since = dev.zone_last = dev.last_dwell = ts
        dev.weak_since = -1.0
        return Entered(key, ts, round(tr.value, 1), tr.zone, round(tr.cal.distance_m(tr.value), 2))

    def _leave(self, key: str, dev: _Device, ts: float, reason: str) -> Left:
        zone = dev.zone or ""
        dwell = ts - dev.since
        dev.zone = None
        return Left(key, ts, dwell if dwell > 0 else 0.0, reason, zone)

    def _nearest_qualifying(self, dev: _Device, tr: _Track) -> bool:
        mine = tr.cal.distance_m(tr.value)
        n = self.params.min_samples
        for other in dev.tracks.values():
            if (
                other is not tr
                and other.n >= n
                and other.value >= other.enter_rssi
                and other.cal.distance_m(other.value) < mine
            ):
                return False
        return True

    def _zone_distance(self, dev: _Device, zone: str) -> float:
        best = float("inf")
        for t in dev.tracks.values():
            if t.zone == zone and t.n:
                d = t.cal.distance_m(t.value)
                if d < best:
                    best = d
        return best

    def _zone_near(self, dev: _Device, zone: str) -> bool:
        return any(t.zone == zone and t.value >= t.exit_rssi for t in dev.tracks.values())

    # ---- clock -------------------------------------------------------------------------
    def away_timeout_s(self, tr: _Track) -> float:
        p = self.params
        return learned_away_s(tr.gap, p.away_misses, p.away_min_s, p.away_max_s)

    def tick(self, now: float) -> list[PresenceChange]:
        """Timeouts and dwell reports; call a few times a second."""
        out: list[PresenceChange] = []
        p = self.params
        floor = p.away_min_s
        report = p.dwell_report_s
        for key, dev in list(self._devices.items()):
            idle = now - dev.last
            zone = dev.zone
            if idle > floor:
                tracks = dev.tracks
                for rid, tr in list(tracks.items()):
                    if now - tr.last > self.away_timeout_s(tr):
                        del tracks[rid]
                if zone is not None and not any(t.zone == zone for t in tracks.values()):
                    # Dwell runs until the zone last heard it, not until we noticed.
                    out.append(self._leave(key, dev, max(dev.zone_last, dev.since), "timeout"))
                    zone = None
                if not tracks:
                    del self._devices[key]
                    continue
            if (
                zone is not None
                and dev.weak_since >= 0
                and now - dev.weak_since >= p.leave_hold_s
                and now - dev.since >= p.min_dwell_s
            ):
                # Weak and then silent: the hold ran out without a closer advert.
                out.append(self._leave(key, dev, now, "weak"))
                continue
            if zone is not None and now - dev.last_dwell >= report:
                dev.last_dwell = now
                out.append(DwellTick(key, now, now - dev.since, zone))
        return out

    # ---- queries -----------------------------------------------------------------------
    def present(self, zone: str | None = None) -> set[str]:
        if zone is None:
            return {k for k, d in self._devices.items() if d.zone is not None}
        return {k for k, d in self._devices.items() if d.zone == zone}

    def zone_of(self, key: str) -> str | None:
        d = self._devices.get(key)
        return None if d is None else d.zone

    def dwell_s(self, key: str, now: float) -> float:
        d = self._devices.get(key)
        return 0.0 if d is None or d.zone is None else max(0.0, now - d.since)

    def tracked(self) -> int:
        return len(self._devices)

    def advertising_interval_s(self, key: str) -> float | None:
        """The learned interval (smallest over receivers), for installers and tests."""
        d = self._devices.get(key)
        gaps = [t.gap for t in d.tracks.values() if t.gap] if d else []
        return min(gaps) if gaps else None
