"""Where a wayfinding card puts things: its regions, and plan metres -> screen pixels.

A you-are-here map is read "forward-up": what is ahead of the reader is up on the map, so the
plan is turned by the shopper's heading at the screen (never drawn north-up: a shopper would
have to turn the map in their head, and many turn the wrong way). Pure geometry in Kivy's
convention (origin bottom left, y up), so tests compute where a marker must be drawn.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from contracts.screen_protocol import Wayfinding
from signage_ui.layout import Box
from signage_ui.template import base_language

Point = tuple[float, float]


@dataclass(frozen=True)
class MapFrame:
    """Plan metres to pixels: turn by ``ahead_deg`` about ``centre`` (so that compass bearing
    points up), scale, and put the centre at ``origin`` (pixels)."""

    ahead_deg: float
    centre: Point
    scale: float  # pixels per metre
    origin: Point

    def turned(self, p: Point) -> Point:
        # A bearing b is the plan vector (sin b, cos b); turning it counter-clockwise by b
        # gives (0, 1): up.
        t = math.radians(self.ahead_deg)
        x, y = p[0] - self.centre[0], p[1] - self.centre[1]
        return (x * math.cos(t) - y * math.sin(t), x * math.sin(t) + y * math.cos(t))

    def to_px(self, p: Point) -> Point:
        x, y = self.turned(p)
        return (self.origin[0] + x * self.scale, self.origin[1] + y * self.scale)


# The share of a map's box left clear on each side of the plan.
FRAME_MARGIN = 0.06


def fit_frame(
    points: Iterable[Point], box: Box, ahead_deg: float, margin: float = FRAME_MARGIN
) -> MapFrame:
    """The frame that shows every point inside ``box`` (pixels), turned forward-up."""
    pts = list(points)
    if not pts:
        pts = [(0.0, 0.0)]
    probe = MapFrame(ahead_deg, (0.0, 0.0), 1.0, (0.0, 0.0))
    turned = [probe.turned(p) for p in pts]
    xs, ys = [p[0] for p in turned], [p[1] for p in turned]
    w, h = max(max(xs) - min(xs), 1.0), max(max(ys) - min(ys), 1.0)
    bx, by, bw, bh = box
    scale = min(bw * (1 - 2 * margin) / w, bh * (1 - 2 * margin) / h)
    # The centre of the turned bounds, turned back onto the plan.
    mx, my = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    t = math.radians(ahead_deg)
    centre = (mx * math.cos(t) + my * math.sin(t), -mx * math.sin(t) + my * math.cos(t))
    return MapFrame(ahead_deg, centre, scale, (bx + bw / 2, by + bh / 2))


def _level_points(w: Wayfinding, level_id: str | None = None) -> list[Point]:
    lv = w.level(level_id or w.here_level)
    return [p for s in lv.shapes for p in s.ring] + list(lv.route)


def level_frame(w: Wayfinding, box: Box, level_id: str | None = None) -> MapFrame:
    """The frame of a level (by default the one the shopper stands on): its plan and its part of
    the route, turned like the shopper's own so the two levels read the same way."""
    return fit_frame(_level_points(w, level_id), box, w.facing_deg)


def map_height_for(w: Wayfinding, width: float, most: float) -> float:
    """The height a map ``width`` wide needs to draw its plan as large as that width allows, at
    most ``most``: a plan wider than its box (most stores, turned forward-up on a portrait
    screen) would leave bands of empty panel above and below it, which the words can use. A
    way to another level keeps the whole box (its inset goes below the plan)."""
    if w.destination_level != w.here_level:
        return most
    frame = level_frame(w, (0.0, 0.0, width, most))
    ys = [frame.turned(p)[1] for p in _level_points(w)]
    if not ys:
        return most
    need = (max(ys) - min(ys)) * frame.scale / (1 - 2 * FRAME_MARGIN)
    return float(min(most, max(need, most * 0.5)))


def inset_title_height(mark_r: float) -> float:
    """The band over the destination level's inset that names it (its font is 1.1 r)."""
    return round(mark_r * 1.9)


# The destination level's inset takes this share of the map's longer side.
INSET_SHARE = 0.4


def level_boxes(w: Wayfinding, box: Box) -> tuple[Box, Box | None]:
    """The map's box for the level the shopper stands on and, when the way ends on another
    level, an inset for that one: beside it in a wide box, below it in a tall one. A shopper
    going upstairs sees where the stairs are here and where to go once there."""
    if w.destination_level == w.here_level:
        return box, None
    bx, by, bw, bh = box
    gap = round(min(bw, bh) * 0.03)
    iw, ih = round(bw * INSET_SHARE), round(bh * INSET_SHARE)
    beside = ((bx, by, bw - iw - gap, bh), (bx + bw - iw, by, iw, bh))
    below = ((bx, by + ih + gap, bw, bh - ih - gap), (bx, by, bw, ih))

    def smaller_scale(split: tuple[Box, Box]) -> float:
        return min(
            level_frame(w, split[0]).scale, level_frame(w, split[1], w.destination_level).scale
        )

    # Whichever split draws both plans bigger: wide plans stack, tall ones sit side by side.
    return max((beside, below), key=smaller_scale)


@dataclass(frozen=True)
class WayRegions:
    map: Box
    header: Box  # title and body
    info: Box  # destination, distance and walking time
    steps: Box


def way_regions(
    width: float, height: float, safe: Box | None = None, way: Wayfinding | None = None
) -> WayRegions:
    """Landscape: the map on the left, the words in a column on the right. Portrait: the words
    above and below the map, which takes the middle of the screen at full width; with ``way``,
    only the height its plan needs (``map_height_for``), the rest going to the words. ``safe``:
    the box (in the card's coordinates) that words and map must stay inside, the screen's safe
    area (``layout.inner``); without one, a margin of 4 % of the shorter side."""
    pad = round(min(width, height) * 0.04)
    if safe is None:
        safe = (pad, pad, width - 2 * pad, height - 2 * pad)
    sx, sy, sw, sh = safe
    if width >= height:
        map_w = round(sw * 0.6)
        col_x, col_w = sx + map_w + pad, sw - map_w - pad
        return WayRegions(
            map=(sx, sy, map_w, sh),
            header=(col_x, sy + sh * 0.58, col_w, sh * 0.42),
            info=(col_x, sy + sh * 0.42, col_w, sh * 0.16),
            steps=(col_x, sy, col_w, sh * 0.42),
        )
    header_h, info_h, steps_h = sh * 0.19, sh * 0.09, sh * 0.19
    map_h = sh - header_h - info_h - steps_h - 2 * pad
    if way is not None:
        spare = map_h - map_height_for(way, sw, map_h)
        map_h -= spare
        header_h += spare * 0.45
        steps_h += spare * 0.55
    return WayRegions(
        map=(sx, sy + steps_h + info_h + pad, sw, map_h),
        header=(sx, sy + sh - header_h, sw, header_h),
        info=(sx, sy + steps_h, sw, info_h),
        steps=(sx, sy, sw, steps_h),
    )


# The words a wayfinding card adds, per language; unknown languages read English.
WAY_LABELS: dict[str, dict[str, str]] = {
    "en": {"walk": "{dist} · {time} walk", "here": "You are here", "scan": "The way on your phone"},
    "de": {"walk": "{dist} · {time} zu Fuß", "here": "Sie sind hier", "scan": "Der Weg aufs Handy"},
    "fr": {
        "walk": "{dist} · {time} à pied",
        "here": "Vous êtes ici",
        "scan": "Le chemin sur votre téléphone",
    },
    "es": {
        "walk": "{dist} · {time} a pie",
        "here": "Usted está aquí",
        "scan": "El camino en su móvil",
    },
    "it": {
        "walk": "{dist} · {time} a piedi",
        "here": "Voi siete qui",
        "scan": "Il percorso sul telefono",
    },
    "nl": {"walk": "{dist} · {time} lopen", "here": "U bent hier", "scan": "De weg op uw telefoon"},
}


def scan_label(language: str) -> str:
    return WAY_LABELS.get(base_language(language), WAY_LABELS["en"])["scan"]


def qr_split(steps: Box) -> tuple[Box, Box, Box]:
    """The steps' region shared with the way's QR code: the words on the left, the code at the
    top right with its caption under it (the code at least 2.5 cm on a 32" screen)."""
    x, y, w, h = steps
    side = min(h * 0.74, w * 0.36)
    gap = round(w * 0.03)
    qx = x + w - side
    caption_h = h - side
    return (
        (x, y, w - side - gap, h),
        (qx, y + caption_h, side, side),
        (qx - gap, y, side + gap, caption_h),
    )


def walk_line(w: Wayfinding, language: str) -> str:
    """ "18 m · 15 s walk": whole metres, seconds under a minute, then whole minutes."""
    labels = WAY_LABELS.get(base_language(language), WAY_LABELS["en"])
    t = w.walking_time_s
    time_text = f"{max(1, t)} s" if t < 60 else f"{round(t / 60)} min"
    return labels["walk"].format(dist=f"{round(w.distance_m)} m", time=time_text)


def here_label(language: str) -> str:
    return WAY_LABELS.get(base_language(language), WAY_LABELS["en"])["here"]


def label_spot(
    mark: Point, r: float, size: tuple[float, float], box: Box, route: Iterable[Point]
) -> Point:
    """Where the "you are here" words go (their bottom-left corner): beside the mark, inside
    ``box``, on neither the mark (its arrowhead points up) nor the route when a side is free.
    Tried right, left, below, then above; the first with the fewest route points under it."""
    hx, hy = mark
    w, h = size
    bx, by, bw, bh = box
    gap, pad = r * 1.6, 4.0
    candidates = [
        (hx + gap, hy - h / 2),
        (hx - gap - w, hy - h / 2),
        (hx - w / 2, hy - gap - h),
        (hx - w / 2, hy + r * 2.4 + pad + 2),
        (hx + gap, hy - gap - h),
        (hx - gap - w, hy - gap - h),
    ]
    pts = _dense(list(route), max(2.0, r * 0.5))
    reach = r * 0.5  # half the route's drawn width, and a little air

    def cost(c: Point) -> tuple[int, int]:
        x = min(max(c[0], bx + pad), bx + bw - pad - w)
        y = min(max(c[1], by + pad), by + bh - pad - h)
        moved = int(abs(x - c[0]) + abs(y - c[1]) > 0.5)
        under = sum(
            1
            for px, py in pts
            if x - reach <= px <= x + w + reach and y - reach <= py <= y + h + reach
        )
        on_mark = int(x - r < hx < x + w + r and y - r < hy < y + h + r)
        return (under + 100 * on_mark, moved)

    best = min(candidates, key=cost)
    return (
        min(max(best[0], bx + pad), bx + bw - pad - w),
        min(max(best[1], by + pad), by + bh - pad - h),
    )


def _dense(pts: list[Point], step: float) -> list[Point]:
    """A polyline's points every ``step`` pixels (and its corners)."""
    out: list[Point] = pts[:1]
    for (ax, ay), (bx, by) in zip(pts, pts[1:], strict=False):
        n = max(1, int(math.hypot(bx - ax, by - ay) // step))
        out.extend((ax + (bx - ax) * i / n, ay + (by - ay) * i / n) for i in range(1, n + 1))
    return out
