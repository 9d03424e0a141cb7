"""The in-store bus publishes from its first on_connect: a network thread that connects before
``start()`` returns must not lose what the connect hooks publish (the agent's open alerts, sent
again for a broker that restarted without its retained messages)."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest

from contracts.mqtt import BrokerConfig
from edge_agent.app.bus import InStoreBus
from tests.signage_ui.test_signage_screen import STORE, Recorder
from tests.watching import wait_for

TOPIC = f"instore/{STORE}/alerts/a-1"


@pytest.mark.timeout(60)
def test_what_the_first_connect_publishes_reaches_the_broker(
    broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook_ran = threading.Event()
    published: list[bool] = []
    bus = InStoreBus(BrokerConfig(host=broker.host, port=broker.port), "agent-bus-first-connect")

    def republish() -> None:
        published.append(bus.publish(TOPIC, b'{"open": true}', retain=True))
        hook_ran.set()

    bus.route(f"instore/{STORE}/alert-acks", lambda topic, payload: None)
    bus.on_connected(republish)
    # The worst ordering, made certain: paho's thread connects (and runs the hooks) before
    # loop_start() returns to start().
    start = mqtt.Client.loop_start

    def loop_start_then_connect(self: mqtt.Client) -> mqtt.MQTTErrorCode:
        rc = start(self)
        assert hook_ran.wait(20), "never connected"
        return rc

    monkeypatch.setattr(mqtt.Client, "loop_start", loop_start_then_connect)
    bus.start()
    monkeypatch.undo()
    watch = Recorder(broker.host, broker.port)
    try:
        assert published == [True]
        assert wait_for(lambda: any(t == TOPIC for _, t, _ in watch.msgs), 10)
    finally:
        watch.close()
        bus.stop()
