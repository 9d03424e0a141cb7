"""Hostile input on every topic the agent listens to, on real parts: a running agent, a real
mosquitto, the real uplink and a CDP sink. After hostile messages (empty, huge, binary, bad UTF-8,
NaN, deep nesting, wrong shapes, valid JSON of the wrong type; retained too), sent as a burst on
each topic, a probe event still travels bus -> outbox -> uplink -> CDP, and the agent says what it
dropped."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contracts import topics
from contracts.events import ContentImpression, Conversion, ZoneEntered, make_event
from contracts.signing import generate_keypair
from edge_agent.app.agent import Agent
from edge_agent.clock import SystemClock
from tests.app.test_agent_journey import demo_config
from tests.app.test_agent_process import cdp_sink
from tests.watching import wait_for

SCREEN = "screen-entrance"

CORPUS: dict[str, bytes] = {
    "empty": b"",
    "huge": b'{"pad": "' + b"x" * 2_000_000 + b'"}',
    "binary": bytes(range(256)) * 8,
    "bad utf-8": b'{"status": "\xff\xfe\xfd"}',
    "nan": b'{"status": NaN, "people": Infinity}',
    "deep list": b"[" * 200_000,
    "deep object": b'{"a":' * 100_000,
    "deep but closed": b"[" * 5_000 + b"]" * 5_000,
    "wrong shape": b'{"specversion": "1.0", "id": 7, "data": []}',
    "wrong type": b'"just a string"',
    "number": b"1e999",
    "null": b"null",
}


class Quiet:
    """A BLE source that hears nothing: the probes come over the bus."""

    async def run(self, callback) -> None:
        await asyncio.Event().wait()


class Ops:
    def __init__(self, host: str, port: int) -> None:
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.connect(host, port)
        self.c.loop_start()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def probe(store: str, device: str, n: int) -> tuple[str, bytes]:
    now = datetime.now(UTC)
    ev = make_event(
        ContentImpression(
            impression_id=f"probe-{n}",
            screen_id=SCREEN,
            content_id="probe",
            variant="default",
            start=now,
            end=now,
            duration_s=0.0,
        ),
        store_id=store,
        device_id=device,
    )
    return ev.id, ev.to_json().encode()


@pytest.mark.timeout(300)
def test_no_message_on_any_topic_silences_the_agent(tmp_path: Path, broker) -> None:
    cfg = demo_config(tmp_path, broker.port, generate_keypair()[1], camera=False)
    store, device = cfg.store.store_id, cfg.store.device_id
    ops = Ops(broker.host, broker.port)
    state_topic = topics.screen_state(store, SCREEN)
    # A retained poison before the agent even starts: it is delivered at every (re)subscribe.
    ops.publish(state_topic, CORPUS["deep list"], retain=True)
    targets = {
        "screen events": topics.screen_events(store, SCREEN),
        "kiosk events": topics.kiosk_events(store, "kiosk-1"),
        "kiosk find": topics.kiosk_find(store, "kiosk-1"),
        "screen state": state_topic,
        "screenshot": topics.screen_screenshot(store, SCREEN),
        "screen errors": topics.screen_errors(store, SCREEN),
        "receipts": topics.pos_receipts(store),
        "scanner adverts": topics.scanner_adverts(store, "node-1"),
        "mmwave": topics.mmwave(store, "entrance", "radar-1"),
        "alert acks": topics.alert_acks(store),
        "alerts": topics.alerts(store, "a-1"),
        "delivered": topics.delivered(store, device),
        "downlink": topics.device_cmd(store, device, "campaigns"),
        "store downlink": topics.store_cmd(store, "command"),
    }
    agent = Agent(cfg, clock=SystemClock(), ble_source=Quiet())
    took: list[float] = []
    with cdp_sink(broker, tmp_path) as sink:
        runner = threading.Thread(target=lambda: asyncio.run(agent.run()), daemon=True)
        try:
            agent.start_sync()
            runner.start()
            assert agent.bus.subscribed.wait(10), "the agent's bus never subscribed"
            n = 0

            def send_probe() -> float:
                nonlocal n
                n += 1
                event_id, body = probe(store, device, n)
                sent = time.monotonic()
                ops.publish(topics.screen_events(store, SCREEN), body)
                assert wait_for(lambda: event_id in sink.ids(), 15, step=0.01), f"probe {n} lost"
                return time.monotonic() - sent

            send_probe()  # the agent is up, the retained poison has been delivered
            # The whole corpus as one burst on each topic, then a probe: a burst is harsher
            # than one message at a time, and 14 probes instead of 168 keep CI fast.
            for where, topic in targets.items():
                for what, payload in CORPUS.items():
                    retain = where == "screen state" and what == "deep object"
                    ops.publish(topic, payload, retain=retain)
                took.append(send_probe())
                assert runner.is_alive(), f"the agent stopped after the corpus on {where}"
            # Every link is still alive, and the watchdog would say so.
            assert agent.bus.network_alive and agent.bus.is_connected()
            assert agent.uplink is not None and agent.uplink.network_alive
            assert agent.downlink is not None and agent.downlink.network_alive
            problems = agent.supervisor.snapshot.problems if agent.supervisor else ["no watchdog"]
            assert problems == [], problems
            # What could not be read was counted, not silently swallowed.
            assert agent.inbox.counts.dropped.get("invalid", 0) >= len(CORPUS) * 2 - 2
            assert agent.stats.bus_advert_rejects >= len(CORPUS) - 1
            assert agent.receipts.refused >= len(CORPUS) - 1
        finally:
            agent.stop()
            runner.join(15)
            agent.close(flush_timeout_s=5)
            ops.publish(state_topic, b"", retain=True)  # delete the retained poison
            ops.close()
    took.sort()
    p50, p95 = statistics.median(took), took[int(len(took) * 0.95)]
    print(
        f"{len(took)} probes after hostile messages: p50 {p50:.3f}s p95 {p95:.3f}s max {took[-1]:.3f}s"
    )
    # Within a second here (p95 0.41 s); CI machines run loaded, so they get twice that.
    assert p95 < (2.0 if os.environ.get("CI") else 1.0), f"p95 {p95:.2f}s"


@pytest.mark.timeout(120)
def test_a_bus_client_cannot_add_fields_or_event_types_that_reach_the_cdp(
    tmp_path: Path, broker
) -> None:
    cfg = demo_config(tmp_path, broker.port, generate_keypair()[1], camera=False)
    store, device = cfg.store.store_id, cfg.store.device_id
    ops = Ops(broker.host, broker.port)
    agent = Agent(cfg, clock=SystemClock(), ble_source=Quiet())
    with cdp_sink(broker, tmp_path) as sink:
        runner = threading.Thread(target=lambda: asyncio.run(agent.run()), daemon=True)
        try:
            agent.start_sync()
            runner.start()
            assert agent.bus.subscribed.wait(10), "the agent's bus never subscribed"
            # A fake player: a valid impression with fields of its own, and a subject.
            imp_id, body = probe(store, device, 1)
            doc = json.loads(body)
            doc.update(phone_mac="AA:BB:CC:DD:EE:FF", email="alice@example.com", subject="p-1")
            ops.publish(topics.screen_events(store, SCREEN), json.dumps(doc).encode())
            # And event types only the agent may emit, with this box's source.
            forged = [
                make_event(
                    Conversion(receipt_id="R-FAKE", amount=999.0),
                    store_id=store,
                    device_id=device,
                ),
                make_event(
                    ZoneEntered(zone_id="entrance", presence_key="0" * 16, profile_id="cdp-p-1001"),
                    store_id=store,
                    device_id=device,
                ),
            ]
            for ev in forged:
                ops.publish(topics.kiosk_events(store, "kiosk-1"), ev.to_json().encode())
            _, body2 = probe(store, device, 2)
            ops.publish(topics.screen_events(store, SCREEN), body2)  # the last one, to wait on
            last = json.loads(body2)["id"]
            assert wait_for(lambda: last in sink.ids(), 15), "the probe never reached the CDP"
            stored = {
                r[0]: json.loads(r[1])
                for r in sink._db.execute(
                    "SELECT id, body FROM events WHERE store_id = ?", (store,)
                )
            }
            assert imp_id in stored, agent.inbox.counts
            assert {"phone_mac", "email", "subject"}.isdisjoint(stored[imp_id])
            assert "alice@example.com" not in json.dumps(list(stored.values()))
            assert not any(ev.id in stored for ev in forged)
            dropped = agent.inbox.counts.dropped
            assert dropped.get(f"type:{forged[0].type}") == 1
            assert dropped.get(f"type:{forged[1].type}") == 1
            assert dropped.get("extra fields") == 1
        finally:
            agent.stop()
            runner.join(15)
            agent.close(flush_timeout_s=5)
            ops.close()
