"""The store map and the planogram pushed by central: signed, IMDF-validated, swapped atomically
with their versions; a corrupt or unsigned map changes nothing; planogram entries off the map
are reported when applied and refused at route time."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from contracts import topics
from contracts.map_bundle import (
    MAX_UNZIPPED_BYTES,
    MapBundleError,
    bundle,
    read_delivery,
    unbundle,
)
from contracts.planogram_csv import body_from_csv
from contracts.signing import expires_in, generate_keypair, sign_message
from demo import scenario
from edge_agent.app.agent import Agent
from edge_agent.clock import ScaledClock
from edge_agent.downlink.wayfinding_apply import WayfindingApplier
from edge_agent.sensing.ble.sources import ReplaySource
from edge_agent.wayfinding.plan import author, load_plan
from edge_agent.wayfinding.products import PlanogramError
from tests.app.test_agent_journey import BusRecorder, demo_config
from tests.downlink.test_commands import PUB, Ops

REPO = Path(__file__).resolve().parents[2]
PLANOGRAM = REPO / "demo" / "data" / "planogram.csv"
STORE = "store-0042"


@pytest.fixture(scope="module")
def demo_files() -> dict[str, bytes]:
    plan, layout = load_plan(REPO / "demo" / "store-map.toml")
    files, _, errors, _ = author(plan, layout)
    assert not errors
    return files


def _without_shelf(files: dict[str, bytes], plan_id: str) -> dict[str, bytes]:
    doc = json.loads(files["fixture.geojson"])
    doc["features"] = [
        f for f in doc["features"] if f["properties"]["edge_agent"]["plan_id"] != plan_id
    ]
    return {**files, "fixture.geojson": json.dumps(doc).encode()}


def _broken(files: dict[str, bytes]) -> tuple[dict[str, bytes], str]:
    """The map with one unit's ring left open; returns the files and that unit's id."""
    doc = json.loads(files["unit.geojson"])
    unit = doc["features"][0]
    unit["geometry"]["coordinates"][0].pop()  # the closing point
    return {**files, "unit.geojson": json.dumps(doc).encode()}, unit["id"]


def _docs(files: dict[str, bytes]) -> dict[str, object]:
    return {name: json.loads(data) for name, data in files.items()}


def _planogram_body(version: int) -> dict:
    return body_from_csv(PLANOGRAM.read_text(), version, STORE)


# ---- the bundle on the wire --------------------------------------------------------------
def test_a_map_bundle_round_trips_and_names_what_is_wrong(demo_files: dict[str, bytes]):
    for archive in (True, False):
        body = bundle(demo_files, 3, STORE, archive=archive)
        assert ("archive" in body) is archive
        version, files = unbundle(json.loads(json.dumps(body)))
        assert version == 3 and set(files) == set(demo_files)
        assert _docs(files) == _docs(demo_files)
    inline = bundle(demo_files, 3, STORE, archive=False)
    for bad, words in [
        ({**body, "version": 0}, "version: expected a whole number >= 1"),
        ({**body, "type": "planogram"}, "type: expected 'map'"),
        ({**body, "extra": 1}, "extra: unknown field"),
        ({**body, "manifest": []}, "manifest: expected"),
        ({**body, "collections": {"../unit": {}}}, "not a feature type name"),
        ({**inline, "archive": "x"}, "archive: give the archive or manifest"),
    ]:
        with pytest.raises(MapBundleError, match=words):
            unbundle(bad)
    with pytest.raises(MapBundleError, match="manifest.json: missing"):
        bundle({"unit.geojson": b"{}"}, 1)


def _zipped(entries: dict[str, bytes]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return base64.b64encode(buf.getvalue()).decode()


def test_a_hostile_map_archive_is_refused_by_name(demo_files: dict[str, bytes]):
    head = {"type": "map", "version": 5}
    manifest = demo_files["manifest.json"]
    bomb = b"[" + b" " * (MAX_UNZIPPED_BYTES + 10) + b"]"  # 64 MB of blanks: a 64 KB zip
    for archive, words in [
        (12, "archive: expected base64 text"),
        ("not base64!", "archive: not base64"),
        (base64.b64encode(b"PK\x03\x04 not really").decode(), "archive: not a readable zip"),
        (_zipped({"unit.geojson": b"{}"}), "manifest.json missing"),
        (_zipped({"manifest.json": manifest, "Unit Plan.geojson": b"{}"}), "not a feature type"),
        (_zipped({"manifest.json": manifest, "a/unit.geojson": b"{}", "b/unit.geojson": b"{}"}),
         "unit.geojson: twice"),
        (_zipped({"manifest.json": manifest, **{f"t{i}.geojson": b"{}" for i in range(70)}}),
         "71 files"),
        (_zipped({"manifest.json": manifest, "unit.geojson": bomb}), "over 64 MB unzipped"),
    ]:  # fmt: skip
        with pytest.raises(MapBundleError, match=words):
            unbundle({**head, "archive": archive})
    # A real delivery zipped by hand, in a folder with macOS shadows: read as the box reads it.
    shadows = {f"venue/{n}": d for n, d in demo_files.items()}
    shadows["__MACOSX/venue/._unit.geojson"] = b"\x00junk"
    _, files = unbundle({**head, "archive": _zipped(shadows)})
    assert _docs(files) == _docs(demo_files)


def test_an_archive_carries_a_big_venue_in_one_message():
    """The bench's 500-unit, 3-level venue: inline it is over the box's 1 MB once signed; as an
    archive it is a small fraction of it."""
    from bench.wayfinding import _imdf

    files = _imdf(3, 12, 14, 0.3)
    key, _ = generate_keypair()
    sizes = {}
    for archive in (False, True):
        body = bundle(files, 1, STORE, archive=archive)
        sizes[archive] = len(sign_message(key, "map", body, STORE, None, 1, expires_in(60)))
    assert sizes[False] > 900_000 and sizes[True] < 150_000, sizes


# ---- the applier, on real files ----------------------------------------------------------
def test_map_and_planogram_applied_swapped_and_checked_against_each_other(
    tmp_path: Path, demo_files: dict[str, bytes]
):
    warned: list[tuple[str, int, str]] = []
    w = WayfindingApplier(tmp_path, STORE, lambda *a: warned.append(a))
    try:
        assert w.health() == {
            "map_version": "none", "planogram_version": "none", "planogram_off_map": "0",
        }  # fmt: skip
        w.apply_map(bundle(demo_files, 4, STORE))
        w.apply_planogram(_planogram_body(10))
        assert warned == []  # the demo planogram fits the demo map
        assert w.health()["map_version"] == "4" and w.health()["planogram_version"] == "10"
        # A map without shelf 4: applied, and the three products on it are reported.
        w.apply_map(bundle(_without_shelf(demo_files, "shelf-4"), 5, STORE))
        assert (tmp_path / "map" / "current").resolve().name == "v5"
        [(kind, version, line)] = warned
        assert (kind, version) == ("map", 5)
        assert line.startswith("3 of 20 products point to places not on the map: SKU-ALPEN-BEANIE:")
        assert "shelf S-4-2 is not on map version 5" in line
        assert line.endswith("(map version 5, planogram version 10)")
        assert w.health()["planogram_off_map"] == "3"
        # A corrupt map: refused naming the feature and field, v5 stays in use.
        broken, unit_id = _broken(demo_files)
        with pytest.raises(ValueError, match=f"map 6: unit {unit_id}: geometry: "):
            w.apply_map(bundle(broken, 6, STORE))
        with pytest.raises(ValueError, match="version: map 5 is not newer than 5"):
            w.apply_map(bundle(demo_files, 5, STORE))
        with pytest.raises(ValueError, match="store_id: map for store 'store-9'"):
            w.apply_map(bundle(demo_files, 7, "store-9"))
        assert w.maps.version() == 5 and not (tmp_path / "map" / "v6").exists()
        assert _docs(read_delivery(tmp_path / "map" / "current")) == _docs(
            _without_shelf(demo_files, "shelf-4")
        )
        with pytest.raises(PlanogramError, match="not newer"):
            w.apply_planogram(_planogram_body(9))
    finally:
        w.close()
    # A restart counts the entries off the map again, without a new push, and hands the map in
    # use to whoever draws routes as soon as it listens.
    again = WayfindingApplier(tmp_path, STORE)
    assert again.health() == {
        "map_version": "5", "planogram_version": "10", "planogram_off_map": "3",
    }  # fmt: skip
    maps: list[tuple[int, str]] = []
    again.on_map = lambda venue, version: maps.append((len(venue.areas), version))
    again.apply_map(bundle(demo_files, 8, STORE))
    assert [v for _, v in maps] == ["5", "8"] and maps[1][0] == maps[0][0] + 1
    again.close()


# ---- end to end: ops -> broker -> agent -> files -> CLI ----------------------------------
@pytest.mark.integration
@pytest.mark.timeout(90)
def test_pushed_map_and_planogram_reach_the_box_and_its_routes(
    tmp_path: Path, broker, demo_files: dict[str, bytes]
):
    cfg = demo_config(tmp_path, broker.port, PUB, camera=False)
    device = f"box-{uuid.uuid4().hex[:6]}"
    cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"device_id": device})})
    clock = ScaledClock(scenario.T0, 1.0)
    agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
    state = cfg.paths_resolved.state_dir
    ops = Ops(broker, STORE, device)
    health = BusRecorder(broker.host, broker.port, topics.health(STORE, device), live_only=True)
    try:
        agent.start_sync()
        assert ops.first_push("map", bundle(demo_files, 101, STORE))["accepted"] is True
        assert (state / "map" / "current").resolve().name == "v101"
        assert agent.director.wayfinder.version == "101"  # the screens route on it now
        ops.push("planogram", _planogram_body(101))
        assert ops.ack("planogram")["accepted"] is True
        # A corrupt map: refused with the feature and field in the ack; v101 stays.
        broken, unit_id = _broken(demo_files)
        ops.push("map", bundle(broken, 102, STORE))
        refused = ops.ack("map")
        assert refused["accepted"] is False
        assert f"unit {unit_id}: geometry:" in refused["reason"], refused["reason"]
        # Unsigned (signed by a key the box does not trust): refused before anything is read.
        other, _ = generate_keypair()
        msg = sign_message(
            other, "map", bundle(demo_files, 103, STORE), STORE, device, 103, expires_in(600)
        )
        ops.c.publish(topics.device_cmd(STORE, device, "map"), msg, qos=1)
        unsigned = ops.ack("map")
        assert unsigned["accepted"] is False and "key" in unsigned["reason"], unsigned
        assert (state / "map" / "current").resolve().name == "v101"
        # A map without shelf 4: applied; the planogram entries on it reported to ops.
        ops.push("map", bundle(_without_shelf(demo_files, "shelf-4"), 104, STORE))
        assert ops.ack("map")["accepted"] is True
        assert agent.director.wayfinder.version == "104"
        warning = ops.ack("map.warnings")
        assert warning["version"] == 104 and warning["reason"].startswith("3 of 20 products")
        # The versions in use, in the heartbeat ops read.
        sensors: dict = {}
        for _ in range(50):
            agent.heartbeat()
            time.sleep(0.2)
            seen = [m["sensors"] for m in health.messages if "sensors" in m]
            if seen and seen[-1].get("map_version") == "104":
                sensors = seen[-1]
                break
        assert sensors.get("map_version") == "104", health.messages[-1:]
        assert sensors["planogram_version"] == "101" and sensors["planogram_off_map"] == "3"
    finally:
        health.close()
        ops.close()
        agent.close(flush_timeout_s=2)
    # What the box holds routes through the real CLI: to a shelf it has, never to one it lost.
    run = [sys.executable, "-m", "edge_agent.cli", "map", "route", str(state / "map" / "current")]
    run += ["--from", "screen:screen-entrance", "--planogram", str(state / "planogram.db")]
    ok = subprocess.run([*run, "--to", "sku:SKU-RIDGE-GTX-42"], capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["to"]["id"] == "SKU-RIDGE-GTX-42"
    stale = subprocess.run([*run, "--to", "sku:SKU-ALPEN-BEANIE"], capture_output=True, text=True)
    assert stale.returncode == 1
    assert stale.stderr.strip().endswith("shelf S-4-4 is not on map version 104")
