"""Scoring on labelled scans: error in grid cells (Euclidean between cell coordinates), splits by
recording day (never at random: consecutive scans are near-duplicates).

`compare` trains the models on one survey and scores them on another: the kNN baseline (k=5),
ours on each scan alone, ours smoothed over the test day's consecutive scans (one session per
day, in time order: the surveyor walked from cell to cell with one phone; online, each answer
from the scans before it) and the per-cell model without the path-loss prior (the previous
"ours", `CellParams.per_cell`), smoothed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.positioning.fingerprint import CellModel, CellParams, Estimate, KnnBaseline
from edge_agent.positioning.pathloss import PathLoss
from edge_agent.positioning.smoothing import MotionModel, MotionParams
from edge_agent.positioning.survey import Survey

Array = npt.NDArray[np.float64]


def _figures(errors: Array, exact: npt.NDArray[np.bool_]) -> dict[str, Any]:
    n = len(errors)
    if n == 0:
        return {"p50_cells": None, "p90_cells": None, "exact": None, "scans": 0}
    return {
        "p50_cells": round(float(np.percentile(errors, 50)), 3),
        "p90_cells": round(float(np.percentile(errors, 90)), 3),
        "exact": round(float(exact.mean()), 3),
        "scans": n,
    }


@dataclass(frozen=True)
class Scored:
    errors: Array  # cells, one per scan
    exact: npt.NDArray[np.bool_]
    surveyed: npt.NDArray[np.bool_]  # the scan's true cell was in the training survey

    def summary(self) -> dict[str, Any]:
        """The figures, and the same on the scans whose cell the training survey has (a cell
        nobody surveyed can never be an exact hit)."""
        s = self.surveyed
        return {
            **_figures(self.errors, self.exact),
            "on_surveyed_cells": _figures(self.errors[s], self.exact[s]),
        }

    @staticmethod
    def pool(parts: list[Scored]) -> Scored:
        def cat(xs: list[Any], dtype: Any) -> Any:
            return np.concatenate(xs) if xs else np.zeros(0, dtype=dtype)

        return Scored(
            errors=cat([p.errors for p in parts], float),
            exact=cat([p.exact for p in parts], bool),
            surveyed=cat([p.surveyed for p in parts], bool),
        )


def score(estimates: list[Estimate], test: Survey, train: Survey) -> Scored:
    have = set(train.labels)
    surveyed = np.array([t in have for t in test.labels], dtype=bool)
    truth = test.coords()
    xy = np.array([(e.x, e.y) for e in estimates], dtype=float).reshape(-1, 2)
    errors = np.sqrt(((xy - truth) ** 2).sum(axis=1))
    exact = np.array([e.label == t for e, t in zip(estimates, test.labels, strict=True)])
    return Scored(errors=errors, exact=exact.astype(bool), surveyed=surveyed)


def _aligned(test: Survey, beacons: tuple[str, ...]) -> Array:
    """The test scans' RSSI in the training survey's beacon order (-200 for beacons it lacks)."""
    col = {b: i for i, b in enumerate(test.beacons)}
    out = np.full((len(test), len(beacons)), -200.0)
    for j, b in enumerate(beacons):
        if b in col:
            out[:, j] = test.rssi[:, col[b]]
    return out


def stamp_resolution(survey: Survey) -> dict[str, float]:
    """Per day, how coarse its time stamps are: 60 s when every one is a whole minute (three of
    the UCI survey's days are stamped ``10:58``, the others ``12:10:44``), else 0."""
    out: dict[str, float] = {}
    for day in survey.day_list():
        ts = [t for d, t in zip(survey.days, survey.times, strict=True) if d == day]
        out[day] = 60.0 if len(ts) > 1 and all(t % 60 == 0 for t in ts) else 0.0
    return out


def run_knn(train: Survey, test: Survey, k: int = 5) -> Scored:
    knn = KnnBaseline(train, k=k)
    x = _aligned(test, train.beacons)
    return score([knn.estimate(v) for v in x], test, train)


def run_cells(
    train: Survey,
    test: Survey,
    params: CellParams | None = None,
    motion: MotionParams | None = None,
    smooth: bool = True,
    pathloss: PathLoss | None = None,
) -> Scored:
    model = CellModel(train, params, pathloss)
    x = _aligned(test, train.beacons)
    mm = MotionModel(model.coords, motion) if smooth else None
    ests: list[Estimate] = []
    belief: Array | None = None
    day: str | None = None
    last_t = 0.0
    ttl = mm.params.ttl_s if mm is not None else 0.0
    res = stamp_resolution(test)
    for i, v in enumerate(x):
        # One session per test day; a gap longer than the window's expiry starts afresh. The
        # gap is the smallest the stamps allow: scans stamped 10:58 and 10:59 may be a second
        # apart, and reading them as a minute would restart the track at every minute.
        gap = test.times[i] - last_t - res.get(test.days[i], 0.0)
        if test.days[i] != day or gap >= ttl or test.times[i] < last_t:
            belief = None
        day, last_t = test.days[i], test.times[i]
        prior = mm.predict(belief) if (mm is not None and belief is not None) else None
        post = model.posterior(v, prior)
        belief = post if mm is not None else None
        ests.append(model.summarise(post))
    return score(ests, test, train)


def compare(
    train: Survey,
    test: Survey,
    params: CellParams | None = None,
    motion: MotionParams | None = None,
) -> dict[str, Scored]:
    """Ours (smoothed and one scan alone), the per-cell model without the path-loss prior (the
    previous "ours", smoothed, default motion) and the kNN baseline, on the same scans."""
    p = params or CellParams()
    pl = PathLoss.fit(train) if p.prior == "pathloss" else None
    return {
        "ours": run_cells(train, test, p, motion, smooth=True, pathloss=pl),
        "ours_single_scan": run_cells(train, test, p, motion, smooth=False, pathloss=pl),
        "per_cell_model": run_cells(train, test, CellParams.per_cell(), None, smooth=True),
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
    tune: bool = False,
) -> dict[str, Any]:
    """Each day with enough scans held out in turn; per fold and pooled. With ``tune``, each
    fold picks its settings by `grid_search` on its own training days (nested: the held-out
    day is never looked at)."""
    folds: dict[str, dict[str, Any]] = {}
    parts: dict[str, list[Scored]] = {}
    for day in day_folds(survey, min_scans):
        train, test = split_day(survey, day)
        p, m = params, motion
        chosen: dict[str, Any] | None = None
        if tune:
            p, m, searched = grid_search(train)
            chosen = searched.get("chosen")
        res = compare(train, test, p, m)
        folds[day] = {name: s.summary() for name, s in res.items()}
        if chosen is not None:
            folds[day]["chosen"] = chosen
        for name, s in res.items():
            parts.setdefault(name, []).append(s)
    pooled = {name: Scored.pool(p).summary() for name, p in parts.items()}
    return {"folds": folds, "pooled": pooled}


GRID: dict[str, tuple[float, ...]] = {
    "p_off": (0.3, 0.5, 0.7),
    "sigma_floor": (4.0, 5.0, 6.0),
    "temperature": (1.0, 1.5),
}


def grid_search(
    train: Survey, min_scans: int = 10
) -> tuple[CellParams, MotionParams, dict[str, Any]]:
    """Settings chosen on ``train`` alone: leave one of its days out in turn, pooled p90 (then
    p50) of the smoothed model. Returns the settings and what was tried."""
    days = day_folds(train, min_scans)
    if len(days) < 2:
        return CellParams(), MotionParams(), {"skipped": "fewer than two training days"}
    splits = [split_day(train, d) for d in days]
    # The path-loss fit depends on the training scans only, not on the settings searched.
    fits = [PathLoss.fit(a) for a, _ in splits]
    tried: list[dict[str, Any]] = []
    best: tuple[tuple[float, float], CellParams, MotionParams] | None = None
    m = MotionParams()  # how a phone moves is not the survey's to choose
    for off in GRID["p_off"]:
        for sf in GRID["sigma_floor"]:
            for t in GRID["temperature"]:
                p = CellParams(p_off=off, sigma_floor=sf, temperature=t)
                runs = [
                    run_cells(a, b, p, m, pathloss=f)
                    for (a, b), f in zip(splits, fits, strict=True)
                ]
                e = Scored.pool(runs).errors
                key = (float(np.percentile(e, 90)), float(np.percentile(e, 50)))
                tried.append({"p_off": off, "sigma_floor": sf, "temperature": t,
                              "p90_cells": round(key[0], 3), "p50_cells": round(key[1], 3)})  # fmt: skip
                if best is None or key < best[0]:
                    best = (key, p, m)
    assert best is not None
    chosen = {
        "p_off": best[1].p_off,
        "sigma_floor": best[1].sigma_floor,
        "temperature": best[1].temperature,
    }
    return best[1], best[2], {"chosen": chosen, "folds": days, "tried": tried}
