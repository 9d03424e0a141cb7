"""The navigation graph: where a shopper can walk, as nodes and edges weighted in metres.

Nodes are
- **openings**: the midpoint of each door, shared by the (one or two) units it joins;
- **connectors**: one per stairs/escalator/lift unit, joined to the same connector on the other
  levels it serves (IMDF relationships, or stacked units: imdf._connectors);
- **corners**: in a unit that is not a convex empty room, the reflex corners of its free space
  (the unit minus fixtures and kiosks: shelves, counters), pulled CLEARANCE_M away from walls
  and shelves. A shortest path in a polygon with holes bends only at reflex corners, so this
  visibility graph gives true shortest paths, not centroid-hopping approximations.

Edges join two nodes of the same unit when the straight segment between them stays in the free
space (no test at all for a convex empty unit: every segment is inside). Every edge costs at least
the straight-line distance between its ends, so A* with the straight-line heuristic is exact
(route.py). Edges in stairs or escalator units and stairs/escalator connectors carry a flag, and
the accessible mode never takes a flagged edge.

Pure: shapely only, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import shapely
from shapely.geometry import LineString, MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points, unary_union
from shapely.prepared import PreparedGeometry, prep
from shapely.strtree import STRtree

from edge_agent.wayfinding.model import Unit, VenueMap

STAIRS = 1
ESCALATOR = 2
NOT_ACCESSIBLE = STAIRS | ESCALATOR

# Clearance kept from walls and shelf corners when turning: half a shoulder width plus a bit.
CLEARANCE_M = 0.35
# What a level change costs beyond its planar length, in equivalent metres per level: climbing
# stairs is slower than walking; a lift adds waiting. (Any value >= 0 keeps A* exact.)
LEVEL_COST_M = {"stairs": 10.0, "escalator": 12.0, "elevator": 20.0}

# Units nobody walks in (IMDF unit categories), and those nobody but staff may.
NOT_WALKABLE = frozenset(
    ["brick", "column", "concrete", "glass", "opentobelow", "structure", "vegetation", "wood"]
)
STAFF_ONLY = frozenset(["employeesonly", "restricted"])
# Doors a shopper route never uses.
NOT_ROUTED_OPENINGS = frozenset(["emergencyexit", "service", "automobile"])
UNIT_FLAGS = {"stairs": STAIRS, "steps": STAIRS, "escalator": ESCALATOR}


def unit_is_staff_only(u: Unit) -> bool:
    return u.category == "nonpublic" or (u.restriction or "") in STAFF_ONLY


@dataclass
class Node:
    x: float
    y: float
    level_id: str
    kind: str  # "opening" | "connector" | "corner"
    ref: str  # the opening's or connector unit's id; "" for corners


@dataclass
class UnitSpace:
    """A walkable unit as the router sees it."""

    unit: Unit
    free: BaseGeometry  # the unit minus obstacles (Polygon or MultiPolygon)
    covers: PreparedGeometry  # free space grown by a hair, for segment-inside tests
    convex_empty: bool
    flags: int
    nodes: list[int] = field(default_factory=list)

    def sees(self, a: tuple[float, float], b: tuple[float, float]) -> bool:
        if self.convex_empty:
            return True
        if a == b:
            return True
        return bool(self.covers.covers(LineString([a, b])))


# An edge: (to, cost in metres, flags, tag); the tag indexes NavGraph.tags (a unit id, or
# "connector:<category>") so that a route knows what it walked through.
Edge = tuple[int, float, int, int]


@dataclass
class NavGraph:
    venue: VenueMap
    nodes: list[Node] = field(default_factory=list)
    adj: list[list[Edge]] = field(default_factory=list)
    spaces: dict[str, UnitSpace] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    ordinals: dict[str, int] = field(default_factory=dict)
    # Ways off each level, for A*'s heuristic: level id -> [(x, y, cost, flags, to_x, to_y,
    # to_ordinal)], one per connector edge leaving the level.
    exits: dict[str, list[tuple[float, float, float, int, float, float, int]]] = field(
        default_factory=dict
    )
    _trees: dict[str, tuple[STRtree, list[UnitSpace]]] = field(default_factory=dict)

    def add_node(self, node: Node) -> int:
        self.nodes.append(node)
        self.adj.append([])
        return len(self.nodes) - 1

    def tag(self, name: str) -> int:
        try:
            return self.tags.index(name)
        except ValueError:
            self.tags.append(name)
            return len(self.tags) - 1

    def add_edge(self, a: int, b: int, cost: float, flags: int, tag: int, directed: bool) -> None:
        self.adj[a].append((b, cost, flags, tag))
        if not directed:
            self.adj[b].append((a, cost, flags, tag))

    @property
    def edge_count(self) -> int:
        return sum(len(e) for e in self.adj)

    def space_at(self, level_id: str, xy: tuple[float, float]) -> UnitSpace | None:
        """The walkable unit containing a point (on its boundary counts)."""
        tree, spaces = self._trees.get(level_id, (None, []))
        if tree is None:
            return None
        pt = Point(xy)
        hits = [spaces[int(i)] for i in tree.query(pt)]
        inside = [s for s in hits if s.unit.polygon.covers(pt)]
        # A point on a shared wall: prefer the unit whose free space holds it.
        inside.sort(key=lambda s: s.free.distance(pt))
        return inside[0] if inside else None


def _free_space(unit: Unit, obstacles: list[Polygon]) -> BaseGeometry:
    hits = [o for o in obstacles if o.intersects(unit.polygon)]
    if not hits:
        return unit.polygon
    return unit.polygon.difference(unary_union(hits))


def _polygons(g: BaseGeometry) -> list[Polygon]:
    if isinstance(g, Polygon):
        return [g] if not g.is_empty else []
    if isinstance(g, MultiPolygon):
        return list(g.geoms)
    return [p for p in getattr(g, "geoms", []) if isinstance(p, Polygon)]


def reflex_corners(free: BaseGeometry, clearance: float = CLEARANCE_M) -> list[tuple[float, float]]:
    """Reflex corners of the free space, pulled ``clearance`` away from walls and obstacles.

    Shrinking the free space by the clearance (mitred, so a shelf's corner stays one vertex)
    and keeping the vertices where the shrunk boundary turns right (walked with the free space
    on the left) gives exactly the corners a shortest path may bend at.
    """
    out: list[tuple[float, float]] = []
    shrunk = free.buffer(-clearance, join_style="mitre", mitre_limit=3.0)
    for poly in _polygons(shrunk):
        poly = shapely.geometry.polygon.orient(poly, sign=1.0)
        for ring in [poly.exterior, *poly.interiors]:
            pts = list(ring.coords)[:-1]
            n = len(pts)
            for i in range(n):
                (ax, ay), (bx, by), (cx, cy) = pts[i - 1], pts[i], pts[(i + 1) % n]
                cross = (bx - ax) * (cy - by) - (by - ay) * (cx - bx)
                if cross < -1e-9:
                    out.append((bx, by))
    return out


def build_graph(venue: VenueMap, clearance: float = CLEARANCE_M) -> NavGraph:
    g = NavGraph(venue)
    g.ordinals = {lv.id: lv.ordinal for lv in venue.levels.values()}
    obstacles: dict[str, list[Polygon]] = {
        lid: [a.polygon for a in venue.fixtures_on(lid)] for lid in venue.levels
    }
    for u in venue.units.values():
        if u.category in NOT_WALKABLE or unit_is_staff_only(u):
            continue
        free = _free_space(u, obstacles[u.level_id])
        if free.is_empty:
            continue
        convex_empty = free is u.polygon and u.polygon.convex_hull.area - u.polygon.area < 1e-6
        g.spaces[u.id] = UnitSpace(
            u, free, prep(free.buffer(1e-6)), convex_empty, UNIT_FLAGS.get(u.category, 0)
        )
    for lid in venue.levels:
        spaces = [s for s in g.spaces.values() if s.unit.level_id == lid]
        g._trees[lid] = (STRtree([s.unit.polygon for s in spaces]), spaces)

    for o in venue.openings.values():
        if o.category in NOT_ROUTED_OPENINGS:
            continue
        units = [uid for uid in o.unit_ids if uid in g.spaces]
        if not units:
            continue
        x, y = o.midpoint()
        n = g.add_node(Node(x, y, o.level_id, "opening", o.id))
        for uid in units:
            g.spaces[uid].nodes.append(n)

    connector_node: dict[str, int] = {}
    for uid, s in g.spaces.items():
        if s.unit.category in LEVEL_COST_M:
            x, y = s.unit.anchor_xy()
            n = g.add_node(Node(x, y, s.unit.level_id, "connector", uid))
            s.nodes.append(n)
            connector_node[uid] = n
        if not s.convex_empty:
            for cx, cy in reflex_corners(s.free, clearance):
                if s.free.covers(Point(cx, cy)):
                    s.nodes.append(g.add_node(Node(cx, cy, s.unit.level_id, "corner", "")))

    for uid, s in g.spaces.items():
        tag = g.tag(uid)
        seen: set[tuple[int, int]] = set()
        ns = s.nodes
        for i, a in enumerate(ns):
            na = g.nodes[a]
            for b in ns[i + 1 :]:
                nb = g.nodes[b]
                key = (min(a, b), max(a, b))
                if key in seen:
                    continue
                if s.sees((na.x, na.y), (nb.x, nb.y)):
                    seen.add(key)
                    d = math.hypot(na.x - nb.x, na.y - nb.y)
                    g.add_edge(a, b, d, s.flags, tag, False)

    for c in venue.connectors:
        if c.from_unit not in connector_node or c.to_unit not in connector_node:
            continue
        a, b = connector_node[c.from_unit], connector_node[c.to_unit]
        na, nb = g.nodes[a], g.nodes[b]
        levels = abs(g.ordinals[na.level_id] - g.ordinals[nb.level_id])
        planar = math.hypot(na.x - nb.x, na.y - nb.y)
        cost = planar + LEVEL_COST_M.get(c.category, 10.0) * max(levels, 1)
        flags = UNIT_FLAGS.get(c.category, 0)
        g.add_edge(a, b, cost, flags, g.tag(f"connector:{c.category}"), c.directed)
    for n in connector_node.values():
        na = g.nodes[n]
        for b, cost, flags, tag in g.adj[n]:
            nb = g.nodes[b]
            if g.tags[tag].startswith("connector:"):
                g.exits.setdefault(na.level_id, []).append(
                    (na.x, na.y, cost, flags, nb.x, nb.y, g.ordinals[nb.level_id])
                )
    return g


def snap_to_free(space: UnitSpace, xy: tuple[float, float]) -> tuple[float, float]:
    """The nearest walkable point to ``xy`` in its unit (a shelf's point is in the shelf)."""
    pt = Point(xy)
    if space.free.covers(pt):
        return xy
    near, _ = nearest_points(space.free, pt)
    # Step a little into the free space, so the shopper stands in the aisle, not in the shelf.
    dx, dy = near.x - xy[0], near.y - xy[1]
    d = math.hypot(dx, dy) or 1.0
    for step in (0.3, 0.1, 0.0):
        q = (near.x + dx / d * step, near.y + dy / d * step)
        if space.free.covers(Point(q)):
            return q
    return (near.x, near.y)
