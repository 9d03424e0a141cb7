"""The in-store bus: one MQTT client of the box on the store's broker, typed routes per topic.

Stages say what they publish and which topics they handle; the bus owns the client. Handlers run
in paho's network thread, so they only validate and hand data over. A handler that raises is
caught here, counted and logged once per kind of error: no message may kill the network thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from contracts.mqtt import BrokerConfig, connect, make_client, network_alive, no_delay

log = logging.getLogger("edge_agent")

Handler = Callable[[str, bytes], None]


class Publisher(Protocol):
    """What a stage needs to speak on the bus (the bus, or a recorder in tests)."""

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False
    ) -> bool: ...


@dataclass
class BusCounts:
    handler_errors: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)


class InStoreBus:
    def __init__(self, cfg: BrokerConfig, client_id: str) -> None:
        self.cfg = cfg
        self.client_id = client_id
        self.counts = BusCounts()
        self._routes: list[tuple[str, int, Handler]] = []
        self._on_connected: list[Callable[[], None]] = []
        self._client: mqtt.Client | None = None
        # Set when the broker has granted every route (the SUBACK of the last connect).
        self.subscribed = threading.Event()

    def route(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Subscribe ``topic_filter`` (on every connect) and hand its messages to ``handler``."""
        self._routes.append((topic_filter, qos, handler))

    def on_connected(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` (in paho's thread) after every connect: to publish again what a broker
        that restarted without its retained messages no longer holds."""
        self._on_connected.append(fn)

    def start(self) -> None:
        # Requests and replies (kiosk finder) are small and interactive: no Nagle delay.
        client = no_delay(make_client(self.client_id, self.cfg))
        for topic_filter, _qos, handler in self._routes:
            client.message_callback_add(topic_filter, self._guarded(handler))

        def on_connect(
            c: mqtt.Client, userdata: object, flags: Any, reason_code: Any, properties: Any
        ) -> None:
            if not reason_code.is_failure:
                self.subscribed.clear()
                c.subscribe([(topic_filter, qos) for topic_filter, qos, _ in self._routes])
                log.info("bus: connected to %s:%s", self.cfg.host, self.cfg.port)
                for fn in self._on_connected:
                    try:
                        fn()
                    except Exception as exc:  # never into paho's thread
                        log.error("bus: on connect: %s", type(exc).__name__)

        def on_subscribe(
            c: mqtt.Client, userdata: object, mid: int, reason_codes: Any, properties: Any
        ) -> None:
            self.subscribed.set()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        # Before the network thread starts: its first on_connect publishes (open alerts again,
        # for a broker that lost them), and publish() drops what comes before _client is set.
        self._client = client
        connect(client, self.cfg)
        client.loop_start()

    def _guarded(self, handler: Handler) -> Callable[[mqtt.Client, object, mqtt.MQTTMessage], None]:
        def on_message(c: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
            try:
                handler(msg.topic, bytes(msg.payload))
            except Exception as exc:  # one bad message must never stop the bus
                kind = type(exc).__name__
                self.counts.handler_errors += 1
                seen = self.counts.errors_by_kind.get(kind, 0)
                self.counts.errors_by_kind[kind] = seen + 1
                if not seen:
                    log.error("bus: message on %s dropped: %s", msg.topic, kind)

        return on_message

    @property
    def running(self) -> bool:
        return self._client is not None

    @property
    def network_alive(self) -> bool | None:
        return network_alive(self._client)

    def is_connected(self) -> bool:
        return self._client is not None and self._client.is_connected()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> bool:
        """Publish if the bus runs; False when it does not (a run without a bus, e.g. a bench)."""
        if self._client is None:
            return False
        self._client.publish(topic, payload, qos=qos, retain=retain)
        return True

    def stop(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
