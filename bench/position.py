"""Positioning (issue 16): per-answer latency of `Positioner.locate` (scan checked, per-cell
likelihood, the session's forward filter) against the kNN baseline (k=5, the scan read the same
way), on the scans of the UCI "BLE RSSI Dataset for Indoor localization and Navigation"
(M. Mohammadi, A. Al-Fuqaha, CC BY 4.0, DOI 10.24432/C54G80), and the accuracy of both with
each recording day held out in turn (pooled and per day).

The data file: $EDGE_POSITION_DATA, default /work/shared/data/ble-rssi-uci/train.csv.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.positioning.cli import CITATION
from edge_agent.positioning.dataset import read_survey
from edge_agent.positioning.evaluate import leave_one_day_out
from edge_agent.positioning.fingerprint import KnnBaseline
from edge_agent.positioning.positioner import Positioner
from edge_agent.positioning.scan import scan_vector

DEFAULT_DATA = "/work/shared/data/ble-rssi-uci/train.csv"


def _ms(samples: list[float]) -> dict[str, float]:
    a = np.array(samples) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 4),
        "p99_ms": round(float(np.percentile(a, 99)), 4),
        "max_ms": round(float(a.max()), 4),
    }


def run(quick: bool = False) -> dict[str, Any]:
    path = Path(os.environ.get("EDGE_POSITION_DATA", DEFAULT_DATA))
    if not path.exists():
        return {"error": f"no survey at {path} (set EDGE_POSITION_DATA)"}
    survey = read_survey(path)
    scans = [
        {b: float(v) for b, v in zip(survey.beacons, row, strict=True) if v > -200}
        for row in survey.rssi
    ]
    t_build = time.perf_counter()
    positioner = Positioner.from_survey(survey)  # the path-loss fit and the per-cell model
    build_s = time.perf_counter() - t_build
    knn = KnnBaseline(survey, k=5)
    rounds = 1 if quick else 5
    ours: list[float] = []
    base: list[float] = []
    for r in range(rounds):
        for i, scan in enumerate(scans):
            t0 = time.perf_counter()
            positioner.locate(scan, session=f"s{r}-{survey.days[i]}", now=survey.times[i])
            t1 = time.perf_counter()
            knn.estimate(scan_vector(scan, knn.beacons))
            t2 = time.perf_counter()
            ours.append(t1 - t0)
            base.append(t2 - t1)
    acc = leave_one_day_out(survey)
    return {
        "data": CITATION,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}",
        "cells_in_model": len(positioner.model.labels) if positioner.model else 0,
        "model_build_s": round(build_s, 3),  # once per survey, not per answer
        "answers": len(ours),
        "latency": {"ours": _ms(ours), "knn_baseline": _ms(base)},
        "accuracy_leave_one_day_out": acc["pooled"],
        # Per held-out day: "p50 / p90" in cells.
        "accuracy_per_day": {
            day: {name: f"{f['p50_cells']} / {f['p90_cells']}" for name, f in res.items()}
            for day, res in acc["folds"].items()
        },
    }
