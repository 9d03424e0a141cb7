"""Routes asked per destination per hour (issue 16, "Privacy"): the only trace a phone leaves.
The counting is pure and property-tested; end to end, a real `edge-agent api` process answers
real HTTP route requests, sends its counts over a real mosquitto when it stops, and a running
agent journals them to a CDP sink: destination, hour and count, nothing of the phone."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from contracts.signing import generate_keypair
from demo import scenario
from edge_agent.app.agent import Agent
from edge_agent.clock import SystemClock
from edge_agent.store_api.route_counts import (
    HOUR_S,
    MAX_DESTINATIONS_PER_HOUR,
    OTHER,
    RouteCounts,
)
from edge_agent.wayfinding.planogram_store import PlanogramStore, load_file
from testbed.broker import free_port
from testbed.procs import terminate
from tests.app.test_agent_journey import demo_config
from tests.app.test_agent_process import cdp_sink
from tests.app.test_hostile_input import Quiet
from tests.watching import wait_for

EXE = os.path.join(os.path.dirname(sys.executable), "edge-agent")
T = 1_800_000_000.0  # an hour boundary: 2027-01-15 08:00 UTC
assert T % HOUR_S == 0


def test_closed_hours_go_the_current_one_stays_and_stop_marks_it_partial() -> None:
    c = RouteCounts()
    c.record("sku:A", False, T + 10)
    c.record("sku:A", True, T + 20)
    c.record("Aisle 4", False, T + HOUR_S + 5)
    assert c.closed(T + HOUR_S - 1) == []  # the first hour has not ended
    (first,) = c.closed(T + HOUR_S + 30)
    assert (first.destination, first.count, first.accessible, first.partial) == (
        "sku:A",
        2,
        1,
        False,
    )
    assert first.hour == datetime.fromtimestamp(T, UTC)
    (rest,) = c.drain(T + HOUR_S + 60)
    assert (rest.destination, rest.count, rest.partial) == ("Aisle 4", 1, True)
    assert c.drain(T + 2 * HOUR_S) == []


def test_destinations_per_hour_are_bounded() -> None:
    c = RouteCounts()
    for i in range(MAX_DESTINATIONS_PER_HOUR + 50):
        c.record(f"sku:{i}", False, T + 1)
    rows = c.drain(T + 2)
    assert len(rows) == MAX_DESTINATIONS_PER_HOUR + 1
    assert {r.count for r in rows if r.destination == OTHER} == {50}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["sku:A", "sku:B", "Aisle 4"]),
            st.booleans(),
            st.floats(0, 3 * HOUR_S, allow_nan=False),
            st.booleans(),  # send now (closed hours), and the send fails: put back
        ),
        max_size=60,
    )
)
@example(steps=[("sku:A", False, 10799.999999999998, False)])  # rounds onto the next hour
def test_every_route_is_counted_once_whatever_fails(steps) -> None:
    c = RouteCounts()
    sent = []
    for dest, acc, dt, fail in sorted(steps, key=lambda s: s[2]):
        c.record(dest, acc, T + dt)
        rows = c.closed(T + dt)
        if fail:
            c.put_back(rows)
        else:
            sent += rows
    sent += c.drain(T + 3 * HOUR_S + 1)
    assert sum(r.count for r in sent) == len(steps)
    assert sum(r.accessible for r in sent) == sum(1 for s in steps if s[1])
    by_key: dict[tuple[datetime, str], int] = {}
    for r in sent:
        by_key[(r.hour, r.destination)] = by_key.get((r.hour, r.destination), 0) + r.count
    for dest, _acc, dt, _f in steps:
        # The hour of the instant the counter was given (T + dt rounds: 10799.999... s after
        # T may be T + 3 h exactly).
        hour = (T + dt) // HOUR_S * HOUR_S
        assert by_key[(datetime.fromtimestamp(hour, UTC), dest)] >= 1


@pytest.mark.timeout(120)
def test_an_api_that_stops_sends_its_counts_and_the_agent_journals_them(
    tmp_path: Path, broker
) -> None:
    from demo.runner import write_runtime_toml

    cfg = demo_config(tmp_path, broker.port, generate_keypair()[1], camera=False)
    store, device = cfg.store.store_id, cfg.store.device_id
    path = tmp_path / "store.toml"
    write_runtime_toml(cfg, path)
    planograms = PlanogramStore(cfg.paths_resolved.state_dir / "planogram.db", store)
    planograms.replace(load_file(scenario.PLANOGRAM, version=3))
    planograms.close()
    agent = Agent(cfg, clock=SystemClock(), ble_source=Quiet())
    port = free_port()
    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115
    api = subprocess.Popen(
        [EXE, "api", "-c", str(path), "--port", str(port), "--count-interval", "0.2"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    with cdp_sink(broker, tmp_path) as sink:
        runner = threading.Thread(target=lambda: asyncio.run(agent.run()), daemon=True)
        try:
            agent.start_sync()
            runner.start()

            def up() -> bool:
                try:
                    return http.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    return False

            assert wait_for(up, 30), (tmp_path / "api.log").read_text()
            asked = [
                ({"from": "kiosk:kiosk-1", "to": "sku:SKU-RIDGE-GTX-42"}, 200),
                ({"from": "kiosk:kiosk-1", "to": "sku:SKU-RIDGE-GTX-42", "lang": "de"}, 200),
                ({"from": "screen:screen-entrance", "to": "sku:SKU-RIDGE-GTX-42"}, 200),
                ({"from": "kiosk:kiosk-1", "to": "sku:SKU-PACK-30L", "accessible": "true"}, 200),
                ({"from": "kiosk:kiosk-1", "to": "Aisle 99"}, 404),  # not answered: not counted
            ]
            for params, status in asked:
                assert http.get("/v1/route", params=params).status_code == status, params
            terminate(api)  # SIGTERM: uvicorn stops, the counts go (the hour marked partial)
            log.close()

            def rows() -> list[dict]:
                got = sink._db.execute(
                    "SELECT body FROM events WHERE type LIKE '%routes_asked.v1'"
                ).fetchall()
                return [json.loads(b)["data"] for (b,) in got]

            assert wait_for(lambda: len(rows()) == 2, 20), (tmp_path / "api.log").read_text()
            got, sources = rows(), sink._db.execute("SELECT body FROM events").fetchall()
        finally:
            http.close()
            terminate(api)
            agent.stop()
            runner.join(15)
            agent.close(flush_timeout_s=5)
    by_dest = {r["destination"]: r for r in got}
    assert by_dest["sku:SKU-RIDGE-GTX-42"]["count"] == 3
    assert by_dest["sku:SKU-PACK-30L"]["count"] == 1
    assert by_dest["sku:SKU-PACK-30L"]["accessible"] == 1
    assert all(r["partial"] for r in by_dest.values())
    # Nothing of the phone: no origin, no language, no address, only these fields.
    assert {tuple(sorted(r)) for r in by_dest.values()} == {
        ("accessible", "count", "destination", "hour", "partial")
    }
    assert "kiosk" not in json.dumps(list(by_dest.values()))
    assert all(device in json.loads(b)["source"] for (b,) in sources)
