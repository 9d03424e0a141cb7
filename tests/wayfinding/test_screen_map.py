"""The wayfinding payload a screen gets (edge_agent/wayfinding/screen_map.py): small, exact at
its ends, in the shopper's language, and refused by the contract when it is not."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.screen_protocol import (
    MAX_VERTICES,
    Content,
    ScreenCommand,
    Wayfinding,
)
from edge_agent.wayfinding.graph import NavGraph, build_graph
from edge_agent.wayfinding.model import VenueMap
from edge_agent.wayfinding.plan import author, parse_plan
from edge_agent.wayfinding.route import NoRoute, plan_route, resolve_ref
from edge_agent.wayfinding.screen_map import (
    BYTE_BUDGET,
    PayloadTooBig,
    build_wayfinding,
)
from testbed.venues import grid_plan
from tests.wayfinding.test_route_properties import place


def size(w: Wayfinding) -> int:
    return len(w.model_dump_json(exclude_none=True).encode())


def test_the_entrance_screen_to_aisle_4(demo_map: VenueMap, demo_graph: NavGraph) -> None:
    route = plan_route(
        demo_graph,
        resolve_ref(demo_map, "screen:screen-entrance"),
        resolve_ref(demo_map, "Aisle 4"),
    )
    w = build_wayfinding(demo_map, route, "de")
    assert size(w) <= BYTE_BUDGET
    assert [lv.id for lv in w.levels] == route.levels
    lv = w.levels[0]
    kinds = {s.kind for s in lv.shapes}
    # The sales floor, the stock room (drawn, not walked), the shelves, counters, stairs/lift.
    assert {"floor", "room", "shelf", "counter", "connector"} <= kinds
    # The screen faces the door (180): its reader looks into the store (0).
    assert w.facing_deg == 0.0
    assert w.walking_time_s == round(route.walking_time_s)  # the CLI's and the screen's agree
    assert w.destination_label == "Gang 4 – Regenbekleidung"
    assert w.steps and all("geradeaus" in s or "ist" in s for s in w.steps)
    # Round trip through the screen command, as the bus carries it.
    cmd = ScreenCommand(kind="show", content=Content(content_id="c", title="t", wayfinding=w))
    assert ScreenCommand.from_bytes(cmd.to_bytes()).content == cmd.content


def test_a_route_through_two_levels_carries_both_plans(
    demo_map: VenueMap, demo_graph: NavGraph
) -> None:
    route = plan_route(
        demo_graph,
        resolve_ref(demo_map, "screen:screen-entrance"),
        resolve_ref(demo_map, "Aisle 6"),
    )
    w = build_wayfinding(demo_map, route, "en")
    assert len(w.levels) == 2 and w.here_level != w.destination_level
    # Each level's line ends where the next begins: at the stairs.
    assert w.levels[0].route[-1] == w.levels[1].route[0]
    assert any("stairs" in s for s in w.steps)


@st.composite
def venues_and_routes(draw: st.DrawFn) -> tuple[VenueMap, object]:
    seed = draw(st.integers(0, 5))
    g = _grid(seed)
    for _ in range(5):
        a = place(g, draw(st.integers(0, 200)), draw(st.floats(0, 1)), draw(st.floats(0, 1)))
        b = place(g, draw(st.integers(0, 200)), draw(st.floats(0, 1)), draw(st.floats(0, 1)))
        try:
            return g.venue, plan_route(g, a, b)
        except NoRoute:
            continue
    return g.venue, None


_GRIDS: dict[int, NavGraph] = {}


def _grid(seed: int) -> NavGraph:
    if seed not in _GRIDS:
        # Big enough that the full plan is over the smaller budgets: shapes must be dropped.
        plan = grid_plan(levels=2, rows=6, cols=8, seed=seed, shelf_share=0.8)
        _, result, errors, _ = author(parse_plan(plan))
        assert not errors and result.venue is not None
        _GRIDS[seed] = build_graph(result.venue)
    return _GRIDS[seed]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venues_and_routes(), st.sampled_from([3_000, 6_000, 12_000, BYTE_BUDGET]))
def test_always_under_the_budget_and_the_route_ends_are_exact(
    vr: tuple[VenueMap, object], budget: int
) -> None:
    venue, route = vr
    if route is None:
        return
    assert hasattr(route, "waypoints")
    try:
        w = build_wayfinding(venue, route, "en", budget=budget)  # type: ignore[arg-type]
    except PayloadTooBig:
        # Only when the route and its words alone are over the budget.
        assert budget <= 3_000
        return
    assert size(w) <= budget
    # It survives the wire and the contract's own bounds.
    assert Wayfinding.model_validate_json(w.model_dump_json()) == w
    start, end = route.waypoints[0], route.waypoints[-1]  # type: ignore[attr-defined]
    assert w.here == (start.x, start.y) == w.level(w.here_level).route[0]
    assert w.destination == (end.x, end.y) == w.level(w.destination_level).route[-1]
    # The distance and time belong to the route, whatever the drawing lost.
    assert math.isclose(w.distance_m, round(route.distance_m, 1))  # type: ignore[attr-defined]


def test_a_big_plan_loses_small_shapes_before_rooms() -> None:
    g = _grid(1)
    a = place(g, 0, 0.5, 0.5)
    b = place(g, 40, 0.5, 0.5)
    route = plan_route(g, a, b)
    full = build_wayfinding(g.venue, route, budget=10**7)
    small = build_wayfinding(g.venue, route, budget=6_000)
    assert size(full) > 6_000 >= size(small)
    kept = [s.kind for lv in small.levels for s in lv.shapes]
    # Rooms are the big shapes: all of them stay while shelves go.
    assert kept.count("floor") == sum(s.kind == "floor" for lv in full.levels for s in lv.shapes)
    assert kept.count("shelf") < sum(s.kind == "shelf" for lv in full.levels for s in lv.shapes)


def _payload(**over: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "levels": [
            {
                "id": "L0",
                "name": "Ground",
                "shapes": [{"kind": "floor", "ring": [[0, 0], [10, 0], [10, 10]]}],
                "route": [[1, 1], [5, 5]],
            }
        ],
        "here": [1, 1],
        "here_level": "L0",
        "facing_deg": 0,
        "destination": [5, 5],
        "destination_level": "L0",
        "destination_label": "Aisle 4",
        "distance_m": 5.7,
        "walking_time_s": 5,
        "steps": ["6 m ahead"],
    }
    doc.update(over)
    return doc


@pytest.mark.parametrize(
    ("what", "over", "says"),
    [
        ("a NaN coordinate", {"here": [float("nan"), 1]}, "finite"),
        ("a far coordinate", {"destination": [1e9, 1]}, "within"),
        ("an unknown level", {"destination_level": "L9"}, "not one of its levels"),
        ("a long label", {"destination_label": "x" * 61}, "at most 60"),
        ("too many steps", {"steps": ["a"] * 13}, "at most 12"),
        ("a long step", {"steps": ["a" * 161]}, "at most 160"),
        ("a facing of 360", {"facing_deg": 360}, "less than 360"),
        (
            "a ring of 300 vertices",
            {
                "levels": [
                    {
                        "id": "L0",
                        "shapes": [{"kind": "floor", "ring": [[i, i % 2] for i in range(300)]}],
                        "route": [[1, 1]],
                    }
                ]
            },
            "at most 256",
        ),
        (
            "too many vertices in all",
            {
                "levels": [
                    {
                        "id": "L0",
                        "shapes": [{"kind": "shelf", "ring": [[0, 0], [1, 0], [1, 1]] * 80}] * 30,
                        "route": [[1, 1]],
                    }
                ]
            },
            f"more than {MAX_VERTICES}",
        ),
        ("an unknown shape", {"levels": [{"id": "L0", "shapes": [], "route": []}]}, "at least 1"),
        ("an extra field", {"colour": "red"}, "Extra inputs"),
    ],
)
def test_the_contract_refuses_a_hostile_payload_in_one_line(
    what: str, over: dict[str, object], says: str
) -> None:
    doc = {"content_id": "c", "title": "t", "wayfinding": _payload(**over)}
    raw = json.dumps({"kind": "show", "content": doc}).encode()
    with pytest.raises(ValidationError) as err:
        ScreenCommand.from_bytes(raw)
    assert says in str(err.value), what


def test_the_sample_payload_is_valid() -> None:
    # The hostile cases above differ from this one in one field each.
    assert Wayfinding.model_validate(_payload()).distance_m == 5.7
