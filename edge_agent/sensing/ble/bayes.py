"""Zone assignment as a Bayesian forward filter (an HMM over away, near and in each zone).

Why not smooth-then-threshold (``zones.py``): a smoothed RSSI forgets how much evidence it
rests on. One reading of a phone that advertises every 2 s and ten readings of a 100 ms tag
inside the same 1 s of slow shadowing carry about the same information, and a threshold on a
filter treats them alike only by luck. Here every advert adds a log-likelihood ratio, weighted
by how independent it is, to a posterior over where the device is:

- states: ``away`` (far from every zone, or gone), and per zone ``in`` and ``near`` (between
  its edge ``zone_m`` and ``approach_m``): a shopper reaches a zone through its edge, so a
  signal that has been rising for a while makes "in" likely sooner than one out of nowhere;
- predict (between adverts and on ticks): continuous-time transitions away -> near z
  (mean ``far_s``), near z -> in z or away (mean ``near_s``, ``in_share`` of them in),
  in z -> near z (mean ``stay_s``: sticky, a standing shopper stays);
- update (per advert from a receiver of zone z): "in z" and "near z" are weighed by
  ``P(rssi | in that band of distance) / P(rssi | anywhere beyond zone_m)``, from the
  receiver's calibrated path-loss model with ``sigma_db`` of shadowing and a share of deep
  fades (so a multipath null is weak evidence, not a verdict). The ratios are precomputed per
  path-loss exponent in 0.5 dB steps: the hot path is a table lookup, two ``exp`` and a pass
  over the 2K+1 states (K zones, six in the bench store);
- correlation: shadowing changes over about a second, so ten adverts in 100 ms are not ten
  independent readings. Each advert's log-ratio is multiplied by ``min(1, gap / corr_s)``,
  ``gap`` being the time since the same receiver last heard the device: evidence arrives at
  most about one reading per ``corr_s`` whatever the advertising interval, and a slow
  advertiser's one reading counts in full;
- decide with hysteresis on the posterior: enter the most likely zone when it reaches
  ``p_enter``; leave when the current zone falls below ``p_leave`` (then enter the most likely
  other zone if it is above ``p_enter``: "moved");
- silence: each advert its zone's receiver should have heard (per the learned advertising
  interval) and did not weighs "in" by ``miss_in / miss_out`` (weighted like a reading), so
  the posterior falls while nothing is heard; not heard at all for the away timeout
  (``away_misses`` learned intervals, within ``away_min_s..away_max_s``), it leaves anyway.
  Leaves decided on the clock are "timeout", their dwell running to the last advert heard.

The same events as ``ZoneEngine`` come out (``Entered``, ``Left`` with reason "weak", "moved"
or "timeout", ``DwellTick``), so the agent and the bench use either. Keys are whatever the
caller uses (the agent passes internal keys, never raw addresses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge_agent.sensing.ble.calibrate import Calibration
from edge_agent.sensing.ble.zones import (
    DwellTick,
    Entered,
    Left,
    PresenceChange,
    Receiver,
    ZoneStats,
    learned_away_s,
    learned_gap,
)

STEP_DB = 0.5  # table resolution
LO_DB, HI_DB = -80.0, 20.0  # table range, relative to the receiver's 1 m level


@dataclass(frozen=True, slots=True)
class BayesParams:
    zone_m: float = 3.2  # a zone's edge, as distance from its receiver's antenna
    near_m: float = 1.0  # closest a shopper stands to an antenna
    approach_m: float = 6.4  # "near" a zone: between its edge and this
    far_m: float = 12.0  # how far "out" reaches, for its likelihood
    sigma_db: float = 5.0  # shadowing and fast fading together, one reading
    fade_share: float = 0.06  # share of readings in a deep fade (multipath null)
    fade_db: float = 13.0  # mean depth of a fade
    corr_s: float = 0.6  # readings this close share their shadowing
    llr_max: float = 3.0  # no single reading says more than e^3 : 1
    stay_s: float = 30.0  # mean time in a zone before stepping out to its edge
    near_s: float = 1.0  # mean time near a zone's edge (walking) before going in or away
    in_share: float = 0.5  # of those leaving the edge, the share that go in
    far_s: float = 3.0  # mean time away from every zone before approaching one
    miss_in: float = 0.15  # chance its zone's receiver misses an advert of a device in the zone
    miss_out: float = 0.45  # ... of a device out of it
    p_enter: float = 0.6
    p_leave: float = 0.3
    away_min_s: float = 2.0
    away_max_s: float = 12.0
    away_misses: float = 8.0
    dwell_report_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.near_m < self.zone_m < self.approach_m < self.far_m:
            raise ValueError("bayes: need 0 < near_m < zone_m < approach_m < far_m")
        if not 0 < self.p_leave < self.p_enter < 1:
            raise ValueError("bayes: need 0 < p_leave < p_enter < 1 (the gap is the hysteresis)")
        if not 0 < self.in_share < 1:
            raise ValueError("bayes: in_share must be in (0, 1)")
        if not (0 < self.miss_in < 1 and 0 < self.miss_out <= 1):
            raise ValueError("bayes: miss_in must be in (0, 1) and miss_out in (0, 1]")
        times = (self.sigma_db, self.corr_s, self.stay_s, self.near_s, self.far_s, self.llr_max)
        if min(times) <= 0:
            raise ValueError(
                "bayes: sigma_db, corr_s, stay_s, near_s, far_s and llr_max must be positive"
            )
        if not 0 <= self.fade_share < 1:
            raise ValueError("bayes: fade_share must be in [0, 1)")
        if not 0 < self.away_min_s <= self.away_max_s:
            raise ValueError("bayes: need 0 < away_min_s <= away_max_s")


def _normal_pdf(x: float, mu: float, sd: float) -> float:
    z = (x - mu) / sd
    return math.exp(-0.5 * z * z) / (sd * 2.5066282746310002)


def llr_tables(path_loss_n: float, p: BayesParams) -> tuple[list[float], list[float]]:
    """Per STEP_DB of ``x = rssi - rssi_1m`` from LO_DB: log P(x | in the zone) and
    log P(x | near its edge), each minus log P(x | anywhere beyond the edge).

    Distances are spread evenly in log-distance over each band (a walking shopper spends
    about as long between 1 and 2 m as between 2 and 4 m of a receiver); each reading is the
    path loss plus gaussian noise, or with ``fade_share`` a fade ``fade_db`` deeper with a
    wider spread, so one multipath null is weak evidence, not a verdict."""
    n10 = 10.0 * path_loss_n
    sd = p.sigma_db
    sd_f = math.hypot(sd, p.fade_db / 3.0)

    def band(d0: float, d1: float, k: int = 24) -> list[float]:
        a, b = math.log10(d0), math.log10(d1)
        return [-n10 * (a + (b - a) * (i + 0.5) / k) for i in range(k)]

    inside = band(p.near_m, p.zone_m)
    near = band(p.zone_m, p.approach_m)
    outside = band(p.zone_m, p.far_m)
    f = p.fade_share

    def lik(x: float, mus: list[float]) -> float:
        s = 0.0
        for mu in mus:
            s += (1 - f) * _normal_pdf(x, mu, sd) + f * _normal_pdf(x, mu - p.fade_db, sd_f)
        return s / len(mus) + 1e-300

    cap = p.llr_max
    t_in: list[float] = []
    t_near: list[float] = []
    for i in range(int((HI_DB - LO_DB) / STEP_DB) + 1):
        x = LO_DB + i * STEP_DB
        lo = math.log(lik(x, outside))
        for t, mus in ((t_in, inside), (t_near, near)):
            v = math.log(lik(x, mus)) - lo
            t.append(cap if v > cap else -cap if v < -cap else v)
    return t_in, t_near


class _Rx:
    __slots__ = ("zi", "base", "t_in", "t_near", "cal")

    def __init__(self, zi: int, cal: Calibration, tables: tuple[list[float], list[float]]):
        self.zi = zi  # its zone's index, 1..K
        self.cal = cal
        self.base = cal.rssi_1m + LO_DB  # rssi of table[0]
        self.t_in, self.t_near = tables


class _Track:
    __slots__ = ("rx", "last", "gap", "rssi", "missed")

    def __init__(self, rx: _Rx, ts: float, rssi: float) -> None:
        self.rx = rx
        self.last = ts
        self.gap = 0.0  # learned advertising interval (0 until two adverts)
        self.rssi = rssi
        self.missed = 0  # adverts missed since ``last`` already counted as evidence


class _Device:
    __slots__ = ("p", "t", "tracks", "zone", "since", "zone_last", "last_dwell", "last")

    def __init__(self, start: list[float], ts: float) -> None:
        # Posterior, sums to 1: [away, in zone 1..K, near zone 1..K].
        self.p = start.copy()
        self.t = ts  # time of the posterior
        self.tracks: dict[str, _Track] = {}
        self.zone = 0  # decided zone, 1..K, or 0: none
        self.since = 0.0
        self.zone_last = 0.0  # last advert from a receiver of its zone
        self.last_dwell = 0.0
        self.last = ts


class BayesZoneEngine:
    """Same interface as ``ZoneEngine``: ``observe``, ``tick``, ``present``, ``zone_of``..."""

    def __init__(
        self,
        receivers: list[Receiver],
        params: BayesParams | None = None,
        *,
        fallback: Receiver | None = None,
    ) -> None:
        self.params = p = params or BayesParams()
        zones: list[str] = []
        for r in [*receivers, *([fallback] if fallback else [])]:
            if r.zone not in zones:
                zones.append(r.zone)
        self.zones = ["", *zones]  # decided zone names by index; "" is none
        k = self._k = len(zones)
        # A new device: away, near a zone or in one alike, until its readings say which.
        self._start = [1 / 3] + [1 / (3 * k)] * (2 * k) if k else [1.0]
        self._miss = (
            math.log(p.miss_in / p.miss_out),
            math.log(min(1.0, (p.miss_in + p.miss_out) / 2) / p.miss_out),
        )
        tables: dict[float, tuple[list[float], list[float]]] = {}

        def compile_rx(r: Receiver) -> _Rx:
            c = r.calibration
            t = tables.get(c.path_loss_n)
            if t is None:  # the tables depend on the exponent only, not on the 1 m level
                t = tables[c.path_loss_n] = llr_tables(c.path_loss_n, p)
            return _Rx(self.zones.index(r.zone), c, t)

        self._rx = {r.id: compile_rx(r) for r in receivers}
        self._fallback = compile_rx(fallback) if fallback is not None else None
        self._devices: dict[str, _Device] = {}
        self.stats = ZoneStats()

    # ---- hot path ----------------------------------------------------------------------
    def observe(
        self, key: str, rssi: float, ts: float, receiver: str = "local"
    ) -> list[PresenceChange]:
        self.stats.adverts += 1
        dev = self._devices.get(key)
        tr = None if dev is None else dev.tracks.get(receiver)
        if tr is None:
            rx = self._rx.get(receiver) or self._fallback
            if rx is None:
                self.stats.unknown_receiver += 1
                return []
            if dev is None:
                dev = self._devices[key] = _Device(self._start, ts)
            tr = dev.tracks[receiver] = _Track(rx, ts, rssi)
            w = 1.0
        else:
            rx = tr.rx
            gap = ts - tr.last
            if gap > 0:
                tr.gap = learned_gap(tr.gap, gap)
                tr.last = ts
                w = gap / self.params.corr_s
                if w > 1.0:
                    w = 1.0
            else:
                w = 0.0
            tr.rssi = rssi
            tr.missed = 0
        assert dev is not None  # a known track has its device
        if ts > dev.last:
            dev.last = ts
        self._predict(dev, ts)
        if w > 0.0:
            i = int((rssi - rx.base) * 2.0 + 0.5)  # 1 / STEP_DB
            n = len(rx.t_in)
            i = 0 if i < 0 else i if i < n else n - 1
            self._weigh(dev.p, rx.zi, w * rx.t_in[i], w * rx.t_near[i])
        zi = rx.zi
        if zi == dev.zone and ts > dev.zone_last:
            dev.zone_last = ts
        return self._decide(key, dev, ts, tr)

    def _weigh(self, pz: list[float], zi: int, llr_in: float, llr_near: float) -> None:
        """Bayes' rule for one reading (or one missed advert) of zone ``zi``'s receiver."""
        a = pz[zi]
        b = pz[zi + self._k]
        a2 = a * math.exp(llr_in)
        b2 = b * math.exp(llr_near)
        inv = 1.0 / (1.0 + (a2 - a) + (b2 - b))
        for j in range(len(pz)):
            pz[j] *= inv
        pz[zi] = a2 * inv
        pz[zi + self._k] = b2 * inv

    def _predict(self, dev: _Device, ts: float) -> None:
        """Continuous-time transitions, one jump at most: away -> near z -> in z and back."""
        dt = ts - dev.t
        if dt <= 0.0:
            return
        dev.t = ts
        p = self.params
        k = self._k
        s_in = math.exp(-dt / p.stay_s)
        s_near = math.exp(-dt / p.near_s)
        pz = dev.p
        far = pz[0]
        approach = far * (1.0 - math.exp(-dt / p.far_s)) / k
        to_in = (1.0 - s_near) * p.in_share
        to_far = (1.0 - s_near) - to_in
        back = 0.0
        for z in range(1, k + 1):
            a = pz[z]
            b = pz[z + k]
            pz[z] = a * s_in + b * to_in
            pz[z + k] = b * s_near + a * (1.0 - s_in) + approach
            back += b * to_far
        pz[0] = far - approach * k + back

    def _decide(
        self, key: str, dev: _Device, ts: float, tr: _Track | None, silent: bool = False
    ) -> list:
        """``silent``: called from the clock, nothing heard; a leave then is a "timeout" and
        its dwell runs until the zone last heard the device, not until we noticed."""
        p = self.params
        pz = dev.p
        cur = dev.zone
        if cur and pz[cur] >= p.p_leave:
            return []
        best, pb = 0, 0.0
        for j in range(1, self._k + 1):
            if j != cur and pz[j] > pb:
                best, pb = j, pz[j]
        if not cur:
            if pb >= p.p_enter:
                return [self._enter(key, dev, best, ts, tr)]
            return []
        if pb >= p.p_enter:
            return [self._leave(key, dev, ts, "moved"), self._enter(key, dev, best, ts, tr)]
        if silent:
            return [self._leave(key, dev, max(dev.zone_last, dev.since), "timeout")]
        return [self._leave(key, dev, ts, "weak")]

    def _enter(self, key: str, dev: _Device, zi: int, ts: float, tr: _Track | None) -> Entered:
        dev.zone = zi
        dev.since = dev.zone_last = dev.last_dwell = ts
        # Report the latest reading of the zone's receiver (the one that tipped it, usually).
        if tr is None or tr.rx.zi != zi:
            tr = next((t for t in dev.tracks.values() if t.rx.zi == zi), None)
        if tr is None:
            return Entered(key, ts, 0.0, self.zones[zi], 0.0)
        return Entered(
            key, ts, round(tr.rssi, 1), self.zones[zi], round(tr.rx.cal.distance_m(tr.rssi), 2)
        )

    def _leave(self, key: str, dev: _Device, ts: float, reason: str) -> Left:
        zone = self.zones[dev.zone]
        dwell = ts - dev.since
        dev.zone = 0
        return Left(key, ts, dwell if dwell > 0 else 0.0, reason, zone)

    # ---- clock -------------------------------------------------------------------------
    def away_timeout_s(self, tr: _Track) -> float:
        p = self.params
        return learned_away_s(tr.gap, p.away_misses, p.away_min_s, p.away_max_s)

    def tick(self, now: float) -> list[PresenceChange]:
        """Timeouts, missed adverts, the posterior's drift while nothing is heard, dwell."""
        out: list[PresenceChange] = []
        p = self.params
        floor = p.away_min_s
        report = p.dwell_report_s
        corr = p.corr_s
        cap = p.llr_max
        m_in, m_near = self._miss
        m_lim = max(abs(m_in), abs(m_near))
        for key, dev in list(self._devices.items()):
            if now - dev.last > floor:
                tracks = dev.tracks
                for rid, tr in list(tracks.items()):
                    if now - tr.last > self.away_timeout_s(tr):
                        del tracks[rid]
                zi = dev.zone
                if zi and not any(t.rx.zi == zi for t in tracks.values()):
                    # Dwell runs until the zone last heard it, not until we noticed.
                    left = self._leave(key, dev, max(dev.zone_last, dev.since), "timeout")
                    out.append(left)
                    # What the zone said is stale: start again from away.
                    dev.p[:] = [1.0] + [0.0] * (len(dev.p) - 1)
                if not tracks:
                    del self._devices[key]
                    continue
            zi = dev.zone
            if not zi:
                continue
            self._predict(dev, now)
            # Adverts its zone's receivers should have heard by now and did not: evidence
            # for "not here", as correlated as the readings (weighted the same way).
            for tr in dev.tracks.values():
                # BLE advertises every 20 ms at most: a shorter learned gap is two frames of
                # one advert, and must not turn a moment's silence into thousands of misses.
                g = tr.gap if tr.gap > 0.02 else 0.02
                if tr.gap and tr.rx.zi == zi:
                    m = min(int((now - tr.last) / g - 0.5), 1_000_000)
                    if m > tr.missed:
                        w = (m - tr.missed) * (g / corr if g < corr else 1.0)
                        tr.missed = m
                        # Capped like a reading: one tick's silence says at most e^llr_max : 1.
                        if w * m_lim > cap:
                            w = cap / m_lim
                        self._weigh(dev.p, zi, w * m_in, w * m_near)
            changes = self._decide(key, dev, now, None, silent=True)
            if changes:
                out += changes
                continue
            if now - dev.last_dwell >= report:
                dev.last_dwell = now
                out.append(DwellTick(key, now, now - dev.since, self.zones[zi]))
        return out

    # ---- queries -----------------------------------------------------------------------
    def present(self, zone: str | None = None) -> set[str]:
        if zone is None:
            return {k for k, d in self._devices.items() if d.zone}
        zs = self.zones
        return {k for k, d in self._devices.items() if d.zone and zs[d.zone] == zone}

    def zone_of(self, key: str) -> str | None:
        d = self._devices.get(key)
        return None if d is None or not d.zone else self.zones[d.zone]

    def dwell_s(self, key: str, now: float) -> float:
        d = self._devices.get(key)
        return 0.0 if d is None or not d.zone else max(0.0, now - d.since)

    def tracked(self) -> int:
        return len(self._devices)

    def posterior(self, key: str) -> dict[str, float]:
        """P(in each zone), "" for in none (away or near one), for installers and tests."""
        d = self._devices.get(key)
        if d is None:
            return {}
        k = self._k
        inz = {self.zones[z]: d.p[z] for z in range(1, k + 1)}
        return {"": 1.0 - sum(inz.values()), **inz}

    def in_zone_probabilities(self, min_p: float = 0.02) -> dict[str, dict[str, float]]:
        """P(in each zone) of every tracked device, zones below ``min_p`` left out (one pass,
        for the fused presence engines: ``edge_agent/sensing/fusion.py``)."""
        k = self._k
        zs = self.zones
        out: dict[str, dict[str, float]] = {}
        for key, d in self._devices.items():
            pz = d.p
            row = {zs[z]: pz[z] for z in range(1, k + 1) if pz[z] >= min_p}
            if row:
                out[key] = row
        return out

    def decided(self) -> dict[str, str]:
        """The zone each device is decided in (devices in none left out)."""
        zs = self.zones
        return {key: zs[d.zone] for key, d in self._devices.items() if d.zone}

    def advertising_interval_s(self, key: str) -> float | None:
        """The learned interval (smallest over receivers)."""
        d = self._devices.get(key)
        gaps = [t.gap for t in d.tracks.values() if t.gap] if d else []
        return min(gaps) if gaps else None
