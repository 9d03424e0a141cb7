"""The pure parts of positioning: grid labels, scans, the path-loss fallback, the per-cell model,
the session windows."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPoint, Point

from edge_agent.positioning.fallback import Beacon, distance_m, weighted_centroid
from edge_agent.positioning.fingerprint import CellModel, KnnBaseline
from edge_agent.positioning.grid import CellError, cell_label, cell_xy
from edge_agent.positioning.positioner import Positioner
from edge_agent.positioning.scan import ScanError, scan_vector
from edge_agent.positioning.smoothing import MotionModel, MotionParams, SessionWindows
from edge_agent.positioning.survey import Survey

BEACONS = tuple(f"b{i}" for i in range(6))


def test_cell_labels_round_trip() -> None:
    assert cell_xy("O02") == (14.0, 2.0)
    assert cell_xy("a01") == (0.0, 1.0)
    assert cell_label(14, 2) == "O02"
    assert cell_xy(cell_label(27, 7)) == (27.0, 7.0)
    with pytest.raises(CellError):
        cell_xy("12")


@pytest.mark.parametrize(
    ("scan", "words"),
    [
        ({"nope": -60}, "unknown beacon id 'nope'"),
        ({"b1": float("nan")}, "not a finite number"),
        ({"b1": "-60"}, "not a number"),
        ({"b1": True}, "not a number"),
        ({"b1": -300}, "out of range"),
        ({"b1": 12}, "out of range"),
        ({1: -60}, "not a string"),
        ([-60, -70], "expected an object"),
        ("b1=-60", "expected an object"),
    ],
)
def test_malformed_scans_refused_in_one_line(scan: object, words: str) -> None:
    with pytest.raises(ScanError) as err:
        scan_vector(scan, BEACONS)
    msg = str(err.value)
    assert words in msg and "\n" not in msg


def test_not_heard_forms() -> None:
    v = scan_vector({"b0": -200, "b1": 0, "b2": None, "b3": -71.5}, BEACONS)
    assert v.tolist() == [-200, -200, -200, -71.5, -200, -200]


# --- the fallback -----------------------------------------------------------------------------

coord = st.floats(-50, 50, allow_nan=False)
beacon_sets = st.lists(st.tuples(coord, coord), min_size=1, max_size=8, unique=True)
rssi_value = st.one_of(st.just(-200.0), st.floats(-110, -30, allow_nan=False))


@settings(max_examples=150, deadline=None)
@given(beacon_sets, st.lists(rssi_value, min_size=8, max_size=8), st.floats(1.5, 4.0))
def test_fallback_lies_within_the_heard_beacons_hull(
    points: list[tuple[float, float]], values: list[float], n: float
) -> None:
    beacons = [Beacon(f"b{i}", x, y, path_loss_n=n) for i, (x, y) in enumerate(points)]
    rssi = {b.id: v for b, v in zip(beacons, values, strict=False)}
    est = weighted_centroid(beacons, rssi)
    heard = [b for b in beacons if rssi.get(b.id, -200) > -200]
    if not heard:
        assert est is None
        return
    assert est is not None and 0.0 <= est.confidence <= 1.0
    hull = MultiPoint([(b.x, b.y) for b in heard]).convex_hull
    assert hull.buffer(1e-6).covers(Point(est.x, est.y))


def test_fallback_on_a_synthetic_layout_finds_the_phone() -> None:
    # Four beacons at the corners of a 20 x 10 m shop; the phone at (4, 3), path loss n = 2.
    beacons = [Beacon("nw", 0, 0), Beacon("ne", 20, 0), Beacon("sw", 0, 10), Beacon("se", 20, 10)]
    phone = (4.0, 3.0)
    rssi = {
        b.id: b.tx_power - 10 * b.path_loss_n * math.log10(math.dist(phone, (b.x, b.y)))
        for b in beacons
    }
    est = weighted_centroid(beacons, rssi)
    assert est is not None
    assert math.dist((est.x, est.y), phone) < 4.0  # nearer the phone than the shop's centre is
    assert math.dist((est.x, est.y), (0, 0)) < math.dist((est.x, est.y), (20, 10))
    assert distance_m(-59, -59, 2.0) == pytest.approx(1.0)
    assert distance_m(-79, -59, 2.0) == pytest.approx(10.0)


def test_positioner_without_fingerprints_uses_the_beacons() -> None:
    beacons = [Beacon("a", 0, 0, level=1), Beacon("b", 10, 0, level=1), Beacon("c", 5, 8, level=2)]
    pos = Positioner(beacons=beacons, beacon_labels={"a": "entrance"})
    got = pos.locate({"a": -60, "b": -80})
    assert got.method == "beacons" and got.level == 1 and got.label == "entrance"
    assert got.x is not None and 0 <= got.x <= 10
    none = pos.locate({})
    assert none.method == "none" and none.x is None and none.confidence == 0.0


# --- the per-cell model -----------------------------------------------------------------------


def synthetic_survey(seed: int = 0, per_cell: int = 6) -> Survey:
    """A 5 x 4 grid with six beacons, RSSI by distance with noise and drop-outs."""
    rng = np.random.default_rng(seed)
    spots = np.array([(0, 1), (4, 1), (0, 4), (4, 4), (2, 2), (2, 4)], dtype=float)
    labels, rows = [], []
    for cx in range(5):
        for cy in range(1, 5):
            d = np.hypot(spots[:, 0] - cx, spots[:, 1] - cy) + 0.5
            for _ in range(per_cell):
                r = -60 - 20 * np.log10(d) + rng.normal(0, 2, len(spots))
                r[(r < -78) | (rng.random(len(spots)) < 0.1)] = -200
                labels.append(cell_label(cx, cy))
                rows.append(r)
    return Survey(
        beacons=BEACONS,
        labels=tuple(labels),
        days=("2024-01-01",) * len(labels),
        rssi=np.array(rows),
    )


SURVEY = synthetic_survey()
MODEL = CellModel(SURVEY)


SURVEYED = [lb for lb, s in zip(MODEL.labels, MODEL.surveyed, strict=True) if s]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SURVEYED))
def test_a_cells_mean_fingerprint_ranks_that_cell_first(label: str) -> None:
    # Surveyed cells only: a cell filled in around them has no scans to take a mean of.
    rows = SURVEY.rssi[[lb == label for lb in SURVEY.labels]]
    heard = rows > -200
    # The cell's mean fingerprint: the mean RSSI of the beacons heard in most of its scans.
    mean = np.where(
        heard.mean(0) >= 0.5, np.where(heard, rows, 0).sum(0) / np.maximum(heard.sum(0), 1), -200
    )
    ll = MODEL.loglik(mean)
    # Among surveyed cells it is that cell; a cell filled in beside it (no scans of its own, the
    # path-loss prior and its neighbours') may edge it out, but only from next door: the mean
    # fingerprint drops beacons heard in under half the scans, which looks a little farther out.
    s = MODEL.surveyed
    assert MODEL.labels[int(np.flatnonzero(s)[np.argmax(ll[s])])] == label
    top = MODEL.coords[int(np.argmax(ll))]
    assert math.dist(top, cell_xy(label)) <= MODEL.params.fill_radius


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(BEACONS), unique=True), st.data())
def test_more_not_heard_never_crashes(dropped: list[str], data: st.DataObject) -> None:
    base = {b: data.draw(st.floats(-100, -40)) for b in BEACONS}
    pos = Positioner(MODEL)
    for k in range(len(dropped) + 1):
        scan = {b: (-200 if b in dropped[:k] else v) for b, v in base.items()}
        got = pos.locate(scan, session="s", now=float(k))
        assert got.label in MODEL.labels and 0.0 <= got.confidence <= 1.0
        assert got.x is not None and got.y is not None and math.isfinite(got.x + got.y)


def test_knn_baseline_finds_an_exact_survey_scan() -> None:
    knn = KnnBaseline(SURVEY, k=1)
    assert knn.estimate(SURVEY.rssi[7]).label == SURVEY.labels[7]


def test_smoothing_steadies_a_phone_standing_still() -> None:
    test = synthetic_survey(seed=1, per_cell=8)
    pos = Positioner(MODEL)
    single = tracked = 0
    for i, label in enumerate(test.labels):
        scan = {b: float(v) for b, v in zip(BEACONS, test.rssi[i], strict=True)}
        single += pos.locate(scan).label == label
        # A session per cell: the phone stood there for all of its scans.
        tracked += pos.locate(scan, session=label, now=float(i)).label == label
    assert tracked >= single


# --- privacy: the windows are bounded and expire ----------------------------------------------


def test_session_windows_are_bounded_and_expire() -> None:
    motion = MotionModel(MODEL.coords, MotionParams(ttl_s=10.0, max_sessions=3))
    w = SessionWindows(motion)
    belief = np.full(len(MODEL.labels), 1.0 / len(MODEL.labels))
    for k in range(5):
        w.update(f"s{k}", belief, now=float(k))
    assert len(w) == 3 and w.prior("s0", now=5.0) is None  # the oldest went first
    assert w.prior("s4", now=5.0) is not None
    assert w.prior("s4", now=14.0) is None and len(w) == 0  # 10 s without a scan: gone
    w.update("x", belief, now=20.0)
    w.forget("x")
    assert len(w) == 0


def test_the_positioner_keeps_no_scan() -> None:
    pos = Positioner(MODEL, motion=MotionParams(ttl_s=5.0))
    pos.locate({"b0": -61}, session="app-7f3", now=0.0)
    held = pos.windows
    assert held is not None and len(held) == 1
    state = vars(held._tracks["app-7f3"])
    assert set(state) == {"belief", "at"}  # a belief over cells and a time: no RSSI, no phone id
    pos.locate({"b0": -61}, session="other", now=60.0)
    assert len(held) == 1  # app-7f3 expired


def test_model_code_imports_no_io() -> None:
    io = {"socket", "sqlite3", "csv", "asyncio", "threading", "subprocess", "http", "os", "pathlib"}
    pkg = Path(__file__).resolve().parents[2] / "edge_agent" / "positioning"
    for name in (
        "grid",
        "scan",
        "survey",
        "fingerprint",
        "fallback",
        "smoothing",
        "positioner",
        "evaluate",
    ):
        tree = ast.parse((pkg / f"{name}.py").read_text())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            for m in mods:
                assert m.split(".")[0] not in io, f"{name}.py imports {m}"
