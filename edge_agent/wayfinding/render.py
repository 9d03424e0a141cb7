"""Draw a level plan from its geometry with a route on it (OpenCV), for the CLI and screenshots.

One panel per level the route walks on (every level without a route), side by side: units
filled by kind (shop floor, staff only, stairs and lifts), fixtures dark, doors as gaps in the
walls, the route as a thick line, "you are here" as a blue dot with the shopper's heading, the
destination as a red pin, and the distance and walking time. ``Canvas.to_px`` is the
metres -> pixel transform, so tests can look at the pixel where the destination should be.

Not pure (OpenCV); the player's own drawing of the wayfinding card is the next step of the issue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from shapely.geometry import Polygon

from edge_agent.wayfinding.graph import unit_is_staff_only
from edge_agent.wayfinding.model import VenueMap, label
from edge_agent.wayfinding.route import Route

# BGR. The route's colour is used by nothing else, so tests can find it.
BACKGROUND = (250, 250, 250)
OUTLINE_FILL = (225, 225, 225)
FLOOR = (242, 236, 226)
STAFF = (205, 205, 205)
VERTICAL = (235, 215, 190)
WALL = (90, 90, 90)
FIXTURE = (120, 120, 120)
SECTION_TEXT = (140, 120, 100)
TEXT = (40, 40, 40)
ROUTE = (0, 120, 255)
YOU_ARE_HERE = (200, 90, 20)
DESTINATION = (40, 40, 215)
MARGIN = 40
HEADER = 36
FOOTER = 34


@dataclass
class Panel:
    level_id: str
    x0: int  # where the level's drawing starts in the image (its header above it)
    y0: int
    scale: float  # pixels per metre
    minx: float
    maxy: float


@dataclass
class Canvas:
    image: np.ndarray
    panels: dict[str, Panel] = field(default_factory=dict)

    def to_px(self, level_id: str, x: float, y: float) -> tuple[int, int]:
        p = self.panels[level_id]
        return (
            int(round(p.x0 + (x - p.minx) * p.scale)),
            int(round(p.y0 + (p.maxy - y) * p.scale)),
        )


def _ascii(text: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only: spell umlauts out rather than show "?"."""
    table = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})
    text = text.translate(table).replace("ß", "ss").replace("–", "-")
    return text.encode("ascii", "replace").decode()


def _poly(canvas: Canvas, level_id: str, poly: Polygon) -> list[np.ndarray]:
    rings = [poly.exterior, *poly.interiors]
    return [
        np.array([canvas.to_px(level_id, x, y) for x, y in r.coords], dtype=np.int32) for r in rings
    ]


def render(
    venue: VenueMap,
    route: Route | None = None,
    language: str = "en",
    size: tuple[int, int] = (1280, 720),
) -> Canvas:
    width, height = size
    if route is not None:
        level_ids = list(dict.fromkeys(route.levels))
    else:
        level_ids = [lv.id for lv in venue.level_order()]
    img = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    canvas = Canvas(img)
    n = max(1, len(level_ids))
    # Landscape screens put the levels side by side, portrait ones stack them.
    across = width >= height
    panel_w = width // n if across else width
    panel_h = (height - FOOTER) if across else (height - FOOTER) // n
    for i, lid in enumerate(level_ids):
        geoms = [u.polygon for u in venue.units.values() if u.level_id == lid]
        outline = venue.levels[lid].outline
        if outline is not None:
            geoms.append(outline)
        minx = min(g.bounds[0] for g in geoms)
        miny = min(g.bounds[1] for g in geoms)
        maxx = max(g.bounds[2] for g in geoms)
        maxy = max(g.bounds[3] for g in geoms)
        avail_w = panel_w - 2 * MARGIN
        avail_h = panel_h - HEADER - 2 * MARGIN
        scale = min(avail_w / max(maxx - minx, 1e-6), avail_h / max(maxy - miny, 1e-6))
        px0 = (i * panel_w if across else 0) + MARGIN
        py0 = (0 if across else i * panel_h) + HEADER + MARGIN
        # Centre the drawing in what is left of its panel.
        px0 += int((avail_w - (maxx - minx) * scale) / 2)
        py0 += int((avail_h - (maxy - miny) * scale) / 2)
        canvas.panels[lid] = Panel(lid, px0, py0, scale, minx, maxy)
        _draw_level(canvas, venue, lid, language)
    if route is not None:
        _draw_route(canvas, route, language)
    return canvas


def _draw_level(canvas: Canvas, venue: VenueMap, lid: str, language: str) -> None:
    img = canvas.image
    level = venue.levels[lid]
    if level.outline is not None:
        cv2.fillPoly(img, _poly(canvas, lid, level.outline), OUTLINE_FILL)
    units = [u for u in venue.units.values() if u.level_id == lid]
    for u in units:
        fill = FLOOR
        if unit_is_staff_only(u):
            fill = STAFF
        elif u.category in ("stairs", "escalator", "elevator", "steps"):
            fill = VERTICAL
        cv2.fillPoly(img, _poly(canvas, lid, u.polygon), fill)
    for u in units:
        cv2.polylines(img, _poly(canvas, lid, u.polygon), True, WALL, 2, cv2.LINE_AA)
    for o in venue.openings.values():
        if o.level_id != lid:
            continue
        pts = [canvas.to_px(lid, x, y) for x, y in o.line.coords]
        for pa, pb in zip(pts, pts[1:], strict=False):
            cv2.line(img, pa, pb, FLOOR, 4, cv2.LINE_AA)
    for a in venue.areas.values():
        if a.level_id == lid and a.feature_type in ("fixture", "kiosk"):
            cv2.fillPoly(img, _poly(canvas, lid, a.polygon), FIXTURE)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for a in venue.areas.values():
        if a.level_id == lid and a.feature_type == "section" and a.alt_name:
            x, y = a.anchor_xy()
            _text(canvas, lid, x, y, label(a.alt_name, language), SECTION_TEXT, 0.4)
    for u in units:
        if u.name:
            x, y = u.anchor_xy()
            _text(canvas, lid, x, y, label(u.name, language), TEXT, 0.45)
    p = canvas.panels[lid]
    head = f"{label(level.name, language)}"
    cv2.putText(img, _ascii(head), (p.x0, p.y0 - 14), font, 0.7, TEXT, 2, cv2.LINE_AA)


def _text(
    canvas: Canvas, lid: str, x: float, y: float, text: str, colour: tuple[int, int, int], s: float
) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    t = _ascii(text)
    (tw, th), _ = cv2.getTextSize(t, font, s, 1)
    px, py = canvas.to_px(lid, x, y)
    cv2.putText(canvas.image, t, (px - tw // 2, py + th // 2), font, s, colour, 1, cv2.LINE_AA)


def _draw_route(canvas: Canvas, route: Route, language: str) -> None:
    img = canvas.image
    wps = route.waypoints
    for i, leg in enumerate(route.legs):
        a, b = wps[i], wps[i + 1]
        if leg.startswith("connector:") or a.level_id != b.level_id:
            continue
        cv2.line(
            img,
            canvas.to_px(a.level_id, a.x, a.y),
            canvas.to_px(b.level_id, b.x, b.y),
            ROUTE,
            6,
            cv2.LINE_AA,
        )
    start, end = wps[0], wps[-1]
    sx, sy = canvas.to_px(start.level_id, start.x, start.y)
    cv2.circle(img, (sx, sy), 11, (255, 255, 255), -1, cv2.LINE_AA)
    cv2.circle(img, (sx, sy), 8, YOU_ARE_HERE, -1, cv2.LINE_AA)
    if route.start.facing_deg is not None:
        # The shopper faces the screen: their heading is the screen's facing turned round.
        h = math.radians((route.start.facing_deg + 180) % 360)
        tip = (int(sx + 24 * math.sin(h)), int(sy - 24 * math.cos(h)))
        cv2.arrowedLine(img, (sx, sy), tip, YOU_ARE_HERE, 3, cv2.LINE_AA, tipLength=0.4)
    ex, ey = canvas.to_px(end.level_id, end.x, end.y)
    cv2.line(img, (ex, ey), (ex, ey - 22), DESTINATION, 3, cv2.LINE_AA)
    cv2.circle(img, (ex, ey - 22), 8, DESTINATION, -1, cv2.LINE_AA)
    cv2.circle(img, (ex, ey), 11, (255, 255, 255), -1, cv2.LINE_AA)
    cv2.circle(img, (ex, ey), 8, DESTINATION, -1, cv2.LINE_AA)
    font = cv2.FONT_HERSHEY_SIMPLEX
    minutes = max(1, round(route.walking_time_s / 60))
    dest = label(route.end.name, language, route.end.id)
    foot = f"{dest}: {round(route.distance_m)} m, about {minutes} min"
    if language == "de":
        foot = f"{dest}: {round(route.distance_m)} m, etwa {minutes} Min."
    h = img.shape[0]
    cv2.putText(img, _ascii(foot), (MARGIN, h - 12), font, 0.65, TEXT, 2, cv2.LINE_AA)
