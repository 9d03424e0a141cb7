"""Where the wayfinding card draws (signage_ui/map_frame.py): forward-up for any facing, the
whole plan inside its box, regions that share the screen without overlapping."""

from __future__ import annotations

import math
from functools import lru_cache

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.screen_protocol import Wayfinding
from signage_ui.map_frame import (
    FRAME_MARGIN,
    fit_frame,
    level_boxes,
    level_frame,
    walk_line,
    way_regions,
)

coords = st.floats(-200, 200, allow_nan=False)
points = st.lists(st.tuples(coords, coords), min_size=1, max_size=30)
bearings = st.floats(0, 359.99)


@given(points, bearings, st.integers(200, 2000), st.integers(200, 2000))
def test_ahead_is_up_and_everything_fits(
    pts: list[tuple[float, float]], ahead: float, w: int, h: int
) -> None:
    box = (10.0, 20.0, float(w), float(h))
    f = fit_frame(pts, box, ahead)
    for x, y in (f.to_px(p) for p in pts):
        assert box[0] - 1e-6 <= x <= box[0] + box[2] + 1e-6
        assert box[1] - 1e-6 <= y <= box[1] + box[3] + 1e-6
    # A step ahead of the shopper, from any point, goes straight up the screen.
    t = math.radians(ahead)
    a = f.to_px(pts[0])
    b = f.to_px((pts[0][0] + math.sin(t), pts[0][1] + math.cos(t)))
    assert abs(b[0] - a[0]) < 1e-6 * max(1.0, f.scale) and b[1] > a[1]
    # ...and a step to the right goes right.
    c = f.to_px((pts[0][0] + math.cos(t), pts[0][1] - math.sin(t)))
    assert c[0] > a[0] and abs(c[1] - a[1]) < 1e-6 * max(1.0, f.scale)


def _inside(inner: tuple[float, float, float, float], w: float, h: float) -> bool:
    x, y, bw, bh = inner
    return x >= 0 and y >= 0 and x + bw <= w + 1e-6 and y + bh <= h + 1e-6 and bw > 0 and bh > 0


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return (
        a[0] < b[0] + b[2] - 1e-6
        and b[0] < a[0] + a[2] - 1e-6
        and (a[1] < b[1] + b[3] - 1e-6 and b[1] < a[1] + a[3] - 1e-6)
    )


@given(st.integers(320, 3840), st.integers(320, 3840))
def test_regions_share_the_screen(w: int, h: int) -> None:
    r = way_regions(w, h)
    boxes = [r.map, r.header, r.info, r.steps]
    assert all(_inside(b, w, h) for b in boxes)
    assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    # The map gets the largest share of the screen in both orientations.
    assert r.map[2] * r.map[3] >= 0.3 * w * h


def test_the_walk_line_in_the_shoppers_language() -> None:
    base = {
        "levels": [{"id": "L0", "shapes": [], "route": [[0, 0]]}],
        "here": [0, 0],
        "here_level": "L0",
        "facing_deg": 0,
        "destination": [0, 0],
        "destination_level": "L0",
        "destination_label": "x",
        "distance_m": 18.4,
        "steps": [],
    }
    short = Wayfinding.model_validate({**base, "walking_time_s": 15})
    long = Wayfinding.model_validate({**base, "walking_time_s": 150})
    assert walk_line(short, "en") == "18 m · 15 s walk"
    assert walk_line(long, "de-AT") == "18 m · 2 min zu Fuß"
    assert walk_line(short, "xx") == "18 m · 15 s walk"


def _upstairs() -> Wayfinding:
    from tests.signage_ui.test_wayfinding_screen import demo_map, payload

    return payload(demo_map(), "screen-entrance", "sku:SKU-PACK-30L")


UPSTAIRS = _upstairs()


@given(st.integers(200, 2000), st.integers(200, 2000))
def test_another_floor_gets_an_inset_that_shares_the_map_box(w: int, h: int) -> None:
    box = (10.0, 20.0, float(w), float(h))
    main, inset = level_boxes(UPSTAIRS, box)
    assert inset is not None
    for b in (main, inset):
        assert b[2] > 0 and b[3] > 0
        assert box[0] <= b[0] and b[0] + b[2] <= box[0] + box[2] + 1e-6
        assert box[1] <= b[1] and b[1] + b[3] <= box[1] + box[3] + 1e-6
    assert not _overlap(main, inset)
    same_floor = UPSTAIRS.model_copy(update={"destination_level": UPSTAIRS.here_level})
    assert level_boxes(same_floor, box) == (box, None)


@settings(deadline=None)  # the first example builds the demo store's map
@given(st.integers(320, 2160), st.integers(0, 359))
def test_a_portrait_map_gives_its_empty_bands_to_the_words(w: int, facing: int) -> None:
    """With the way known, a portrait card's map is only as tall as its plan needs at full
    width: the plan is drawn exactly as large as in the full-height box, and the words' boxes
    grow by what the map gave up."""
    way = _to_pickup().model_copy(update={"facing_deg": float(facing)})
    h = w * 16 // 9
    plain, fitted = way_regions(w, h), way_regions(w, h, way=way)
    boxes = [fitted.map, fitted.header, fitted.info, fitted.steps]
    assert all(_inside(b, w, h) for b in boxes)
    assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert fitted.map[3] <= plain.map[3] + 1e-6
    assert fitted.header[3] >= plain.header[3] - 1e-6 and fitted.steps[3] >= plain.steps[3] - 1e-6
    # The plan is no smaller for it...
    frame = level_frame(way, fitted.map)
    assert frame.scale >= level_frame(way, plain.map).scale * 0.999
    # ...and fills the map's height but for the margins (or the map kept half the box).
    lv = way.level(way.here_level)
    ys = [frame.to_px(p)[1] for s in lv.shapes for p in s.ring] + [
        frame.to_px(p)[1] for p in lv.route
    ]
    drawn = max(ys) - min(ys)
    floored = abs(fitted.map[3] - plain.map[3] * 0.5) < 1e-6
    assert floored or abs(drawn - fitted.map[3] * (1 - 2 * FRAME_MARGIN)) < 0.5


@lru_cache(maxsize=1)
def _to_pickup() -> Wayfinding:
    """The demo store's way from the entrance screen to the pickup counter (one level)."""
    from tests.signage_ui.test_wayfinding_screen import demo_map, payload

    return payload(demo_map(), "screen-entrance", "Pickup", "de")
