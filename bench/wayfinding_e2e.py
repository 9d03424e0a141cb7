"""Kiosk product finder end to end on the real bus: a kiosk publishes a ``find`` request, the
agent's finder stage (journey/kiosk_finder.py) searches, routes from the kiosk on the demo
store's map, builds the map payload and the deep link, and the reply arrives at the kiosk. One
request at a time, as a shopper types; the clock runs from publish to the reply's arrival (and
its validation, as the kiosk does it).

Catalogue: the product-search bench's generated SKUs (names in en/de/fr, brand, type, colour,
size), each put at one of the demo planogram's places (demo/data/planogram.csv, on the demo
map), queried by a name with one typo in English or German.

Then the issue's target, to the first frame: the same catalogue, the real kiosk process under
Xvfb asking for the way to each product, the time from its request's publish to the first
drawn frame with the route (bench/kiosk_frames.py). Both figures twice: with TCP_NODELAY (what
the agent, kiosk and shipped broker config do) and with Nagle left on (the baseline).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import random
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.product_search import generate, make_queries
from contracts import topics
from contracts.kiosk_finder import FindRequest, parse_found
from contracts.mqtt import BrokerConfig, no_delay
from edge_agent.app.bus import InStoreBus
from edge_agent.journey.kiosk_finder import KioskFinder
from edge_agent.journey.wayfinding_stage import ScreenWayfinder, load_venue
from edge_agent.wayfinding.planogram_store import PlanogramStore, load_file
from edge_agent.wayfinding.products import Planogram
from testbed.broker import Mosquitto

REPO = Path(__file__).resolve().parents[1]
DEMO_MAP = REPO / "demo" / "store-map.toml"
DEMO_PLANOGRAM = REPO / "demo" / "data" / "planogram.csv"
STORE, KIOSK = "store-bench", "kiosk-1"


def placed(planogram: Planogram, rng: random.Random) -> Planogram:
    """``planogram`` with every product put at one of the demo planogram's places."""
    spots = [p.location for p in load_file(DEMO_PLANOGRAM).products if p.location is not None]
    products = tuple(dataclasses.replace(p, location=rng.choice(spots)) for p in planogram.products)
    return dataclasses.replace(planogram, products=products)


def _pct(xs: list[float]) -> dict[str, float]:
    q = statistics.quantiles(xs, n=100, method="inclusive")
    return {"p50": round(q[49], 2), "p95": round(q[94], 2), "p99": round(q[98], 2)}


def run(quick: bool = False, frames: int | None = None) -> dict[str, Any]:
    """Twice: clients with TCP_NODELAY (what the agent and kiosk do), and paho's default; then
    the same to the kiosk's first frame (``frames`` searches; 20 with ``quick``, else 200)."""
    out = _run(quick, True)
    out["baseline_e2e_ms_with_nagle"] = _run(quick, False)["e2e_ms"]
    n = frames if frames is not None else (20 if quick else 200)
    if n > 0:
        out["to_first_frame"] = _frames(quick, n)
    return out


def _frames(quick: bool, n: int) -> dict[str, Any]:
    """Search -> route -> first frame on the real kiosk, with TCP_NODELAY and with Nagle."""
    from bench.kiosk_frames import WARMUP, measure

    rng = random.Random(16)
    venue, version = load_venue(DEMO_MAP)
    planogram = placed(generate(2_000 if quick else 50_000, rng), rng)
    queries = make_queries(planogram, n + WARMUP, rng)
    db = Path(tempfile.mkdtemp(prefix="bench-frames-")) / "planogram.db"
    store = PlanogramStore(db, STORE)
    store.replace(planogram)
    store.close()
    out: dict[str, Any] = {"searches": n, "warmup": WARMUP}
    for nodelay in (True, False):
        got = measure(STORE, venue, version, db, queries, nodelay, _with_nagle)
        reports = got["reports"][WARMUP:]
        routes = [r for r in reports if r["shown"] == "route"]
        key = "nodelay" if nodelay else "with_nagle"
        if not routes:
            out[key] = {"error": "no frame reported", "kiosk_log": got["log"]}
            continue
        out[key] = {
            "frames": len(reports),
            "routes_drawn": len(routes),
            "reply_ms": _pct([r["reply_ms"] for r in routes]),
            "frame_ms": _pct([r["frame_ms"] for r in routes]),
            "draw_ms": _pct([r["frame_ms"] - r["reply_ms"] for r in routes]),
            "frame_after_reply": all(r["frame_ms"] >= r["reply_ms"] for r in reports),
        }
    fast, slow = out["nodelay"], out["with_nagle"]
    if "frame_ms" in fast and "frame_ms" in slow:
        out["nagle_over_nodelay_p95"] = round(slow["frame_ms"]["p95"] / fast["frame_ms"]["p95"], 1)
        out["goal"] = "search -> route -> first frame p95 < 300 ms"
        out["met"] = fast["frame_ms"]["p95"] < 300
    return out


def _with_nagle(bus: InStoreBus) -> Any:
    start = bus.start

    def started() -> None:
        start()
        assert bus._client is not None
        bus._client.on_socket_open = None  # reconnects keep Nagle too
        sock = bus._client.socket()
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)

    return started


def _run(quick: bool, agent_nodelay: bool) -> dict[str, Any]:
    rng = random.Random(15)
    n_skus, n_queries = (2_000, 60) if quick else (50_000, 400)
    venue, version = load_venue(DEMO_MAP)
    planogram = placed(generate(n_skus, rng), rng)
    queries = make_queries(planogram, n_queries, rng)
    work = Path(tempfile.mkdtemp(prefix="bench-finder-"))
    db = work / "planogram.db"
    store = PlanogramStore(db, STORE)
    store.replace(planogram)
    store.close()

    with Mosquitto(extra_conf="set_tcp_nodelay true\n" if agent_nodelay else "") as broker:
        bus = InStoreBus(BrokerConfig(host=broker.host, port=broker.port), "agent-bench")
        if not agent_nodelay:  # the baseline: paho's default sockets (Nagle on)
            bus.start = _with_nagle(bus)  # type: ignore[method-assign]
        finder = KioskFinder(bus, STORE, ScreenWayfinder(venue, version), db)
        bus.route(topics.kiosk_find(STORE), finder.on_find)
        bus.start()
        assert bus.subscribed.wait(10)
        t0 = time.perf_counter()
        finder.index()
        index_s = time.perf_counter() - t0

        got: dict[str, float] = {}
        replies: dict[str, bytes] = {}
        arrived = threading.Condition()
        kiosk = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        if agent_nodelay:  # as the real kiosk (signage_ui/kiosk.py) does
            no_delay(kiosk)
        subscribed = threading.Event()

        def on_message(_c: object, _u: object, m: mqtt.MQTTMessage) -> None:
            t = time.perf_counter()
            rid = json.loads(m.payload)["request_id"]
            with arrived:
                got[rid], replies[rid] = t, bytes(m.payload)
                arrived.notify_all()

        kiosk.on_message = on_message
        kiosk.on_subscribe = lambda *a: subscribed.set()
        kiosk.connect(broker.host, broker.port)
        kiosk.subscribe(topics.kiosk_found(STORE, KIOSK), qos=1)
        kiosk.loop_start()
        assert subscribed.wait(10)

        e2e: list[float] = []
        stage: list[float] = []
        routed = found = 0
        sizes: list[int] = []
        try:
            for i, (q, sku) in enumerate(queries):
                lang = "de" if i % 2 else "en"
                req = FindRequest(request_id=f"b{i}", query=q, lang=lang)  # type: ignore[arg-type]
                raw = req.model_dump_json().encode()
                sent = time.perf_counter()
                kiosk.publish(topics.kiosk_find(STORE, KIOSK), raw, qos=1)
                with arrived:
                    assert arrived.wait_for(lambda rid=req.request_id: rid in got, 10), q
                reply = parse_found(replies[req.request_id])
                e2e.append((time.perf_counter() - sent) * 1000)
                sizes.append(len(replies[req.request_id]))
                routed += reply.route is not None
                found += any(r.sku == sku for r in reply.results[:3])
                # The stage alone, same request, in this thread: what the worker spends.
                s0 = time.perf_counter()
                finder.answer(KIOSK, req)
                stage.append((time.perf_counter() - s0) * 1000)
        finally:
            kiosk.loop_stop()
            kiosk.disconnect()
            bus.stop()
            finder.close()

    return {
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "skus": n_skus,
        "requests": n_queries,
        "index_build_s": round(index_s, 2),
        "e2e_ms": _pct(e2e),
        "stage_ms": _pct(stage),
        "reply_bytes_p95": int(statistics.quantiles(sizes, n=20)[18]),
        "routed": routed,
        "found_at_3": found,
        "goal": "e2e p95 < 300 ms",
        "met": _pct(e2e)["p95"] < 300,
    }
