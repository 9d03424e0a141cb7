"""Products on the map: the demo planogram fits the demo map, `sku:` routes through the real CLI,
and a product the map in use cannot place is refused with the reason, never routed to."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from shapely.geometry import Point

from contracts.map_bundle import read_delivery
from edge_agent.wayfinding.graph import NavGraph
from edge_agent.wayfinding.imdf import parse_imdf
from edge_agent.wayfinding.map_store import MapStore
from edge_agent.wayfinding.model import VenueMap
from edge_agent.wayfinding.planogram_store import load_file
from edge_agent.wayfinding.product_places import MapPlaces, stale_summary
from edge_agent.wayfinding.products import Location, Product, ProductIndex, Refusal
from edge_agent.wayfinding.route import RefError, plan_route, resolve_ref

REPO = Path(__file__).resolve().parents[2]
PLANOGRAM = REPO / "demo" / "data" / "planogram.csv"
PLAN = REPO / "demo" / "store-map.toml"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "map", *args],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip


def _without(files: dict[str, bytes], ftype: str, plan_id: str) -> dict[str, bytes]:
    """The map files with the feature of that plan id removed (a shelf taken out)."""
    name = f"{ftype}.geojson"
    doc = json.loads(files[name])
    kept = [
        f
        for f in doc["features"]
        if (f["properties"].get("edge_agent") or {}).get("plan_id") != plan_id
    ]
    assert len(kept) == len(doc["features"]) - 1
    return {**files, name: json.dumps({**doc, "features": kept}).encode()}


# ---- the demo planogram on the demo map ------------------------------------------------------
def test_every_demo_product_lies_in_its_unit_and_shelf_on_its_level(demo_map: VenueMap):
    products = load_file(PLANOGRAM).products
    located = [p for p in products if p.location is not None]
    assert len(located) == len(products) - 1
    assert [p.sku for p in products if p.location is None] == ["SKU-GIFT-CARD-50"]
    for p in located:
        loc = p.location
        assert loc is not None
        level = demo_map.plan_ids[loc.level_id]
        unit = demo_map.units[demo_map.plan_ids[loc.unit_id]]
        assert loc.section_id is not None
        shelf = demo_map.areas[demo_map.plan_ids[loc.section_id]]
        pt = Point(loc.x, loc.y)
        # Strictly inside, not within the tolerance MapPlaces allows for rounded exports.
        assert unit.level_id == level and unit.polygon.covers(pt), p.sku
        assert shelf.level_id == level and shelf.polygon.covers(pt), p.sku
        assert shelf.feature_type == "fixture", p.sku  # on a shelf or a counter
        assert not isinstance(MapPlaces(demo_map, 1).locate(p), Refusal), p.sku


def test_every_demo_product_is_reached_from_the_entrance_screen_beside_its_shelf(
    demo_map: VenueMap, demo_graph: NavGraph
):
    places = MapPlaces(demo_map, 1)
    resolve = places.resolver(load_file(PLANOGRAM).by_sku())
    start = resolve_ref(demo_map, "screen:screen-entrance")
    for p in load_file(PLANOGRAM).products:
        if p.location is None:
            continue
        route = plan_route(demo_graph, start, resolve(p.sku))
        end = route.waypoints[-1]
        shelf = demo_map.areas[demo_map.plan_ids[p.location.section_id or ""]]
        # In the walkable space in front of the shelf, not inside it, not an aisle away.
        assert not shelf.polygon.contains(Point(end.x, end.y)), p.sku
        assert shelf.polygon.distance(Point(end.x, end.y)) < 0.8, p.sku
        assert route.levels[-1] == demo_map.plan_ids[p.location.level_id], p.sku


# ---- what the map in use refuses -------------------------------------------------------------
def _product(loc: Location | None) -> Product:
    return Product("SKU-X", {"en": "Test boot"}, "B", "C", loc, 1)


def test_a_location_off_this_map_is_refused_naming_the_map_version(demo_map: VenueMap):
    places = MapPlaces(demo_map, 7)
    ok = Location("L0", "sales-floor", "shelf-1", "S-1-2", 8.65, 5.0)
    assert not isinstance(places.locate(_product(ok)), Refusal)
    # IMDF feature ids work as well as the store's plan ids.
    by_ids = Location(
        demo_map.plan_ids["L0"], demo_map.plan_ids["sales-floor"],
        demo_map.plan_ids["shelf-1"], None, 8.65, 5.0,
    )  # fmt: skip
    assert not isinstance(places.locate(_product(by_ids)), Refusal)
    for loc, reason in [
        (None, "no location on the planogram"),
        (
            Location("L0", "sales-floor", "shelf-9", "S-9-1", 8.65, 5.0),
            "shelf S-9-1 is not on map version 7",
        ),
        (
            Location("L0", "unit-aisle-4", "shelf-1", None, 8.65, 5.0),
            "unit unit-aisle-4 is not on map version 7",
        ),
        (
            Location("L1", "sales-floor", "shelf-1", None, 8.65, 5.0),
            "unit sales-floor is not on level L1 on map version 7",
        ),
        (
            Location("L0", "sales-floor", "shelf-5", "S-5-1", 10.0, 3.65),
            "shelf S-5-1 (shelf-5) is not on level L0 on map version 7",
        ),
        (
            Location("L0", "sales-floor", "shelf-1", "S-1-2", 18.5, 6.0),
            "point [18.5, 6] is outside unit sales-floor on map version 7",
        ),
        (
            Location("L0", "sales-floor", "shelf-1", "S-1-2", 12.0, 6.0),
            "point [12, 6] is not on shelf S-1-2 (shelf-1) on map version 7",
        ),
        (
            Location("L9", "sales-floor", "shelf-1", None, 8.65, 5.0),
            "level L9 is not on map version 7",
        ),
    ]:
        got = places.locate(_product(loc))
        assert got == Refusal("sku:SKU-X", reason)
    # A route REF may be the store's plan id as well.
    assert resolve_ref(demo_map, "aisle-4").id == demo_map.plan_ids["aisle-4"]
    with pytest.raises(RefError, match="sku:SKU-NONE: no product SKU-NONE on the planogram"):
        resolve_ref(demo_map, "sku:SKU-NONE", {"sku": places.resolver({})})


def test_the_search_marks_hits_the_map_cannot_place(demo_files: dict[str, bytes]):
    venue = parse_imdf(_without(demo_files, "fixture", "shelf-4")).venue
    assert venue is not None
    places = MapPlaces(venue, 8)
    planogram = load_file(PLANOGRAM)
    hit = ProductIndex.build(planogram).search("storm shell", known_places=places, map_version=8)[0]
    assert (hit.product.sku, hit.routable) == ("SKU-NW-SHELL-L", False)
    assert hit.reason == "shelf S-4-2 is not on map version 8"
    stale = places.stale(planogram)
    assert [sku for sku, _ in stale] == ["SKU-NW-SHELL-L", "SKU-ALPEN-BEANIE", "SKU-ALPEN-GLOVES-M"]
    line = stale_summary(stale, len(planogram.products))
    assert line.startswith("3 of 20 products point to places not on the map: SKU-NW-SHELL-L: ")


def test_a_plan_id_named_twice_is_an_error_naming_the_feature_and_field(
    demo_files: dict[str, bytes],
):
    doc = json.loads(demo_files["fixture.geojson"])
    doc["features"][1]["properties"]["edge_agent"] = {"plan_id": "shelf-1"}
    result = parse_imdf({**demo_files, "fixture.geojson": json.dumps(doc).encode()})
    fid = doc["features"][1]["id"]
    assert [str(e) for e in result.errors] == [
        f"fixture {fid}: edge_agent.plan_id: 'shelf-1' also names fixture "
        f"{doc['features'][0]['id']}"
    ]


# ---- through the real CLI --------------------------------------------------------------------
@pytest.mark.integration
def test_route_to_a_sku_from_the_entrance_screen_through_the_cli(demo_map: VenueMap):
    got = _cli(
        "route", str(PLAN), "--from", "screen:screen-entrance",
        "--to", "sku:SKU-RIDGE-GTX-42", "--planogram", str(PLANOGRAM),
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    doc = json.loads(got.stdout)
    assert 7 < doc["distance_m"] < 12
    assert [lv["ordinal"] for lv in doc["levels"]] == [0]
    assert doc["to"] == {
        "kind": "product", "id": "SKU-RIDGE-GTX-42", "name": "Ridge GTX trail shoe",
        "level": demo_map.plan_ids["L0"],
    }  # fmt: skip
    assert doc["steps"][-1]["text"].endswith("the Ridge GTX trail shoe is on your left")
    x, y, ordinal = doc["path"][-1]
    unit = demo_map.units[demo_map.plan_ids["sales-floor"]]
    shelf = demo_map.areas[demo_map.plan_ids["shelf-1"]]
    assert ordinal == 0 and unit.polygon.covers(Point(x, y))
    assert 0 < shelf.polygon.distance(Point(x, y)) < 0.8
    # Upstairs, in German: the stairs, then the headlamp.
    de = _cli(
        "route", str(PLAN), "--from", "screen:screen-entrance", "--to", "sku:SKU-LAMP-400",
        "--planogram", str(PLANOGRAM), "--lang", "de",
    )  # fmt: skip
    doc = json.loads(de.stdout)
    assert [lv["ordinal"] for lv in doc["levels"]] == [0, 1] and doc["uses"] == ["stairs"]
    assert doc["steps"][-1]["text"].endswith(
        "Stirnlampe 400 Lumen ist links"
    )  # walking east, shelf 7 north


@pytest.mark.integration
def test_a_stale_shelf_and_a_product_without_location_are_refused_by_the_cli(
    tmp_path: Path, demo_files: dict[str, bytes]
):
    maps = MapStore(tmp_path / "map")
    maps.install(7, _without(demo_files, "fixture", "shelf-4"))
    current = str(tmp_path / "map" / "current")
    args = ("--from", "screen:screen-entrance", "--planogram", str(PLANOGRAM))
    stale = _cli("route", current, *args, "--to", "sku:SKU-NW-SHELL-L")
    assert (stale.returncode, stale.stdout) == (1, "")
    assert stale.stderr.splitlines() == [
        "edge-agent map: sku:SKU-NW-SHELL-L: Storm shell rain jacket: "
        "shelf S-4-2 is not on map version 7"
    ]
    nowhere = _cli("route", current, *args, "--to", "sku:SKU-GIFT-CARD-50")
    assert nowhere.returncode == 1 and nowhere.stderr.splitlines() == [
        "edge-agent map: sku:SKU-GIFT-CARD-50: Gift card 50 euros: no location on the planogram"
    ]
    png = tmp_path / "r.png"
    drawn = _cli("render", current, *args, "--to", "sku:SKU-RIDGE-GTX-42", "--out", str(png))
    assert drawn.returncode == 0 and png.stat().st_size > 1000
    refused = _cli("render", current, *args, "--to", "sku:SKU-NW-SHELL-L", "--out", str(png))
    assert refused.returncode == 1 and "map version 7" in refused.stderr
    # No planogram given: exit 2, said once.
    bare = _cli("route", current, "--from", "screen:screen-entrance", "--to", "sku:SKU-X")
    assert bare.returncode == 2 and len(bare.stderr.splitlines()) == 1
    # The product finder checks the same map.
    found = _cli("find", "storm shell", "--planogram", str(PLANOGRAM), "--map", current)
    first = json.loads(found.stdout)["results"][0]
    assert (first["routable"], first["reason"]) == (False, "shelf S-4-2 is not on map version 7")
    found = _cli("find", "ridge gtx", "--planogram", str(PLANOGRAM), "--map", str(PLAN))
    assert json.loads(found.stdout)["results"][0]["routable"] is True


def test_the_map_store_swaps_versions_whole_and_keeps_the_one_before(
    tmp_path: Path, demo_files: dict[str, bytes]
):
    maps = MapStore(tmp_path / "map")
    assert maps.version() is None and maps.load() is None
    for v in (3, 4, 5):
        maps.install(v, demo_files)
    assert maps.version() == 5
    assert sorted(p.name for p in (tmp_path / "map").iterdir()) == ["current", "v4", "v5"]
    assert (tmp_path / "map" / "current").readlink() == Path("v5")  # relative: movable
    assert read_delivery(tmp_path / "map" / "current") == demo_files
    loaded = maps.load()
    assert loaded is not None and loaded[0] == 5 and "shelf-1" in loaded[1].plan_ids
