"""Scanner nodes and mmWave sensors on the in-store bus (ESPHome's MQTT output, see
edge_agent/box/firmware.py): their adverts take the same path as the UART's, under the node's name."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from pathlib import Path

import pytest

from contracts import topics
from contracts.signing import generate_keypair
from demo import scenario
from edge_agent.app.agent import Agent
from edge_agent.clock import ScaledClock
from edge_agent.sensing.ble.sources import ReplaySource
from tests.app.test_agent_journey import DEMO, BusRecorder, demo_config
from tests.watching import wait_for


@pytest.mark.timeout(60)
def test_scanner_node_adverts_and_mmwave_over_the_bus(tmp_path: Path, broker) -> None:
    cfg = demo_config(tmp_path, broker.port, generate_keypair()[1], camera=False)
    store = cfg.store.store_id
    clock = ScaledClock(scenario.T0, 1.0)
    agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
    heard: list = []
    local_on_advert = agent.presence.on_advert

    def on_advert(advert) -> None:
        if advert.receiver != "local":
            heard.append(advert)
        local_on_advert(advert)

    agent.presence.on_advert = on_advert  # type: ignore[method-assign]
    with gzip.open(DEMO / "data" / "trace.jsonl.gz", "rt") as fh:
        lines = [json.loads(next(fh)) for _ in range(20)]
    for line in lines:
        line.pop("ts")  # an ESP32 has no wall clock: the box stamps what it receives
        line["receiver"] = "node-entrance-2"  # a node cannot speak for another: the topic wins
    occupancy = BusRecorder(broker.host, broker.port, topics.zone_occupancy(store, "womens"))

    def node() -> None:
        # The agent runs and the broker has granted its routes (a node's advert sent earlier
        # would reach nobody).
        assert wait_for(lambda: agent.presence.loop is not None, 20)
        assert agent.bus.subscribed.wait(20)
        c = occupancy.c
        for line in lines:
            c.publish(topics.scanner_adverts(store, "node-womens-1"), json.dumps(line), qos=1)
        c.publish(topics.scanner_adverts(store, "node-womens-1"), b"\x00garbage", qos=1)
        c.publish(topics.mmwave(store, "womens", "mmwave-1"), b"ON", qos=1)

    t = threading.Thread(target=node, daemon=True)
    try:
        agent.start_sync()
        t.start()
        asyncio.run(agent.run(until=scenario.T0 + 4))
    finally:
        t.join(5)
        agent.close(flush_timeout_s=2)
        occupancy.close()
    assert agent.stats.bus_adverts == 20 and agent.stats.bus_advert_rejects == 1
    assert len(heard) == 20 and {a.receiver for a in heard} == {"node-womens-1"}
    assert all(scenario.T0 <= a.timestamp <= scenario.T0 + 5 for a in heard)
    assert [a.address for a in heard] == [line["address"] for line in lines]
    # Nobody's phone is in womenswear, but the radar sees someone: the kiosk shows at least one.
    assert any(m["people"] >= 1 for m in occupancy.messages)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_refused_node_logins_reach_central_in_the_agents_health(tmp_path: Path) -> None:
    """The agent on the box's own mosquitto (shipped config + the rendered node listener): a node
    with a wrong password is refused, and the agent's next heartbeat says so at central."""
    from tests.box.test_node_bus import Node, start_store_broker

    broker, _secrets = start_store_broker(tmp_path)
    node: Node | None = None
    health = None
    try:
        cfg = demo_config(tmp_path, broker.port, generate_keypair()[1], camera=False)
        store, device = cfg.store.store_id, cfg.store.device_id
        # 10x: the heartbeats at T0 and T0 + 30 s are 3 s apart.
        clock = ScaledClock(scenario.T0, 10.0)
        agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
        health = BusRecorder(broker.host, broker.port, topics.health(store, device))

        def intruder() -> None:
            nonlocal node
            assert agent.bus.subscribed.wait(20)
            node = Node(broker.lan_port, "node-womens-1", "not-its-password")
            assert node.answered.wait(10) and node.reason == "Not authorized"

        t = threading.Thread(target=intruder, daemon=True)
        try:
            agent.start_sync()
            t.start()
            asyncio.run(agent.run(until=scenario.T0 + 31))
        finally:
            t.join(5)
            agent.close(flush_timeout_s=2)
        assert node is not None and node.reason == "Not authorized"
        assert agent.bus_auth.refused == 1
        assert wait_for(
            lambda: any(
                m["sensors"].get("bus_nodes_refused") == "1" for m in list(health.messages)
            ),
            10,
        ), [m["sensors"].get("bus_nodes_refused") for m in health.messages]
    finally:
        if node is not None:
            node.close()
        if health is not None:
            health.close()
        broker.cleanup()
