"""A continuous per-beacon model over the floor, fitted on a survey: where each beacon is, how
its RSSI falls with distance and how likely it is heard at all.

Per beacon: a position (bx, by) in grid units, a log-distance path loss for the RSSI when heard,
``rssi ~ N(tx + slope * log10(d), var)``, and a logistic p(heard) over the same log-distance,
``p = sigmoid(b0 + b1 * log10(d))``, with ``d`` the distance to the beacon including a height of
one cell (the phone is never on top of the beacon). The beacon's position is searched on a lattice
around the surveyed area, coarse then fine; at each candidate the two fits are closed-form or a
few Newton steps, and the candidate with the highest joint log-likelihood wins.

Why: a per-cell fingerprint knows nothing about a cell nobody surveyed, yet half the scans of a
held-out day stand on such cells. This model predicts every cell of the grid, so it is the prior
the per-cell model shrinks towards (`fingerprint.CellModel`), and the answer where no survey
reached. numpy only (no scipy: the agent never imports it, tests/box/test_lazy_imports.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.positioning.scan import NOT_HEARD
from edge_agent.positioning.survey import Survey

Array = npt.NDArray[np.float64]

HEIGHT = 1.0  # cells: the phone is never closer than this to a beacon
MIN_HEARD = 3  # readings below which a beacon's path loss is not fitted (defaults instead)
VAR_FLOOR = 9.0  # dB^2: a fit through few readings must not claim a tiny spread
# A beacon too rarely heard to fit: its level and slope (typical of the survey's iBeacons).
DEFAULT_TX = -75.0
DEFAULT_SLOPE = -20.0
DEFAULT_VAR = 64.0
_L2 = 1e-3  # keeps the logistic finite for a beacon always or never heard


@dataclass(frozen=True)
class BeaconFit:
    x: float
    y: float
    b0: float  # p(heard) = sigmoid(b0 + b1 * log10 d)
    b1: float
    tx: float  # RSSI when heard: tx + slope * log10 d
    slope: float
    var: float


def _log_d(points: Array, xy: Array) -> Array:
    """(candidates, scans) log10 distances, with the height added."""
    d2 = ((points[:, None, :] - xy[None, :, :]) ** 2).sum(-1) + HEIGHT * HEIGHT
    return 0.5 * np.log10(d2)


def _fit_at(points: Array, xy: Array, rssi: Array, heard: npt.NDArray[np.bool_]) -> tuple[
    Array, Array, Array, Array, Array, Array
]:  # fmt: skip
    """For every candidate position: the logistic, the path loss and the joint log-likelihood."""
    ld = _log_d(points, xy)
    y = heard.astype(float)
    m = len(points)
    b0 = np.zeros(m)
    b1 = np.zeros(m)
    # Newton steps on the 2-parameter logistic, all candidates at once.
    for _ in range(20):
        z = np.clip(b0[:, None] + b1[:, None] * ld, -50.0, 50.0)
        p = 1.0 / (1.0 + np.exp(-z))
        w = p * (1.0 - p) + 1e-9
        g0 = (y - p).sum(1) - _L2 * b0
        g1 = ((y - p) * ld).sum(1) - _L2 * b1
        h00 = w.sum(1) + _L2
        h01 = (w * ld).sum(1)
        h11 = (w * ld * ld).sum(1) + _L2
        det = h00 * h11 - h01 * h01
        b0 = b0 + (h11 * g0 - h01 * g1) / det
        # Never heard more often farther away (a beacon heard everywhere leaves b1 free).
        b1 = np.minimum(b1 + (h00 * g1 - h01 * g0) / det, 0.0)
    z = b0[:, None] + b1[:, None] * ld
    ll = (y * z - np.logaddexp(0.0, z)).sum(1)
    nh = int(heard.sum())
    if nh >= MIN_HEARD:
        lh = ld[:, heard]
        r = rssi[heard]
        lm = lh.mean(1)
        rm = float(r.mean())
        cov = ((lh - lm[:, None]) * (r - rm)).sum(1)
        var_l = ((lh - lm[:, None]) ** 2).sum(1) + 1e-9
        slope = np.minimum(cov / var_l, 0.0)  # RSSI never rises with distance
        tx = rm - slope * lm
        res = r[None, :] - (tx[:, None] + slope[:, None] * lh)
        var = np.maximum((res**2).mean(1), VAR_FLOOR)
        ll = ll - 0.5 * nh * np.log(2.0 * np.pi * var) - 0.5 * (res**2).sum(1) / var
    else:
        tx = np.full(m, DEFAULT_TX)
        slope = np.full(m, DEFAULT_SLOPE)
        var = np.full(m, DEFAULT_VAR)
    return b0, b1, tx, slope, var, ll


def _lattice(lo: Array, hi: Array, step: float) -> Array:
    gx = np.arange(lo[0], hi[0] + 1e-9, step)
    gy = np.arange(lo[1], hi[1] + 1e-9, step)
    return np.stack(np.meshgrid(gx, gy, indexing="ij"), -1).reshape(-1, 2)


def fit_beacon(
    xy: Array, rssi: Array, heard: npt.NDArray[np.bool_], margin: float = 3.0
) -> BeaconFit:
    """One beacon from the survey's cells (``xy``), its readings and where it was heard."""
    lo = xy.min(0) - margin
    hi = xy.max(0) + margin
    best: BeaconFit | None = None
    points = _lattice(lo, hi, 1.0)
    for step in (1.0, 0.25):
        b0, b1, tx, slope, var, ll = _fit_at(points, xy, rssi, heard)
        i = int(np.argmax(ll))
        best = BeaconFit(
            x=float(points[i, 0]), y=float(points[i, 1]), b0=float(b0[i]), b1=float(b1[i]),
            tx=float(tx[i]), slope=float(slope[i]), var=float(var[i]),
        )  # fmt: skip
        if step == 1.0:
            centre = points[i]
            points = _lattice(np.maximum(centre - 1.0, lo), np.minimum(centre + 1.0, hi), 0.25)
    assert best is not None
    return best


def beacon_on(survey: Survey) -> npt.NDArray[np.bool_]:
    """(scans, beacons): was the beacon on when the scan was taken? A beacon never heard in a
    whole recording day was off that day (a flat battery, not yet installed): in this survey
    b3003 is silent all of 2016-05-25 though the walk passes two cells from it, b3012 all of
    2016-10-04 along its row. Counting those scans as "not heard here" would teach the model that
    the beacon cannot be heard where it can."""
    heard = survey.rssi > NOT_HEARD
    days = np.array(survey.days)
    on = np.zeros_like(heard)
    for day in dict.fromkeys(survey.days):
        m = days == day
        on[m] = heard[m].any(axis=0)[None, :]
    return on


class PathLoss:
    """Per-beacon fits; `predict` gives p(heard), mean RSSI and its variance at any point."""

    def __init__(
        self,
        beacons: tuple[str, ...],
        fits: tuple[BeaconFit, ...],
        informative: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        if len(beacons) != len(fits):
            raise ValueError(f"path loss: {len(beacons)} beacons, {len(fits)} fits")
        self.beacons = beacons
        self.fits = fits
        # A beacon the survey heard fewer than MIN_HEARD times: its fit is a guess (its position
        # anywhere), so the cell model leaves it out of the likelihood rather than be led by it.
        self.informative: npt.NDArray[np.bool_] = (
            np.ones(len(beacons), dtype=bool) if informative is None else np.asarray(informative)
        )

    @classmethod
    def fit(cls, survey: Survey) -> PathLoss:
        """Each beacon fitted on the scans of the days it was on (`beacon_on`)."""
        if len(survey) == 0:
            raise ValueError("path loss: an empty survey")
        xy = survey.coords()
        heard = survey.rssi > NOT_HEARD
        on = beacon_on(survey)
        fits = []
        for j in range(len(survey.beacons)):
            m = on[:, j] if on[:, j].any() else np.ones(len(survey), dtype=bool)
            fits.append(fit_beacon(xy[m], survey.rssi[m, j], heard[m, j]))
        return cls(survey.beacons, tuple(fits), heard.sum(0) >= MIN_HEARD)

    def positions(self) -> Array:
        return np.array([(f.x, f.y) for f in self.fits], dtype=float).reshape(-1, 2)

    def predict(self, coords: Array) -> tuple[Array, Array, Array]:
        """(points, beacons) arrays: p(heard), mean RSSI when heard, variance."""
        ld = _log_d(np.asarray(coords, dtype=float).reshape(-1, 2), self.positions())
        f = self.fits
        b0 = np.array([b.b0 for b in f])
        b1 = np.array([b.b1 for b in f])
        z = np.clip(b0[None, :] + b1[None, :] * ld, -50.0, 50.0)
        p = 1.0 / (1.0 + np.exp(-z))
        mu = np.array([b.tx for b in f])[None, :] + np.array([b.slope for b in f])[None, :] * ld
        var = np.broadcast_to(np.array([b.var for b in f])[None, :], mu.shape).copy()
        return p, mu, var
