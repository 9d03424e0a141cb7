"""The wayfinding card as a shopper sees it: a real player in a Kivy window on Xvfb, a real
mosquitto, the demo store's map and routes, and the screenshots checked pixel by pixel where
signage_ui/map_frame.py says each thing must be."""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from contracts import topics
from contracts.screen_protocol import Content, ScreenCommand, Wayfinding
from demo import scenario
from edge_agent.wayfinding.graph import build_graph
from edge_agent.wayfinding.model import Placement, VenueMap
from edge_agent.wayfinding.plan import author, load_plan
from edge_agent.wayfinding.planogram_store import load_file
from edge_agent.wayfinding.product_places import MapPlaces
from edge_agent.wayfinding.route import plan_route, resolve_ref
from edge_agent.wayfinding.screen_map import build_wayfinding
from signage_ui.layout import inner
from signage_ui.map_frame import (
    MapFrame,
    inset_title_height,
    level_boxes,
    level_frame,
    way_regions,
)
from signage_ui.style import MAP_PALETTE, rgb
from tests.signage_ui.test_signage_player import load, share_of, wait_for
from tests.signage_ui.test_signage_screen import Recorder, config, logs, player, pngs

pytestmark = [pytest.mark.ui, pytest.mark.timeout(120)]

STORE = "store-ui"
REPO = Path(__file__).resolve().parents[2]
ACCENT = "#ffd166"
BACKGROUND = "#6a0dad"
MARK_SHARE = 0.028  # signage_ui/wayfinding_view.py: the marker radius per map side


def bgr(hex_colour: str) -> tuple[int, int, int]:
    r, g, b = rgb(hex_colour)
    return (round(b * 255), round(g * 255), round(r * 255))


def near(
    img: np.ndarray, xy: tuple[float, float], colour: str, tol: int = 40, reach: int = 1
) -> bool:
    """Whether a pixel within ``reach`` of ``xy`` (image coordinates) has ``colour``."""
    x, y = round(xy[0]), round(xy[1])
    patch = img[max(0, y - reach) : y + reach + 1, max(0, x - reach) : x + reach + 1].astype(int)
    return bool(np.any(np.all(np.abs(patch - bgr(colour)) <= tol, axis=2)))


def demo_map() -> VenueMap:
    plan, layout = load_plan(REPO / "demo" / "store-map.toml")
    _, result, errors, _ = author(plan, layout)
    assert not errors and result.venue is not None
    return result.venue


def payload(venue: VenueMap, screen: str, to: str, language: str = "en") -> Wayfinding:
    graph = build_graph(venue)
    # sku: refs go to the demo planogram's shelf, as the agent's wayfinder does.
    products = load_file(scenario.PLANOGRAM, version=1).by_sku()
    resolvers = {"sku": MapPlaces(venue, 1).resolver(products)}
    route = plan_route(
        graph, resolve_ref(venue, f"screen:{screen}"), resolve_ref(venue, to, resolvers)
    )
    return build_wayfinding(venue, route, language)


class Shot:
    """A screenshot with the frame the card drew it in (Kivy's y up -> image rows down)."""

    def __init__(self, img: np.ndarray, w: Wayfinding) -> None:
        self.img = img
        h, width = img.shape[:2]
        self.height = h
        # The card lays itself out inside the screen's safe area (the item view's frame).
        box = way_regions(width, h, inner((0.0, 0.0, width, h), width, h), w).map
        main, inset = level_boxes(w, box)
        self.frame: MapFrame = level_frame(w, main)
        self.r = max(6.0, min(box[2], box[3]) * MARK_SHARE)
        # Another floor: its inset under the level's name (the view's own arithmetic).
        self.dest_frame = self.frame
        if inset is not None:
            plan = (inset[0], inset[1], inset[2], inset[3] - inset_title_height(self.r) - 4)
            self.dest_frame = level_frame(w, plan, w.destination_level)

    def px(self, p: tuple[float, float]) -> tuple[float, float]:
        x, y = self.frame.to_px(p)
        return (x, self.height - y)

    def dest_px(self, p: tuple[float, float]) -> tuple[float, float]:
        x, y = self.dest_frame.to_px(p)
        return (x, self.height - y)


def check_card(shot: Shot, w: Wayfinding) -> None:
    img, r = shot.img, shot.r
    here, dest = shot.px(w.here), shot.dest_px(w.destination)
    leaves = shot.px(w.level(w.here_level).route[-1])
    # The route is drawn in the accent along its whole length (away from the two markers).
    route = [shot.px(p) for p in w.level(w.here_level).route]
    samples = hits = 0
    for (ax, ay), (bx, by) in zip(route, route[1:], strict=False):
        n = max(2, int(math.hypot(bx - ax, by - ay) / 4))
        for i in range(n + 1):
            p = (ax + (bx - ax) * i / n, ay + (by - ay) * i / n)
            if min(math.dist(p, here), math.dist(p, dest), math.dist(p, leaves)) < 3 * r:
                continue
            samples += 1
            hits += near(img, p, ACCENT)
    assert samples >= 10 and hits / samples > 0.95, (hits, samples)
    # The destination marker is centred on the destination: a white dot ringed by the accent.
    assert near(img, dest, MAP_PALETTE["mark_dot"], tol=30)
    for dx, dy in ((0.7, 0), (-0.7, 0), (0, 0.7), (0, -0.7)):
        assert near(img, (dest[0] + dx * r, dest[1] + dy * r), ACCENT, reach=0)
    # You are here: a disc with its arrowhead above it (ahead is up), nothing of it below.
    here_c = MAP_PALETTE["here"]
    assert near(img, here, here_c, tol=30, reach=0)
    assert near(img, (here[0], here[1] - 1.9 * r), here_c, tol=30, reach=0)
    assert not near(img, (here[0], here[1] + 1.9 * r), here_c, tol=30, reach=2)
    assert not near(img, (here[0] - 1.9 * r, here[1]), here_c, tol=30, reach=2)
    # The plan is drawn: floor and shelves fill a good part of the map.
    assert share_of(img, bgr(MAP_PALETTE["floor"])) > 0.08
    assert share_of(img, bgr(MAP_PALETTE["shelf"])) > 0.003


def show(bus: Recorder, screen: str, content: Content) -> None:
    bus.publish(
        topics.screen_cmd(STORE, screen),
        ScreenCommand(kind="show", content=content, min_duration_s=0).to_bytes(),
    )


CARDS = {
    "en": ("Hi Alice! Your trail shoes are in", "The Ridge GTX you viewed: try a pair, shelf 1."),
    "de": ("Carol, Ihre Bestellung CC-4711 ist da", "Abholung an Theke 2, ohne Warten."),
}


def card(cid: str, w: Wayfinding | None, language: str = "en") -> Content:
    title, body = CARDS[language]
    return Content(
        content_id=cid,
        title=title,
        body=body,
        language=language,
        background=BACKGROUND,
        accent=ACCENT,
        wayfinding=w,
    )


@pytest.mark.parametrize("orientation", ["landscape", "portrait"])
def test_the_way_to_the_trail_shoes_on_the_entrance_screen(
    tmp_path: Path, kivy_env: dict[str, str], broker, orientation: str
) -> None:
    venue = demo_map()
    # A second screen on the plan faces east: its reader looks west, so the plan turns a
    # quarter and "ahead" (west) is up on that screen.
    ground = venue.placements[("screen", "screen-entrance")].level_id
    venue.placements[("screen", "side")] = Placement("screen", "side", ground, (7.2, 8.0), 90.0)
    to_aisle = payload(venue, "screen-entrance", "sku:SKU-RIDGE-GTX-42")
    assert to_aisle.destination_label.startswith("Ridge GTX trail shoe")
    turned = payload(venue, "side", "Pickup", "de")
    assert to_aisle.facing_deg == 0.0 and turned.facing_deg == 270.0
    # Upstairs: the day pack is on the first floor; its level beside (or under) this one.
    upstairs = payload(venue, "screen-entrance", "sku:SKU-PACK-30L", "de")
    assert upstairs.destination_level != upstairs.here_level
    # Its own screen id: a state another run left retained must not pass for this player.
    sid = f"s-{uuid.uuid4().hex[:6]}"
    screens = [
        {"id": sid, "zone": "entrance", "width": 960, "height": 540, "orientation": orientation}
    ]
    cfg = config(tmp_path, broker.port, screens)
    bus = Recorder(broker.host, broker.port)
    try:
        with player(tmp_path, kivy_env, cfg, sid) as shots:
            assert wait_for(lambda: bus.states(sid), 20), logs(tmp_path)
            for cid, w, lang in (
                ("way:aisle4", to_aisle, "en"),
                ("way:pickup", turned, "de"),
                ("way:upstairs", upstairs, "de"),
            ):
                show(bus, sid, card(cid, w, lang))
                assert wait_for(
                    lambda cid=cid: pngs(shots) and cid.replace(":", "_") in pngs(shots)[-1].name,
                    10,
                ), logs(tmp_path)
                img = load(pngs(shots)[-1])
                tall = orientation == "portrait"
                assert (img.shape[0] > img.shape[1]) == tall
                check_card(Shot(img, w), w)
                # Keep the pictures for the README (docs/ holds the chosen ones).
                (tmp_path / f"{cid.replace(':', '_')}-{orientation}.png").write_bytes(
                    pngs(shots)[-1].read_bytes()
                )
            # The same card without a way is the plain offer card, as before: no map at all.
            time.sleep(0.2)
            show(bus, sid, card("way:none", None))
            assert wait_for(lambda: "way_none" in pngs(shots)[-1].name, 10), logs(tmp_path)
            plain = load(pngs(shots)[-1])
            assert share_of(plain, bgr(BACKGROUND)) > 0.6
            assert share_of(plain, bgr(MAP_PALETTE["floor"])) < 0.001
    finally:
        bus.close()
