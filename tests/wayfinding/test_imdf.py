"""IMDF import: the demo store round-trips; malformed deliveries are refused (or warned about)
with the feature and the field named, never with a traceback."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_agent.wayfinding.imdf import load_imdf, parse_imdf
from edge_agent.wayfinding.model import VenueMap, label


def mutate(
    files: dict[str, bytes], ftype: str, change: Callable[[list[dict[str, Any]]], None]
) -> dict[str, bytes]:
    out = dict(files)
    doc = json.loads(files[f"{ftype}.geojson"])
    change(doc["features"])
    out[f"{ftype}.geojson"] = json.dumps(doc).encode()
    return out


def by_name(features: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(f for f in features if (f["properties"].get("name") or {}).get("en") == name)


def messages(files: dict[str, bytes]) -> tuple[list[str], list[str]]:
    r = parse_imdf(files)
    return [str(e) for e in r.errors], [str(w) for w in r.warnings]


def test_the_demo_store_imports_clean_with_its_screens_in_place(
    demo_files: dict[str, bytes],
) -> None:
    r = parse_imdf(demo_files)
    assert r.ok and r.errors == [] and r.warnings == []
    assert r.counts["level"] == 2 and r.counts["unit"] == 10 and r.counts["opening"] == 9
    vm = r.venue
    assert vm is not None
    assert sorted(lv.ordinal for lv in vm.levels.values()) == [0, 1]
    screen = vm.placements[("screen", "screen-entrance")]
    # Authored at (3, 2.7) metres facing 180: WGS84 and back lands on the same spot.
    assert screen.xy == pytest.approx((3.0, 2.7), abs=1e-4)
    assert screen.facing_deg == 180
    assert ("kiosk", "kiosk-1") in vm.placements and ("zone", "womens") in vm.placements
    beacon = vm.placements[("beacon", "womens-rack")]
    assert beacon.xy == pytest.approx((9.0, 6.0), abs=1e-4)  # from the store layout
    assert {c.category for c in vm.connectors} == {"stairs", "elevator"}
    fitting = next(u for u in vm.units.values() if u.name.get("en") == "Fitting rooms")
    assert label(fitting.name, "de") == "Umkleidekabinen"
    assert label(fitting.alt_name, "fr") == "Changing rooms"  # no French: English


def test_a_folder_and_an_archive_read_the_same(
    demo_files: dict[str, bytes], tmp_path: Path
) -> None:
    folder = tmp_path / "imdf"
    folder.mkdir()
    archive = tmp_path / "imdf.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in demo_files.items():
            (folder / name).write_bytes(data)
            zf.writestr(f"Northwind/{name}", data)  # exporters often add a top folder
    a, b = load_imdf(folder), load_imdf(archive)
    assert a.ok and b.ok and a.counts == b.counts
    assert isinstance(a.venue, VenueMap) and isinstance(b.venue, VenueMap)
    assert a.venue.units.keys() == b.venue.units.keys()


def test_an_unreadable_path_is_one_error(tmp_path: Path) -> None:
    r = load_imdf(tmp_path / "missing.zip")
    assert r.venue is None and len(r.errors) == 1 and "cannot read" in str(r.errors[0])
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    assert "cannot read" in str(load_imdf(bad).errors[0])


def test_a_polygon_ring_not_closed_names_the_unit(demo_files: dict[str, bytes]) -> None:
    target: dict[str, Any] = {}

    def open_ring(fs: list[dict[str, Any]]) -> None:
        f = by_name(fs, "Fitting rooms")
        f["geometry"]["coordinates"][0].pop()
        target.update(f)

    errors, _ = messages(mutate(demo_files, "unit", open_ring))
    assert (
        f"unit {target['id']}: geometry: polygon ring not closed (first position != last)" in errors
    )


def test_a_self_intersecting_polygon_is_refused(demo_files: dict[str, bytes]) -> None:
    target: dict[str, Any] = {}

    def bowtie(fs: list[dict[str, Any]]) -> None:
        f = by_name(fs, "Entrance")
        ring = f["geometry"]["coordinates"][0]
        ring[1], ring[2] = ring[2], ring[1]
        target.update(f)

    errors, _ = messages(mutate(demo_files, "unit", bowtie))
    assert any(
        e.startswith(f"unit {target['id']}: geometry: invalid polygon (Self-intersection")
        for e in errors
    ), errors


def test_a_dangling_level_id_is_refused(demo_files: dict[str, bytes]) -> None:
    target: dict[str, Any] = {}

    def dangle(fs: list[dict[str, Any]]) -> None:
        fs[0]["properties"]["level_id"] = "99"
        target.update(fs[0])

    errors, _ = messages(mutate(demo_files, "opening", dangle))
    assert f"opening {target['id']}: level_id: 99 is not a level" in errors


def test_an_opening_on_no_unit_is_refused(demo_files: dict[str, bytes]) -> None:
    target: dict[str, Any] = {}

    def float_door(fs: list[dict[str, Any]]) -> None:
        f = by_name(fs, "Main entrance")
        # Two metres into the entrance lobby: on no wall at all.
        for pos in f["geometry"]["coordinates"]:
            pos[1] += 2.0 / 111_195
        target.update(f)

    errors, _ = messages(mutate(demo_files, "opening", float_door))
    assert any(e.startswith(f"opening {target['id']}: geometry: lies on no unit") for e in errors)


def test_typos_unknown_types_and_empty_collections_are_warnings(
    demo_files: dict[str, bytes],
) -> None:
    target: dict[str, Any] = {}

    def typo(fs: list[dict[str, Any]]) -> None:
        f = by_name(fs, "Fitting rooms")
        f["properties"]["alt_nmae"] = f["properties"].pop("alt_name")
        target.update(f)

    files = mutate(demo_files, "unit", typo)
    files["elevators.geojson"] = b'{"type": "FeatureCollection", "features": []}'
    files["amenity.geojson"] = b'{"type": "FeatureCollection", "features": []}'
    files = mutate(
        files,
        "fixture",
        lambda fs: fs.append({"id": "x1", "type": "Feature", "feature_type": "shelfunit"}),
    )
    r = parse_imdf(files)
    warnings = [str(w) for w in r.warnings]
    assert r.ok, r.errors
    assert (
        f"unit {target['id']}: alt_nmae: not an IMDF unit property; ignored (did you mean 'alt_name'?)"
        in warnings
    )
    assert "elevators.geojson: not an IMDF feature type; ignored" in warnings
    assert "amenity.geojson: empty collection" in warnings
    assert "fixture x1: feature_type: 'shelfunit' is not IMDF; ignored" in warnings


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda f: f.pop("manifest.json"), "manifest.json: missing"),
        (lambda f: f.update({"unit.geojson": b"{nope"}), "unit.geojson: not JSON"),
        (lambda f: f.update({"level.geojson": b"[]"}), "level.geojson: not a GeoJSON"),
    ],
)
def test_broken_files_are_errors_not_tracebacks(
    demo_files: dict[str, bytes], change: Callable[[dict[str, bytes]], object], expected: str
) -> None:
    files = dict(demo_files)
    change(files)
    errors, _ = messages(files)
    assert any(e.startswith(expected) for e in errors), errors


def test_duplicate_ids_and_dangling_references_are_refused(demo_files: dict[str, bytes]) -> None:
    units = json.loads(demo_files["unit.geojson"])["features"]

    def dup(fs: list[dict[str, Any]]) -> None:
        fs[1]["id"] = fs[0]["id"]

    errors, _ = messages(mutate(demo_files, "fixture", dup))
    assert any("id: also used by a fixture" in e for e in errors)

    def dangling_anchor(fs: list[dict[str, Any]]) -> None:
        fs[0]["properties"]["unit_id"] = "nope"

    errors, _ = messages(mutate(demo_files, "anchor", dangling_anchor))
    assert any(e.endswith("unit_id: nope is not a unit") for e in errors)

    def dangling_rel(fs: list[dict[str, Any]]) -> None:
        fs[0]["properties"]["destination"]["id"] = "gone"

    errors, _ = messages(mutate(demo_files, "relationship", dangling_rel))
    assert any(e.endswith("destination: gone is not a unit or opening") for e in errors)
    assert units  # the demo has units to break


def test_a_level_without_an_ordinal_is_refused(demo_files: dict[str, bytes]) -> None:
    target: dict[str, Any] = {}

    def no_ordinal(fs: list[dict[str, Any]]) -> None:
        fs[1]["properties"]["ordinal"] = "1"
        target.update(fs[1])

    errors, _ = messages(mutate(demo_files, "level", no_ordinal))
    assert f"level {target['id']}: ordinal: '1' is not an integer" in errors


def test_stacked_stairs_join_levels_without_relationships(demo_files: dict[str, bytes]) -> None:
    files = dict(demo_files)
    del files["relationship.geojson"]
    r = parse_imdf(files)
    assert r.ok
    assert r.venue is not None
    assert sorted(c.category for c in r.venue.connectors) == ["elevator", "stairs"]
