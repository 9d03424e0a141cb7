"""Routes: where a reference points to, the shortest way there (A*), and what it walks through.

A* takes the straight-line (planar) distance to the goal as its heuristic on the goal's level.
On another level, a shopper must first walk to a way off that level (stairs, escalator, lift),
take it, and still cover the planar distance from where it lands to the goal, plus the cheapest
level change per level still to go: the heuristic is the least of that over the level's exits.
Every edge costs at least the planar distance between its ends plus the cheapest level cost per
level changed, so (triangle inequality) both parts are consistent: the first time the goal is
popped its cost is optimal. That is stronger than "0 across levels" and still exact: the tests
and the bench check every A* route against a plain Dijkstra. ``naive_dijkstra`` is the baseline the bench and
the tests compare against: no heap, the next node found by scanning every node.

Pure: no I/O.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shapely.geometry import Point

from edge_agent.wayfinding.graph import (
    LEVEL_COST_M,
    NOT_ACCESSIBLE,
    UNIT_FLAGS,
    Edge,
    NavGraph,
    UnitSpace,
    snap_to_free,
    unit_is_staff_only,
)
from edge_agent.wayfinding.model import Labels, Placement, VenueMap, label

# An indoor shopping pace (slower than a street walk: people look around). The one pace the
# CLI, the screens and the kiosk say: a time that differs by where it is read is not believed.
WALKING_SPEED_M_S = 1.0


class RefError(ValueError):
    """A reference that names nothing routable; the message says why, in one line."""


class NoRoute(ValueError):
    """No way between two places (in this mode); the message says why, in one line."""


@dataclass(frozen=True)
class Place:
    """A start or a destination. ``xy`` is where the shopper stands or should get to;
    ``target_xy`` the thing itself (a shelf's middle), for "on your right"."""

    kind: str  # "unit" | "opening" | "fixture" | "section" | "kiosk" | "amenity" | "anchor" | "screen" | ...
    id: str
    level_id: str
    xy: tuple[float, float]
    name: Labels = field(default_factory=dict)
    facing_deg: float | None = None
    target_xy: tuple[float, float] | None = None


# A resolver for a prefixed reference ("sku:123" -> the planogram's place); raises RefError.
Resolver = Callable[[str], Place]


def _norm(s: str) -> str:
    return " ".join(s.casefold().split())


def resolve_ref(
    venue: VenueMap, ref: str, resolvers: Mapping[str, Resolver] | None = None
) -> Place:
    """A feature id or plan id, a name or alt name in any language, ``screen:<id>``, ``kiosk:<id>``, or
    ``<prefix>:<value>`` for a prefix in ``resolvers`` (the planogram adds ``sku``)."""
    resolvers = resolvers or {}
    prefix, sep, rest = ref.partition(":")
    if sep and prefix in ("screen", "kiosk"):
        pl = venue.placements.get((prefix, rest))
        if pl is None:
            known = ", ".join(sorted(i for k, i in venue.placements if k == prefix)) or "none"
            raise RefError(f"{ref}: no {prefix} {rest!r} on this map (placed: {known})")
        return Place(prefix, rest, pl.level_id, _in_front(pl), {"en": rest}, pl.facing_deg, pl.xy)
    if sep and prefix in resolvers:
        return resolvers[prefix](rest)
    if sep and prefix == "sku":
        raise RefError(f"{ref}: no product locations on this box (no planogram loaded)")

    # A feature id, or the store's own id for it (a plan id: "aisle-4"), before any name.
    by_id = _by_id(venue, venue.plan_ids.get(ref, ref))
    if by_id is not None:
        return by_id
    # Names: units first (what a shopper asks for), then everything else that has a name.
    key = _norm(ref)
    groups: list[list[Place]] = [[], []]
    for u in venue.units.values():
        if any(_norm(v) == key for v in [*u.name.values(), *u.alt_name.values()]):
            groups[0].append(_unit_place(u.id, venue))
    for fid in [*venue.areas, *venue.points, *venue.openings, *venue.occupants]:
        feat = (
            venue.areas.get(fid)
            or venue.points.get(fid)
            or venue.openings.get(fid)
            or venue.occupants.get(fid)
        )
        names = [*getattr(feat, "name", {}).values(), *getattr(feat, "alt_name", {}).values()]
        if any(_norm(v) == key for v in names):
            place = _by_id(venue, fid)
            if place is not None:
                groups[1].append(place)
    for found in groups:
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            ids = ", ".join(p.id for p in found[:4])
            raise RefError(f"{ref}: names {len(found)} places ({ids}); use a feature id")
    raise RefError(f"{ref}: no feature, name, screen or kiosk by that reference")


# Where a shopper reading a screen or using a kiosk stands: this far in front of its face.
STAND_OFF_M = 0.6


def _in_front(pl: Placement) -> tuple[float, float]:
    """The spot in front of a screen or kiosk (a kiosk's own footprint is an obstacle)."""
    if pl.facing_deg is None:
        return pl.xy
    dx, dy = math.sin(math.radians(pl.facing_deg)), math.cos(math.radians(pl.facing_deg))
    reach = STAND_OFF_M
    if pl.polygon is not None:
        # From the middle of the footprint to its edge along the facing, then the stand-off.
        x0, y0, x1, y1 = pl.polygon.bounds
        reach += abs(dx) * (x1 - x0) / 2 + abs(dy) * (y1 - y0) / 2
    return (pl.xy[0] + dx * reach, pl.xy[1] + dy * reach)


def _unit_place(uid: str, venue: VenueMap) -> Place:
    u = venue.units[uid]
    xy = u.anchor_xy()
    return Place("unit", uid, u.level_id, xy, u.name or u.alt_name, None, xy)


def _by_id(venue: VenueMap, fid: str) -> Place | None:
    if fid in venue.units:
        return _unit_place(fid, venue)
    if fid in venue.openings:
        o = venue.openings[fid]
        return Place("opening", fid, o.level_id, o.midpoint(), o.name, None, o.midpoint())
    if fid in venue.areas:
        a = venue.areas[fid]
        xy = a.anchor_xy()
        return Place(a.feature_type, fid, a.level_id, xy, a.name or a.alt_name, None, xy)
    if fid in venue.points:
        p = venue.points[fid]
        return Place(p.feature_type, fid, p.level_id, p.xy, p.name, None, p.xy)
    if fid in venue.occupants:
        occ = venue.occupants[fid]
        anchor = venue.points[occ.anchor_id]
        return Place("occupant", fid, anchor.level_id, anchor.xy, occ.name, None, anchor.xy)
    return None


@dataclass
class Waypoint:
    x: float
    y: float
    level_id: str
    kind: str  # "start" | "opening" | "connector" | "corner" | "end"
    ref: str = ""


@dataclass
class Route:
    start: Place
    end: Place
    distance_m: float  # walked metres (level changes count their planar part only)
    cost: float  # what the search minimised (walked metres plus level-change costs)
    waypoints: list[Waypoint]
    # What each leg walked through: a unit id, or "connector:<category>"; len = waypoints - 1.
    legs: list[str]
    accessible: bool

    @property
    def levels(self) -> list[str]:
        out: list[str] = []
        for w in self.waypoints:
            if not out or out[-1] != w.level_id:
                out.append(w.level_id)
        return out

    @property
    def uses(self) -> list[str]:
        """Level connectors taken, in order ("stairs", "elevator", ...)."""
        return [leg.split(":", 1)[1] for leg in self.legs if leg.startswith("connector:")]

    @property
    def walking_time_s(self) -> float:
        return self.distance_m / WALKING_SPEED_M_S


# --- search -------------------------------------------------------------------------------

START, GOAL = -1, -2


@dataclass
class _Query:
    """The graph plus two virtual nodes: the start and the goal, joined to what they see."""

    graph: NavGraph
    start_edges: list[Edge]
    goal_edges: dict[int, tuple[float, int, int]]  # node -> (cost, flags, tag)
    direct: tuple[float, int, int] | None  # start sees goal
    start_xy: tuple[float, float]
    goal_xy: tuple[float, float]
    goal_level: str
    mask: int

    def neighbours(self, u: int) -> list[Edge]:
        if u == START:
            out = list(self.start_edges)
            if self.direct is not None:
                out.append((GOAL, *self.direct))
            return out
        out = self.graph.adj[u]
        g = self.goal_edges.get(u)
        if g is not None:
            out = [*out, (GOAL, *g)]
        return out


def astar(q: _Query) -> tuple[float, list[int], list[int]] | None:
    """Cost, node path (START ... GOAL) and edge tags, or None when unreachable."""
    nodes = q.graph.nodes
    gx, gy = q.goal_xy
    goal_level, mask = q.goal_level, q.mask
    g_ord = q.graph.ordinals[goal_level]
    per_level = min(LEVEL_COST_M.values())
    exits = {
        lid: [
            (cx, cy, c + math.hypot(tx - gx, ty - gy) + per_level * abs(t_ord - g_ord))
            for cx, cy, c, flags, tx, ty, t_ord in ways
            if not flags & mask
        ]
        for lid, ways in q.graph.exits.items()
    }
    off_level: dict[int, float] = {}

    def h(u: int) -> float:
        if u < 0:
            return 0.0
        n = nodes[u]
        if n.level_id == goal_level:
            return math.hypot(n.x - gx, n.y - gy)
        v = off_level.get(u)
        if v is None:
            v = min(
                (
                    math.hypot(n.x - cx, n.y - cy) + rest
                    for cx, cy, rest in exits.get(n.level_id, ())
                ),
                default=math.inf,
            )
            off_level[u] = v
        return v

    best: dict[int, float] = {START: 0.0}
    came: dict[int, tuple[int, int]] = {}
    heap: list[tuple[float, float, int]] = [(0.0, 0.0, START)]
    closed: set[int] = set()
    while heap:
        _, cost, u = heapq.heappop(heap)
        if u in closed:
            continue
        if u == GOAL:
            return cost, *_unwind(came)
        closed.add(u)
        for v, w, flags, tag in q.neighbours(u):
            if flags & q.mask or v in closed:
                continue
            nc = cost + w
            if nc < best.get(v, math.inf):
                best[v] = nc
                came[v] = (u, tag)
                heapq.heappush(heap, (nc + h(v), nc, v))
    return None


def naive_dijkstra(q: _Query) -> tuple[float, list[int], list[int]] | None:
    """Dijkstra as a first version writes it: no heap, the next node by scanning all of them."""
    n = len(q.graph.nodes)
    dist = [math.inf] * n
    done = [False] * n
    came: dict[int, tuple[int, int]] = {}
    goal_cost = math.inf
    for v, w, flags, tag in q.neighbours(START):
        if flags & q.mask:
            continue
        if v == GOAL:
            if w < goal_cost:
                goal_cost, came[GOAL] = w, (START, tag)
        elif w < dist[v]:
            dist[v], came[v] = w, (START, tag)
    while True:
        u, du = -1, math.inf
        for i in range(n):
            if not done[i] and dist[i] < du:
                u, du = i, dist[i]
        if u < 0 or du >= goal_cost:
            break
        done[u] = True
        for v, w, flags, tag in q.neighbours(u):
            if flags & q.mask:
                continue
            if v == GOAL:
                if du + w < goal_cost:
                    goal_cost, came[GOAL] = du + w, (u, tag)
            elif not done[v] and du + w < dist[v]:
                dist[v], came[v] = du + w, (u, tag)
    if goal_cost == math.inf:
        return None
    return goal_cost, *_unwind(came)


def _unwind(came: dict[int, tuple[int, int]]) -> tuple[list[int], list[int]]:
    path, tags = [GOAL], []
    while path[-1] != START:
        prev, tag = came[path[-1]]
        path.append(prev)
        tags.append(tag)
    return path[::-1], tags[::-1]


# --- routing ------------------------------------------------------------------------------


def _attach(graph: NavGraph, place: Place, role: str) -> tuple[UnitSpace, tuple[float, float]]:
    venue = graph.venue
    what = f"{role} {label(place.name, None, place.id)}"
    if place.level_id not in venue.levels:
        raise NoRoute(f"{what} is on level {place.level_id}, which this map does not have")
    space = graph.space_at(place.level_id, place.xy)
    if space is None:
        # In a unit we do not route through (a stock room, a column)? Say which.
        for u in venue.units.values():
            if u.level_id == place.level_id and u.polygon.distance(Point(place.xy)) < 1e-6:
                if unit_is_staff_only(u):
                    raise NoRoute(f"{what} is in {label(u.name, None, u.id)}, staff only")
                raise NoRoute(
                    f"{what} is in {label(u.name, None, u.id)} ({u.category}), not walkable"
                )
        raise NoRoute(f"{what} lies in no walkable unit of its level")
    return space, snap_to_free(space, place.xy)


def make_query(graph: NavGraph, start: Place, end: Place, accessible: bool) -> _Query:
    s_space, s_xy = _attach(graph, start, "start")
    e_space, e_xy = _attach(graph, end, "destination")
    mask = NOT_ACCESSIBLE if accessible else 0
    s_tag, e_tag = graph.tag(s_space.unit.id), graph.tag(e_space.unit.id)
    start_edges: list[Edge] = []
    for n in s_space.nodes:
        node = graph.nodes[n]
        if s_space.sees(s_xy, (node.x, node.y)):
            d = math.hypot(node.x - s_xy[0], node.y - s_xy[1])
            start_edges.append((n, d, s_space.flags, s_tag))
    goal_edges: dict[int, tuple[float, int, int]] = {}
    for n in e_space.nodes:
        node = graph.nodes[n]
        if e_space.sees((node.x, node.y), e_xy):
            d = math.hypot(node.x - e_xy[0], node.y - e_xy[1])
            goal_edges[n] = (d, e_space.flags, e_tag)
    direct = None
    if s_space is e_space and s_space.sees(s_xy, e_xy):
        direct = (math.hypot(s_xy[0] - e_xy[0], s_xy[1] - e_xy[1]), s_space.flags, s_tag)
    return _Query(graph, start_edges, goal_edges, direct, s_xy, e_xy, end.level_id, mask)


def plan_route(
    graph: NavGraph,
    start: Place,
    end: Place,
    accessible: bool = False,
    search: Callable[[_Query], tuple[float, list[int], list[int]] | None] = astar,
) -> Route:
    q = make_query(graph, start, end, accessible)
    found = search(q)
    if found is None:
        raise NoRoute(_why_not(graph, start, end, accessible))
    cost, path, tags = found
    s_xy = q.start_xy
    wps: list[Waypoint] = []
    for n in path:
        if n == START:
            wps.append(Waypoint(s_xy[0], s_xy[1], start.level_id, "start", start.id))
        elif n == GOAL:
            wps.append(Waypoint(q.goal_xy[0], q.goal_xy[1], end.level_id, "end", end.id))
        else:
            node = graph.nodes[n]
            wps.append(Waypoint(node.x, node.y, node.level_id, node.kind, node.ref))
    legs = [graph.tags[t] for t in tags]
    walked = sum(math.hypot(a.x - b.x, a.y - b.y) for a, b in zip(wps, wps[1:], strict=False))
    return Route(start, end, walked, cost, wps, legs, accessible)


def _why_not(graph: NavGraph, start: Place, end: Place, accessible: bool) -> str:
    a, b = label(start.name, None, start.id), label(end.name, None, end.id)
    if accessible:
        try:
            plan_route(graph, start, end, accessible=False)
        except NoRoute:
            pass
        else:
            return f"no step-free route from {a} to {b}: only by stairs or escalator"
    if start.level_id != end.level_id:
        return f"no route from {a} to {b}: no stairs, escalator or lift joins their levels"
    return f"no route from {a} to {b}: no open door joins them"


def leg_flags(route: Route, graph: NavGraph) -> int:
    """The union of flags the route's legs carry (stairs, escalator)."""
    flags = 0
    for leg in route.legs:
        if leg.startswith("connector:"):
            flags |= UNIT_FLAGS.get(leg.split(":", 1)[1], 0)
        elif leg in graph.spaces:
            flags |= graph.spaces[leg].flags
    return flags
