"""Search -> route -> first frame on the real kiosk: the kiosk process (signage_ui/kiosk.py, a
real Kivy window on a private Xvfb) publishes ``find`` requests on a real mosquitto, the agent's
KioskFinder answers, the kiosk draws the way (map, route, steps, QR code) and, once the window
has flipped the first frame showing it, publishes ``{"request_id", "shown", "reply_ms",
"frame_ms"}`` on its own state topic (contracts/topics.py ``kiosk_state``). Both times are the
kiosk's own clock from the moment it publishes the request: no clocks compared across processes.

Each search asks for the way to the product it looks for (``route_to``: what a tap on a result
does), one at a time as a shopper would. The first WARMUP searches (first textures, first map
draw) are not counted. Run as a script, this file is the kiosk's driver.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contracts import topics
from contracts.mqtt import BrokerConfig
from edge_agent.app.bus import InStoreBus
from edge_agent.journey.kiosk_finder import KioskFinder
from edge_agent.journey.wayfinding_stage import ScreenWayfinder
from edge_agent.wayfinding.model import VenueMap
from testbed.broker import Mosquitto
from testbed.display import Xvfb, kivy_env
from testbed.procs import terminate

KIOSK = "kiosk-1"
WARMUP = 3
PER_SEARCH_S = 10.0


def measure(
    store: str,
    venue: VenueMap,
    version: str,
    db: Path,
    queries: list[tuple[str, str]],
    nodelay: bool,
    with_nagle: Any,
) -> dict[str, Any]:
    """One run: broker, agent stage, kiosk process; the kiosk's reports for ``queries``."""
    work = Path(tempfile.mkdtemp(prefix="bench-kiosk-frames-"))
    cfg = work / "kiosk.toml"
    qfile = work / "queries.json"
    qfile.write_text(json.dumps(queries))
    reports: list[dict[str, Any]] = []
    lock = threading.Condition()
    with (
        Mosquitto(extra_conf="set_tcp_nodelay true\n" if nodelay else "") as broker,
        Xvfb("1024x600x24") as display,
    ):
        cfg.write_text(
            f'[store]\nstore_id = "{store}"\ndevice_id = "box-1"\n\n'
            '[[zones]]\nid = "entrance"\n\n'
            '[[screens]]\nid = "door"\nzone = "entrance"\nwidth = 640\nheight = 360\n\n'
            '[ble]\nsource = "bleak"\nzone = "entrance"\n\n'
            '[downlink]\nops_public_key = "not-used-by-the-kiosk"\n\n'
            f'[bus]\nhost = "{broker.host}"\nport = {broker.port}\n\n'
            f'[paths]\nstate_dir = "{work / "var"}"\n'
        )
        bus = InStoreBus(BrokerConfig(host=broker.host, port=broker.port), "agent-bench-frames")
        if not nodelay:
            bus.start = with_nagle(bus)  # type: ignore[method-assign]
        finder = KioskFinder(bus, store, ScreenWayfinder(venue, version), db)
        bus.route(topics.kiosk_find(store), finder.on_find)
        watcher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        subscribed = threading.Event()

        def on_message(_c: object, _u: object, m: mqtt.MQTTMessage) -> None:
            with lock:
                reports.append(json.loads(m.payload))
                lock.notify_all()

        watcher.on_message = on_message
        watcher.on_subscribe = lambda *a: subscribed.set()
        proc: subprocess.Popen[bytes] | None = None
        log = open(work / "kiosk.log", "wb")  # noqa: SIM115 - closed below
        try:
            bus.start()
            assert bus.subscribed.wait(10)
            finder.index()
            watcher.connect(broker.host, broker.port)
            watcher.subscribe(topics.kiosk_state(store, KIOSK), qos=1)
            watcher.loop_start()
            assert subscribed.wait(10)
            env = kivy_env(display, work / "kivy-home")
            env["PYTHONPATH"] = os.pathsep.join(sys.path)
            mode = "nodelay" if nodelay else "nagle"
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.kiosk_frames", str(cfg), str(qfile), mode],
                cwd=Path(__file__).resolve().parents[1],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 60 + PER_SEARCH_S * len(queries)
            with lock:
                lock.wait_for(
                    lambda: (
                        len(reports) >= len(queries)
                        or proc is None
                        or proc.poll() is not None
                        or time.monotonic() > deadline
                    ),
                    timeout=60 + PER_SEARCH_S * len(queries),
                )
            if proc.poll() is None:
                proc.wait(15)
        finally:
            terminate(proc)
            log.close()
            watcher.loop_stop()
            watcher.disconnect()
            bus.stop()
            finder.close()
    return {"reports": reports, "log": (work / "kiosk.log").read_text(errors="replace")[-2000:]}


# ---- the driver: runs inside the kiosk's own process -------------------------------------------


def drive(cfg_path: str, queries_path: str, mode: str) -> None:  # pragma: no cover
    from signage_ui.cli import _kivy_window

    _kivy_window(1024, 600)
    from kivy.clock import Clock

    import signage_ui.kiosk as kiosk_module
    from edge_agent.config import load_config

    if mode == "nagle":  # the baseline: paho's default socket, as before the fix
        kiosk_module.no_delay = lambda client: client  # type: ignore[assignment]
    cfg = load_config(cfg_path)
    app = kiosk_module.KioskApp(cfg, KIOSK, bus=cfg.bus)
    queries = [tuple(q) for q in json.loads(Path(queries_path).read_text())]
    todo = list(queries)
    watchdog: list[Any] = []

    def next_search(*_a: object) -> None:
        for w in watchdog:
            w.cancel()
        watchdog.clear()
        if not todo:
            Clock.schedule_once(lambda _dt: app.shutdown(), 0.3)
            return
        q, sku = todo.pop(0)
        f = app.finder
        f.shown_sku = sku  # as a tap on the result: the way to this product
        f.search(q, route_to=sku)
        watchdog.append(Clock.schedule_once(next_search, PER_SEARCH_S))

    def start(_dt: float) -> None:
        if not app.bus_up:
            Clock.schedule_once(start, 0.05)
            return
        app.go("find")
        f = app.finder
        publish = f.shown

        def shown(state: dict[str, object]) -> None:
            assert publish is not None
            publish(state)  # on the kiosk's state topic, as in the store
            Clock.schedule_once(next_search, 0.05)  # the next shopper's search

        f.shown = shown
        next_search()

    Clock.schedule_once(start, 0.3)
    app.run()


if __name__ == "__main__":  # pragma: no cover
    drive(*sys.argv[1:4])
