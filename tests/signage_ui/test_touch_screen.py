"""Touch on a screen that has it (``touch = true``): a tap on an offer opens its details (the
card alone and larger, with its QR code and the way to its shelf), the loop holds while they
are open, and a quiet time (``touch_idle_s``) closes them; each tap and close is an interaction
event on the screen's events topic, through the impressions' outbox, naming no one. The real
player under Xvfb, driven by Kivy's UnitTestTouch from inside its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from contracts.events import ContentInteraction, parse_event
from contracts.screen_protocol import Content, PlaylistItem
from signage_ui.assets import AssetCache
from testbed.procs import terminate
from tests.signage_ui.test_signage_screen import Recorder, config, write_playlist
from tests.signage_ui.test_wayfinding_screen import demo_map, payload
from tests.watching import wait_for

pytestmark = [pytest.mark.ui, pytest.mark.timeout(90)]

IDLE_S = 1.5


def offer() -> Content:
    return Content(
        content_id="offer:ridge",
        campaign_id="ridge-gtx",
        variant="anonymous",
        rule="everyone",
        title="Ridge GTX trail shoe",
        body="Waterproof and light: try a pair today.",
        price=89.0,
        was_price=119.0,
        qr_url="https://northwind.example/p/SKU-RIDGE-GTX-42",
        ticker="Open until 8 pm · Free coffee at the till",
        wayfinding=payload(demo_map(), "screen-entrance", "sku:SKU-RIDGE-GTX-42"),
    )


def test_a_tap_opens_the_details_and_a_quiet_time_closes_them(
    tmp_path: Path, kivy_env: dict[str, str], broker
) -> None:
    cache = AssetCache(tmp_path / "content")
    other = Content(content_id="offer:coffee", title="Free coffee for members")
    write_playlist(
        cache.root,
        [PlaylistItem(content=offer(), duration_s=4.0), PlaylistItem(content=other)],
    )
    sid = f"touch-{uuid.uuid4().hex[:6]}"
    screens = [
        {
            "id": sid, "zone": "entrance", "width": 960, "height": 540,
            "touch": True, "touch_idle_s": IDLE_S,
        }
    ]  # fmt: skip
    cfg = config(tmp_path, broker.port, screens)
    results = tmp_path / "results.jsonl"
    bus = Recorder(broker.host, broker.port)
    log = open(tmp_path / "touch.log", "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [sys.executable, __file__, str(cfg), sid, str(results)],
        env={**kivy_env, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def steps() -> dict[str, dict]:
        if not results.exists():
            return {}
        return {r["step"]: r for r in map(json.loads, results.read_text().splitlines())}

    def player_log() -> str:
        return (tmp_path / "touch.log").read_text(errors="replace")

    def interactions() -> list[ContentInteraction]:
        # At least once, as impressions are (the CDP drops a second copy by its id).
        out: dict[str, ContentInteraction] = {}
        for raw in bus.json_on(f"/screens/{sid}/events"):
            data = parse_event(raw).payload()
            if isinstance(data, ContentInteraction):
                out[data.interaction_id] = data
        return list(out.values())

    try:
        assert wait_for(lambda: "done" in steps() or proc.poll() is not None, 60), player_log()
        s = steps()
        assert s["done"]["ok"], (s, player_log())
        assert proc.wait(15) == 0, player_log()
        assert wait_for(lambda: len(interactions()) >= 2, 10), player_log()
    finally:
        terminate(proc)
        log.close()
        bus.close()
    # The details: the card alone (no ticker), drawn with its way and its QR code.
    opened = s["opened"]
    assert opened["detail"] == "offer:ridge" and opened["view"] == "WayCard"
    assert opened["ticker"] is False and opened["qr"] is True
    # The loop held while the details were open, and a second tap kept them open.
    assert s["held"]["showing"] == "offer:ridge" and s["held"]["detail"] == "offer:ridge"
    closed = s["closed"]
    # Closed a quiet time after the second tap (0.7 of it in), not after the first.
    assert closed["detail"] is None and closed["open_s"] >= 1.6 * IDLE_S
    # One tap opened, one kept open (said once: a tap on open details is not a new view).
    taps = [i for i in interactions() if i.action == "tap"]
    closes = [i for i in interactions() if i.action == "detail_closed"]
    assert [t.content_id for t in taps] == ["offer:ridge"]
    assert closes and closes[0].content_id == "offer:ridge"
    assert closes[0].detail_s is not None and closes[0].detail_s >= 1.6 * IDLE_S
    # Who touched is never said: the event carries the content's own fields and nothing else.
    assert taps[0].campaign_id == "ridge-gtx" and taps[0].variant == "anonymous"
    assert set(taps[0].model_dump()) == {
        "interaction_id", "screen_id", "content_id", "campaign_id", "variant", "action",
        "detail_s", "rule",
    }  # fmt: skip


# ---- the driver: runs inside the player's own process --------------------------------------


def drive(cfg_path: str, screen: str, results: str) -> None:  # pragma: no cover - subprocess
    import logging
    import time

    from edge_agent.config import load_config
    from signage_ui.cli import _kivy_window

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _kivy_window(960, 540)
    from kivy.clock import Clock

    from signage_ui.player import PlayerApp
    from tests.signage_ui.ui_driver import Driver

    cfg = load_config(cfg_path)
    app = PlayerApp(cfg, screen, bus=cfg.bus)

    drv = Driver(results, app.shutdown)
    report, wait_until = drv.report, drv.wait_until

    def tap() -> None:
        assert app.stage is not None
        drv.touch(app.stage)

    def showing() -> str:
        return app.playback.current.content.content_id

    marks: dict[str, float] = {}

    def start() -> None:
        wait_until(lambda: showing() == "offer:ridge" and app.first_frame_at is not None, opened)

    def opened() -> None:
        tap()
        marks["opened"] = time.monotonic()
        assert app.stage is not None
        front = app.stage.front
        main = [w for w in front.children if w in (front.card, front.way, front.message)]
        report(
            "opened",
            detail=app.detail.content_id if app.detail else None,
            view=type(main[0]).__name__ if main else None,
            ticker=front.ticker.parent is not None,
            qr=bool(front.way.view and front.way.view.qr.matrix),
        )
        # Past the quiet time, a second tap: the details stay open, the loop holds.
        wait_until(lambda: time.monotonic() - marks["opened"] > IDLE_S * 0.7, again)

    def again() -> None:
        tap()
        wait_until(lambda: time.monotonic() - marks["opened"] > IDLE_S * 1.2, held)

    def held() -> None:
        report("held", showing=showing(), detail=app.detail.content_id if app.detail else None)
        wait_until(lambda: app.detail is None, closed)

    def closed() -> None:
        report("closed", detail=None, open_s=time.monotonic() - marks["opened"])
        # The outbox has both events on the bus before the player says goodbye.
        wait_until(lambda: app.impressions.depth() == 0, done)

    def done() -> None:
        report("done", ok=True)
        app.shutdown()

    Clock.schedule_once(lambda _dt: start(), 0.2)
    app.run()


if __name__ == "__main__":  # pragma: no cover
    drive(*sys.argv[1:4])
