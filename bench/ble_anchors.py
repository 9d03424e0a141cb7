"""Re-implementations of the anchors' room rules, and ours, behind one small interface.

BASELINES (clearly not ours), written from the projects' documentation and source, reduced
to the rule that decides the room; all get the same calibrated distance per receiver:

- room-assistant (BLE integration): a kalmanjs filter on distance per device and instance,
  process noise 0.8, measurement noise 15 (``KalmanFilterable(Object, 0.8, 15)`` in
  ``bluetooth-low-energy.service.ts``, "determined experimentally"); adverts beyond
  ``maxDistance`` are not reported; a distance older than ``timeout`` (default 5 s) is
  outdated; the nearest instance wins.
- ESPresense: a 1-euro filter on distance in each node (min cutoff 0.1 Hz, beta 0.001,
  derivative cutoff 0.005 Hz: our reading of the firmware's defaults), then a 15 s median of
  each node's reports; the nearest node within max distance wins; a node silent for 15 s
  drops out.
- Home Assistant ``mqtt_room``: every report (room, distance) switches the sensor when it is
  closer than the current room's last distance or the current room's report is older than
  ``timeout`` (5 s); reports beyond the nodes' max distance are not sent; ``away_timeout``
  (10 s here; 0, the default, never goes away) clears the room.

Each pipeline answers ``observe``/``tick`` with ``(key, zone or None)`` transitions.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

from edge_agent.sensing.ble.bayes import BayesParams, BayesZoneEngine
from edge_agent.sensing.ble.calibrate import Calibration
from edge_agent.sensing.ble.filters import OneEuro
from edge_agent.sensing.ble.profiles import PROFILES
from edge_agent.sensing.ble.zones import Entered, Left, Receiver, ZoneEngine, ZoneParams

Transition = tuple[str, str | None]


class Distance:
    """Calibrated distance per receiver, shared by every pipeline."""

    def __init__(self, cal: dict[str, float], n: float) -> None:
        self.cal = cal
        self.k = 1.0 / (10.0 * n)

    def __call__(self, receiver: str, rssi: float) -> float:
        return 10.0 ** ((self.cal[receiver] - rssi) * self.k)


class Ours:
    def __init__(
        self,
        cal: dict[str, float],
        n: float,
        params: ZoneParams | BayesParams,
        name: str = "ours",
    ) -> None:
        self.name = name
        rx = [Receiver(r, r, Calibration(rssi_1m=v, path_loss_n=n)) for r, v in cal.items()]
        self.engine: ZoneEngine | BayesZoneEngine = (
            BayesZoneEngine(rx, params)
            if isinstance(params, BayesParams)
            else ZoneEngine(rx, params)
        )

    @staticmethod
    def _tr(changes: list) -> list[Transition]:
        out: list[Transition] = []
        for c in changes:
            if isinstance(c, Entered):
                out.append((c.key, c.zone))
            elif isinstance(c, Left):
                out.append((c.key, None))
        return out

    def observe(self, key: str, rssi: float, ts: float, receiver: str) -> list[Transition]:
        changes = self.engine.observe(key, rssi, ts, receiver)
        return self._tr(changes) if changes else []

    def tick(self, now: float) -> list[Transition]:
        return self._tr(self.engine.tick(now))


# The site's edges on the bench's store (the zones' 3 m circles, as the antennas see them).
ENTER_M, EXIT_M = 2.6, 4.2


def profile_params(name: str, kind: str | None = None) -> ZoneParams | BayesParams:
    """A shipped presence profile (``edge_agent/sensing/ble/profiles.py``) on the bench's store,
    ``kind`` replacing its filter. The Bayesian ones keep the module's own geometry (its 3.2 m
    edge was tuned on seed 12), with the profile's timing."""
    profile = PROFILES[name].with_overrides(filter=kind)
    if profile.method == "bayes":
        return BayesParams(dwell_report_s=1e9, **dict(profile.bayes))
    return profile.zone_params(
        ENTER_M, EXIT_M, away_min_s=2.0, away_max_s=10.0, away_misses=8.0, dwell_report_s=1e9
    )


def ours_params(kind: str = "median", profile: str = "responsive") -> ZoneParams:
    """The hysteresis engine with profile ``responsive`` (2 s fenced median, enter 2.6 m / exit
    4.2 m, 1 s leave hold, 3 s min dwell) or ``steady`` (Kalman q 1 dB^2/s, exit 4.0 m, 1.5 s
    leave hold, 4 s min dwell), the filter replaced by ``kind``."""
    params = profile_params(profile, kind)
    assert isinstance(params, ZoneParams)
    return params


def bayes_params(profile: str = "responsive") -> BayesParams:
    """The Bayesian filter, ``responsive`` (the module's defaults) or ``steady`` (readings 1 s
    apart count as one, 2 s at the edge, 10 s away, enter at 0.7); picked on seed 12."""
    params = profile_params("bayes_steady" if profile == "steady" else "bayes")
    assert isinstance(params, BayesParams)
    return params


class _KalmanJs:
    """kalmanjs 1-D (A = B = C = 1): R process noise, Q measurement noise, per sample."""

    __slots__ = ("r", "q", "x", "cov")

    def __init__(self, r: float, q: float) -> None:
        self.r, self.q, self.x, self.cov = r, q, math.nan, 0.0

    def filter(self, z: float) -> float:
        if self.x != self.x:
            self.x, self.cov = z, self.q
            return z
        pc = self.cov + self.r
        k = pc / (pc + self.q)
        self.x += k * (z - self.x)
        self.cov = pc - k * pc
        return self.x


class _Nearest:
    """Shared bookkeeping: per device, per receiver, (value, last ts); the current room."""

    name = "?"

    def __init__(self, dist: Distance, max_distance: float, timeout: float) -> None:
        self.dist = dist
        self.max_d = max_distance
        self.timeout = timeout
        self.readings: dict[str, dict[str, list]] = {}
        self.room: dict[str, str | None] = {}

    def _decide(self, key: str, now: float) -> list[Transition]:
        best, best_d = None, math.inf
        for rid, (d, ts, *_rest) in self.readings.get(key, {}).items():
            if now - ts <= self.timeout and d <= self.max_d and d < best_d:
                best, best_d = rid, d
        if self.room.get(key) != best:
            self.room[key] = best
            return [(key, best)]
        return []

    def tick(self, now: float) -> list[Transition]:
        out: list[Transition] = []
        for key in list(self.readings):
            out += self._decide(key, now)
            r = self.readings[key]
            for rid in [rid for rid, v in r.items() if now - v[1] > 4 * self.timeout]:
                del r[rid]
        return out


class RoomAssistant(_Nearest):
    name = "room_assistant"

    def __init__(self, dist: Distance, max_distance: float, timeout: float = 5.0) -> None:
        super().__init__(dist, max_distance, timeout)
        self.filters: dict[tuple[str, str], _KalmanJs] = {}

    def observe(self, key: str, rssi: float, ts: float, receiver: str) -> list[Transition]:
        d = self.dist(receiver, rssi)
        if d > self.max_d:
            return []  # maxDistance: the advert is not reported at all
        f = self.filters.get((key, receiver))
        if f is None:
            f = self.filters[(key, receiver)] = _KalmanJs(0.8, 15.0)
        self.readings.setdefault(key, {})[receiver] = [f.filter(d), ts]
        return self._decide(key, ts)


class ESPresense(_Nearest):
    name = "espresense"

    def __init__(self, dist: Distance, max_distance: float, window: float = 15.0) -> None:
        super().__init__(dist, max_distance, window)
        self.window = window
        self.euro: dict[tuple[str, str], OneEuro] = {}

    def observe(self, key: str, rssi: float, ts: float, receiver: str) -> list[Transition]:
        d = self.dist(receiver, rssi)
        f = self.euro.get((key, receiver))
        if f is None:
            f = self.euro[(key, receiver)] = OneEuro(0.1, 0.001, 0.005)
        v = f.update(d, ts)
        r = self.readings.setdefault(key, {})
        entry = r.get(receiver)
        if entry is None:
            entry = r[receiver] = [v, ts, deque()]
        hist: deque = entry[2]
        hist.append((ts, v))
        while hist and hist[0][0] < ts - self.window:
            hist.popleft()
        entry[0] = statistics.median(x for _, x in hist)
        entry[1] = ts
        return self._decide(key, ts)


class MqttRoom:
    name = "ha_mqtt_room"

    def __init__(
        self, dist: Distance, max_distance: float, timeout: float = 5.0, away: float = 10.0
    ) -> None:
        self.dist = dist
        self.max_d = max_distance
        self.timeout = timeout
        self.away = away
        # key -> [room, distance, updated]
        self.state: dict[str, list] = {}

    def observe(self, key: str, rssi: float, ts: float, receiver: str) -> list[Transition]:
        d = self.dist(receiver, rssi)
        if d > self.max_d:
            return []
        st = self.state.get(key)
        if st is None or st[0] is None:
            self.state[key] = [receiver, d, ts]
            return [(key, receiver)]
        if receiver == st[0]:
            st[1], st[2] = d, ts
            return []
        if d < st[1] or ts - st[2] > self.timeout:
            self.state[key] = [receiver, d, ts]
            return [(key, receiver)]
        return []

    def tick(self, now: float) -> list[Transition]:
        out: list[Transition] = []
        for key, st in self.state.items():
            if st[0] is not None and now - st[2] > self.away:
                st[0] = None
                out.append((key, None))
        return out
