from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from testbed.broker import Mosquitto, port_open


def test_broker_carries_a_message(broker: Mosquitto) -> None:
    got = threading.Event()
    received: list[bytes] = []

    def on_message(c, u, msg):
        received.append(msg.payload)
        got.set()

    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.subscribe("t/fixture", qos=1)
    sub.loop_start()
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        import time

        time.sleep(0.2)
        pub.publish("t/fixture", b"hello", qos=1).wait_for_publish(5)
        assert got.wait(5)
        assert received == [b"hello"]
    finally:
        pub.loop_stop()
        sub.loop_stop()
        pub.disconnect()
        sub.disconnect()


def test_fresh_broker_can_be_killed_and_restarted(fresh_broker: Mosquitto) -> None:
    assert port_open(fresh_broker.host, fresh_broker.port)
    fresh_broker.kill()
    assert not port_open(fresh_broker.host, fresh_broker.port)
    fresh_broker.start()
    assert port_open(fresh_broker.host, fresh_broker.port)
