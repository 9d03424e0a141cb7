"""The local store API under a rush of phones: 200 phones (each its own source address on the
loopback network, so each has its own rate-limit bucket, as on shop Wi-Fi) ask for routes to
products at once, over real HTTP to the real `edge-agent api` process on the demo store.
Every phone first joins (connects and asks for the beacons, not counted), then all ask at once.
The client runs on the same machine as the server, so the figures include its CPU. Reports
per-request latency p50/p99, what was dropped or refused, and, side by side, the route
computed in process with the map's navigation graph cached (what the API does) against the naive
way (the graph built for each request, as running `map route` per request would).
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from demo import scenario
from testbed.broker import free_port
from testbed.procs import terminate

REPO = Path(__file__).resolve().parents[1]
EXE = os.path.join(os.path.dirname(sys.executable), "edge-agent")
PHONES = 200


def _pct(xs: list[float]) -> dict[str, float]:
    q = statistics.quantiles(xs, n=100, method="inclusive")
    return {"p50": round(q[49], 2), "p99": round(q[98], 2), "max": round(max(xs), 2)}


def _config(tmp: Path) -> Path:
    from demo.runner import build_config, write_runtime_toml
    from edge_agent.wayfinding.planogram_store import PlanogramStore, load_file

    cfg = build_config(tmp, "127.0.0.1", free_port(), "bm90LXVzZWQ=", 1.0)
    path = tmp / "store.toml"
    write_runtime_toml(cfg, path)
    store = PlanogramStore(cfg.paths_resolved.state_dir / "planogram.db", cfg.store.store_id)
    store.replace(load_file(scenario.PLANOGRAM, version=1))
    store.close()
    return path


async def _phone(i: int, base: str, skus: list[str], rounds: int, out: dict[str, Any]) -> None:
    transport = httpx.AsyncHTTPTransport(local_address=f"127.0.{1 + i // 250}.{1 + i % 250}")
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=30) as client:
        # The phone joins (TCP connect, first answer): not counted, a phone keeps its connection.
        try:
            await client.get("/v1/beacons")
        except httpx.HTTPError as exc:
            out["errors"].append(type(exc).__name__)
        out["joined"] += 1
        while out["joined"] < out["phones"]:
            await asyncio.sleep(0.01)
        for r in range(rounds):
            sku = skus[(i + r) % len(skus)]
            params = {"from": "kiosk:kiosk-1", "to": f"sku:{sku}", "lang": "de" if i % 2 else "en"}
            t0 = time.perf_counter()
            try:
                resp = await client.get("/v1/route", params=params)
            except httpx.HTTPError as exc:
                out["errors"].append(type(exc).__name__)
                continue
            out["ms"].append((time.perf_counter() - t0) * 1000)
            out["status"][resp.status_code] = out["status"].get(resp.status_code, 0) + 1


def _in_process(rounds: int) -> dict[str, Any]:
    from edge_agent.wayfinding.graph import build_graph
    from edge_agent.wayfinding.plan import author, load_plan
    from edge_agent.wayfinding.planogram_store import load_file
    from edge_agent.wayfinding.product_places import MapPlaces
    from edge_agent.wayfinding.route import plan_route, resolve_ref

    plan, layout = load_plan(REPO / "demo" / "store-map.toml")
    _, result, _, _ = author(plan, layout)
    venue = result.venue
    assert venue is not None
    products = load_file(scenario.PLANOGRAM).by_sku()
    resolve = {"sku": MapPlaces(venue, 1).resolver(products)}
    routable = [s for s, p in products.items() if p.location is not None]
    graph = build_graph(venue)
    cached, naive = [], []
    for r in range(rounds):
        to = f"sku:{routable[r % len(routable)]}"
        t0 = time.perf_counter()
        plan_route(graph, resolve_ref(venue, "kiosk:kiosk-1"), resolve_ref(venue, to, resolve))
        cached.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        g = build_graph(venue)
        plan_route(g, resolve_ref(venue, "kiosk:kiosk-1"), resolve_ref(venue, to, resolve))
        naive.append((time.perf_counter() - t0) * 1000)
    ours, base = _pct(cached), _pct(naive)
    return {
        "routes": rounds,
        "graph_cached_ms": ours,
        "graph_per_request_ms": base,
        "p99_ratio": round(base["p99"] / ours["p99"], 1),
    }


def run(quick: bool = False) -> dict[str, Any]:
    from edge_agent.wayfinding.planogram_store import load_file

    phones = 40 if quick else PHONES
    rounds = 3 if quick else 10
    skus = [p.sku for p in load_file(scenario.PLANOGRAM).products if p.location is not None]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(Path(tmp))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(Path(tmp) / "api.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [EXE, "api", "-c", str(cfg), "--port", str(port), "--rate", "50", "--burst", "50"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((Path(tmp) / "api.log").read_text()[-2000:])
                time.sleep(0.1)
            httpx.get(f"{base}/v1/route", params={"from": "kiosk:kiosk-1", "to": "Pickup"})
            out: dict[str, Any] = {"ms": [], "status": {}, "errors": [], "joined": 0}
            out["phones"] = phones

            async def rush() -> None:
                await asyncio.gather(*(_phone(i, base, skus, rounds, out) for i in range(phones)))

            t0 = time.perf_counter()
            asyncio.run(rush())
            wall = time.perf_counter() - t0
        finally:
            terminate(proc)
            log.close()
    sent = phones * rounds
    return {
        "bench": "store-api",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "phones": phones,
        "requests": sent,
        "answered_200": out["status"].get(200, 0),
        "status": {str(k): v for k, v in sorted(out["status"].items())},
        "dropped": sent - len(out["ms"]),
        "errors": sorted(set(out["errors"])),
        "route_latency_ms": _pct(out["ms"]),
        "throughput_per_s": round(len(out["ms"]) / wall, 1),
        "in_process": _in_process(60 if quick else 300),
    }
