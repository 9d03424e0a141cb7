"""Import and validate an OGC IMDF 1.0 delivery (a .zip archive or a folder) into a VenueMap.

IMDF (OGC Community Standard 20-094) is plain GeoJSON: ``manifest.json`` and one
``<feature_type>.geojson`` FeatureCollection per type, WGS84 coordinates, names as LABELS
(``{"en": ..., "de": ...}``). Real exports are messy, so the rules are:

- an **error** is what would make a route or a drawing wrong: broken geometry, a missing or
  dangling ``level_id``/``unit_id``/``anchor_id``, an opening on no unit's boundary, a duplicate
  id, a level without an ordinal. Each names the feature and the field:
  ``unit 8f2c...: geometry: polygon ring not closed``.
- a **warning** is what we can safely ignore: an unknown file or feature type, a property that
  is not IMDF's (with the closest IMDF name: a typo), an unknown category, a missing name, an
  empty collection.

Nothing here raises on bad input: every problem becomes an Issue. Coordinates are projected to
metres around the south-west corner of the levels' bounding box (model.Projection), so a plan
authored in metres from its front-left corner comes back with the same numbers.

Our own placements (screens, kiosks, beacons, zones) ride on standard anchors and sections with
one extension property, ``"edge_agent": {"kind": "screen", "id": ..., "facing_deg": ...}``:
other IMDF tools see ordinary anchors; we do not warn about it.
"""

from __future__ import annotations

import difflib
import json
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import LineString, Polygon
from shapely.strtree import STRtree
from shapely.validation import explain_validity

from contracts import map_bundle
from edge_agent.wayfinding.model import (
    Area,
    Connector,
    Issue,
    Labels,
    Level,
    Occupant,
    Opening,
    Placement,
    PointFeature,
    Projection,
    Unit,
    VenueMap,
)

EXTENSION_KEY = "edge_agent"
PLACEMENT_KINDS = ("screen", "kiosk", "beacon", "zone")

# IMDF 1.0 property keys per feature type (OGC 20-094, "Features").
PROPERTIES: dict[str, frozenset[str]] = {
    "address": frozenset(
        [
            "address",
            "unit",
            "locality",
            "province",
            "country",
            "postal_code",
            "postal_code_ext",
            "postal_code_vanity",
        ]
    ),
    "amenity": frozenset(
        [
            "category",
            "accessibility",
            "name",
            "alt_name",
            "hours",
            "phone",
            "website",
            "unit_ids",
            "address_id",
            "correlation_id",
        ]
    ),
    "anchor": frozenset(["address_id", "unit_id"]),
    "building": frozenset(
        ["name", "alt_name", "category", "restriction", "display_point", "address_id"]
    ),
    "detail": frozenset(["level_id"]),
    "fixture": frozenset(
        ["category", "name", "alt_name", "anchor_id", "level_id", "display_point"]
    ),
    "footprint": frozenset(["category", "name", "building_ids"]),
    "geofence": frozenset(
        [
            "category",
            "restriction",
            "accessibility",
            "name",
            "alt_name",
            "correlation_id",
            "display_point",
            "building_ids",
            "level_ids",
            "parents",
        ]
    ),
    "kiosk": frozenset(["name", "alt_name", "anchor_id", "level_id", "display_point"]),
    "level": frozenset(
        [
            "category",
            "restriction",
            "outdoor",
            "ordinal",
            "name",
            "short_name",
            "display_point",
            "address_id",
            "building_ids",
        ]
    ),
    "occupant": frozenset(
        ["name", "category", "anchor_id", "hours", "phone", "website", "validity", "correlation_id"]
    ),
    "opening": frozenset(
        [
            "category",
            "accessibility",
            "access_control",
            "door",
            "name",
            "alt_name",
            "display_point",
            "level_id",
        ]
    ),
    "relationship": frozenset(
        ["category", "direction", "origin", "intermediary", "destination", "hours"]
    ),
    "section": frozenset(
        [
            "category",
            "restriction",
            "accessibility",
            "name",
            "alt_name",
            "display_point",
            "level_id",
            "address_id",
            "correlation_id",
            "parents",
        ]
    ),
    "unit": frozenset(
        [
            "category",
            "restriction",
            "accessibility",
            "name",
            "alt_name",
            "level_id",
            "display_point",
        ]
    ),
    "venue": frozenset(
        [
            "category",
            "restriction",
            "name",
            "alt_name",
            "hours",
            "phone",
            "website",
            "display_point",
            "address_id",
        ]
    ),
}
FEATURE_TYPES = tuple(PROPERTIES)
# What this import reads into the VenueMap; the rest is counted and checked for structure only.
ROUTED = ("venue", "level", "unit", "opening", "fixture", "section", "kiosk", "amenity", "anchor")

UNIT_CATEGORIES = frozenset(
    [
        "auditorium",
        "brick",
        "classroom",
        "column",
        "concrete",
        "conferenceroom",
        "drivethrough",
        "elevator",
        "escalator",
        "fieldofplay",
        "firstaid",
        "fitnessroom",
        "foodservice",
        "footbridge",
        "glass",
        "huddleroom",
        "kitchen",
        "laboratory",
        "library",
        "lobby",
        "lounge",
        "mailroom",
        "mothersroom",
        "movietheater",
        "movingwalkway",
        "nonpublic",
        "office",
        "opentobelow",
        "parking",
        "phoneroom",
        "platform",
        "privatelounge",
        "ramp",
        "recreation",
        "restroom",
        "restroom.family",
        "restroom.female",
        "restroom.female.wheelchair",
        "restroom.male",
        "restroom.male.wheelchair",
        "restroom.transgender",
        "restroom.transgender.wheelchair",
        "restroom.unisex",
        "restroom.unisex.wheelchair",
        "restroom.wheelchair",
        "road",
        "room",
        "serverroom",
        "shower",
        "smokingarea",
        "stairs",
        "steps",
        "storage",
        "structure",
        "terrace",
        "theater",
        "unenclosedarea",
        "unspecified",
        "vegetation",
        "waitingroom",
        "walkway",
        "walkway.island",
        "wood",
    ]
)
OPENING_CATEGORIES = frozenset(
    [
        "automobile",
        "bicycle",
        "emergencyexit",
        "pedestrian",
        "pedestrian.principal",
        "pedestrian.transit",
        "service",
    ]
)
RELATIONSHIP_CATEGORIES = frozenset(
    ["elevator", "escalator", "movingwalkway", "ramp", "stairs", "traversal", "traversal.path"]
)
# How far (metres) an opening may sit from a unit's boundary and still be on it: exports snap
# doors to wall centre lines, units to wall faces.
OPENING_TOLERANCE_M = 0.3


@dataclass
class ImportResult:
    venue: VenueMap | None
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors and self.venue is not None


# --- reading the delivery -------------------------------------------------------------------


def read_delivery(path: Path | str) -> dict[str, bytes]:
    """The files of an IMDF archive or folder by base name (the same reader ``edge-ops push
    map`` uses). Raises OSError (or zipfile.BadZipFile) when the path cannot be read at all."""
    return map_bundle.read_delivery(path)


def load_imdf(path: Path | str) -> ImportResult:
    try:
        files = read_delivery(path)
    except (OSError, zipfile.BadZipFile) as exc:
        msg = getattr(exc, "strerror", None) or str(exc)
        return ImportResult(None, [Issue(str(path), "", f"cannot read: {msg}")])
    return parse_imdf(files)


# --- parsing --------------------------------------------------------------------------------


class _Parser:
    def __init__(self) -> None:
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []
        self.proj = Projection(0.0, 0.0)

    def err(self, feature: str, fld: str, msg: str) -> None:
        self.errors.append(Issue(feature, fld, msg))

    def warn(self, feature: str, fld: str, msg: str) -> None:
        self.warnings.append(Issue(feature, fld, msg))

    # geometry ---------------------------------------------------------------------------

    def _position(self, ref: str, pos: Any) -> tuple[float, float] | None:
        if (
            not isinstance(pos, list | tuple)
            or len(pos) < 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in pos[:2])
        ):
            self.err(ref, "geometry", f"position {pos!r} is not [longitude, latitude]")
            return None
        lon, lat = float(pos[0]), float(pos[1])
        if not (-180 <= lon <= 180 and -90 <= lat <= 90) or math.isnan(lon + lat):
            self.err(ref, "geometry", f"position {pos!r} is not a WGS84 longitude/latitude")
            return None
        return self.proj.to_xy(lon, lat)

    def _ring(self, ref: str, ring: Any) -> list[tuple[float, float]] | None:
        if not isinstance(ring, list) or len(ring) < 4:
            self.err(ref, "geometry", "polygon ring has fewer than 4 positions")
            return None
        if ring[0] != ring[-1]:
            self.err(ref, "geometry", "polygon ring not closed (first position != last)")
            return None
        pts = [self._position(ref, p) for p in ring]
        if any(p is None for p in pts):
            return None
        return [p for p in pts if p is not None]

    def polygon(self, ref: str, geom: Any) -> Polygon | None:
        if not isinstance(geom, dict):
            self.err(ref, "geometry", "missing (a Polygon is required)")
            return None
        kind, coords = geom.get("type"), geom.get("coordinates")
        if kind == "MultiPolygon" and isinstance(coords, list) and coords:
            if len(coords) > 1:
                self.warn(ref, "geometry", "MultiPolygon: only its largest part is used")
            polys = [self.polygon(ref, {"type": "Polygon", "coordinates": c}) for c in coords]
            good = [p for p in polys if p is not None]
            return max(good, key=lambda p: p.area) if len(good) == len(polys) else None
        if kind != "Polygon" or not isinstance(coords, list) or not coords:
            self.err(ref, "geometry", f"is {kind!r}, not a Polygon")
            return None
        rings = [self._ring(ref, r) for r in coords]
        if any(r is None for r in rings):
            return None
        poly = Polygon(rings[0], [r for r in rings[1:] if r is not None])
        if not poly.is_valid:
            self.err(ref, "geometry", f"invalid polygon ({explain_validity(poly)})")
            return None
        if poly.area <= 0:
            self.err(ref, "geometry", "polygon has no area")
            return None
        return poly

    def line(self, ref: str, geom: Any) -> LineString | None:
        if not isinstance(geom, dict) or geom.get("type") != "LineString":
            kind = geom.get("type") if isinstance(geom, dict) else None
            self.err(ref, "geometry", f"is {kind!r}, not a LineString")
            return None
        coords = geom.get("coordinates")
        if not isinstance(coords, list) or len(coords) < 2:
            self.err(ref, "geometry", "a LineString needs at least 2 positions")
            return None
        pts = [self._position(ref, p) for p in coords]
        if any(p is None for p in pts):
            return None
        line = LineString([p for p in pts if p is not None])
        if line.length <= 0:
            self.err(ref, "geometry", "LineString has no length")
            return None
        return line

    def point(self, ref: str, geom: Any, fld: str = "geometry") -> tuple[float, float] | None:
        if not isinstance(geom, dict) or geom.get("type") != "Point":
            kind = geom.get("type") if isinstance(geom, dict) else None
            self.err(ref, fld, f"is {kind!r}, not a Point")
            return None
        return self._position(ref, geom.get("coordinates"))

    # properties -------------------------------------------------------------------------

    def labels(self, ref: str, props: dict[str, Any], key: str, lang: str) -> Labels:
        v = props.get(key)
        if v is None:
            return {}
        if isinstance(v, str):
            self.warn(ref, key, f"is a string, not LABELS; read as {{{lang!r}: ...}}")
            return {lang: v}
        if not isinstance(v, dict) or not all(
            isinstance(k, str) and isinstance(s, str) for k, s in v.items()
        ):
            self.warn(ref, key, "is not LABELS ({language: name}); ignored")
            return {}
        return dict(v)

    def display_point(self, ref: str, props: dict[str, Any]) -> tuple[float, float] | None:
        dp = props.get("display_point")
        if dp is None:
            return None
        return self.point(ref, dp, "display_point")


def _ref(ftype: str, fid: object) -> str:
    return f"{ftype} {fid}"


def _raw_positions(geom: Any) -> list[tuple[float, float]]:
    """Every numeric [lon, lat] in a GeoJSON geometry, for choosing the projection's origin."""
    out: list[tuple[float, float]] = []

    def walk(c: Any) -> None:
        if isinstance(c, list) and len(c) >= 2 and all(isinstance(v, int | float) for v in c[:2]):
            if -180 <= c[0] <= 180 and -90 <= c[1] <= 90:
                out.append((float(c[0]), float(c[1])))
        elif isinstance(c, list):
            for x in c:
                walk(x)

    if isinstance(geom, dict):
        walk(geom.get("coordinates"))
    return out


def parse_imdf(files: Mapping[str, bytes]) -> ImportResult:
    """Validate an IMDF delivery given as {file name: bytes}; never raises on its content."""
    p = _Parser()
    counts: dict[str, int] = {}
    language = "en"
    features: dict[str, list[dict[str, Any]]] = {}

    if "manifest.json" not in files:
        p.err("manifest.json", "", "missing (an IMDF delivery starts with its manifest)")
    else:
        try:
            manifest = json.loads(files["manifest.json"])
        except ValueError as exc:
            manifest = None
            p.err("manifest.json", "", f"not JSON: {exc}")
        if isinstance(manifest, dict):
            if manifest.get("version") not in ("1.0.0", "1.0"):
                p.warn("manifest.json", "version", f"{manifest.get('version')!r} is not 1.0.0")
            if isinstance(manifest.get("language"), str):
                language = manifest["language"]
            else:
                p.warn("manifest.json", "language", "missing; names read as English")
        elif manifest is not None:
            p.err("manifest.json", "", "is not a JSON object")

    for name, data in sorted(files.items()):
        if name == "manifest.json":
            continue
        ftype = name.rsplit(".", 1)[0].lower()
        if ftype not in PROPERTIES:
            near = difflib.get_close_matches(ftype, FEATURE_TYPES, n=1)
            hint = f" (did you mean {near[0]}.geojson?)" if near else ""
            p.warn(name, "", f"not an IMDF feature type; ignored{hint}")
            continue
        try:
            doc = json.loads(data)
        except ValueError as exc:
            p.err(name, "", f"not JSON: {exc}")
            continue
        if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
            p.err(name, "", "not a GeoJSON FeatureCollection")
            continue
        feats = doc.get("features")
        if not isinstance(feats, list):
            p.err(name, "features", "missing or not a list")
            continue
        if not feats:
            p.warn(name, "", "empty collection")
        kept: list[dict[str, Any]] = []
        for i, f in enumerate(feats):
            if not isinstance(f, dict):
                p.err(f"{name}[{i}]", "", "not a JSON object")
                continue
            fid = f.get("id")
            if not isinstance(fid, str) or not fid:
                p.err(f"{ftype} #{i} in {name}", "id", "missing (a FEATURE-ID string)")
                continue
            declared = f.get("feature_type")
            if declared != ftype:
                if declared in PROPERTIES:
                    p.err(_ref(ftype, fid), "feature_type", f"{declared!r} in {name}")
                    continue
                p.warn(_ref(ftype, fid), "feature_type", f"{declared!r} is not IMDF; ignored")
                continue
            kept.append(f)
        features[ftype] = kept
        counts[ftype] = len(kept)

    # Duplicate ids break every reference: refuse them across all types.
    seen: dict[str, str] = {}
    for ftype, feats in features.items():
        for f in feats:
            if f["id"] in seen:
                p.err(_ref(ftype, f["id"]), "id", f"also used by a {seen[f['id']]}")
            seen[f["id"]] = ftype

    # Properties: unknown keys are warnings with the nearest IMDF key.
    for ftype, feats in features.items():
        known = PROPERTIES[ftype]
        for f in feats:
            props = f.get("properties")
            if props is None and ftype in ("relationship", "address", "building"):
                props = f["properties"] = {}
            if not isinstance(props, dict):
                p.err(_ref(ftype, f["id"]), "properties", "missing or not an object")
                f["properties"] = {}
                continue
            for key in props:
                if key in known or key == EXTENSION_KEY:
                    continue
                near = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.7)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                p.warn(_ref(ftype, f["id"]), key, f"not an IMDF {ftype} property; ignored{hint}")

    # The projection's origin: the south-west corner of the levels (else of everything).
    pos = [xy for f in features.get("level", []) for xy in _raw_positions(f.get("geometry"))]
    if not pos:
        pos = [
            xy for fs in features.values() for f in fs for xy in _raw_positions(f.get("geometry"))
        ]
    if pos:
        p.proj = Projection(min(x for x, _ in pos), min(y for _, y in pos))

    venue = _build(p, features, language)
    if not features.get("level"):
        p.err("level.geojson", "", "no levels: a map needs at least one")
    return ImportResult(venue, p.errors, p.warnings, counts)


def _build(p: _Parser, features: dict[str, list[dict[str, Any]]], lang: str) -> VenueMap:
    vname: Labels = {}
    venue_id = ""
    for f in features.get("venue", []):
        ref = _ref("venue", f["id"])
        venue_id = f["id"]
        vname = p.labels(ref, f["properties"], "name", lang)
        p.polygon(ref, f.get("geometry"))
    vm = VenueMap(venue_id=venue_id, name=vname, projection=p.proj, language=lang)

    for f in features.get("level", []):
        ref, props = _ref("level", f["id"]), f["properties"]
        ordinal = props.get("ordinal")
        if not isinstance(ordinal, int) or isinstance(ordinal, bool):
            p.err(ref, "ordinal", f"{ordinal!r} is not an integer")
            continue
        outline = p.polygon(ref, f.get("geometry"))
        name = p.labels(ref, props, "name", lang)
        if not name:
            p.warn(ref, "name", "missing; shown as its ordinal")
            name = {lang: f"Level {ordinal}"}
        short = p.labels(ref, props, "short_name", lang) or {lang: str(ordinal)}
        vm.levels[f["id"]] = Level(f["id"], ordinal, name, short, outline)

    def level_of(ref: str, props: dict[str, Any]) -> str | None:
        lid = props.get("level_id")
        if lid is None:
            p.err(ref, "level_id", "missing")
            return None
        if lid not in vm.levels:
            p.err(ref, "level_id", f"{lid} is not a level")
            return None
        return str(lid)

    for f in features.get("unit", []):
        ref, props = _ref("unit", f["id"]), f["properties"]
        lid = level_of(ref, props)
        poly = p.polygon(ref, f.get("geometry"))
        cat = props.get("category")
        if not isinstance(cat, str) or not cat:
            p.err(ref, "category", "missing (walkable or not depends on it)")
            continue
        if cat not in UNIT_CATEGORIES:
            p.warn(ref, "category", f"{cat!r} is not an IMDF unit category; routed as a room")
        if lid is None or poly is None:
            continue
        acc = props.get("accessibility")
        vm.units[f["id"]] = Unit(
            f["id"],
            lid,
            cat,
            poly,
            p.labels(ref, props, "name", lang),
            p.labels(ref, props, "alt_name", lang),
            props.get("restriction") if isinstance(props.get("restriction"), str) else None,
            tuple(a for a in acc if isinstance(a, str)) if isinstance(acc, list) else (),
            p.display_point(ref, props),
        )

    trees: dict[str, tuple[STRtree, list[Unit]]] = {}
    for lid in vm.levels:
        us = [u for u in vm.units.values() if u.level_id == lid]
        trees[lid] = (STRtree([u.polygon for u in us]), us)

    for f in features.get("opening", []):
        ref, props = _ref("opening", f["id"]), f["properties"]
        lid = level_of(ref, props)
        line = p.line(ref, f.get("geometry"))
        cat = props.get("category")
        if not isinstance(cat, str):
            p.err(ref, "category", "missing")
            continue
        if cat not in OPENING_CATEGORIES:
            p.warn(ref, "category", f"{cat!r} is not an IMDF opening category")
        if lid is None or line is None:
            continue
        tree, us = trees[lid]
        on: list[str] = []
        ends = [shapely.Point(line.coords[0]), shapely.Point(line.coords[-1])]
        mid = line.interpolate(0.5, normalized=True)
        for i in tree.query(line.buffer(OPENING_TOLERANCE_M)):
            boundary = us[int(i)].polygon.exterior
            if all(boundary.distance(q) <= OPENING_TOLERANCE_M for q in [mid, *ends]):
                on.append(us[int(i)].id)
        if not on:
            p.err(ref, "geometry", f"lies on no unit of level {lid}")
            continue
        door = props.get("door") if isinstance(props.get("door"), dict) else None
        vm.openings[f["id"]] = Opening(
            f["id"],
            lid,
            cat,
            line,
            door,
            p.labels(ref, props, "name", lang),
            p.labels(ref, props, "alt_name", lang),
            tuple(sorted(on)),
        )

    for ftype in ("fixture", "section", "kiosk"):
        for f in features.get(ftype, []):
            ref, props = _ref(ftype, f["id"]), f["properties"]
            lid = level_of(ref, props)
            poly = p.polygon(ref, f.get("geometry"))
            cat = props.get("category", "")
            if ftype != "kiosk" and not isinstance(cat, str | type(None)):
                p.warn(ref, "category", "is not a string")
            if lid is None or poly is None:
                continue
            anchor = props.get("anchor_id")
            vm.areas[f["id"]] = Area(
                f["id"],
                ftype,
                lid,
                cat if isinstance(cat, str) else "",
                poly,
                p.labels(ref, props, "name", lang),
                p.labels(ref, props, "alt_name", lang),
                anchor if isinstance(anchor, str) else None,
                p.display_point(ref, props),
            )
            ext = props.get(EXTENSION_KEY)
            if ext is not None and not _plan_id_only(ext):
                _placement(p, vm, ref, ext, lid, vm.areas[f["id"]].anchor_xy(), f["id"], poly)

    for f in features.get("anchor", []):
        ref, props = _ref("anchor", f["id"]), f["properties"]
        xy = p.point(ref, f.get("geometry"))
        uid = props.get("unit_id")
        if uid not in vm.units:
            p.err(ref, "unit_id", "missing" if uid is None else f"{uid} is not a unit")
            continue
        if xy is None:
            continue
        lid = vm.units[uid].level_id
        vm.points[f["id"]] = PointFeature(f["id"], "anchor", lid, xy, unit_id=uid)
        ext = props.get(EXTENSION_KEY)
        if ext is not None:
            _placement(p, vm, ref, ext, lid, xy, f["id"], None)

    for f in features.get("amenity", []):
        ref, props = _ref("amenity", f["id"]), f["properties"]
        xy = p.point(ref, f.get("geometry"))
        uids = props.get("unit_ids")
        if not isinstance(uids, list) or not uids:
            p.err(ref, "unit_ids", "missing (an amenity lies in a unit)")
            continue
        bad = [u for u in uids if u not in vm.units]
        if bad:
            p.err(ref, "unit_ids", f"{bad[0]} is not a unit")
            continue
        if xy is None:
            continue
        cat = props.get("category")
        vm.points[f["id"]] = PointFeature(
            f["id"],
            "amenity",
            vm.units[uids[0]].level_id,
            xy,
            cat if isinstance(cat, str) else "",
            p.labels(ref, props, "name", lang),
            p.labels(ref, props, "alt_name", lang),
            uids[0],
        )

    for f in features.get("occupant", []):
        ref, props = _ref("occupant", f["id"]), f["properties"]
        aid = props.get("anchor_id")
        if aid not in vm.points:
            p.err(ref, "anchor_id", "missing" if aid is None else f"{aid} is not an anchor")
            continue
        cat = props.get("category")
        vm.occupants[f["id"]] = Occupant(
            f["id"],
            p.labels(ref, props, "name", lang),
            cat if isinstance(cat, str) else "",
            str(aid),
        )

    for ftype in ("fixture", "kiosk"):
        for a in [a for a in vm.areas.values() if a.feature_type == ftype]:
            if a.anchor_id is not None and a.anchor_id not in vm.points:
                p.err(_ref(ftype, a.id), "anchor_id", f"{a.anchor_id} is not an anchor")

    _connectors(p, vm, features.get("relationship", []))
    _plan_ids(p, vm, features)
    return vm


def _plan_id_only(ext: Any) -> bool:
    """An extension that only names the feature in the store's plan, not a placement."""
    return isinstance(ext, dict) and "kind" not in ext and "plan_id" in ext


def _plan_ids(p: _Parser, vm: VenueMap, features: dict[str, list[dict[str, Any]]]) -> None:
    """The store's own ids (``edge_agent.plan_id``) of the features the map kept."""
    kept = {*vm.levels, *vm.units, *vm.areas, *vm.openings}
    owner: dict[str, str] = {}
    for ftype, feats in features.items():
        for f in feats:
            ext = f["properties"].get(EXTENSION_KEY)
            if not isinstance(ext, dict) or "plan_id" not in ext or f["id"] not in kept:
                continue
            ref, pid = _ref(ftype, f["id"]), ext["plan_id"]
            if not isinstance(pid, str) or not pid:
                p.err(ref, f"{EXTENSION_KEY}.plan_id", f"{pid!r} is not a name")
            elif pid in owner:
                p.err(ref, f"{EXTENSION_KEY}.plan_id", f"{pid!r} also names {owner[pid]}")
            elif pid in kept and pid != f["id"]:
                p.err(ref, f"{EXTENSION_KEY}.plan_id", f"{pid!r} is another feature's id")
            else:
                owner[pid] = ref
                vm.plan_ids[pid] = f["id"]


def _placement(
    p: _Parser,
    vm: VenueMap,
    ref: str,
    ext: Any,
    level_id: str,
    xy: tuple[float, float],
    fid: str,
    poly: Polygon | None,
) -> None:
    if not isinstance(ext, dict):
        p.err(ref, EXTENSION_KEY, "is not an object")
        return
    kind, pid, facing = ext.get("kind"), ext.get("id"), ext.get("facing_deg")
    if kind not in PLACEMENT_KINDS:
        p.err(ref, f"{EXTENSION_KEY}.kind", f"{kind!r} is not one of {', '.join(PLACEMENT_KINDS)}")
        return
    if not isinstance(pid, str) or not pid:
        p.err(ref, f"{EXTENSION_KEY}.id", "missing")
        return
    if facing is not None and (not isinstance(facing, int | float) or isinstance(facing, bool)):
        p.err(ref, f"{EXTENSION_KEY}.facing_deg", f"{facing!r} is not a number of degrees")
        return
    if (kind, pid) in vm.placements:
        p.err(ref, f"{EXTENSION_KEY}.id", f"{kind} {pid!r} is placed twice")
        return
    vm.placements[(kind, pid)] = Placement(
        kind,
        pid,
        level_id,
        xy,
        float(facing) % 360 if facing is not None else None,
        fid,
        poly,
    )


def _connectors(p: _Parser, vm: VenueMap, rels: list[dict[str, Any]]) -> None:
    """Level connectors from relationships, then from stacked vertical units.

    A relationship (category stairs/escalator/elevator) joins its origin, intermediaries and
    destination in order; a reference to an opening means the unit it opens. Vertical units
    that no relationship mentions are joined to the same category's unit on the next ordinal
    when their footprints overlap: that is how most exports draw a lift shaft or a stairwell.
    """
    mentioned: set[str] = set()
    for f in rels:
        ref, props = _ref("relationship", f["id"]), f["properties"]
        cat = props.get("category")
        if cat not in RELATIONSHIP_CATEGORIES:
            p.warn(ref, "category", f"{cat!r} is not an IMDF relationship category; ignored")
            continue
        chain: list[str] = []
        ok = True
        inter = props.get("intermediary") or []
        for key, item in (
            [("origin", props.get("origin"))]
            + [("intermediary", x) for x in (inter if isinstance(inter, list) else [])]
            + [("destination", props.get("destination"))]
        ):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                p.err(ref, key, "missing or not a feature reference {id, feature_type}")
                ok = False
                break
            iid = item["id"]
            if iid in vm.units:
                chain.append(iid)
            elif iid in vm.openings:
                chain.append(vm.openings[iid].unit_ids[0])
            else:
                p.err(ref, key, f"{iid} is not a unit or opening")
                ok = False
                break
        if not ok or cat not in ("stairs", "escalator", "elevator"):
            continue
        directed = props.get("direction") == "directed"
        for a, b in zip(chain, chain[1:], strict=False):
            if vm.units[a].level_id != vm.units[b].level_id:
                vm.connectors.append(Connector(f["id"], str(cat), a, b, directed))
                mentioned.update((a, b))

    by_ordinal = {lv.id: lv.ordinal for lv in vm.levels.values()}
    vertical = [
        u
        for u in vm.units.values()
        if u.category in ("stairs", "escalator", "elevator") and u.id not in mentioned
    ]
    for ua in vertical:
        for ub in vertical:
            if (
                ua.category == ub.category
                and by_ordinal[ub.level_id] == by_ordinal[ua.level_id] + 1
                and ua.polygon.intersection(ub.polygon).area > 0
            ):
                vm.connectors.append(Connector(f"{ua.id}~{ub.id}", ua.category, ua.id, ub.id))
