"""The continuous per-beacon model (`pathloss.py`) and what the cell model takes from it: the fit
finds a beacon, "off" days are not counted as "not heard", a beacon the survey hardly heard is
left out, and `p_off` bounds what "not heard" can say."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.positioning.evaluate import stamp_resolution
from edge_agent.positioning.fingerprint import CellModel, CellParams
from edge_agent.positioning.grid import cell_label
from edge_agent.positioning.pathloss import MIN_HEARD, PathLoss, beacon_on
from edge_agent.positioning.survey import Survey


def grid_survey(
    spots: list[tuple[float, float]],
    tx: float = -60.0,
    slope: float = -25.0,
    noise: float = 2.0,
    seed: int = 0,
    days: int = 2,
    per_cell: int = 3,
) -> Survey:
    """A 10 x 8 grid walked on ``days`` days; each beacon heard above -85 dBm, log-distance."""
    rng = np.random.default_rng(seed)
    pts = np.array(spots, dtype=float)
    labels, rows, dates = [], [], []
    for day in range(days):
        for cx in range(10):
            for cy in range(1, 9):
                d = np.sqrt(((pts - (cx, cy)) ** 2).sum(1) + 1.0)
                for _ in range(per_cell):
                    r = tx + slope * np.log10(d) + rng.normal(0, noise, len(pts))
                    r = np.clip(np.round(r), -129, -1)
                    r[r < -85] = -200
                    labels.append(cell_label(cx, cy))
                    rows.append(r)
                    dates.append(f"2024-01-{day + 1:02d}")
    return Survey(
        beacons=tuple(f"b{i}" for i in range(len(pts))),
        labels=tuple(labels),
        days=tuple(dates),
        rssi=np.array(rows, dtype=float),
    )


@settings(max_examples=12, deadline=None)
@given(
    st.floats(1.0, 8.0),
    st.floats(2.0, 7.0),
    st.floats(-65.0, -55.0),
    st.floats(-30.0, -18.0),
    st.integers(0, 10_000),
)
def test_the_fit_finds_the_beacon(bx: float, by: float, tx: float, slope: float, seed: int) -> None:
    survey = grid_survey([(bx, by)], tx=tx, slope=slope, seed=seed)
    fit = PathLoss.fit(survey).fits[0]
    assert math.dist((fit.x, fit.y), (bx, by)) <= 1.0
    assert fit.slope < 0 and abs(fit.slope - slope) <= 8.0
    assert fit.b1 <= 0  # never heard more often farther away


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-5, 30), st.floats(-5, 30)), min_size=1, max_size=30),
)
def test_predictions_are_probabilities_and_fall_with_distance(
    pts: list[tuple[float, float]],
) -> None:
    pl = TWO_FIT
    p, mu, var = pl.predict(np.array(pts))
    assert p.shape == mu.shape == var.shape == (len(pts), 2)
    assert np.all((p >= 0) & (p <= 1)) and np.all(var > 0) and np.all(np.isfinite(mu))
    # Farther from the fitted beacon, never louder and never more often heard.
    d = np.hypot(*(np.array(pts) - pl.positions()[0]).T)
    order = np.argsort(d)
    assert np.all(np.diff(mu[order, 0]) <= 1e-9)
    assert np.all(np.diff(p[order, 0]) <= 1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_a_beacon_is_on_exactly_on_the_days_it_was_heard(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, b = 30, 4
    rssi = np.where(rng.random((n, b)) < 0.15, -70.0, -200.0)
    days = tuple(f"2024-01-{d:02d}" for d in rng.integers(1, 4, n))
    survey = Survey(beacons=tuple(f"b{i}" for i in range(b)), labels=("A01",) * n, days=days,
                    rssi=rssi)  # fmt: skip
    on = beacon_on(survey)
    for i in range(n):
        same = np.array([d == days[i] for d in days])
        assert on[i].tolist() == (rssi[same] > -200).any(axis=0).tolist()


def test_a_day_the_beacon_was_off_does_not_count_as_not_heard() -> None:
    base = grid_survey([(2.0, 3.0), (7.0, 6.0)], seed=2)
    # Day 2: beacon b0 silent everywhere (a flat battery).
    rssi = base.rssi.copy()
    rssi[[d == "2024-01-02" for d in base.days], 0] = -200
    off = Survey(beacons=base.beacons, labels=base.labels, days=base.days, rssi=rssi)
    near = [i for i, lb in enumerate(off.labels) if lb == cell_label(2, 3)]
    model = CellModel(off)
    cell = model.labels.index(cell_label(2, 3))
    # Beside the beacon it is still heard nearly always: the silent day is left out.
    assert model.p_heard[cell, 0] > 0.8
    assert not beacon_on(off)[near, 0].all()


def _hardly_heard() -> CellModel:
    base = grid_survey([(2.0, 3.0), (7.0, 6.0), (5.0, 5.0)], seed=3)
    x = base.rssi.copy()
    x[:, 2] = -200
    x[: MIN_HEARD - 1, 2] = -70  # heard twice in the whole survey
    return CellModel(Survey(beacons=base.beacons, labels=base.labels, days=base.days, rssi=x))


HARDLY_HEARD = _hardly_heard()
TWO = grid_survey([(2.0, 3.0), (7.0, 6.0)], seed=4)
TWO_FIT = PathLoss.fit(TWO)


@settings(max_examples=30, deadline=None)
@given(st.floats(-100, -40), st.floats(-100, -40))
def test_a_beacon_the_survey_hardly_heard_is_left_out(rssi: float, other: float) -> None:
    model = HARDLY_HEARD
    a = model.posterior(np.array([other, -200.0, rssi]))
    b = model.posterior(np.array([other, -200.0, -200.0]))
    assert np.allclose(a, b)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.05, 0.9))
def test_p_off_bounds_what_not_heard_says(p_off: float) -> None:
    model = CellModel(TWO, CellParams(p_off=p_off), TWO_FIT)
    nothing = model.loglik(np.full(2, -200.0))
    # Two beacons not heard: no cell is more than 2 * -log(p_off) below another.
    assert nothing.max() - nothing.min() <= -2 * math.log(p_off) + 1e-9


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 23 * 60), min_size=2, max_size=20),
    st.lists(st.integers(0, 86_399), min_size=1, max_size=20),
)
def test_a_day_stamped_in_whole_minutes_has_a_minute_of_slack(
    minutes: list[int], seconds: list[int]
) -> None:
    mins = sorted(m * 60.0 for m in minutes)
    secs = sorted(float(s) for s in seconds)
    n, k = len(mins), len(secs)
    survey = Survey(
        beacons=("b0",),
        labels=("A01",) * (n + k),
        days=("2024-01-01",) * n + ("2024-01-02",) * k,
        rssi=np.full((n + k, 1), -70.0),
        times=tuple(mins + secs),
    )
    res = stamp_resolution(survey)
    assert res["2024-01-01"] == 60.0
    # A day with a stamp off the minute is read to the second.
    assert res["2024-01-02"] == (60.0 if k > 1 and all(s % 60 == 0 for s in secs) else 0.0)
