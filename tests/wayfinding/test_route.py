"""Routes on the demo store: references, shelves walked round, stairs or the lift, refusals with a
reason, and steps in the shopper's language relative to the screen."""

from __future__ import annotations

from dataclasses import replace

import pytest
from shapely.geometry import LineString

from edge_agent.wayfinding.graph import NOT_ACCESSIBLE, NavGraph, build_graph
from edge_agent.wayfinding.model import VenueMap
from edge_agent.wayfinding.route import (
    NoRoute,
    Place,
    RefError,
    Route,
    leg_flags,
    naive_dijkstra,
    plan_route,
    resolve_ref,
)
from edge_agent.wayfinding.steps import relative, route_steps, spoken_distance

SCREEN = "screen:screen-entrance"


def route(vm: VenueMap, graph: NavGraph, src: str, dst: str, accessible: bool = False) -> Route:
    return plan_route(graph, resolve_ref(vm, src), resolve_ref(vm, dst), accessible)


def test_references_by_id_name_alt_name_any_language_screen_and_kiosk(demo_map: VenueMap) -> None:
    fitting = resolve_ref(demo_map, "Fitting rooms")
    assert fitting.kind == "unit"
    assert resolve_ref(demo_map, "umkleiden").id == fitting.id  # German alt name, any case
    assert resolve_ref(demo_map, fitting.id).id == fitting.id
    assert resolve_ref(demo_map, "Gang 4").kind == "section"
    screen = resolve_ref(demo_map, SCREEN)
    assert (screen.kind, screen.facing_deg) == ("screen", 180)
    assert resolve_ref(demo_map, "kiosk:kiosk-1").kind == "kiosk"
    with pytest.raises(RefError, match="no screen 'screen-9' on this map"):
        resolve_ref(demo_map, "screen:screen-9")
    with pytest.raises(RefError, match="no feature, name"):
        resolve_ref(demo_map, "Sauna")


def test_sku_references_go_to_an_extra_resolver(demo_map: VenueMap) -> None:
    with pytest.raises(RefError, match="no planogram"):
        resolve_ref(demo_map, "sku:4711")
    shelf = resolve_ref(demo_map, "Shelf 4")

    def planogram(sku: str) -> Place:
        if sku != "4711":
            raise RefError(f"sku:{sku}: not in the planogram")
        return shelf

    assert resolve_ref(demo_map, "sku:4711", {"sku": planogram}) == shelf
    with pytest.raises(RefError, match="not in the planogram"):
        resolve_ref(demo_map, "sku:1", {"sku": planogram})


def test_the_route_goes_round_shelves_and_matches_naive_dijkstra(
    demo_map: VenueMap, demo_graph: NavGraph
) -> None:
    for dst in ("Fitting rooms", "Shelf 4", "Pickup", "Aisle 6", "Customer toilets", "Shelf 6"):
        r = route(demo_map, demo_graph, SCREEN, dst)
        naive = plan_route(
            demo_graph,
            r.start,
            r.end,
            search=naive_dijkstra,
        )
        assert r.cost == pytest.approx(naive.cost)
        for a, b, leg in zip(r.waypoints, r.waypoints[1:], r.legs, strict=False):
            if leg.startswith("connector:"):
                continue
            seg = LineString([(a.x, a.y), (b.x, b.y)])
            for obstacle in demo_map.fixtures_on(a.level_id):
                assert not obstacle.polygon.buffer(-0.01).intersects(seg), (dst, obstacle.name)


def test_upstairs_by_stairs_or_by_lift_when_accessible(
    demo_map: VenueMap, demo_graph: NavGraph
) -> None:
    r = route(demo_map, demo_graph, SCREEN, "Aisle 6")
    assert r.uses == ["stairs"] and len(r.levels) == 2
    a = route(demo_map, demo_graph, SCREEN, "Aisle 6", accessible=True)
    assert a.uses == ["elevator"]
    assert leg_flags(a, demo_graph) & NOT_ACCESSIBLE == 0
    assert a.cost > r.cost


def test_no_route_says_why(demo_map: VenueMap, demo_graph: NavGraph) -> None:
    with pytest.raises(NoRoute, match="is in Stock room, staff only"):
        route(demo_map, demo_graph, SCREEN, "Stock room")
    # Without the lift, upstairs is stairs only: the accessible mode refuses, with the reason.
    no_lift = replace(
        demo_map, connectors=[c for c in demo_map.connectors if c.category != "elevator"]
    )
    g = build_graph(no_lift)
    with pytest.raises(NoRoute, match="no step-free route .* only by stairs or escalator"):
        route(no_lift, g, SCREEN, "Aisle 6", accessible=True)
    assert route(no_lift, g, SCREEN, "Aisle 6").uses == ["stairs"]
    no_stairs = replace(no_lift, connectors=[])
    with pytest.raises(NoRoute, match="no stairs, escalator or lift joins their levels"):
        route(no_stairs, build_graph(no_stairs), SCREEN, "Aisle 6")


def test_steps_are_relative_to_the_screen_and_in_the_shoppers_language(
    demo_map: VenueMap, demo_graph: NavGraph
) -> None:
    r = route(demo_map, demo_graph, SCREEN, "Pickup")
    # The screen faces the door (south); the shopper reading it faces north, and the counter
    # lies to the east: turn right, and the counter is on the right at the end.
    en = route_steps(r, demo_map, "en")
    de = route_steps(r, demo_map, "de")
    assert en[0].text.startswith("Turn right: ")
    assert en[-1].kind == "arrive" and en[-1].side == "right"
    assert en[-1].text.endswith("Counter 2 – Click & collect is on your right")
    assert de[-1].text.endswith("Theke 2 – Click & Collect ist rechts")
    up = route_steps(route(demo_map, demo_graph, SCREEN, "Aisle 6"), demo_map, "de")
    assert any(
        s.kind == "level" and s.text == "Mit der Treppe nach oben (Obergeschoss)" for s in up
    )
    fr = route_steps(r, demo_map, "fr")
    assert fr[0].text.startswith("Tournez à droite\u00a0: ")
    assert fr[-1].text.endswith("se trouve à votre droite")
    fr_up = route_steps(route(demo_map, demo_graph, SCREEN, "Aisle 6"), demo_map, "fr")
    assert any(
        s.kind == "level" and s.text.startswith("Prenez l'escalier pour monter") for s in fr_up
    )
    assert any(s.text.startswith("En sortant de l'escalier\u00a0: ") for s in fr_up), fr_up
    sv = route_steps(r, demo_map, "sv")  # no Swedish phrases: English, names as they come
    assert sv[0].text == en[0].text


def test_turn_words_and_spoken_distances() -> None:
    assert relative(0) == "ahead" and relative(90) == "right" and relative(-90) == "left"
    assert relative(40) == "slight_right" and relative(-150) == "sharp_left"
    assert relative(180) == "back" and relative(350) == "ahead"
    assert [spoken_distance(d) for d in (0.2, 7.4, 19.6, 23.0, 38.0)] == [
        "1 m",
        "7 m",
        "20 m",
        "25 m",
        "40 m",
    ]


def test_a_one_way_escalator_is_taken_one_way_only() -> None:
    from edge_agent.wayfinding.plan import author, parse_plan
    from testbed.venues import grid_plan

    plan = grid_plan(levels=2, rows=1, cols=5, connectors=(("escalator", 0, 0), ("stairs", 0, 4)))
    plan["connectors"][0]["direction"] = "up"
    _, result, errors, _ = author(parse_plan(plan))
    assert not errors and result.venue is not None
    vm, g = result.venue, build_graph(result.venue)
    lower, upper = resolve_ref(vm, "Room 0-0-1"), resolve_ref(vm, "Room 1-0-1")
    assert plan_route(g, lower, upper).uses == ["escalator"]
    assert plan_route(g, upper, lower).uses == ["stairs"]  # the long way round, down the stairs
    with pytest.raises(NoRoute, match="no step-free route"):
        plan_route(g, lower, upper, accessible=True)
