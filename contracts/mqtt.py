"""A paho-mqtt 2.x client set up the one way every process here uses it.

Callback API VERSION2 always (paho silently falls back to VERSION1 without it), MQTT 5 with a
3.1.1 fallback, automatic reconnect with capped backoff, TLS with per-device certificates.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import ssl
import threading
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import Field, model_validator

from contracts.validation import StrictModel


class BrokerConfig(StrictModel):
    """Where and how to reach a broker: the in-store bus or central (box, player, central tools)."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    keepalive: int = Field(30, ge=5)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    # MQTT 5 by default; "3.1.1" for brokers without it (nats-server 2.9's MQTT listener).
    # Over 3.1.1 there are no shared subscriptions, properties or reason codes in PUBACKs.
    protocol: Literal["5", "3.1.1"] = "5"

    @model_validator(mode="after")
    def _tls_files(self) -> BrokerConfig:
        if self.tls and self.ca_file is None:
            raise ValueError("ca_file is required when tls = true")
        return self


class _CallbackErrorsOnly(logging.Filter):
    """Of paho's own log, only what a suppressed callback exception leaves: paho also logs at
    ERROR the ordinary ends of a connection (a loop after disconnect), which are no news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage().startswith("Caught exception")


_PAHO_LOG = logging.getLogger("paho")
_PAHO_LOG.addFilter(_CallbackErrorsOnly())


def make_client(
    client_id: str,
    broker: BrokerConfig,
    *,
    protocol: mqtt.MQTTProtocolVersion | None = None,
    max_inflight: int = 50,
) -> mqtt.Client:
    if protocol is None:  # the broker's config decides unless the caller insists
        protocol = mqtt.MQTTv311 if broker.protocol == "3.1.1" else mqtt.MQTTv5
    kwargs: dict[str, Any] = {} if protocol == mqtt.MQTTv5 else {"clean_session": False}
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        reconnect_on_failure=True,
        **kwargs,
    )
    # No callback may kill the network thread: paho re-raises a callback's exception by default
    # and its thread dies while the process and is_connected() look fine. Suppressed here, the
    # message is acknowledged and paho logs the error; our own callbacks also guard and count.
    client.suppress_exceptions = True
    client.enable_logger(_PAHO_LOG)
    # Jittered minimum so a fleet does not reconnect in lockstep after a broker outage.
    # paho's hints say int; a float works and spreads the fleet (paho only compares and doubles).
    client.reconnect_delay_set(min_delay=1 + random.random(), max_delay=30)  # type: ignore[arg-type]
    client.max_inflight_messages_set(max_inflight)
    # Bounded queue while disconnected; durability itself comes from the SQLite outbox.
    client.max_queued_messages_set(10_000)
    if broker.username:
        client.username_pw_set(broker.username)
    if broker.tls:
        client.tls_set(
            ca_certs=str(broker.ca_file) if broker.ca_file else None,
            certfile=str(broker.cert_file) if broker.cert_file else None,
            keyfile=str(broker.key_file) if broker.key_file else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    return client


def no_delay(client: mqtt.Client) -> mqtt.Client:
    """Send each packet at once (TCP_NODELAY) on every connect. For request/reply on the
    in-store bus: a client that has just sent a PUBACK otherwise holds its next small publish
    until the broker's delayed ACK (Nagle), about 40 ms per hop; measured in BENCHMARKS.md,
    "Kiosk product finder"."""

    def on_socket_open(c: mqtt.Client, userdata: Any, sock: Any) -> None:
        # A websocket or unix socket has nothing to tune.
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client.on_socket_open = on_socket_open
    return client


def connect_properties(session_expiry_s: int) -> Properties | None:
    """MQTT 5 CONNECT properties: a persistent session that outlives short outages."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry_s
    return props


def connect(
    client: mqtt.Client,
    broker: BrokerConfig,
    *,
    clean_start: bool = False,
    session_expiry_s: int = 7 * 24 * 3600,
) -> None:
    """Start connecting in the background; paho keeps reconnecting until ``disconnect()``."""
    if client.protocol != mqtt.MQTTv5:
        # MQTT 3.1.1: the persistent session was chosen at construction (clean_session=False).
        client.connect_async(broker.host, broker.port, keepalive=broker.keepalive)
        return
    client.connect_async(
        broker.host,
        broker.port,
        keepalive=broker.keepalive,
        clean_start=clean_start,
        properties=connect_properties(session_expiry_s),
    )


def start_subscriber(
    client: mqtt.Client,
    broker: BrokerConfig,
    owner: object,
    subscribed: threading.Event,
    wait_s: float,
    *,
    session_expiry_s: int = 7 * 24 * 3600,
) -> bool:
    """Wire ``owner``'s ``_on_connect/_on_disconnect/_on_subscribe/_on_message`` into ``client``,
    connect in the background and, with ``wait_s`` > 0, wait that long for the SUBACK."""
    client.on_connect = owner._on_connect  # type: ignore[attr-defined]
    client.on_disconnect = owner._on_disconnect  # type: ignore[attr-defined]
    client.on_subscribe = owner._on_subscribe  # type: ignore[attr-defined]
    client.on_message = owner._on_message  # type: ignore[attr-defined]
    connect(client, broker, session_expiry_s=session_expiry_s)
    client.loop_start()
    return subscribed.wait(wait_s) if wait_s > 0 else False


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something listens there (a broker that is up, before a client tries MQTT)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def network_alive(client: mqtt.Client | None) -> bool | None:
    """Whether ``client``'s network thread (``loop_start``) runs; None when it was never
    started. The watchdog's probe for a link that went silent without disconnecting."""
    thread = getattr(client, "_thread", None) if client is not None else None
    return thread.is_alive() if thread is not None else None
