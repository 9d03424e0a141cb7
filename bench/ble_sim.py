"""A simulated store for BLE presence benchmarks: adverts with ground truth.

Layout: a 20 m x 30 m floor with six screens in a 2 x 3 grid (10 m apart), each screen with
its own receiver at the screen and a zone of radius ``ZONE_R`` m in front of it; the door is
at (10, 0). Shoppers come in through the door, visit 1 to 4 screens (walking at 0.9-1.4 m/s,
straight lines, so some walk through another zone on the way), stand 10-90 s near each screen
(shuffling within 1.5 m of it), and leave through the door.

Radio: log-distance path loss ``rssi = rssi_1m(receiver) - 10 n log10(d)`` with ``n = 2.2``,
plus slow shadowing (AR(1), 4 dB, 2 s correlation time per device and receiver: bodies,
shelves), fast fading (3 dB gaussian), 6% deep fades (-6 to -20 dB, multipath nulls),
integer RSSI, a -95 dBm sensitivity floor, and receptions dropped with a probability that
grows with distance (10% near, 40% at the edge: scan duty cycle and collisions). Each
receiver's 1 m level differs (-63..-53 dBm); pipelines get it with a 1 dB calibration error.
Advertising intervals are a mix (100 ms tags, 250 ms and 1 s phones, 2 s background apps)
with BLE's 0-10 ms random advDelay.

Everything is seeded: the same arguments give the same trace on every machine.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field

ZONE_R = 3.0
PATH_LOSS_N = 2.2
SENSITIVITY = -95
DOOR = (10.0, 0.0)
SCREENS = {
    "z1": (5.0, 5.0),
    "z2": (15.0, 5.0),
    "z3": (5.0, 15.0),
    "z4": (15.0, 15.0),
    "z5": (5.0, 25.0),
    "z6": (15.0, 25.0),
}
INTERVALS = ((0.1, 0.15), (0.25, 0.35), (1.0, 0.35), (2.0, 0.15))  # (seconds, share)


@dataclass(frozen=True, slots=True)
class Visit:
    zone: str
    t_in: float
    t_out: float


@dataclass
class Shopper:
    key: str
    interval: float
    t_start: float
    t_end: float
    # Piecewise-linear path: times and positions.
    times: list[float] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)

    def position(self, t: float) -> tuple[float, float]:
        i = bisect.bisect_right(self.times, t) - 1
        if i < 0:
            return self.points[0]
        if i >= len(self.times) - 1:
            return self.points[-1]
        t0, t1 = self.times[i], self.times[i + 1]
        (x0, y0), (x1, y1) = self.points[i], self.points[i + 1]
        f = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
        return x0 + f * (x1 - x0), y0 + f * (y1 - y0)

    def true_zone(self, t: float) -> str | None:
        x, y = self.position(t)
        for z, (sx, sy) in SCREENS.items():
            if (x - sx) ** 2 + (y - sy) ** 2 <= ZONE_R * ZONE_R:
                return z
        return None


@dataclass
class Trace:
    shoppers: list[Shopper]
    # (ts, shopper index, receiver id, rssi), sorted by ts.
    adverts: list[tuple[float, int, str, int]]
    rssi_1m: dict[str, float]  # the true 1 m level per receiver
    calibration: dict[str, float]  # what the pipelines were told (with calibration error)
    duration_s: float


def _walk(rng: random.Random, sh: Shopper, t: float, pos, target) -> tuple[float, tuple]:
    speed = rng.uniform(0.9, 1.4)
    d = math.dist(pos, target)
    t += d / speed
    sh.times.append(t)
    sh.points.append(target)
    return t, target


def _make_shopper(rng: random.Random, i: int, t0: float) -> Shopper:
    r = rng.random()
    acc = 0.0
    interval = INTERVALS[-1][0]
    for iv, share in INTERVALS:
        acc += share
        if r < acc:
            interval = iv
            break
    sh = Shopper(key=f"s{i}", interval=interval, t_start=t0, t_end=t0)
    sh.times.append(t0)
    sh.points.append(DOOR)
    t, pos = t0, DOOR
    for z in rng.sample(list(SCREENS), rng.randint(1, 4)):
        sx, sy = SCREENS[z]
        ang = rng.uniform(0, 2 * math.pi)
        rad = rng.uniform(0.3, 1.5)
        spot = (sx + rad * math.cos(ang), sy + rad * math.sin(ang))
        t, pos = _walk(rng, sh, t, pos, spot)
        stay_end = t + rng.uniform(10, 90)
        while t < stay_end:  # shuffle in front of the screen
            step = min(stay_end - t, rng.uniform(3, 10))
            ang = rng.uniform(0, 2 * math.pi)
            rad = rng.uniform(0.3, 1.5)
            nxt = (sx + rad * math.cos(ang), sy + rad * math.sin(ang))
            t += step
            sh.times.append(t)
            sh.points.append(nxt)
            pos = nxt
    t, pos = _walk(rng, sh, t, pos, DOOR)
    sh.t_end = t
    sh.visits = _visits(sh)
    return sh


def _visits(sh: Shopper, step: float = 0.1) -> list[Visit]:
    out: list[Visit] = []
    cur: str | None = None
    since = sh.t_start
    t = sh.t_start
    while t <= sh.t_end:
        z = sh.true_zone(t)
        if z != cur:
            if cur is not None:
                out.append(Visit(cur, since, t))
            cur, since = z, t
        t += step
    if cur is not None:
        out.append(Visit(cur, since, sh.t_end))
    return out


def generate(n_shoppers: int, duration_s: float, seed: int = 11, shadow_db: float = 4.0) -> Trace:
    """``shadow_db``: the slow shadowing's spread (the dominant noise; see the module doc)."""
    rng = random.Random(seed)
    rssi_1m = {z: rng.uniform(-63, -53) for z in SCREENS}
    calib = {z: v + rng.gauss(0, 1.0) for z, v in rssi_1m.items()}
    shoppers = [_make_shopper(rng, i, rng.uniform(0, duration_s * 0.75)) for i in range(n_shoppers)]
    adverts: list[tuple[float, int, str, int]] = []
    for idx, sh in enumerate(shoppers):
        nrng = random.Random(rng.random())
        shadow = dict.fromkeys(SCREENS, 0.0)
        shadow_t = sh.t_start
        t = sh.t_start + nrng.uniform(0, sh.interval)
        while t < sh.t_end:
            x, y = sh.position(t)
            rho = math.exp(-(t - shadow_t) / 2.0)
            shadow_t = t
            k = math.sqrt(1 - rho * rho) * shadow_db
            for z, (sx, sy) in SCREENS.items():
                shadow[z] = rho * shadow[z] + k * nrng.gauss(0, 1)
                d = max(0.3, math.hypot(x - sx, y - sy, 1.2))  # antenna 1.2 m above the phone
                rssi = rssi_1m[z] - 10 * PATH_LOSS_N * math.log10(d)
                rssi += shadow[z] + nrng.gauss(0, 3.0)
                if nrng.random() < 0.06:
                    rssi -= nrng.uniform(6, 20)
                if rssi < SENSITIVITY:
                    continue
                p_drop = 0.1 + 0.3 * min(1.0, max(0.0, (-rssi - 65) / 25))
                if nrng.random() < p_drop:
                    continue
                adverts.append((t, idx, z, max(-127, min(0, round(rssi)))))
            t += sh.interval + nrng.uniform(0, 0.01)
    adverts.sort(key=lambda a: a[0])
    return Trace(shoppers, adverts, rssi_1m, calib, duration_s)
