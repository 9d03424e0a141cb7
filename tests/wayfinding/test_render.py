"""The drawn plan: the route is drawn along its path, the markers sit where they should."""

from __future__ import annotations

import numpy as np

from edge_agent.wayfinding.graph import NavGraph
from edge_agent.wayfinding.model import VenueMap
from edge_agent.wayfinding.render import DESTINATION, ROUTE, YOU_ARE_HERE, Canvas, render
from edge_agent.wayfinding.route import Route, plan_route, resolve_ref


def near_colour(
    img: np.ndarray, xy: tuple[int, int], colour: tuple[int, int, int], r: int = 2
) -> bool:
    x, y = xy
    patch = img[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1].astype(int)
    return bool((np.abs(patch - np.array(colour)).sum(axis=2) <= 30).any())


def test_the_route_line_and_the_markers(demo_map: VenueMap, demo_graph: NavGraph) -> None:
    for size in ((1280, 720), (720, 1280)):  # landscape side by side, portrait stacked
        route = plan_route(
            demo_graph,
            resolve_ref(demo_map, "screen:screen-entrance"),
            resolve_ref(demo_map, "Shelf 6"),
        )
        canvas = render(demo_map, route, "en", size)
        img = canvas.image
        assert img.shape == (size[1], size[0], 3)
        assert set(canvas.panels) == set(route.levels) and len(route.levels) == 2
        # Along every walked leg, away from the markers, the route colour is there.
        checked = 0
        for a, b, leg in zip(route.waypoints, route.waypoints[1:], route.legs, strict=False):
            if leg.startswith("connector:"):
                continue
            for t in (0.3, 0.5, 0.7):
                x, y = a.x + t * (b.x - a.x), a.y + t * (b.y - a.y)
                px = canvas.to_px(a.level_id, x, y)
                # The markers (and the heading arrow, 24 px) are drawn over the line.
                if min(np.hypot(px[0] - m[0], px[1] - m[1]) for m in _markers(canvas, route)) < 30:
                    continue
                assert near_colour(img, px, ROUTE), (leg, t, px)
                checked += 1
        assert checked >= 6
        end, start = route.waypoints[-1], route.waypoints[0]
        assert near_colour(img, canvas.to_px(end.level_id, end.x, end.y), DESTINATION, 0)
        assert near_colour(img, canvas.to_px(start.level_id, start.x, start.y), YOU_ARE_HERE, 0)
        # ...and not somewhere else: the far corner of the upper floor has neither.
        corner = canvas.to_px(end.level_id, 23.5, 0.5)
        assert not near_colour(img, corner, DESTINATION, 3) and not near_colour(
            img, corner, ROUTE, 3
        )


def test_without_a_route_there_is_no_route_colour(demo_map: VenueMap) -> None:
    canvas = render(demo_map)
    img = canvas.image.astype(int)
    assert len(canvas.panels) == 2
    assert not ((np.abs(img - np.array(ROUTE)).sum(axis=2) <= 30).any())


def _markers(canvas: Canvas, route: Route) -> list[tuple[int, int]]:
    s, e = route.waypoints[0], route.waypoints[-1]
    return [canvas.to_px(s.level_id, s.x, s.y), canvas.to_px(e.level_id, e.x, e.y)]
