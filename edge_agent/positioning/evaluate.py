"""Scoring on labelled scans: error in grid cells (Euclidean between cell coordinates), splits by
recording day (never at random: consecutive scans are near-duplicates).

`compare` trains both models on one survey and scores them on another: the kNN baseline (k=5),
our per-cell model on each scan alone, and ours smoothed over the test day's consecutive scans
(one session per day, in time order: the surveyor walked from cell to cell with one phone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.positioning.fingerprint import CellModel, CellParams, Estimate, KnnBaseline
from edge_agent.positioning.smoothing import MotionModel, MotionParams
from edge_agent.positioning.survey import Survey

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Scored:
    errors: Array  # cells, one per scan
    exact: npt.NDArray[np.bool_]

    def summary(self) -> dict[str, Any]:
        n = len(self.errors)
        if n == 0:
            return {"p50_cells": None, "p90_cells": None, "exact": None, "scans": 0}
        return {
            "p50_cells": round(float(np.percentile(self.errors, 50)), 3),
            "p90_cells": round(float(np.percentile(self.errors, 90)), 3),
            "exact": round(float(self.exact.mean()), 3),
            "scans": n,
        }

    @staticmethod
    def pool(parts: list[Scored]) -> Scored:
        return Scored(
            errors=np.concatenate([p.errors for p in parts]) if parts else np.zeros(0),
            exact=np.concatenate([p.exact for p in parts]) if parts else np.zeros(0, dtype=bool),
        )


def score(estimates: list[Estimate], test: Survey) -> Scored:
    truth = test.coords()
    xy = np.array([(e.x, e.y) for e in estimates], dtype=float).reshape(-1, 2)
    errors = np.sqrt(((xy - truth) ** 2).sum(axis=1))
    exact = np.array([e.label == t for e, t in zip(estimates, test.labels, strict=True)])
    return Scored(errors=errors, exact=exact.astype(bool))


def _aligned(test: Survey, beacons: tuple[str, ...]) -> Array:
    """The test scans' RSSI in the training survey's beacon order (-200 for beacons it lacks)."""
    col = {b: i for i, b in enumerate(test.beacons)}
    out = np.full((len(test), len(beacons)), -200.0)
    for j, b in enumerate(beacons):
        if b in col:
            out[:, j] = test.rssi[:, col[b]]
    return out


def run_knn(train: Survey, test: Survey, k: int = 5) -> Scored:
    knn = KnnBaseline(train, k=k)
    x = _aligned(test, train.beacons)
    return score([knn.estimate(v) for v in x], test)


def run_cells(
    train: Survey,
    test: Survey,
    params: CellParams | None = None,
    motion: MotionParams | None = None,
    smooth: bool = True,
) -> Scored:
    model = CellModel(train, params)
    x = _aligned(test, train.beacons)
    mm = MotionModel(model.coords, motion) if smooth else None
    ests: list[Estimate] = []
    belief: Array | None = None
    day: str | None = None
    last_t = 0.0
    ttl = mm.params.ttl_s if mm is not None else 0.0
    for i, v in enumerate(x):
        # One session per test day; a gap longer than the window's expiry starts afresh.
        if test.days[i] != day or test.times[i] - last_t >= ttl or test.times[i] < last_t:
            belief = None
        day, last_t = test.days[i], test.times[i]
        prior = mm.predict(belief) if (mm is not None and belief is not None) else None
        post = model.posterior(v, prior)
        belief = post if mm is not None else None
        ests.append(model.summarise(post))
    return score(ests, test)


def compare(
    train: Survey,
    test: Survey,
    params: CellParams | None = None,
    motion: MotionParams | None = None,
) -> dict[str, Scored]:
    return {
        "ours": run_cells(train, test, params, motion, smooth=True),
        "ours_single_scan": run_cells(train, test, params, motion, smooth=False),
        "knn_baseline": run_knn(train, test),
    }


def day_folds(survey: Survey, min_scans: int = 20) -> list[str]:
    """The days with enough scans to be a fold of their own."""
    return [d for d in survey.day_list() if sum(1 for x in survey.days if x == d) >= min_scans]


def split_day(survey: Survey, day: str) -> tuple[Survey, Survey]:
    mask = np.array([d == day for d in survey.days])
    if not mask.any():
        raise ValueError(f"no scans on {day}; the days are {', '.join(survey.day_list())}")
    return survey.subset(~mask), survey.subset(mask)


def leave_one_day_out(
    survey: Survey,
    params: CellParams | None = None,
    motion: MotionParams | None = None,
    min_scans: int = 20,
) -> dict[str, Any]:
    """Each day with enough scans held out in turn; per fold and pooled."""
    folds: dict[str, dict[str, Any]] = {}
    parts: dict[str, list[Scored]] = {}
    for day in day_folds(survey, min_scans):
        train, test = split_day(survey, day)
        res = compare(train, test, params, motion)
        folds[day] = {name: s.summary() for name, s in res.items()}
        for name, s in res.items():
            parts.setdefault(name, []).append(s)
    pooled = {name: Scored.pool(p).summary() for name, p in parts.items()}
    return {"folds": folds, "pooled": pooled}
