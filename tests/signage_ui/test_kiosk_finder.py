"""The kiosk's product finder end to end: a real kiosk process in a real Kivy window on Xvfb,
the agent's finder stage on a real mosquitto with the demo store's map (demo/store-map.toml,
which places kiosk-1) and the demo planogram (demo/data/planogram.csv) in planogram.db.

Touches type a query, show results with stock, open the way (route pixels checked along the
path), switch to German, and open a product without a location (the reason, no map, no QR).
The QR code is decoded from the screenshot with OpenCV and must be the reply's deep link.
Hostile replies on the kiosk's ``found`` topic are refused in one line each; it keeps going.
This file is also the kiosk's driver (``drive``), like test_kiosk.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from contracts import topics
from contracts.kiosk_finder import parse_deep_link
from contracts.mqtt import BrokerConfig
from edge_agent.app.bus import InStoreBus
from edge_agent.config import load_config
from edge_agent.journey.kiosk_finder import KioskFinder
from edge_agent.journey.wayfinding_stage import ScreenWayfinder, load_venue
from testbed.procs import terminate
from tests.app.test_hostile_input import CORPUS
from tests.journey.test_kiosk_finder import DEMO_MAP, demo_planogram
from tests.signage_ui.test_kiosk import STORE, kiosk_config
from tests.signage_ui.test_signage_player import load
from tests.signage_ui.test_signage_screen import Recorder
from tests.watching import wait_for

KIOSK = "kiosk-1"  # placed on the demo map
ROUTE_BGR = (0x51, 0x6F, 0xE7)  # finder_view.ROUTE, #e76f51
DOCS = Path(__file__).resolve().parents[2] / "docs"

BAD_REPLIES: dict[str, bytes] = {
    **CORPUS,
    "route without its map": json.dumps(
        {
            "request_id": "x",
            "results": [{"sku": "A", "name": "A", "routable": False, "reason": "r"}],
            "route": {"sku": "B"},
        }
    ).encode(),
    "markup in a name": json.dumps(
        {"request_id": "x", "results": [{"sku": "A", "name": "a\u0007b", "routable": True}]}
    ).encode(),
    "too many results": json.dumps(
        {
            "request_id": "x",
            "results": [{"sku": f"S{i}", "name": "n", "routable": True} for i in range(50)],
        }
    ).encode(),
}


def near(img: np.ndarray, bgr: tuple[int, int, int], x: float, y: float, r: int = 4) -> bool:
    """``bgr`` within a few levels somewhere in the (2r+1)^2 pixels around (x, y), image rows."""
    h, w = img.shape[:2]
    xi, yi = int(round(x)), int(round(y))
    patch = img[max(0, yi - r) : min(h, yi + r + 1), max(0, xi - r) : min(w, xi + r + 1)]
    return bool(np.any(np.all(np.abs(patch.astype(int) - np.array(bgr)) <= 12, axis=2)))


class KioskRun:
    """The agent's finder stage on the broker and a kiosk process driven by ``drive``."""

    def __init__(self, tmp_path: Path, kivy_env: dict[str, str], broker, mode: str) -> None:
        cfg = kiosk_config(tmp_path, broker.port)
        self.venue, self.version = load_venue(DEMO_MAP)
        db = tmp_path / "planogram.db"
        demo_planogram(db)
        self.bus = InStoreBus(BrokerConfig(host=broker.host, port=broker.port), "agent-finder")
        self.finder = KioskFinder(self.bus, STORE, ScreenWayfinder(self.venue, self.version), db)
        self.bus.route(topics.kiosk_find(STORE), self.finder.on_find)
        self.bus.start()
        assert self.bus.subscribed.wait(5)
        self.ops = Recorder(broker.host, broker.port)
        self.results, self.shots = tmp_path / "results.jsonl", tmp_path / "shots"
        self.go = tmp_path / "go"
        self.log_path = tmp_path / "kiosk.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(cfg), str(self.results), str(self.shots), str(self.go)]
            + [mode],
            env={**kivy_env, "PYTHONPATH": os.pathsep.join(sys.path)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def steps(self) -> dict[str, dict]:
        if not self.results.exists():
            return {}
        return {r["step"]: r for r in map(json.loads, self.results.read_text().splitlines())}

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def finish(self) -> dict[str, dict]:
        """Let the kiosk run its touches; every step it reported."""
        self.go.touch()
        assert wait_for(lambda: "done" in self.steps() or self.proc.poll() is not None, 90), (
            self.text()[-3000:]
        )
        s = self.steps()
        assert s["done"]["ok"], s
        assert self.proc.wait(15) == 0, self.text()[-3000:]
        return s

    def shots_by_name(self) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for p in sorted(self.shots.glob("*.png")):
            out.setdefault(p.name.split("-kiosk-")[1][:-4], p)
        return out

    def close(self) -> None:
        terminate(self.proc)
        self.log.close()
        self.bus.stop()
        self.finder.close()
        self.ops.close()


def route_samples(route_px: list[list[float]], height: int) -> list[tuple[float, float]]:
    """Points a quarter, half and three quarters along each drawn leg, in image rows."""
    pts = [(x, height - y) for x, y in route_px]
    assert len(pts) >= 2
    samples = []
    for (ax, ay), (bx, by) in zip(pts, pts[1:], strict=False):
        for t in (0.25, 0.5, 0.75):
            samples.append((ax + (bx - ax) * t, ay + (by - ay) * t))
    return samples


def check_route_picture(img: np.ndarray, route: dict, version: str, lang: str) -> None:
    """The route's colour along the drawn path, the destination mark at the destination, and
    the QR code decodes to the reply's deep link, in the documented format."""
    h = img.shape[0]
    samples = route_samples(route["route_px"], h)
    on_route = sum(near(img, ROUTE_BGR, x, y) for x, y in samples)
    assert on_route >= 0.9 * len(samples), (on_route, len(samples))
    # ...and not everywhere: the top-left corner of the window is the kiosk's tab bar.
    assert not near(img, ROUTE_BGR, 20, 20)
    # The destination mark: the route's colour around a white dot, at the destination.
    dx, dy = route["destination_px"]
    assert near(img, (255, 255, 255), dx, h - dy, r=2), route["destination_px"]
    assert near(img, ROUTE_BGR, dx, h - dy, r=10), route["destination_px"]
    link = route["deep_link"]
    decoded, _pts, _ = cv2.QRCodeDetector().detectAndDecode(img)
    assert decoded == link
    parsed = parse_deep_link(decoded)
    assert (parsed.store, parsed.map_version, parsed.from_ref, parsed.to_ref, parsed.lang) == (
        STORE,
        version,
        f"kiosk:{KIOSK}",
        "sku:SKU-RIDGE-GTX-42",
        lang,
    )
    assert parsed.expires > time.time()


@pytest.mark.ui
@pytest.mark.timeout(150)
def test_find_a_product_on_the_kiosk(tmp_path: Path, kivy_env: dict[str, str], broker) -> None:
    run = KioskRun(tmp_path, kivy_env, broker, "landscape")
    text, proc, ops, version = run.text, run.proc, run.ops, run.version
    try:
        assert wait_for(lambda: "ready" in run.steps(), 30), text()
        # Hostile replies first: each refused in one line, the kiosk still up.
        found = topics.kiosk_found(STORE, KIOSK)
        for payload in BAD_REPLIES.values():
            ops.publish(found, payload)
        ignored = f"bus: ignored on {found}: "
        assert wait_for(lambda: text().count(ignored) == len(BAD_REPLIES), 20), text()[-3000:]
        assert proc.poll() is None
        s = run.finish()
    finally:
        run.close()
    assert "Traceback" not in text()
    lines = [line for line in text().splitlines() if ignored in line]
    assert len(lines) == len(BAD_REPLIES) and all(len(line) < 400 for line in lines)
    assert any("found.results: Tuple should have at most 12" in line for line in lines), lines
    assert any("found.results.0.name: String should match pattern" in line for line in lines)

    # Results with their stock, in English then in German.
    assert s["results"]["rows"][0].startswith("Ridge GTX trail shoe")
    assert "7 in stock" in s["results"]["rows"][0]
    assert s["results"]["rows"][1].startswith("Ridge GTX trail shoe size 43")
    assert "Out of stock" in s["results"]["rows"][1]
    assert "7 auf Lager" in s["results_de"]["rows"][0]
    assert "Nicht auf Lager" in s["results_de"]["rows"][1]
    assert "10 auf Lager" in s["results_de_pack"]["rows"][0]

    # The way: from kiosk-1 to shelf 1 in aisle 1, every step in words beside the map.
    shots_by_name = run.shots_by_name()
    img = load(shots_by_name["find-route"])
    assert img.shape[:2] == (600, 1024)
    check_route_picture(img, s["route"], version, "en")
    assert "Aisle 1" in s["route"]["way"] and "Ridge GTX trail shoe is on your" in s["route"]["way"]
    samples = route_samples(s["route"]["route_px"], 600)
    # The German way upstairs (a route_to request for the tapped result): a German link.
    pack = s["route_de"]
    assert parse_deep_link(pack["deep_link"]).to_ref == "sku:SKU-PACK-30L"
    de_img = load(shots_by_name["find-route-de"])
    assert cv2.QRCodeDetector().detectAndDecode(de_img)[0] == pack["deep_link"]

    # No location: the reason, and neither a map nor a QR code.
    assert "no location on the planogram" in s["no_route"]["text"]
    assert not s["no_route"]["qr"] and not s["no_route"]["card"]
    no_img = load(shots_by_name["find-no-route"])
    assert cv2.QRCodeDetector().detectAndDecode(no_img)[0] == ""
    assert not any(near(no_img, ROUTE_BGR, x, y) for x, y in samples)

    if os.environ.get("EDGE_DOCS_SHOTS"):  # README pictures, refreshed on demand
        for name in ("find-results", "find-route", "find-no-route"):
            DOCS.joinpath(f"kiosk-{name}.png").write_bytes(shots_by_name[name].read_bytes())


@pytest.mark.ui
@pytest.mark.timeout(120)
def test_find_a_product_on_a_portrait_kiosk(
    tmp_path: Path, kivy_env: dict[str, str], broker
) -> None:
    """A kiosk mounted portrait (600x1024), in German: the map above, the words and the QR code
    below it; the same pixel checks as in landscape."""
    run = KioskRun(tmp_path, kivy_env, broker, "portrait")
    try:
        assert wait_for(lambda: "ready" in run.steps(), 30), run.text()
        s = run.finish()
    finally:
        run.close()
    assert "Traceback" not in run.text()
    shot = run.shots_by_name()["find-route"]
    img = load(shot)
    assert img.shape[:2] == (1024, 600)
    check_route_picture(img, s["route"], run.version, "de")
    assert "Gang 1" in s["route"]["way"] and "7 auf Lager" in s["route"]["way"]
    # Map above the words, the words and the code below it, all inside the window.
    map_box, way_box, qr = s["route"]["map_box"], s["route"]["way_box"], s["route"]["qr"]
    assert way_box[1] + way_box[3] <= map_box[1] + 1 and qr[1] + qr[3] <= map_box[1] + 1
    assert all(b[0] >= 0 and b[0] + b[2] <= 600 for b in (map_box, way_box, qr))
    assert map_box[3] > 380 and map_box[2] > 540  # the map is the larger part
    if os.environ.get("EDGE_DOCS_SHOTS"):
        DOCS.joinpath("kiosk-find-route-portrait.png").write_bytes(shot.read_bytes())


# ---- the driver: runs inside the kiosk's own process ---------------------------------------


def drive(
    cfg_path: str, results: str, shots: str, go: str, mode: str = "landscape"
) -> None:  # pragma: no cover
    import logging

    from signage_ui.cli import _kivy_window

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _kivy_window(*((600, 1024) if mode == "portrait" else (1024, 600)))
    from kivy.clock import Clock

    from signage_ui.kiosk import KioskApp
    from tests.signage_ui.ui_driver import Driver

    cfg = load_config(cfg_path)
    app = KioskApp(cfg, KIOSK, bus=cfg.bus, screenshot_dir=Path(shots))

    drv = Driver(results, app.shutdown)
    report = drv.report

    def tap(name: str) -> None:
        drv.touch(app.w[name])

    def wait_until(pred, then, timeout: float = 15.0) -> None:
        drv.wait_until(pred, then, timeout)

    def rows() -> list[str]:
        out = []
        for k, w in app.w.items():
            if k.startswith("find:result:"):
                plain = w.text.replace("[b]", "").replace("[/b]", "")
                for tag in ("[size=26]", "[size=21]", "[/size]", "[/color]"):
                    plain = plain.replace(tag, "")
                out.append(" ".join(p.split("]")[-1] for p in plain.split("[color=")))
        return out

    def answered() -> bool:
        f = app.finder
        return f.state.pending is None and f.state.reply is not None and bool(rows())

    def route_drawn(sku: str):
        def pred() -> bool:
            card = app.finder.card
            return (
                app.finder.shown_sku == sku
                and card is not None
                and card.frame is not None
                and app.finder.qr.square is not None
            )

        return pred

    def route_report(step: str) -> None:
        f = app.finder
        card, reply = f.card, f.state.reply
        assert card is not None and card.frame is not None and reply is not None
        assert reply.route is not None
        w = reply.route.wayfinding
        lv = w.level(w.here_level)
        px = [list(card.frame.to_px(p)) for p in lv.route]
        way = app.w["find:way"]
        report(
            step,
            route_px=px,
            destination_px=list(card.frame.to_px(w.destination)),
            deep_link=reply.route.deep_link,
            qr=f.qr.square,
            way=way.text,
            way_box=[*way.to_window(*way.pos), *way.size],
            map_box=[*card.panel.to_window(*card.panel.pos), *card.panel.size],
        )

    def seq(*actions) -> None:
        if actions:
            actions[0]()
            Clock.schedule_once(lambda _dt: seq(*actions[1:]), 0.25)

    def start() -> None:
        # Ready once the kiosk's subscriptions hold: the test's hostile replies come then (CI
        # lost some, sent while the kiosk was still connecting).
        wait_until(lambda: app.bus_up, subscribed, timeout=30.0)

    def subscribed() -> None:
        report("ready")
        wait_until(lambda: os.path.exists(go), find_de if portrait else find_en)

    def find_de() -> None:  # portrait: German, the way to the Ridge GTX, and done
        app.finder.state.reply = None
        seq(
            lambda: tap("tab:find"),
            lambda: tap("find:lang"),
            lambda: setattr(app.finder.input, "text", "ridge gtx"),
            lambda: tap("find:search"),
            lambda: wait_until(answered, lambda: tap("find:result:SKU-RIDGE-GTX-42")),
            lambda: wait_until(route_drawn("SKU-RIDGE-GTX-42"), portrait_done),
        )

    def portrait_done() -> None:
        route_report("route")
        seq(lambda: None, lambda: report("done", ok=True), app.shutdown)

    def find_en() -> None:
        app.finder.state.reply = None
        seq(
            lambda: tap("tab:find"),
            lambda: setattr(app.finder.input, "text", "ridge gtx"),
            lambda: tap("find:search"),
            lambda: wait_until(answered, results_en),
        )

    def results_en() -> None:
        report("results", rows=rows())
        seq(
            lambda: None,  # the results screenshot is taken now
            lambda: tap("find:result:SKU-RIDGE-GTX-42"),
            lambda: wait_until(route_drawn("SKU-RIDGE-GTX-42"), route_en),
        )

    def route_en() -> None:
        route_report("route")
        seq(
            lambda: None,  # the route screenshot is taken now
            lambda: tap("find:back"),
            lambda: tap("find:lang"),  # German: the same search again
            lambda: wait_until(
                lambda: answered() and app.finder.state.lang == "de" and "Lager" in rows()[0],
                results_de,
            ),
        )

    def results_de() -> None:
        report("results_de", rows=rows())
        seq(
            lambda: tap("find:chip:2"),  # "Rucksack"
            lambda: wait_until(lambda: answered() and "Tagesrucksack" in rows()[0], pack_de),
        )

    def pack_de() -> None:
        report("results_de_pack", rows=rows())
        seq(
            lambda: tap("find:result:SKU-PACK-30L"),
            lambda: wait_until(route_drawn("SKU-PACK-30L"), route_de),
        )

    def route_de() -> None:
        route_report("route_de")
        app.snapshot("find-route-de")
        seq(
            lambda: None,
            lambda: tap("find:back"),
            lambda: tap("find:lang"),
            lambda: setattr(app.finder.input, "text", "gift card"),
            lambda: tap("find:search"),
            lambda: wait_until(lambda: answered() and "Gift card" in rows()[0], gift),
        )

    def gift() -> None:
        seq(
            lambda: tap("find:result:SKU-GIFT-CARD-50"),
            lambda: wait_until(lambda: app.finder.shown_sku == "SKU-GIFT-CARD-50", no_route),
        )

    def no_route() -> None:
        f = app.finder
        label = f.body.children[-1]
        report("no_route", text=label.text, qr=f.qr.square is not None, card=f.card is not None)
        seq(lambda: None, lambda: report("done", ok=True), app.shutdown)

    portrait = mode == "portrait"
    Clock.schedule_once(lambda _dt: start(), 0.5)
    app.run()


if __name__ == "__main__":  # pragma: no cover
    drive(*sys.argv[1:6])
