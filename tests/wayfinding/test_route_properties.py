"""Properties of routes on generated grid-like venues (testbed/venues.py): rooms with shelves,
doors left out at random, stairs, an escalator and a lift through every level."""

from __future__ import annotations

import math
from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.wayfinding.graph import NOT_ACCESSIBLE, NavGraph, build_graph
from edge_agent.wayfinding.plan import author, parse_plan
from edge_agent.wayfinding.route import NoRoute, Place, leg_flags, naive_dijkstra, plan_route
from testbed.venues import grid_plan

CONNECTORS = (("stairs", 0, 0), ("escalator", 2, 3), ("lift", 1, 2))


@lru_cache(maxsize=16)
def venue(seed: int, door_keep: float) -> NavGraph:
    plan = grid_plan(
        levels=3,
        rows=3,
        cols=4,
        seed=seed,
        door_keep=door_keep,
        shelf_share=0.5,
        connectors=CONNECTORS,
    )
    _, result, errors, _ = author(parse_plan(plan))
    assert not errors, errors
    assert result.venue is not None
    return build_graph(result.venue)


def place(
    graph: NavGraph, unit_index: int, fx: float, fy: float, rooms_only: bool = False
) -> Place:
    """A point in a unit, anywhere (in a shelf too: it snaps to the aisle beside it)."""
    units = sorted(
        u for u, s in graph.spaces.items() if s.unit.category == "room" or not rooms_only
    )
    u = graph.spaces[units[unit_index % len(units)]].unit
    x0, y0, x1, y1 = u.polygon.bounds
    xy = (x0 + 0.05 + fx * (x1 - x0 - 0.1), y0 + 0.05 + fy * (y1 - y0 - 0.1))
    return Place("point", u.id, u.level_id, xy, {"en": u.id})


venues = st.tuples(st.integers(0, 7), st.sampled_from([1.0, 0.7]))
points = st.tuples(st.integers(0, 200), st.floats(0, 1), st.floats(0, 1))


def straight(a: Place, b: Place) -> float:
    return math.hypot(a.xy[0] - b.xy[0], a.xy[1] - b.xy[1])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venues, points, points, st.booleans())
def test_routes_are_never_shorter_than_the_straight_line_and_symmetric(
    v: tuple[int, float], p: tuple[int, float, float], q: tuple[int, float, float], accessible: bool
) -> None:
    g = venue(*v)
    a, b = place(g, *p), place(g, *q)
    try:
        there = plan_route(g, a, b, accessible)
    except NoRoute:
        # Unreachable one way is unreachable the other way.
        try:
            plan_route(g, b, a, accessible)
        except NoRoute:
            return
        raise AssertionError("a route back but none there") from None
    back = plan_route(g, b, a, accessible)
    # Both end points may have been snapped out of a shelf: measure between the walked ends.
    s, e = there.waypoints[0], there.waypoints[-1]
    assert there.distance_m >= math.hypot(s.x - e.x, s.y - e.y) - 1e-9
    assert there.cost >= there.distance_m - 1e-9
    assert math.isclose(there.cost, back.cost, rel_tol=1e-9, abs_tol=1e-9)
    if accessible:
        assert leg_flags(there, g) & NOT_ACCESSIBLE == 0
        assert not {"stairs", "escalator"} & set(there.uses)
    assert straight(a, b) >= 0  # (a and b are real places)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venues, points, points, st.booleans())
def test_astar_finds_what_naive_dijkstra_finds(
    v: tuple[int, float], p: tuple[int, float, float], q: tuple[int, float, float], accessible: bool
) -> None:
    g = venue(*v)
    a, b = place(g, *p), place(g, *q)
    try:
        fast = plan_route(g, a, b, accessible)
    except NoRoute:
        fast = None
    try:
        slow = plan_route(g, a, b, accessible, search=naive_dijkstra)
    except NoRoute:
        slow = None
    assert (fast is None) == (slow is None)
    if fast is not None and slow is not None:
        assert math.isclose(fast.cost, slow.cost, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 7), points, points)
def test_accessible_routes_exist_where_the_lift_reaches(
    seed: int, p: tuple[int, float, float], q: tuple[int, float, float]
) -> None:
    """With every door in place, the lift makes every room reachable without stairs."""
    g = venue(seed, 1.0)
    r = plan_route(g, place(g, *p, rooms_only=True), place(g, *q, rooms_only=True), True)
    assert set(r.uses) <= {"elevator"}
