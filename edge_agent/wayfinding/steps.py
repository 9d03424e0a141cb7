"""Turn-by-turn steps in the shopper's language, relative to where they stand.

A screen knows which way it faces, so the shopper reading it faces the opposite way: "ahead" is
through the screen, "left" is the screen's right-hand side as seen from the front... as seen by
the shopper, which is what matters. Headings are compass bearings on the plan (0 = +y,
clockwise). Turns are named by the change of heading at each bend (bends under 25 degrees are
no turn), with the nearest named aisle, shelf or room as a landmark ("after Aisle 4"); the last
step says on which side the destination is.

Phrases live in PHRASES per language; a language we do not have falls back to English, and
names come from the features' LABELS in the shopper's language when they have it (the same
rule as campaign variants: edge_agent/journey/campaigns.py Variant.in_language).

Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from shapely.geometry import Point

from edge_agent.wayfinding.model import Area, Labels, Unit, VenueMap, label
from edge_agent.wayfinding.route import Route, Waypoint

STRAIGHT_DEG = 25.0
# Points closer than this are one point for instructions (the route line keeps them all).
MERGE_M = 1.0
LANDMARK_M = 2.5

PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "walk_turn": "{prefix}{dist} ahead, then {turn}{landmark}",
        "walk_to": "{prefix}{dist} ahead to the {connector_to}",
        "arrive": "{prefix}{dist} ahead; {dest} is {side}",
        "here": "{dest} is {side}",
        # A product is a thing on a shelf, not a place: "the Ridge GTX trail shoe".
        "arrive_product": "{prefix}{dist} ahead; the {dest} is {side}",
        "here_product": "the {dest} is {side}",
        "level": "Take the {connector} {updown} to {level}",
        "from_connector": "Leave the {connector}: ",
        "up": "up",
        "down": "down",
        "after": " after {name}",
        "at": " at {name}",
        "face_left": "Turn left: ",
        "face_right": "Turn right: ",
        "face_slight_left": "Bear left: ",
        "face_slight_right": "Bear right: ",
        "face_back": "Turn around: ",
        "face_sharp_left": "Turn sharp left: ",
        "face_sharp_right": "Turn sharp right: ",
        "turn_left": "left",
        "turn_right": "right",
        "turn_slight_left": "bear left",
        "turn_slight_right": "bear right",
        "turn_sharp_left": "sharp left",
        "turn_sharp_right": "sharp right",
        "turn_back": "turn around",
        "turn_ahead": "straight on",
        "side_left": "on your left",
        "side_right": "on your right",
        "side_ahead": "ahead of you",
        "side_back": "behind you",
        "stairs": "stairs",
        "escalator": "escalator",
        "elevator": "lift",
    },
    "de": {
        "walk_turn": "{prefix}{dist} geradeaus, dann{landmark} {turn}",
        "walk_to": "{prefix}{dist} geradeaus {connector_to}",
        "arrive": "{prefix}{dist} geradeaus; {dest} ist {side}",
        "here": "{dest} ist {side}",
        "arrive_product": "{prefix}{dist} geradeaus; {dest} ist {side}",
        "here_product": "{dest} ist {side}",
        "level": "Mit {connector_dat} {updown} ({level})",
        "from_connector": "{connector} verlassen: ",
        "up": "nach oben",
        "down": "nach unten",
        "after": " nach {name}",
        "at": " bei {name}",
        "face_left": "Nach links drehen: ",
        "face_right": "Nach rechts drehen: ",
        "face_slight_left": "Halb links: ",
        "face_slight_right": "Halb rechts: ",
        "face_back": "Umdrehen: ",
        "face_sharp_left": "Scharf links: ",
        "face_sharp_right": "Scharf rechts: ",
        "turn_left": "links",
        "turn_right": "rechts",
        "turn_slight_left": "halb links",
        "turn_slight_right": "halb rechts",
        "turn_sharp_left": "scharf links",
        "turn_sharp_right": "scharf rechts",
        "turn_back": "umdrehen",
        "turn_ahead": "geradeaus weiter",
        "side_left": "links",
        "side_right": "rechts",
        "side_ahead": "vor Ihnen",
        "side_back": "hinter Ihnen",
        "stairs": "Treppe",
        "escalator": "Rolltreppe",
        "elevator": "Aufzug",
        "stairs_dat": "der Treppe",
        "escalator_dat": "der Rolltreppe",
        "elevator_dat": "dem Aufzug",
        "stairs_to": "zur Treppe",
        "escalator_to": "zur Rolltreppe",
        "elevator_to": "zum Aufzug",
    },
    # French puts a no-break space before ":" and ";" (so a line never starts with one), and
    # names the destination without an article ("se trouve"), which fits any gender.
    "fr": {
        "walk_turn": "{prefix}{dist} tout droit, puis {turn}{landmark}",
        "walk_to": "{prefix}{dist} tout droit jusqu'{connector_to}",
        "arrive": "{prefix}{dist} tout droit\u00a0; {dest} se trouve {side}",
        "here": "{dest} se trouve {side}",
        "arrive_product": "{prefix}{dist} tout droit\u00a0; {dest} se trouve {side}",
        "here_product": "{dest} se trouve {side}",
        "level": "Prenez {connector_dat} pour {updown} ({level})",
        "from_connector": "En sortant {connector_from}\u00a0: ",
        "up": "monter",
        "down": "descendre",
        "after": " après {name}",
        "at": " à {name}",
        "face_left": "Tournez à gauche\u00a0: ",
        "face_right": "Tournez à droite\u00a0: ",
        "face_slight_left": "Légèrement à gauche\u00a0: ",
        "face_slight_right": "Légèrement à droite\u00a0: ",
        "face_back": "Faites demi-tour\u00a0: ",
        "face_sharp_left": "Tout à gauche\u00a0: ",
        "face_sharp_right": "Tout à droite\u00a0: ",
        "turn_left": "à gauche",
        "turn_right": "à droite",
        "turn_slight_left": "légèrement à gauche",
        "turn_slight_right": "légèrement à droite",
        "turn_sharp_left": "tout à gauche",
        "turn_sharp_right": "tout à droite",
        "turn_back": "demi-tour",
        "turn_ahead": "continuez tout droit",
        "side_left": "à votre gauche",
        "side_right": "à votre droite",
        "side_ahead": "devant vous",
        "side_back": "derrière vous",
        "stairs": "escalier",
        "escalator": "escalator",
        "elevator": "ascenseur",
        "stairs_dat": "l'escalier",
        "escalator_dat": "l'escalator",
        "elevator_dat": "l'ascenseur",
        "stairs_to": "à l'escalier",
        "escalator_to": "à l'escalator",
        "elevator_to": "à l'ascenseur",
        "stairs_from": "de l'escalier",
        "escalator_from": "de l'escalator",
        "elevator_from": "de l'ascenseur",
    },
}
LANGUAGES = tuple(PHRASES)


@dataclass
class Step:
    kind: str  # "walk" | "level" | "arrive"
    text: str
    distance_m: float = 0.0
    turn: str | None = None  # at the end of this walk: "left", "slight_right", ...
    landmark: str | None = None
    connector: str | None = None
    level_id: str | None = None  # where a level step goes
    side: str | None = None  # where the destination is on arrival

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def heading(ax: float, ay: float, bx: float, by: float) -> float:
    """Compass bearing from a to b on the plan: 0 = +y, 90 = +x."""
    return math.degrees(math.atan2(bx - ax, by - ay)) % 360


def relative(delta_deg: float) -> str:
    """A change of heading as a word: positive is clockwise, to the right."""
    d = (delta_deg + 540) % 360 - 180
    a = abs(d)
    if a < STRAIGHT_DEG:
        return "ahead"
    if a > 165:
        return "back"
    side = "right" if d > 0 else "left"
    if a < 60:
        return f"slight_{side}"
    if a > 135:
        return f"sharp_{side}"
    return side


def spoken_distance(d: float) -> str:
    """Shoppers need "about 25 m", not 23.73: whole metres below 20, fives above."""
    n = max(1, round(d)) if d < 20 else 5 * round(d / 5)
    return f"{n} m"


def _phrases(language: str) -> dict[str, str]:
    base = PHRASES["en"]
    return {**base, **PHRASES.get(language, {})}


def _short_name(names: Labels, alt: Labels, language: str) -> str:
    """A landmark's name: the shorter of name and alt name ("Aisle 4" over "Aisle 4 – Rain gear")."""
    a, b = label(names, language), label(alt, language)
    return min((x for x in (a, b) if x), key=len, default="")


def _landmark(
    venue: VenueMap, at: Waypoint, came_from: Waypoint, incoming: float, language: str
) -> tuple[str, str] | None:
    """The nearest named aisle, shelf or room near a bend, and whether it is behind ("after").
    Not one the shopper is walking through (a department around them, the stairs just left)."""
    level_id = at.level_id
    pt, prev = Point(at.x, at.y), Point(came_from.x, came_from.y)
    # (rank, distance, name, centre): aisles before shelves, then the nearest.
    cands: list[tuple[int, float, str, tuple[float, float]]] = []
    near = venue.named_near(level_id, at.x, at.y, LANDMARK_M)
    for a in near:
        if not isinstance(a, Area) or a.polygon.covers(prev) or a.polygon.covers(pt):
            continue
        d = a.polygon.distance(pt)
        if d <= LANDMARK_M:
            c = a.polygon.centroid
            rank = 0 if a.feature_type == "section" else 1
            cands.append((rank, d, _short_name(a.name, a.alt_name, language), (c.x, c.y)))
    if not cands:
        # At a door: the room on its other side.
        for u in near:
            if isinstance(u, Unit) and not u.polygon.covers(prev) and u.polygon.distance(pt) < 0.5:
                c = u.polygon.representative_point()
                cands.append((2, 0.0, _short_name(u.name, u.alt_name, language), (c.x, c.y)))
    best = min(cands, default=None)
    if best is None or not best[2]:
        return None
    rad = math.radians(incoming)
    cx, cy = best[3]
    behind = (cx - at.x) * math.sin(rad) + (cy - at.y) * math.cos(rad) < 0
    return best[2], "after" if behind else "at"


def _simplify(points: list[Waypoint]) -> list[Waypoint]:
    """Drop points closer than MERGE_M to the previous one, then bends under STRAIGHT_DEG."""
    pts: list[Waypoint] = [points[0]]
    for w in points[1:-1]:
        if math.hypot(w.x - pts[-1].x, w.y - pts[-1].y) >= MERGE_M:
            pts.append(w)
    last = points[-1]
    if len(pts) > 1 and math.hypot(last.x - pts[-1].x, last.y - pts[-1].y) < MERGE_M:
        pts.pop()
    pts.append(last)
    # One greedy pass: a bend stays when the turn from the last kept point is a real one.
    # (Removing bends repeatedly would straighten a gentle curve of real turns away.)
    kept = [pts[0]]
    for i in range(1, len(pts) - 1):
        a, b, c = kept[-1], pts[i], pts[i + 1]
        if relative(heading(b.x, b.y, c.x, c.y) - heading(a.x, a.y, b.x, b.y)) != "ahead":
            kept.append(b)
    kept.append(pts[-1])
    return kept


def route_steps(route: Route, venue: VenueMap, language: str = "en") -> list[Step]:
    ph = _phrases(language)
    dest_name = label(route.end.name, language, route.end.id)
    product = route.end.kind == "product" and "arrive_product" in ph
    arrive, here_key = ("arrive_product", "here_product") if product else ("arrive", "here")
    # The shopper reading a screen faces it: their heading is the screen's facing turned round.
    facing: float | None = None
    if route.start.facing_deg is not None:
        facing = (route.start.facing_deg + 180) % 360

    # Cut the route at level changes: [(points on one level, the connector taken after it)].
    segments: list[tuple[list[Waypoint], str | None]] = []
    current: list[Waypoint] = [route.waypoints[0]]
    for i, leg in enumerate(route.legs):
        nxt = route.waypoints[i + 1]
        if leg.startswith("connector:"):
            segments.append((current, leg.split(":", 1)[1]))
            current = [nxt]
        else:
            current.append(nxt)
    segments.append((current, None))

    steps: list[Step] = []
    after_connector: str | None = None
    for seg_i, (points, connector) in enumerate(segments):
        is_last = seg_i == len(segments) - 1
        pts = _simplify(points) if len(points) > 1 else points
        prefix = ""
        if after_connector is not None:
            prefix = ph["from_connector"].format(
                connector=ph[after_connector],
                connector_from=ph.get(f"{after_connector}_from", ph[after_connector]),
            )
            prefix = prefix[0].upper() + prefix[1:]
        elif facing is not None and len(pts) > 1:
            first = heading(pts[0].x, pts[0].y, pts[1].x, pts[1].y)
            rel = relative(first - facing)
            if rel != "ahead":
                prefix = ph[f"face_{rel}"]
        i = 0
        while i < len(pts) - 1:
            a, b = pts[i], pts[i + 1]
            h_in = heading(a.x, a.y, b.x, b.y)
            # A bend that is no turn once its neighbours are simplified: walk on through it.
            while i < len(pts) - 2:
                c = pts[i + 2]
                turn = relative(heading(b.x, b.y, c.x, c.y) - h_in)
                if turn != "ahead":
                    break
                i += 1
                b = c
                h_in = heading(a.x, a.y, b.x, b.y)
            d = _walked(points, a, b)
            dist = spoken_distance(d)
            if i < len(pts) - 2:
                lm = _landmark(venue, b, a, h_in, language)
                lm_text = ph[lm[1]].format(name=lm[0]) if lm else ""
                text = ph["walk_turn"].format(
                    prefix=prefix, dist=dist, turn=ph[f"turn_{turn}"], landmark=lm_text
                )
                steps.append(Step("walk", text, round(d, 1), turn, lm[0] if lm else None))
            elif not is_last and connector is not None:
                to = ph.get(f"{connector}_to", ph[connector])
                text = ph["walk_to"].format(prefix=prefix, dist=dist, connector_to=to)
                steps.append(Step("walk", text, round(d, 1), connector=connector))
            else:
                side = _side(route, b, h_in)
                text = ph[arrive].format(
                    prefix=prefix, dist=dist, dest=dest_name, side=ph[f"side_{side}"]
                )
                steps.append(Step("arrive", text, round(d, 1), side=side))
            prefix = ""
            i += 1
        if len(pts) == 1 and is_last:
            side = _side(route, pts[0], facing)
            text = ph[here_key].format(dest=dest_name, side=ph[f"side_{side}"])
            steps.append(Step("arrive", text[0].upper() + text[1:], 0.0, side=side))
        if connector is not None:
            nxt_level = segments[seg_i + 1][0][0].level_id
            here = venue.levels[points[-1].level_id].ordinal
            there = venue.levels[nxt_level].ordinal
            text = ph["level"].format(
                connector=ph[connector],
                connector_dat=ph.get(f"{connector}_dat", ph[connector]),
                updown=ph["up" if there > here else "down"],
                level=label(venue.levels[nxt_level].name, language, nxt_level),
            )
            steps.append(Step("level", text, connector=connector, level_id=nxt_level))
        after_connector = connector
    return steps


def _walked(points: list[Waypoint], a: Waypoint, b: Waypoint) -> float:
    """Metres along the route between two of its points (simplifying dropped the ones between)."""
    i, j = (
        next(k for k, p in enumerate(points) if p is a),
        next(k for k, p in enumerate(points) if p is b),
    )
    return sum(
        math.hypot(q.x - p.x, q.y - p.y)
        for p, q in zip(points[i:j], points[i + 1 : j + 1], strict=False)
    )


def _side(route: Route, at: Waypoint, heading_deg: float | None) -> str:
    target = route.end.target_xy or route.end.xy
    dx, dy = target[0] - at.x, target[1] - at.y
    if math.hypot(dx, dy) < 0.25 or heading_deg is None:
        return "ahead"
    rel = relative(heading(0, 0, dx, dy) - heading_deg)
    if rel == "back":
        return "back"
    if rel == "ahead":
        return "ahead"
    return "right" if rel.endswith("right") else "left"
