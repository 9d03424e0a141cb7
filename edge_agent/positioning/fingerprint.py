"""Fingerprint models trained from a survey: the kNN baseline and the per-cell RSSI model.

`KnnBaseline` is the classic: the k surveyed scans nearest in Euclidean distance on RSSI with
-200 for "not heard"; the point is their mean, the label their majority.

`CellModel` is a probabilistic fingerprint per grid cell: for every beacon, the probability it
is heard there and a Gaussian of its RSSI when heard (variance floored). Its cells are the
surveyed ones and those within `fill_radius` of one. Each cell starts from the continuous
per-beacon path-loss model's prediction there (`pathloss.PathLoss`, worth `pathloss_weight`
scans) and moves towards its own scans and its neighbours' (a Gaussian kernel over grid
distance), so a phone standing where nobody surveyed still has a cell to land in, with a model
of its own rather than a copy of the nearest. A scan's log-likelihood per cell sums the beacons:
heard ones by p(heard) and the Gaussian, unheard ones by p(not heard) with a chance `p_off` that
the beacon is off (a flat battery must not drag the answer away from it); a beacon the survey
hardly heard is left out. The posterior over cells (tempered: beacons are not independent) gives
the label (its top cell), the point (the posterior-weighted mean of the cells' centres) and a
confidence (the posterior mass within one cell of the point).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.positioning.grid import cell_label, cell_xy
from edge_agent.positioning.pathloss import PathLoss, beacon_on
from edge_agent.positioning.scan import NOT_HEARD
from edge_agent.positioning.survey import Survey

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Estimate:
    """A position on the survey grid: the cell's label, the point (grid units), a confidence
    in [0, 1]."""

    label: str
    x: float
    y: float
    confidence: float


class KnnBaseline:
    """k nearest surveyed scans, Euclidean on RSSI (-200 for not heard)."""

    def __init__(self, survey: Survey, k: int = 5) -> None:
        if len(survey) == 0:
            raise ValueError("kNN: an empty survey")
        self.beacons = survey.beacons
        self.k = max(1, min(k, len(survey)))
        self._x = np.ascontiguousarray(survey.rssi, dtype=float)
        self._xx = np.einsum("ij,ij->i", self._x, self._x)
        self._coords = survey.coords()
        self._labels = survey.labels

    def estimate(self, vec: Array) -> Estimate:
        d2 = self._xx - 2.0 * (self._x @ vec)  # + |vec|^2, the same for every row
        idx = np.argpartition(d2, self.k - 1)[: self.k]
        idx = idx[np.argsort(d2[idx], kind="stable")]
        votes = Counter(self._labels[i] for i in idx)
        top = max(votes.values())
        # Ties go to the label of the nearest neighbour among the tied ones.
        label = next(self._labels[i] for i in idx if votes[self._labels[i]] == top)
        x, y = self._coords[idx].mean(axis=0)
        return Estimate(label=label, x=float(x), y=float(y), confidence=top / self.k)


@dataclass(frozen=True)
class CellParams:
    """The per-cell model's settings (defaults chosen by leave-one-day-out, BENCHMARKS.md)."""

    bandwidth: float = 1.0  # cells: how far a cell borrows its neighbours' scans
    fill_radius: float = 1.5  # cells: unsurveyed cells this close to a surveyed one get a model
    sigma_floor: float = 6.0  # dB
    sigma_prior: float = 4.0  # dB, the spread assumed before any reading ("mean" prior)
    prior_weight: float = 0.5  # pseudo-scans pulling a cell's mean to the beacon's overall mean
    heard_alpha: float = 0.1  # Beta prior on p(heard): alpha, beta pseudo-counts
    heard_beta: float = 1.0
    p_floor: float = 0.002  # p(heard) and p(not heard) never below this
    not_heard_weight: float = 1.0
    temperature: float = 1.5  # posterior = softmax(loglik / temperature)
    point_cells: int = 0  # the point averages the top this many cells (0: all)
    # What a cell knows before its own scans: "pathloss", the per-beacon continuous model
    # (`pathloss.PathLoss`, so cells nobody surveyed get a prediction of their own), or "mean",
    # the beacon's overall mean and a flat Beta prior (the model before it, kept to compare).
    prior: str = "pathloss"
    pathloss_weight: float = 2.0  # pseudo-scans of the path-loss prediction per cell
    # The chance a beacon is off when a scan is taken (batteries go flat: whole days of this
    # survey miss a beacon): "not heard" then weighs at most -log(p_off) against a cell.
    p_off: float = 0.5

    @classmethod
    def per_cell(cls) -> CellParams:
        """The earlier model: surveyed cells only, shrunk to each beacon's overall mean."""
        return cls(fill_radius=0.0, sigma_floor=6.0, temperature=1.0, prior="mean", p_off=0.0)


class CellModel:
    """Per-cell, per-beacon p(heard) and RSSI Gaussian; log-likelihood summed over beacons."""

    def __init__(
        self, survey: Survey, params: CellParams | None = None, pathloss: PathLoss | None = None
    ) -> None:
        if len(survey) == 0:
            raise ValueError("cell model: an empty survey")
        p = params or CellParams()
        if p.prior not in ("pathloss", "mean"):
            raise ValueError(f"cell model: prior {p.prior!r}, expected 'pathloss' or 'mean'")
        self.params = p
        self.beacons = survey.beacons
        self.level = survey.level
        surveyed = sorted(set(survey.labels), key=cell_xy)
        s_xy = np.array([cell_xy(lb) for lb in surveyed], dtype=float)
        cells = list(surveyed)
        if p.fill_radius > 0:
            cells += _fill(s_xy, p.fill_radius, set(surveyed))
        self.labels: tuple[str, ...] = tuple(cells)
        self.coords: Array = np.array([cell_xy(lb) for lb in cells], dtype=float)
        self.surveyed = np.array([i < len(surveyed) for i in range(len(cells))])

        # Per surveyed cell sufficient statistics.
        pos = {lb: i for i, lb in enumerate(surveyed)}
        rows = np.array([pos[lb] for lb in survey.labels])
        x = survey.rssi
        h = (x > NOT_HEARD).astype(float)
        xv = np.where(h > 0, x, 0.0)
        n_s = np.bincount(rows, minlength=len(surveyed)).astype(float)
        h_s = np.zeros((len(surveyed), len(self.beacons)))
        sum_s = np.zeros_like(h_s)
        sq_s = np.zeros_like(h_s)
        np.add.at(h_s, rows, h)
        np.add.at(sum_s, rows, xv)
        np.add.at(sq_s, rows, xv * xv)

        # Kernel over grid distance from every model cell to every surveyed cell.
        d2 = ((self.coords[:, None, :] - s_xy[None, :, :]) ** 2).sum(-1)
        w = np.exp(-0.5 * d2 / max(p.bandwidth, 1e-6) ** 2)
        w[d2 > (3.0 * p.bandwidth) ** 2] = 0.0
        w[np.arange(len(surveyed)), np.arange(len(surveyed))] = 1.0  # own scans count fully
        n = w @ n_s
        hh = w @ h_s
        ss = w @ sum_s
        qq = w @ sq_s

        self.p_heard: Array
        informative = np.ones(len(self.beacons), dtype=bool)
        if p.prior == "pathloss":
            # The continuous model's prediction at every cell, worth `pathloss_weight` scans:
            # a surveyed cell moves away from it as its own readings come, a cell nobody
            # surveyed keeps it.
            pl = pathloss if pathloss is not None else PathLoss.fit(survey)
            if pl.beacons != self.beacons:
                raise ValueError("cell model: the path-loss fit is for other beacons")
            ph0, mu0, var0 = pl.predict(self.coords)
            informative = pl.informative
            # Per cell and beacon, only the scans of days the beacon was on count.
            on_s = np.zeros_like(h_s)
            np.add.at(on_s, rows, beacon_on(survey).astype(float))
            n_on = w @ on_s
            k = p.pathloss_weight
            self.p_heard = np.clip((hh + k * ph0) / (n_on + k), p.p_floor, 1.0 - p.p_floor)
            mu = (ss + k * mu0) / (hh + k)
            scatter = np.maximum(qq - 2.0 * mu * ss + hh * mu * mu, 0.0)  # around mu
            var = (scatter + k * var0) / (hh + k)
        else:
            heard_all = h.sum(0)
            g_mean = np.where(heard_all > 0, xv.sum(0) / np.maximum(heard_all, 1), -85.0)
            k0 = p.prior_weight
            self.p_heard = np.clip(
                (hh + p.heard_alpha) / (n[:, None] + p.heard_alpha + p.heard_beta),
                p.p_floor,
                1.0 - p.p_floor,
            )
            mu = (ss + k0 * g_mean[None, :]) / (hh + k0)
            var_data = np.maximum(qq - hh * mu * mu - 0.0, 0.0)
            # Posterior-ish variance: data scatter plus the prior's spread, shrunk as readings
            # come.
            var = (var_data + k0 * p.sigma_prior**2) / (hh + k0)
        self.mu: Array = mu
        self.var: Array = np.maximum(var, p.sigma_floor**2)
        self._log_norm = -0.5 * np.log(2.0 * math.pi * self.var)
        off = min(max(p.p_off, 0.0), 0.99)
        self._log_h = np.log((1.0 - off) * self.p_heard)
        self._log_nh = np.log(off + (1.0 - off) * (1.0 - self.p_heard)) * p.not_heard_weight
        # A beacon the survey hardly heard says nothing either way: heard or not, it is left out.
        self._use = informative
        self._log_nh[:, ~informative] = 0.0
        self._nh_total = self._log_nh.sum(axis=1)

    def loglik(self, vec: Array) -> Array:
        """Log-likelihood of one scan per cell."""
        hm = (vec > NOT_HEARD) & self._use
        if not hm.any():
            return self._nh_total.copy()
        v = vec[hm]
        z = (v[None, :] - self.mu[:, hm]) ** 2 / self.var[:, hm]
        heard_part = (self._log_h[:, hm] + self._log_norm[:, hm] - 0.5 * z).sum(axis=1)
        return heard_part + self._nh_total - self._log_nh[:, hm].sum(axis=1)

    def posterior(self, vec: Array, prior: Array | None = None) -> Array:
        ll = self.loglik(vec) / self.params.temperature
        if prior is not None:
            ll = ll + np.log(np.maximum(prior, 1e-300))
        ll -= ll.max()
        post = np.exp(ll)
        return post / post.sum()

    def summarise(self, post: Array) -> Estimate:
        k = self.params.point_cells
        if 0 < k < len(post):
            top_k = np.argpartition(post, -k)[-k:]
            w = post[top_k]
            x, y = (w / w.sum()) @ self.coords[top_k]
        else:
            x, y = post @ self.coords
        d2 = ((self.coords - (x, y)) ** 2).sum(axis=1)
        conf = float(post[d2 <= 1.0 + 1e-9].sum())
        top = int(np.argmax(post))
        return Estimate(
            label=self.labels[top], x=float(x), y=float(y), confidence=min(1.0, max(0.0, conf))
        )

    def estimate(self, vec: Array) -> Estimate:
        return self.summarise(self.posterior(vec))


def _fill(s_xy: Array, radius: float, have: set[str]) -> list[str]:
    """Unsurveyed grid cells within ``radius`` of a surveyed cell."""
    r = math.ceil(radius)
    out: dict[str, None] = {}
    for cx, cy in s_xy:
        for dx in range(-r, r + 1):
            for dy in range(-r, r + 1):
                x, y = cx + dx, cy + dy
                if x < 0 or y < 0 or math.hypot(dx, dy) > radius + 1e-9:
                    continue
                label = cell_label(x, y)
                if label not in have:
                    out[label] = None
    return list(out)
