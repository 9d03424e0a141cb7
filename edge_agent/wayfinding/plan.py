"""A store plan in TOML for stores without IMDF, written out as IMDF so both paths meet.

An installer draws the store in metres from its front-left corner (x to the right along the
front, y into the store): levels, walkable areas, shelves and counters (obstacles), aisles and
departments (sections), doors, stairs/escalators/lifts with the levels they join, and where the
store layout's screens, kiosks, beacons and zones are. ``[venue] layout`` points at the store
layout (edge_agent/box/layout.py): screen, zone and beacon ids must be the layout's, and beacon
positions come from it, so nothing is declared twice.

Validated with pydantic (unknown keys are errors); every message names its key path
(``doors[2].level: unknown level 'L9'``). Geometry is checked by importing the IMDF this writes
(imdf.parse_imdf), with each feature traced back to its plan key. Feature ids are UUIDv5 of the
store and the plan id, so authoring the same plan twice gives the same ids (a map version diff
shows what moved).
"""

from __future__ import annotations

import json
import tomllib
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from contracts.validation import ID_PATTERN, StrictModel, key_path
from edge_agent.box.layout import LayoutError, StoreLayout, load_layout
from edge_agent.wayfinding.imdf import ImportResult, parse_imdf
from edge_agent.wayfinding.model import Issue, Projection

NAMESPACE = uuid.UUID("6f1c7d0e-2b0a-4c7e-9a55-3f1d2b9e8c01")
Name = str | dict[str, str]
XY = tuple[float, float]


class Shape(StrictModel):
    """A rectangle ``rect = [x0, y0, x1, y1]`` or a ``polygon = [[x, y], ...]``, in metres."""

    rect: tuple[float, float, float, float] | None = None
    polygon: list[XY] | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> Shape:
        if (self.rect is None) == (self.polygon is None):
            raise ValueError("rect or polygon: give exactly one")
        if self.rect is not None:
            x0, y0, x1, y1 = self.rect
            if not (x1 > x0 and y1 > y0):
                raise ValueError("rect: [x0, y0, x1, y1] with x1 > x0 and y1 > y0")
        if self.polygon is not None and len(self.polygon) < 3:
            raise ValueError("polygon: at least 3 corners")
        return self

    def ring(self) -> list[XY]:
        if self.rect is not None:
            x0, y0, x1, y1 = self.rect
            return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        pts = list(self.polygon or [])
        return pts if pts[0] == pts[-1] else [*pts, pts[0]]


class PlanVenue(StrictModel):
    name: Name
    # Where the plan's (0, 0) is on Earth: [longitude, latitude]. IMDF is WGS84.
    origin: XY = (2.3522, 48.8566)
    language: str = "en"
    category: str = "retailstore"
    # The store layout (TOML/YAML) whose screens, zones and beacons this plan places.
    layout: str | None = None


class PlanLevel(Shape):
    id: str = Field(pattern=ID_PATTERN)
    ordinal: int
    name: Name
    short_name: Name | None = None


class PlanArea(Shape):
    """A walkable unit: a sales floor, a room, a corridor (or a staff-only one)."""

    id: str = Field(pattern=ID_PATTERN)
    level: str
    name: Name | None = None
    alt_name: Name | None = None
    category: str = "room"
    restriction: Literal["employeesonly", "restricted"] | None = None
    # Where its name is drawn and where a route "to the shop floor" ends (IMDF display_point).
    label_at: XY | None = None


class PlanFixture(Shape):
    id: str = Field(pattern=ID_PATTERN)
    level: str
    name: Name | None = None
    alt_name: Name | None = None
    category: str = "furniture"


class PlanSection(Shape):
    id: str = Field(pattern=ID_PATTERN)
    level: str
    name: Name | None = None
    alt_name: Name | None = None
    category: str = "retail"


class PlanDoor(StrictModel):
    id: str = Field(pattern=ID_PATTERN)
    level: str
    # The door's two jambs, on the wall between two areas (or an area and the street).
    line: tuple[XY, XY]
    category: str = "pedestrian"
    name: Name | None = None
    type: str = "hinged"
    automatic: bool = False
    material: str | None = None


class PlanConnector(Shape):
    """Stairs, an escalator or a lift: one unit per level it serves, joined level to level."""

    id: str = Field(pattern=ID_PATTERN)
    kind: Literal["stairs", "escalator", "lift"]
    levels: list[str] = Field(min_length=2)
    name: Name | None = None
    # An escalator runs one way: "up" (from lower to higher ordinal) or "down".
    direction: Literal["both", "up", "down"] = "both"


class PlanScreen(StrictModel):
    id: str = Field(pattern=ID_PATTERN)
    level: str
    position: XY
    # Compass bearing the screen's face points to: 0 = +y (into the store), 90 = +x.
    facing_deg: float = Field(ge=0, lt=360)


class PlanKiosk(Shape):
    id: str = Field(pattern=ID_PATTERN)
    level: str
    name: Name | None = None
    facing_deg: float | None = Field(None, ge=0, lt=360)


class PlanBeacon(StrictModel):
    name: str
    level: str
    # Without a layout, or to override it: metres from the plan's origin.
    position: XY | None = None


class PlanZone(Shape):
    id: str = Field(pattern=ID_PATTERN)
    level: str


class StorePlan(StrictModel):
    venue: PlanVenue
    levels: list[PlanLevel] = Field(min_length=1)
    areas: list[PlanArea] = Field(min_length=1)
    shelves: list[PlanFixture] = Field(default_factory=list)
    counters: list[PlanFixture] = Field(default_factory=list)
    aisles: list[PlanSection] = Field(default_factory=list)
    doors: list[PlanDoor] = Field(default_factory=list)
    connectors: list[PlanConnector] = Field(default_factory=list)
    screens: list[PlanScreen] = Field(default_factory=list)
    kiosks: list[PlanKiosk] = Field(default_factory=list)
    beacons: list[PlanBeacon] = Field(default_factory=list)
    zones: list[PlanZone] = Field(default_factory=list)

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[PlanLevel]) -> list[PlanLevel]:
        _unique("levels", [lv.id for lv in v])
        _unique("levels", [str(lv.ordinal) for lv in v], what="ordinal")
        return v

    @model_validator(mode="after")
    def _references(self) -> StorePlan:
        levels = {lv.id for lv in self.levels}
        for section in ("areas", "shelves", "counters", "aisles", "doors", "screens", "kiosks"):
            for i, item in enumerate(getattr(self, section)):
                if item.level not in levels:
                    raise ValueError(f"{section}[{i}].level: unknown level {item.level!r}")
        for section in ("beacons", "zones"):
            for i, item in enumerate(getattr(self, section)):
                if item.level not in levels:
                    raise ValueError(f"{section}[{i}].level: unknown level {item.level!r}")
        for i, c in enumerate(self.connectors):
            for j, lv in enumerate(c.levels):
                if lv not in levels:
                    raise ValueError(f"connectors[{i}].levels[{j}]: unknown level {lv!r}")
            if len(set(c.levels)) != len(c.levels):
                raise ValueError(f"connectors[{i}].levels: a level twice")
            if c.kind != "escalator" and c.direction != "both":
                raise ValueError(f"connectors[{i}].direction: only an escalator runs one way")
        ids = [
            x.id
            for s in ("areas", "shelves", "counters", "aisles", "doors", "connectors", "kiosks")
            for x in getattr(self, s)
        ]
        _unique("(features)", ids)
        _unique("screens", [s.id for s in self.screens])
        _unique("zones", [z.id for z in self.zones])
        _unique("beacons", [b.name for b in self.beacons])
        return self


def _unique(section: str, ids: list[str], what: str = "id") -> None:
    seen: set[str] = set()
    for v in ids:
        if v in seen:
            raise ValueError(f"{section}: duplicate {what} {v!r}")
        seen.add(v)


class PlanError(Exception):
    """An invalid plan; ``errors`` holds one line per problem, each naming its key path."""

    def __init__(self, path: Path | str, errors: list[str]) -> None:
        self.path = str(path)
        self.errors = errors
        super().__init__(f"{path}: " + "; ".join(errors))


_SECTIONS = set(StorePlan.model_fields) | {"(features)"}


def _format(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = key_path(tuple(err["loc"]))
        msg = str(err["msg"]).removeprefix("Value error, ")
        head = msg.split(": ", 1)[0]
        # Cross-field checks name their own key path; a shape check names the field inside.
        if head.replace("[", ".").split(".")[0] in _SECTIONS:
            out.append(msg)
        elif ": " in msg and head.replace(" or ", "").replace(" ", "").isidentifier():
            out.append(f"{loc}.{msg}" if loc != "(root)" else msg)
        else:
            out.append(f"{loc}: {msg}")
    return out


def parse_plan(data: object, origin: str = "<plan>") -> StorePlan:
    if not isinstance(data, dict):
        raise PlanError(origin, ["(root): a plan is a table of sections"])
    try:
        return StorePlan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(origin, _format(exc)) from None


def load_plan(path: Path | str) -> tuple[StorePlan, StoreLayout | None]:
    """The plan and, when it names one, its store layout (relative to the plan's folder)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlanError(path, [f"cannot read: {exc.strerror}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(path, [f"not valid TOML: {exc}"]) from None
    plan = parse_plan(data, str(path))
    layout = None
    if plan.venue.layout:
        try:
            layout = load_layout(path.parent / plan.venue.layout)
        except LayoutError as exc:
            raise PlanError(path, [f"venue.layout: {e}" for e in exc.errors]) from None
    return plan, layout


# --- plan -> IMDF -------------------------------------------------------------------------


class _Writer:
    def __init__(self, plan: StorePlan, store_id: str) -> None:
        self.plan = plan
        self.store_id = store_id
        self.proj = Projection(*plan.venue.origin)
        self.lang = plan.venue.language
        self.files: dict[str, list[dict[str, Any]]] = {}
        self.origin_of: dict[str, str] = {}  # feature id -> plan key path
        self.level_ids = {lv.id: self.fid("level", lv.id) for lv in plan.levels}

    def fid(self, kind: str, pid: str) -> str:
        return str(uuid.uuid5(NAMESPACE, f"{self.store_id}/{kind}/{pid}"))

    def labels(self, name: Name | None) -> dict[str, str] | None:
        if name is None:
            return None
        return {self.lang: name} if isinstance(name, str) else dict(name)

    def ll(self, xy: XY) -> list[float]:
        lon, lat = self.proj.to_lonlat(*xy)
        return [round(lon, 9), round(lat, 9)]

    def polygon(self, shape: Shape) -> dict[str, Any]:
        return {"type": "Polygon", "coordinates": [[self.ll(p) for p in shape.ring()]]}

    def point(self, xy: XY) -> dict[str, Any]:
        return {"type": "Point", "coordinates": self.ll(xy)}

    def add(self, ftype: str, fid: str, geometry: Any, props: dict[str, Any], key: str) -> None:
        feat: dict[str, Any] = {"id": fid, "type": "Feature", "feature_type": ftype}
        feat.update(geometry=geometry, properties=props)
        self.files.setdefault(ftype, []).append(feat)
        self.origin_of[fid] = key


def _unit_containing(plan: StorePlan, level: str, xy: XY, connectors_too: bool = True) -> str:
    """The plan id of the area (or connector) on ``level`` whose shape holds ``xy``."""
    from shapely.geometry import Point, Polygon

    pt = Point(xy)
    for a in plan.areas:
        if a.level == level and Polygon(a.ring()).covers(pt):
            return f"area/{a.id}"
    if connectors_too:
        for c in plan.connectors:
            if level in c.levels and Polygon(c.ring()).covers(pt):
                return f"connector/{c.id}@{level}"
    return ""


def plan_to_imdf(
    plan: StorePlan, layout: StoreLayout | None = None
) -> tuple[dict[str, bytes], dict[str, str], list[str]]:
    """IMDF files {name: bytes}, each feature id's plan key path, and placement errors."""
    store_id = layout.store.store_id if layout else _slug(plan.venue.name)
    w = _Writer(plan, store_id)
    problems: list[str] = []
    L = w.labels

    outline = max(plan.levels, key=lambda lv: _area(lv.ring()))
    w.add(
        "venue",
        w.fid("venue", store_id),
        w.polygon(outline),
        {
            "category": plan.venue.category,
            "restriction": None,
            "name": L(plan.venue.name),
            "alt_name": None,
            "hours": None,
            "phone": None,
            "website": None,
            "display_point": w.point(_centre(outline.ring())),
            "address_id": None,
        },
        "venue",
    )
    for i, lv in enumerate(plan.levels):
        w.add(
            "level",
            w.level_ids[lv.id],
            w.polygon(lv),
            {
                "category": "unspecified",
                "restriction": None,
                "outdoor": False,
                "ordinal": lv.ordinal,
                "name": L(lv.name),
                "short_name": L(lv.short_name) or {w.lang: str(lv.ordinal)},
                "display_point": None,
                "address_id": None,
                "building_ids": None,
                "edge_agent": {"plan_id": lv.id},
            },
            f"levels[{i}]",
        )
    for i, a in enumerate(plan.areas):
        w.add(
            "unit",
            w.fid("unit", f"area/{a.id}"),
            w.polygon(a),
            {
                "category": "nonpublic" if a.restriction else a.category,
                "restriction": a.restriction,
                "accessibility": None,
                "name": L(a.name),
                "alt_name": L(a.alt_name),
                "level_id": w.level_ids[a.level],
                "display_point": w.point(a.label_at) if a.label_at else None,
                "edge_agent": {"plan_id": a.id},
            },
            f"areas[{i}]",
        )
    imdf_kind = {"stairs": "stairs", "escalator": "escalator", "lift": "elevator"}
    ordinal = {lv.id: lv.ordinal for lv in plan.levels}
    for i, c in enumerate(plan.connectors):
        cat = imdf_kind[c.kind]
        unit_ids = []
        for lvid in sorted(c.levels, key=lambda x: ordinal[x]):
            uid = w.fid("unit", f"connector/{c.id}@{lvid}")
            unit_ids.append(uid)
            w.add(
                "unit",
                uid,
                w.polygon(c),
                {
                    "category": cat,
                    "restriction": None,
                    "accessibility": ["wheelchair"] if c.kind == "lift" else None,
                    "name": L(c.name),
                    "alt_name": None,
                    "level_id": w.level_ids[lvid],
                    "display_point": None,
                    "edge_agent": {"plan_id": f"{c.id}@{lvid}"},
                },
                f"connectors[{i}]",
            )
        for j, (ua, ub) in enumerate(zip(unit_ids, unit_ids[1:], strict=False)):
            if c.direction == "down":
                ua, ub = ub, ua
            w.add(
                "relationship",
                w.fid("relationship", f"{c.id}/{j}"),
                None,
                {
                    "category": cat,
                    "direction": "undirected" if c.direction == "both" else "directed",
                    "origin": {"id": ua, "feature_type": "unit"},
                    "intermediary": None,
                    "destination": {"id": ub, "feature_type": "unit"},
                    "hours": None,
                },
                f"connectors[{i}]",
            )
    for section, kind in (("shelves", "fixture"), ("counters", "fixture"), ("aisles", "section")):
        for i, f in enumerate(getattr(plan, section)):
            props: dict[str, Any] = {
                "category": f.category
                if section != "counters" or f.category != "furniture"
                else "desk",
                "name": L(f.name),
                "alt_name": L(f.alt_name),
                "level_id": w.level_ids[f.level],
                "display_point": None,
                "edge_agent": {"plan_id": f.id},
            }
            if kind == "fixture":
                props["anchor_id"] = None
            else:
                props.update(restriction=None, accessibility=None, address_id=None)
                props.update(correlation_id=None, parents=None)
            w.add(kind, w.fid(kind, f"{section}/{f.id}"), w.polygon(f), props, f"{section}[{i}]")
    for i, d in enumerate(plan.doors):
        door: dict[str, Any] = {"type": d.type, "automatic": d.automatic, "material": d.material}
        w.add(
            "opening",
            w.fid("opening", d.id),
            {"type": "LineString", "coordinates": [w.ll(d.line[0]), w.ll(d.line[1])]},
            {
                "category": d.category,
                "accessibility": None,
                "access_control": None,
                "door": door,
                "name": L(d.name),
                "alt_name": None,
                "display_point": None,
                "level_id": w.level_ids[d.level],
                "edge_agent": {"plan_id": d.id},
            },
            f"doors[{i}]",
        )

    def anchor(key: str, pid: str, level: str, xy: XY, ext: dict[str, Any]) -> str | None:
        unit = _unit_containing(plan, level, xy)
        if not unit:
            problems.append(f"{key}: position {list(xy)} is in no area of level {level!r}")
            return None
        aid = w.fid("anchor", pid)
        props: dict[str, Any] = {
            "address_id": None,
            "unit_id": w.fid("unit", unit),
            "edge_agent": ext,
        }
        w.add("anchor", aid, w.point(xy), props, key)
        return aid

    layout_screens = {s.id for s in layout.screens} if layout else None
    for i, s in enumerate(plan.screens):
        if layout_screens is not None and s.id not in layout_screens:
            problems.append(f"screens[{i}].id: {s.id!r} is not a screen of the store layout")
            continue
        ext = {"kind": "screen", "id": s.id, "facing_deg": s.facing_deg}
        anchor(f"screens[{i}]", f"screen/{s.id}", s.level, s.position, ext)
    for i, k in enumerate(plan.kiosks):
        ext = {"kind": "kiosk", "id": k.id, "facing_deg": k.facing_deg, "plan_id": k.id}
        props = {
            "name": L(k.name) or {w.lang: k.id},
            "alt_name": None,
            "anchor_id": None,
            "level_id": w.level_ids[k.level],
            "display_point": None,
            "edge_agent": ext,
        }
        w.add("kiosk", w.fid("kiosk", k.id), w.polygon(k), props, f"kiosks[{i}]")
    layout_zones = {z.id for z in layout.zones} if layout else None
    for i, z in enumerate(plan.zones):
        if layout_zones is not None and z.id not in layout_zones:
            problems.append(f"zones[{i}].id: {z.id!r} is not a zone of the store layout")
            continue
        props = {
            "category": "zone",
            "name": None,
            "alt_name": None,
            "level_id": w.level_ids[z.level],
            "display_point": None,
            "edge_agent": {"kind": "zone", "id": z.id},
        }
        w.add("section", w.fid("section", f"zone/{z.id}"), w.polygon(z), props, f"zones[{i}]")
    layout_beacons = {b.name: b for b in layout.beacons} if layout else {}
    for i, bc in enumerate(plan.beacons):
        pos = bc.position or (
            layout_beacons[bc.name].position if bc.name in layout_beacons else None
        )
        if pos is None:
            problems.append(f"beacons[{i}].position: missing (and no layout beacon {bc.name!r})")
            continue
        anchor(
            f"beacons[{i}]", f"beacon/{bc.name}", bc.level, pos, {"kind": "beacon", "id": bc.name}
        )

    files: dict[str, bytes] = {
        "manifest.json": _json(
            {
                "version": "1.0.0",
                "created": "1970-01-01T00:00:00Z",  # reproducible output: same plan, same bytes
                "generated_by": "edge-agent map author",
                "language": w.lang,
                "extensions": None,
            }
        )
    }
    for ftype, feats in w.files.items():
        files[f"{ftype}.geojson"] = _json({"type": "FeatureCollection", "features": feats})
    return files, w.origin_of, problems


def author(
    plan: StorePlan, layout: StoreLayout | None = None
) -> tuple[dict[str, bytes], ImportResult, list[str], list[str]]:
    """Write the plan as IMDF and import it back: the IMDF files, the imported map, then
    errors and warnings, each naming the plan key that made it."""
    files, origin_of, problems = plan_to_imdf(plan, layout)
    result = parse_imdf(files)

    def traced(issues: list[Issue]) -> list[str]:
        out = []
        for issue in issues:
            fid = issue.feature.split(" ", 1)[-1]
            key = origin_of.get(fid)
            out.append(f"{key}: {issue.field}: {issue.message}" if key else str(issue))
        return out

    return files, result, problems + traced(result.errors), traced(result.warnings)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=1).encode()


def _area(ring: list[XY]) -> float:
    return (
        abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:], strict=False))) / 2
    )


def _centre(ring: list[XY]) -> XY:
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2)


def _slug(name: Name) -> str:
    text = name if isinstance(name, str) else next(iter(name.values()), "store")
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "store"
