"""A route as a signage player draws it: the ``Wayfinding`` payload of a screen's content.

The player has no map database and the in-store bus carries every command to every screen, so
the payload is self-contained and small: the plans of the levels the route crosses as simplified
outer rings in metres, the route per level, where the shopper stands and looks, the destination,
distance, walking time and the first steps in the shopper's language. Geometry is simplified
with shapely (Douglas-Peucker, topology kept) at growing tolerances until the JSON fits the byte
budget; if even the coarsest plan does not fit, the smallest shapes go first (a big store's
hundreds of small fixtures matter less than its rooms). The route is never simplified below its
own points: its ends are exactly where the shopper stands and where the destination is.

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from shapely.geometry import LineString, MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from contracts.screen_protocol import (
    MAX_RING_VERTICES,
    MAX_ROUTE_POINTS,
    MAX_SHAPES_PER_LEVEL,
    MAX_STEPS,
    MapShape,
    Point2,
    Wayfinding,
    WayLevel,
)
from edge_agent.wayfinding.graph import NOT_WALKABLE, unit_is_staff_only
from edge_agent.wayfinding.model import VenueMap, label
from edge_agent.wayfinding.route import Route
from edge_agent.wayfinding.steps import heading, route_steps

# The whole payload as JSON: well under what the bus and the player's parser accept, and small
# enough that a screen's content message stays one quick read.
BYTE_BUDGET = 24 * 1024
# Douglas-Peucker tolerances tried in turn (metres): a shelf's corner moves at most this much.
TOLERANCES_M = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)
STEPS_SHOWN = 6
CONNECTORS = frozenset(["stairs", "elevator", "escalator", "steps", "ramp"])


class PayloadTooBig(ValueError):
    """Even the route alone does not fit the budget (it never happens with real routes)."""


def _rings(geom: BaseGeometry) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [geom]
    if isinstance(geom, MultiPolygon):
        return list(geom.geoms)
    return []


def _ring(poly: Polygon, tolerance: float) -> tuple[Point2, ...] | None:
    simple = poly.simplify(tolerance, preserve_topology=True) if tolerance > 0 else poly
    if not isinstance(simple, Polygon) or simple.is_empty:
        return None
    out: list[Point2] = []
    # Centimetres are plenty for a drawing; two decimals keep the JSON short.
    for x, y in list(simple.exterior.coords)[:-1]:
        p = (round(x, 2), round(y, 2))
        if not out or out[-1] != p:
            out.append(p)
    if len(out) > 1 and out[0] == out[-1]:
        out.pop()
    if len(out) < 3 or len(out) > MAX_RING_VERTICES:
        return None
    return tuple(out)


def _level_features(venue: VenueMap, level_id: str) -> list[tuple[str, Polygon]]:
    """(kind, polygon) of a level in drawing order: rooms, then what stands in them."""
    out: list[tuple[str, Polygon]] = []
    for u in venue.units.values():
        if u.level_id != level_id:
            continue
        if u.category in CONNECTORS:
            kind = "connector"
        elif u.category in NOT_WALKABLE or unit_is_staff_only(u):
            kind = "room"
        else:
            kind = "floor"
        out += [(kind, p) for p in _rings(u.polygon)]
    for a in venue.areas.values():
        if a.level_id != level_id or a.feature_type not in ("fixture", "kiosk"):
            continue
        kind = "counter" if a.feature_type == "kiosk" or a.category == "desk" else "shelf"
        out += [(kind, p) for p in _rings(a.polygon)]
    order = {"floor": 0, "room": 0, "connector": 1, "shelf": 2, "counter": 2}
    return sorted(out, key=lambda kp: order[kp[0]])


def _route_parts(route: Route) -> list[tuple[str, list[Point2]]]:
    """The route's points per level, in walking order (a level revisited continues its line)."""
    parts: dict[str, list[Point2]] = {}
    for w in route.waypoints:
        pts = parts.setdefault(w.level_id, [])
        p = (float(w.x), float(w.y))
        if not pts or pts[-1] != p:
            pts.append(p)
    return list(parts.items())


def _fit_route(points: list[Point2]) -> tuple[Point2, ...]:
    if len(points) <= MAX_ROUTE_POINTS:
        return tuple(points)
    # Douglas-Peucker keeps both ends; only a pathological route gets here.
    tol = 0.05
    while True:
        line = LineString(points).simplify(tol, preserve_topology=False)
        coords = [(float(x), float(y)) for x, y in line.coords]
        if len(coords) <= MAX_ROUTE_POINTS:
            coords[0], coords[-1] = points[0], points[-1]
            return tuple(coords)
        tol *= 2


def shopper_heading(route: Route) -> float:
    """Where the shopper looks at the start: a screen's reader faces it (its facing turned
    round); elsewhere (a kiosk without a facing, a place) the first leg's direction."""
    if route.start.facing_deg is not None:
        return (route.start.facing_deg + 180.0) % 360.0
    for a, b in zip(route.waypoints, route.waypoints[1:], strict=False):
        if a.level_id == b.level_id and math.hypot(b.x - a.x, b.y - a.y) > 1e-6:
            return heading(a.x, a.y, b.x, b.y)
    return 0.0


def build_wayfinding(
    venue: VenueMap, route: Route, language: str = "en", *, budget: int = BYTE_BUDGET
) -> Wayfinding:
    """The payload for ``route`` on ``venue``, in ``language``, no larger than ``budget`` bytes
    of JSON. PayloadTooBig when even the route without any plan does not fit."""
    parts = _route_parts(route)
    features = {lid: _level_features(venue, lid) for lid, _ in parts}
    steps = tuple(s.text[:160] for s in route_steps(route, venue, language)[:STEPS_SHOWN])
    start, end = route.waypoints[0], route.waypoints[-1]
    dest = label(route.end.name, language, route.end.id)[:60] or route.end.id[:60]

    def make(shapes: dict[str, list[MapShape]]) -> Wayfinding:
        return Wayfinding(
            levels=tuple(
                WayLevel(
                    id=lid[:40],
                    name=label(venue.levels[lid].name, language, lid)[:60],
                    shapes=tuple(shapes.get(lid, ())),
                    route=_fit_route(pts),
                )
                for lid, pts in parts
            ),
            here=(float(start.x), float(start.y)),
            here_level=start.level_id[:40],
            facing_deg=round(shopper_heading(route), 1) % 360.0,
            destination=(float(end.x), float(end.y)),
            destination_level=end.level_id[:40],
            destination_label=dest,
            distance_m=round(route.distance_m, 1),
            walking_time_s=round(route.walking_time_s),  # one pace everywhere: route.py's
            steps=steps[:MAX_STEPS],
        )

    def size(w: Wayfinding) -> int:
        return len(w.model_dump_json(exclude_none=True).encode())

    def shaped(tol: float, keep: Iterable[tuple[str, int]] | None) -> dict[str, list[MapShape]]:
        allowed = set(keep) if keep is not None else None
        out: dict[str, list[MapShape]] = {}
        for lid, feats in features.items():
            for i, (kind, poly) in enumerate(feats):
                if allowed is not None and (lid, i) not in allowed:
                    continue
                ring = _ring(poly, tol)
                if ring is not None and len(out.get(lid, ())) < MAX_SHAPES_PER_LEVEL:
                    out.setdefault(lid, []).append(MapShape(kind=kind, ring=ring))  # type: ignore[arg-type]
        return out

    for tol in TOLERANCES_M:
        w = make(shaped(tol, None))
        if size(w) <= budget:
            return w
    # Still too big: drop the smallest shapes, a quarter at a time, at the coarsest tolerance.
    ranked = sorted(
        ((lid, i) for lid, feats in features.items() for i in range(len(feats))),
        key=lambda k: -features[k[0]][k[1]][1].area,
    )
    while True:
        ranked = ranked[: len(ranked) * 3 // 4]
        w = make(shaped(TOLERANCES_M[-1], ranked))
        if size(w) <= budget:
            return w
        if not ranked:
            break
    raise PayloadTooBig(f"the route alone is {size(w)} bytes, over the {budget}-byte budget")
