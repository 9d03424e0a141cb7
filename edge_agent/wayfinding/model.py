"""The store map as the router and the screens use it: typed, in metres, levels by ordinal.

IMDF carries WGS84 longitude/latitude; everything here is projected once, at import, onto a local
plane in metres (x east, y north) around the venue's reference point, so distances, headings and
drawing need no geodesy afterwards. At store scale (a few hundred metres) the equirectangular
projection's error is far below a step's length.

Pure: no I/O. Geometry is shapely (a well-kept GEOS binding) because validity, containment and
visibility tests are exactly what it is for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.strtree import STRtree

# A name in several languages, IMDF's LABELS: {"en": "Fitting rooms", "de": "Umkleiden"}.
Labels = dict[str, str]

EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True)
class Projection:
    """Equirectangular projection around a reference point: lon/lat degrees <-> metres."""

    lon0: float
    lat0: float

    @property
    def _kx(self) -> float:
        return math.radians(1.0) * EARTH_RADIUS_M * math.cos(math.radians(self.lat0))

    @property
    def _ky(self) -> float:
        return math.radians(1.0) * EARTH_RADIUS_M

    def to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        return ((lon - self.lon0) * self._kx, (lat - self.lat0) * self._ky)

    def to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        return (self.lon0 + x / self._kx, self.lat0 + y / self._ky)


def label(labels: Labels | None, language: str | None = None, default: str = "") -> str:
    """The name in ``language`` when the feature has it, else English, else any."""
    if not labels:
        return default
    if language and language in labels:
        return labels[language]
    if "en" in labels:
        return labels["en"]
    return next(iter(labels.values()))


@dataclass(frozen=True)
class Issue:
    """One problem found in a map: ``feature`` is "<type> <id>", ``field`` the property at fault."""

    feature: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.feature}: {self.field}" if self.field else self.feature
        return f"{where}: {self.message}"


@dataclass
class Level:
    id: str
    ordinal: int
    name: Labels
    short_name: Labels
    outline: Polygon | None = None


@dataclass
class Unit:
    id: str
    level_id: str
    category: str
    polygon: Polygon
    name: Labels = field(default_factory=dict)
    alt_name: Labels = field(default_factory=dict)
    restriction: str | None = None
    accessibility: tuple[str, ...] = ()
    display_point: tuple[float, float] | None = None

    def anchor_xy(self) -> tuple[float, float]:
        """Where a route to this unit ends: its curated display point, else a point inside it
        (a centroid can lie outside an L-shaped room)."""
        if self.display_point is not None:
            return self.display_point
        p = self.polygon.representative_point()
        return (p.x, p.y)


@dataclass
class Opening:
    id: str
    level_id: str
    category: str
    line: LineString
    door: dict[str, object] | None = None
    name: Labels = field(default_factory=dict)
    alt_name: Labels = field(default_factory=dict)
    # The units whose boundary the opening lies on (one for a street door, two inside).
    unit_ids: tuple[str, ...] = ()

    def midpoint(self) -> tuple[float, float]:
        p = self.line.interpolate(0.5, normalized=True)
        return (p.x, p.y)


@dataclass
class Area:
    """A fixture (shelf, counter: an obstacle) or a section (aisle, department: not one)."""

    id: str
    feature_type: str  # "fixture" | "section" | "kiosk"
    level_id: str
    category: str
    polygon: Polygon
    name: Labels = field(default_factory=dict)
    alt_name: Labels = field(default_factory=dict)
    anchor_id: str | None = None
    display_point: tuple[float, float] | None = None

    def anchor_xy(self) -> tuple[float, float]:
        if self.display_point is not None:
            return self.display_point
        p = self.polygon.representative_point()
        return (p.x, p.y)


@dataclass
class PointFeature:
    """An amenity, an anchor or an occupant's anchor: a point on a level (in a unit)."""

    id: str
    feature_type: str  # "amenity" | "anchor"
    level_id: str
    xy: tuple[float, float]
    category: str = ""
    name: Labels = field(default_factory=dict)
    alt_name: Labels = field(default_factory=dict)
    unit_id: str | None = None


@dataclass
class Occupant:
    id: str
    name: Labels
    category: str
    anchor_id: str


@dataclass
class Placement:
    """The store's own things on the map (IMDF anchors with an ``edge_agent`` property): a
    screen or kiosk (position and facing), a BLE beacon, a presence zone."""

    kind: str  # "screen" | "kiosk" | "beacon" | "zone"
    id: str
    level_id: str
    xy: tuple[float, float]
    # Compass bearing the screen's face points to, degrees clockwise from the plan's +y (north).
    facing_deg: float | None = None
    anchor_id: str = ""
    polygon: Polygon | None = None


@dataclass
class Connector:
    """A way between levels: stairs, escalator or lift (elevator), unit to unit."""

    id: str
    category: str  # "stairs" | "escalator" | "elevator"
    from_unit: str
    to_unit: str
    directed: bool = False


@dataclass
class VenueMap:
    venue_id: str
    name: Labels
    projection: Projection
    language: str = "en"
    levels: dict[str, Level] = field(default_factory=dict)
    units: dict[str, Unit] = field(default_factory=dict)
    openings: dict[str, Opening] = field(default_factory=dict)
    areas: dict[str, Area] = field(default_factory=dict)
    points: dict[str, PointFeature] = field(default_factory=dict)
    occupants: dict[str, Occupant] = field(default_factory=dict)
    connectors: list[Connector] = field(default_factory=list)
    placements: dict[tuple[str, str], Placement] = field(default_factory=dict)
    # The store's own names for its places (a plan's ids: "aisle-4", "L0") -> feature id, from
    # the ``edge_agent.plan_id`` extension property: an ERP planogram names places the way the
    # store does, and a UUID changes meaning only when the map is re-authored.
    plan_ids: dict[str, str] = field(default_factory=dict)
    # Named units and areas per level in an R-tree, built on first use (steps look for
    # landmarks at every bend; a big venue has hundreds of rooms).
    _named: dict[str, tuple[STRtree, list[Unit | Area]]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def named_near(self, level_id: str, x: float, y: float, radius: float) -> list[Unit | Area]:
        """Named units and areas on a level whose bounds come within ``radius`` of (x, y)."""
        if self._named is None:
            self._named = {}
            for lid in self.levels:
                every: list[Unit | Area] = [*self.units.values(), *self.areas.values()]
                feats = [f for f in every if f.level_id == lid and (f.name or f.alt_name)]
                self._named[lid] = (STRtree([f.polygon for f in feats]), feats)
        tree, feats = self._named.get(level_id, (None, []))
        if tree is None:
            return []
        hits = tree.query(box(x - radius, y - radius, x + radius, y + radius))
        return [feats[int(i)] for i in sorted(hits)]

    def feature_id(self, ref: str) -> str | None:
        """A level, unit, opening or area by its feature id or its plan id; None if absent."""
        fid = self.plan_ids.get(ref, ref)
        for table in (self.levels, self.units, self.areas, self.openings):
            if fid in table:
                return fid
        return None

    def level_order(self) -> list[Level]:
        return sorted(self.levels.values(), key=lambda lv: lv.ordinal)

    def fixtures_on(self, level_id: str) -> list[Area]:
        """Obstacles on a level: fixtures and kiosks (both stand on the floor)."""
        return [
            a
            for a in self.areas.values()
            if a.level_id == level_id and a.feature_type in ("fixture", "kiosk")
        ]


def as_xy(geom: BaseGeometry) -> tuple[float, float]:
    p = geom if isinstance(geom, Point) else geom.representative_point()
    return (p.x, p.y)
