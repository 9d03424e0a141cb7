"""Prometheus metrics of the running agent, read at scrape time from what the agent already
keeps (AgentStats, uplink.stats(), the outbox's drop counts, camera health, the players'
retained screen state) instead of counters sprinkled through the code.

Loopback by default (``[metrics] host``): the endpoint is for the box's own Prometheus agent or
an SSH tunnel, not for the store network. Labels are zone, screen, link and reason names from
the config, never a shopper, device address or token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from contracts.payload import PayloadError, loads

if TYPE_CHECKING:
    from edge_agent.app.agent import Agent
    from edge_agent.box.watchdog import Supervisor

log = logging.getLogger("edge_agent.box.metrics")

PREFIX = "edge_agent"


@dataclass
class ScreenStates:
    """The players' retained ``instore/<store>/screens/<id>/state`` (fps, online), by screen."""

    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, screen_id: str, payload: bytes) -> None:
        try:
            body = loads(payload, what="screen state")
        except PayloadError:
            return
        if not isinstance(body, dict):
            return
        with self.lock:
            self.states[screen_id] = body

    def copy(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return dict(self.states)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _cert_days_left(agent: Agent) -> float | None:
    """Read at scrape time from the file: a certificate installed by rotation shows at once."""
    import datetime as dt

    from edge_agent.downlink import credentials

    try:
        life = credentials.life(agent.cfg.central)
    except ValueError:
        return None  # the heartbeat's "cert" sensor says why
    return None if life is None else life.days_left(dt.datetime.now(dt.UTC))


class AgentCollector(Collector):
    def __init__(self, agent: Agent, supervisor: Supervisor, screens: ScreenStates) -> None:
        self.agent = agent
        self.supervisor = supervisor
        self.screens = screens

    def collect(self) -> Iterator[Metric]:
        a = self.agent
        st = a.stats
        snap = self.supervisor.snapshot

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)

        yield counter("adverts", "BLE adverts received", st.adverts)
        yield gauge("adverts_per_second", "BLE adverts per second (last 10 s)", snap.adverts_per_s)
        occ = GaugeMetricFamily(
            f"{PREFIX}_zone_occupancy", "Devices present per zone", labels=["zone"]
        )
        for zone, n in sorted(snap.occupancy.items()):
            occ.add_metric([zone], n)
        yield occ
        yield counter("zone_entries", "Zone entries", st.zone_entries)
        yield counter("decisions", "Screen decisions taken", st.decisions)
        yield counter("content_changes", "Content changes sent to screens", st.content_changes)
        yield counter(
            "events_accepted", "Journey events committed to the outbox", st.events_accepted
        )
        yield counter("staff_alerts", "Staff alerts raised", st.staff_alerts)

        up = snap.uplink
        yield gauge("outbox_depth", "Events waiting in the outbox", float(up.get("depth") or 0))
        yield gauge(
            "outbox_oldest_pending_seconds",
            "Age of the oldest event waiting in the outbox",
            float(up.get("oldest_pending_s") or 0.0),
        )
        yield counter(
            "uplink_published_events", "Events delivered upstream", up.get("published_events") or 0
        )
        mq = GaugeMetricFamily(
            f"{PREFIX}_mqtt_connected", "1 when the MQTT link is connected", labels=["link"]
        )
        mq.add_metric(["central"], 1.0 if up.get("connected") else 0.0)
        mq.add_metric(["bus"], 1.0 if a.bus.is_connected() else 0.0)
        yield mq

        cam = a.camera
        if cam is not None:
            h = cam.health()
            yield gauge("camera_fps", "Camera frames analysed per second", h.fps)
            yield gauge(
                "camera_up", "1 when the camera delivers frames", 1.0 if h.state == "ok" else 0.0
            )
            yield counter("camera_reconnects", "Camera reopen attempts", h.reconnects)

        ui = GaugeMetricFamily(f"{PREFIX}_ui_fps", "Signage player frame rate", labels=["screen"])
        online = GaugeMetricFamily(
            f"{PREFIX}_screen_online", "1 when the player says it is online", labels=["screen"]
        )
        for screen, state in sorted(self.screens.copy().items()):
            fps = _num(state.get("fps"))
            if fps is not None:
                ui.add_metric([screen], fps)
            online.add_metric([screen], 1.0 if state.get("status") == "online" else 0.0)
        yield ui
        yield online

        relay = getattr(a, "log_relay", None)
        if relay is not None:  # the WARN+ relay to central (box/log_relay.py) and its bound
            yield counter("log_relayed", "Log records relayed to central", relay.counts.relayed)
            yield counter(
                "log_suppressed", "Log records the relay's bound held back", relay.counts.suppressed
            )
        days = _cert_days_left(a)
        if days is not None:
            yield gauge(
                "client_cert_days_left",
                "Days until the central TLS client certificate expires (negative: expired)",
                days,
            )

        yield self._dropped()
        yield gauge(
            "watchdog_healthy", "1 while the watchdog pings systemd", 1.0 if snap.healthy else 0.0
        )

    def _dropped(self) -> CounterMetricFamily:
        a = self.agent
        st = a.stats
        fam = CounterMetricFamily(
            f"{PREFIX}_dropped", "Inputs or events dropped, by reason", labels=["reason"]
        )
        fam.add_metric(["ble_decode_error"], st.decode_errors)
        src = getattr(getattr(a, "ble_source", None), "stats", None)
        fam.add_metric(["ble_bad_line"], getattr(src, "bad_lines", 0))
        fam.add_metric(["bus_rejected"], st.bus_rejects)
        fam.add_metric(["downlink_refused"], st.downlink_refused)
        fam.add_metric(["receipt_refused"], a.receipts.refused)
        fam.add_metric(["bus_handler_error"], a.bus.counts.handler_errors)
        outbox = a.outbox
        if outbox is not None:
            try:
                drops = outbox.drops()
            except Exception:  # closed during shutdown: report what we have
                drops = {}
            for key, n in sorted(drops.items()):
                # "cap:audience.sample" -> reason "outbox_cap"; the type is not a label on
                # purpose (one series per reason is enough to alert on).
                fam.add_metric([f"outbox_{key.split(':', 1)[0]}"], n)
        return fam


@dataclass
class MetricsServer:
    port: int
    _server: Any
    _thread: threading.Thread
    _listener: Any = None

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        if self._listener is not None:
            self._listener.loop_stop()
            self._listener.disconnect()


def _screen_listener(agent: Agent, screens: ScreenStates) -> Any:
    """A subscriber of its own to the players' state (the agent's bus client is not ours)."""
    from contracts import topics
    from contracts.mqtt import connect, make_client

    cfg = agent.cfg
    client = make_client(f"metrics-{cfg.store.store_id}-{cfg.store.device_id}", cfg.bus)
    topic = topics.screen_state(cfg.store.store_id)

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            c.subscribe(topic, qos=0)

    def on_message(c, userdata, msg) -> None:
        parts = msg.topic.split("/")
        if len(parts) == 5 and parts[4] == "state":
            screens.update(parts[3], msg.payload)

    client.on_connect = on_connect
    client.on_message = on_message
    connect(client, cfg.bus, clean_start=True, session_expiry_s=0)
    client.loop_start()
    return client


def start_metrics(agent: Agent, supervisor: Supervisor) -> MetricsServer | None:
    """Serve /metrics; a port in use is logged and the agent runs on without metrics."""
    from prometheus_client import start_http_server

    m = agent.cfg.metrics
    registry = CollectorRegistry(auto_describe=False)
    screens = ScreenStates()
    registry.register(AgentCollector(agent, supervisor, screens))
    try:
        server, thread = start_http_server(m.port, addr=m.host, registry=registry)
    except OSError as exc:
        log.error("metrics: cannot listen on %s:%s: %s", m.host, m.port, exc.strerror or exc)
        return None
    port = server.server_address[1]
    log.info("metrics: serving http://%s:%d/metrics", m.host, port)
    listener = None
    try:
        listener = _screen_listener(agent, screens)
    except Exception as exc:  # the endpoint still serves everything else
        log.warning("metrics: no screen state (UI fps): %s", exc)
    return MetricsServer(port, server, thread, listener)
