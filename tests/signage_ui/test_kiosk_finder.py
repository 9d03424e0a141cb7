"""The kiosk's product finder end to end: a real kiosk process in a real Kivy window on Xvfb,
the agent's finder stage on a real mosquitto with the demo store's map, and a planogram in
planogram.db built from the map's own section ids (the demo CSV's places are layout slugs the
demo map does not have yet: testbed/planograms.py ``map_planogram``).

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
from edge_agent.wayfinding.planogram_store import PlanogramStore
from testbed.planograms import map_planogram
from testbed.procs import terminate
from tests.app.test_hostile_input import CORPUS
from tests.journey.test_kiosk_finder import DEMO_MAP
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


@pytest.mark.ui
@pytest.mark.timeout(150)
def test_find_a_product_on_the_kiosk(tmp_path: Path, kivy_env: dict[str, str], broker) -> None:
    cfg = kiosk_config(tmp_path, broker.port)
    venue, version = load_venue(DEMO_MAP)
    db = tmp_path / "planogram.db"
    store = PlanogramStore(db, STORE)
    store.apply(map_planogram(venue))
    store.close()
    bus = InStoreBus(BrokerConfig(host=broker.host, port=broker.port), "agent-kiosk-finder")
    finder = KioskFinder(bus, STORE, ScreenWayfinder(venue, version), db)
    bus.route(topics.kiosk_find(STORE), finder.on_find)
    bus.start()
    assert bus.subscribed.wait(5)
    ops = Recorder(broker.host, broker.port)
    results, shots, go = tmp_path / "results.jsonl", tmp_path / "shots", tmp_path / "go"
    log_path = tmp_path / "kiosk.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [sys.executable, __file__, str(cfg), str(results), str(shots), str(go)],
        env={**kivy_env, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def steps() -> dict[str, dict]:
        if not results.exists():
            return {}
        return {r["step"]: r for r in map(json.loads, results.read_text().splitlines())}

    def text() -> str:
        return log_path.read_text(errors="replace")

    try:
        assert wait_for(lambda: "ready" in steps(), 30), text()
        # Hostile replies first: each refused in one line, the kiosk still up.
        found = topics.kiosk_found(STORE, KIOSK)
        for payload in BAD_REPLIES.values():
            ops.publish(found, payload)
        ignored = f"bus: ignored on {found}: "
        assert wait_for(lambda: text().count(ignored) == len(BAD_REPLIES), 20), text()[-3000:]
        assert proc.poll() is None
        go.touch()
        assert wait_for(lambda: "done" in steps() or proc.poll() is not None, 90), text()[-3000:]
        s = steps()
        assert s["done"]["ok"], s
        assert proc.wait(15) == 0, text()[-3000:]
    finally:
        terminate(proc)
        log.close()
        bus.stop()
        finder.close()
        ops.close()
    assert "Traceback" not in text()
    lines = [line for line in text().splitlines() if ignored in line]
    assert len(lines) == len(BAD_REPLIES) and all(len(line) < 400 for line in lines)
    assert any("found.results: Tuple should have at most 12" in line for line in lines), lines
    assert any("found.results.0.name: String should match pattern" in line for line in lines)

    # Results with their stock, in English then in German.
    assert s["results"]["rows"][0].startswith("Ridge GTX trail shoe")
    assert "7 in stock" in s["results"]["rows"][0]
    assert "7 auf Lager" in s["results_de"]["rows"][0]
    assert "Nicht auf Lager" in s["results_de_pack"]["rows"][0]

    # The way: the route's colour along the drawn path, on the route screenshot.
    shots_by_name: dict[str, Path] = {}
    for p in sorted(shots.glob("*.png")):
        shots_by_name.setdefault(p.name.split("-kiosk-")[1][:-4], p)
    img = load(shots_by_name["find-route"])
    assert img.shape[:2] == (600, 1024)
    pts = [(x, 600 - y) for x, y in s["route"]["route_px"]]
    assert len(pts) >= 2
    samples = []
    for (ax, ay), (bx, by) in zip(pts, pts[1:], strict=False):
        for t in (0.25, 0.5, 0.75):
            samples.append((ax + (bx - ax) * t, ay + (by - ay) * t))
    on_route = sum(near(img, ROUTE_BGR, x, y) for x, y in samples)
    assert on_route >= 0.9 * len(samples), (on_route, len(samples))
    # ...and not everywhere: the top-left corner of the window is the kiosk's tab bar.
    assert not near(img, ROUTE_BGR, 20, 20)

    # The QR code on the screen is the reply's deep link, in the documented format.
    link = s["route"]["deep_link"]
    decoded, _pts, _ = cv2.QRCodeDetector().detectAndDecode(img)
    assert decoded == link
    parsed = parse_deep_link(decoded)
    assert (parsed.store, parsed.map_version, parsed.from_ref, parsed.to_ref, parsed.lang) == (
        STORE,
        version,
        f"kiosk:{KIOSK}",
        "sku:SKU-RIDGE-GTX-42",
        "en",
    )
    assert parsed.expires > time.time()
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


# ---- the driver: runs inside the kiosk's own process ---------------------------------------


def drive(cfg_path: str, results: str, shots: str, go: str) -> None:  # pragma: no cover
    import logging

    from signage_ui.cli import _kivy_window

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _kivy_window(1024, 600)
    from kivy.clock import Clock
    from kivy.tests.common import UnitTestTouch

    from signage_ui.kiosk import KioskApp

    cfg = load_config(cfg_path)
    app = KioskApp(cfg, KIOSK, bus=cfg.bus, screenshot_dir=Path(shots))

    def report(step: str, **data: object) -> None:
        with open(results, "a") as fh:
            fh.write(json.dumps({"step": step, **data}) + "\n")

    def tap(name: str) -> None:
        w = app.w[name]
        x, y = w.to_window(*w.center)
        t = UnitTestTouch(x, y)
        t.touch_down()
        t.touch_up()

    def wait_until(pred, then, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout

        def check(_dt: float) -> None:
            if pred():
                then()
            elif time.monotonic() > deadline:
                report("done", ok=False, why=f"timed out before {then.__name__}")
                app.shutdown()
            else:
                Clock.schedule_once(check, 0.05)

        Clock.schedule_once(check, 0.05)

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
        report(step, route_px=px, deep_link=reply.route.deep_link, qr=f.qr.square)

    def seq(*actions) -> None:
        if actions:
            actions[0]()
            Clock.schedule_once(lambda _dt: seq(*actions[1:]), 0.25)

    def start() -> None:
        report("ready")
        wait_until(lambda: app.bus_up and os.path.exists(go), find_en)

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

    Clock.schedule_once(lambda _dt: start(), 0.5)
    app.run()


if __name__ == "__main__":  # pragma: no cover
    drive(*sys.argv[1:5])
