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

Camera and mmWave (issue 18, ``sense``): the same shoppers plus strangers without the app (no
adverts), from their own seeded generator so the BLE trace above is untouched, seen by each
screen's camera and radar, which both cover its zone. The camera model's figures are the camera
bench's own measurements (BENCHMARKS.md, "Camera presence": 10 fps, 95% of frames find a person
in view, 60% at the region's edge, 1% of frames with a false hit, tracker confirm after 2 hits
and end 1 s after the last), plus foot-position error (0.25 m, on the range: each track's foot
position goes to the engines, bearing as seen), occlusion by a nearer person (70% of frames
within 0.3 rad), still people turned away 20% of the time (not found: the analyser's stated
limit) and id swaps when two people are within 0.6 m (2% of frames, an
assumption). The radar's are an LD2410-class 24 GHz sensor's (datasheet, ESPHome ``ld2410``):
0.75 m gates (0-2 used), 10 reports/s, presence 100-300 ms after the first detection, a 1 s
hold, 97% / 85% of reports find a moving / still person, one 0.2-1 s false trigger an hour (our
assumption). ``CameraModel`` and ``MmwaveModel`` hold every number with its source.

Everything is seeded: the same arguments give the same trace on every machine.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field

from edge_agent.sensing.ble.calibrate import Calibration

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
    # What the pipelines assume of the path loss (a recorded walk carries its receivers' own).
    path_loss_n: float = PATH_LOSS_N

    def calibration_of(self, receiver: str) -> Calibration:
        """What the pipelines were told about ``receiver``, as the agent's calibration."""
        return Calibration(rssi_1m=self.calibration[receiver], path_loss_n=PATH_LOSS_N)


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


# ---- camera and mmWave on the same ground truth (issue 18) --------------------------------
# Both sensors of a screen cover its zone (the 3 m disc the BLE truth uses): the bench's
# screens stand in the middle of their zone and shoppers stand all around them, so the model
# mounts the camera above the screen (a 2.2 m mast, wide lens, looking down and out) and the
# radar on the ceiling above it (LD2410-class sensors support a ceiling mount). Strangers
# (people without the store app: no adverts, seen by camera and radar only) walk the same
# store with the same path model, from their own seeded generator, so the BLE trace and every
# BLE figure stay exactly as they were.


@dataclass(frozen=True, slots=True)
class CameraModel:
    """The screen camera, from the camera bench's own measurements (BENCHMARKS.md, "Camera
    presence"): people counted right in 91.4% of frames, the misses at entry and exit (a person
    half in view), attention recall 1.000, no invented person over the clips (6 tracks for 6
    people), 99% of empty-scene frames right; the tracker confirms a person after 2 hits and
    ends a track 1 s after its last one (``camera/tracker.py``); the agent analyses 10 fps
    (``camera.fps``) and a busy frame takes ~35 ms on the bench machine (28 fps)."""

    fps: float = 10.0
    latency_s: float = 0.05  # capture to count (a busy frame's analysis, ~35 ms, plus queueing)
    region_m: float = ZONE_R  # the screen's region: the zone
    pos_sd_m: float = 0.25  # error of the foot position from a box, per frame
    p_detect: float = 0.95  # a person in view, not occluded, found in a frame
    edge_m: float = 0.4  # within this of the region's edge a person is half in view ...
    p_detect_edge: float = 0.6  # ... and found less often (the 91.4%: entry and exit frames)
    away_share: float = 0.2  # a person standing still is turned away this share of the time,
    away_s: float = 4.0  # in spells of about this long, and then not found at all (the
    # analyser counts faces and moving bodies: a still, turned-away person is its stated limit)
    occlusion_rad: float = 0.3  # a nearer person within this bearing hides a farther one ...
    p_occluded_miss: float = 0.7  # ... in this share of frames
    swap_m: float = 0.6  # two people this close (as the camera sees them) ...
    p_swap: float = 0.02  # ... swap track ids in this share of frames (a centroid tracker's
    # classic failure when people cross; the bench's clips had none, so this is an assumption)
    false_hits_per_frame: float = 0.01  # empty scene: 99% of frames right
    false_same_place: float = (
        0.1  # a false hit where the last one was (a poster face, a reflection)
    )
    min_hits: int = 2
    max_gap_s: float = 1.0


@dataclass(frozen=True, slots=True)
class MmwaveModel:
    """A 24 GHz presence radar, LD2410-class (HLK-LD2410 datasheet and ESPHome's ld2410
    component): 0.75 m range gates, ~10 reports/s, presence reported ~100-300 ms after a
    person appears, an "unmanned duration" hold before it reports nobody (5 s by default;
    configured to 1 s here), a still person found by micro-motion less reliably than a moving
    one, and occasional false triggers (fans, air, moving fittings: our assumption of one an
    hour per sensor, each a burst of 0.2-1 s). It cannot count and sees through people."""

    report_s: float = 0.1
    range_m: float = 2.25  # gates 0-2 of 0.75 m: the range ends inside the zone, not past it
    gate_m: float = 0.75
    dist_sd_m: float = 0.2
    p_detect_moving: float = 0.97
    p_detect_still: float = 0.85
    delay_s: tuple[float, float] = (0.1, 0.3)
    hold_s: float = 1.0
    false_per_hour: float = 1.0
    false_len_s: tuple[float, float] = (0.2, 1.0)


# (time delivered, confirmed track ids in the region, people in view outside it, each track's
# measured foot position (x, y) in metres from the screen, in the order of the ids)
Frame = tuple[float, tuple[int, ...], int, tuple[tuple[float, float], ...]]


@dataclass
class SensorTrace:
    """Everyone in the store (the BLE trace's shoppers first, then strangers) and what each
    screen's camera and radar reported: per zone, (time delivered, the confirmed tracks in the
    region: anonymous ids, "the same person as a moment ago", people in view just outside
    it, each track's foot position from the screen) per frame, and the radar's (time, on) changes."""

    people: list[Shopper]
    n_app: int
    frames: dict[str, list[Frame]]
    radar: dict[str, list[tuple[float, bool]]]
    camera: CameraModel
    mmwave: MmwaveModel


def strangers(n: int, duration_s: float, seed: int = 11) -> list[Shopper]:
    """People without the app, walking like the shoppers (their own generator)."""
    rng = random.Random(seed * 7919 + 1)
    out = [_make_shopper(rng, i, rng.uniform(0, duration_s * 0.75)) for i in range(n)]
    for sh in out:
        sh.key = f"x{sh.key[1:]}"
    return out


class _CamTrack:
    __slots__ = ("hits", "last", "inside", "id", "foot")

    def __init__(self) -> None:
        self.hits = 0
        self.last = -1e9
        self.inside = False
        self.id = 0
        # measured foot position from the screen at the last hit: the bearing as seen, the
        # range with pos_sd_m error (a monocular camera's range comes from the box's size)
        self.foot = (0.0, 0.0)


def sense(
    trace: Trace,
    *,
    strangers_per_shopper: float = 1.0,
    camera: CameraModel | None = None,
    mmwave: MmwaveModel | None = None,
    seed: int = 11,
) -> SensorTrace:
    """Camera frames and radar changes for every screen over ``trace``'s shoppers plus
    ``strangers_per_shopper`` strangers each, seeded (the BLE trace is not touched)."""
    cam = camera or CameraModel()
    mm = mmwave or MmwaveModel()
    n_app = len(trace.shoppers)
    people = trace.shoppers + strangers(
        round(n_app * strangers_per_shopper), trace.duration_s, seed
    )
    rng = random.Random(seed * 104729 + 3)
    end = max(p.t_end for p in people) + 5.0
    order = sorted(range(len(people)), key=lambda i: people[i].t_start)
    frames: dict[str, list[Frame]] = {z: [] for z in SCREENS}
    ids = iter(range(1, 1 << 62))
    radar: dict[str, list[tuple[float, bool]]] = {z: [] for z in SCREENS}
    tracks: dict[str, dict[int, _CamTrack]] = {z: {} for z in SCREENS}
    false_tr: dict[str, _CamTrack] = {z: _CamTrack() for z in SCREENS}
    raw_last: dict[str, float] = dict.fromkeys(SCREENS, -1e9)  # radar: last raw detection
    radar_on: dict[str, bool] = dict.fromkeys(SCREENS, False)
    radar_pending: dict[str, float | None] = dict.fromkeys(SCREENS, None)
    false_until: dict[str, float] = dict.fromkeys(SCREENS, -1.0)
    p_false = mm.false_per_hour * mm.report_s / 3600
    dt = 1.0 / cam.fps
    step = min(dt, mm.report_s)
    active: list[int] = []
    nxt = 0
    t = 0.0
    next_frame = 0.0
    next_report = 0.0
    prev_pos: dict[int, tuple[float, float]] = {}
    away: dict[int, bool] = {}  # turned away (while still)
    p_turn = step / cam.away_s  # per step, the chance an away spell ends ...
    p_away = p_turn * cam.away_share / max(1e-9, 1 - cam.away_share)  # ... or starts
    while t < end:
        while nxt < len(order) and people[order[nxt]].t_start <= t:
            active.append(order[nxt])
            nxt += 1
        active = [i for i in active if people[i].t_end >= t]
        pos = {i: people[i].position(t) for i in active}
        near: dict[str, list[tuple[int, float, float, bool]]] = {z: [] for z in SCREENS}
        for i, (x, y) in pos.items():
            px, py = prev_pos.get(i, (x, y))
            moving = math.hypot(x - px, y - py) > 0.3 * step
            if moving:
                away[i] = False
            elif rng.random() < (p_turn if away.get(i) else p_away):
                away[i] = not away.get(i)
            for z, (sx, sy) in SCREENS.items():
                d = math.hypot(x - sx, y - sy)
                if d < ZONE_R + 1.5:
                    near[z].append((i, d, math.atan2(y - sy, x - sx), moving))
        prev_pos = pos
        if t >= next_frame - 1e-9:
            next_frame += dt
            for z in SCREENS:
                ztr = tracks[z]
                for i, d, bearing, _mv in near[z]:
                    if away.get(i):
                        continue
                    dm = d + rng.gauss(0, cam.pos_sd_m)
                    inside = dm <= cam.region_m
                    p = cam.p_detect_edge if abs(d - cam.region_m) < cam.edge_m else cam.p_detect
                    for j, d2, b2, _ in near[z]:
                        if j != i and d2 < d:
                            db = abs((bearing - b2 + math.pi) % (2 * math.pi) - math.pi)
                            if db < cam.occlusion_rad:
                                p *= 1.0 - cam.p_occluded_miss
                                break
                    if rng.random() < p:
                        tr = ztr.get(i)
                        if tr is None:
                            tr = ztr[i] = _CamTrack()
                        tr.hits = tr.hits + 1 if t - tr.last <= cam.max_gap_s else 1
                        if tr.hits == 1:
                            tr.id = next(ids)
                        tr.last = t
                        tr.inside = inside
                        r = max(0.0, dm)
                        tr.foot = (round(r * math.cos(bearing), 2), round(r * math.sin(bearing), 2))
                close = [
                    (i, j)
                    for n_i, (i, d, b, _) in enumerate(near[z])
                    for j, d2, b2, _ in near[z][n_i + 1 :]
                    if i in ztr and j in ztr and (d - d2) ** 2 + (d * (b - b2)) ** 2 < cam.swap_m**2
                ]
                for i, j in close:
                    if rng.random() < cam.p_swap:
                        ztr[i].id, ztr[j].id = ztr[j].id, ztr[i].id
                ftr = false_tr[z]
                if rng.random() < cam.false_hits_per_frame:
                    same = t - ftr.last <= cam.max_gap_s and rng.random() < cam.false_same_place
                    ftr.hits = ftr.hits + 1 if same else 1
                    if ftr.hits == 1:
                        ftr.id = next(ids)
                    ftr.last = t
                seen: list[int] = []
                feet: list[tuple[float, float]] = []
                outside = 0
                for i, tr in list(ztr.items()):
                    if t - tr.last > cam.max_gap_s:
                        del ztr[i]
                    elif tr.hits >= cam.min_hits:
                        if tr.inside:
                            seen.append(tr.id)
                            feet.append(tr.foot)
                        else:
                            outside += 1
                if ftr.hits >= cam.min_hits and t - ftr.last <= cam.max_gap_s:
                    seen.append(ftr.id)
                    # A false hit stays where it is (a poster's face): a fixed place per id, from
                    # the id rather than the generator so every other draw is unchanged.
                    r, a = 0.5 + (ftr.id * 0.618034) % 1.0 * 2.5, ftr.id * 2.399963
                    feet.append((round(r * math.cos(a), 2), round(r * math.sin(a), 2)))
                frames[z].append((round(t + cam.latency_s, 3), tuple(seen), outside, tuple(feet)))
        if t >= next_report - 1e-9:
            next_report += mm.report_s
            for z in SCREENS:
                hit = False
                for _i, d, _b, mv in near[z]:
                    dm = d + rng.gauss(0, mm.dist_sd_m)
                    if int(dm / mm.gate_m) * mm.gate_m < mm.range_m:  # its gate is in range
                        pd = mm.p_detect_moving if mv else mm.p_detect_still
                        if rng.random() < pd:
                            hit = True
                            break
                if rng.random() < p_false:
                    false_until[z] = t + rng.uniform(*mm.false_len_s)
                if t < false_until[z]:
                    hit = True
                if hit:
                    raw_last[z] = t
                    if not radar_on[z] and radar_pending[z] is None:
                        radar_pending[z] = t + rng.uniform(*mm.delay_s)
                pend = radar_pending[z]
                if pend is not None and t >= pend:
                    radar_pending[z] = None
                    if not radar_on[z]:
                        radar_on[z] = True
                        radar[z].append((round(t, 3), True))
                if radar_on[z] and t - raw_last[z] > mm.hold_s:
                    radar_on[z] = False
                    radar[z].append((round(t, 3), False))
        t = round(t + step, 6)
    return SensorTrace(people, n_app, frames, radar, cam, mm)
