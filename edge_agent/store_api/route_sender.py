"""Sends the store API's closed hours of route counts to the agent over the in-store bus (the
agent checks them and journals them: outbox -> uplink -> CDP). A thread of the API process:
every ``interval_s`` it takes the hours that ended; on stop, everything, the current hour marked
partial. Rows the bus did not take are counted again for the next send; on stop they are lost
with one log line (aggregate analytics, not events a shopper or till depends on)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from contracts import topics
from contracts.events import RoutesAsked, make_event
from contracts.mqtt import BrokerConfig, connect, make_client
from edge_agent.store_api.route_counts import HourCount, RouteCounts

log = logging.getLogger("edge_agent.store_api")


class RouteCountSender:
    def __init__(
        self,
        counts: RouteCounts,
        bus: BrokerConfig,
        store_id: str,
        device_id: str,
        *,
        interval_s: float = 60.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.counts = counts
        self.store_id, self.device_id = store_id, device_id
        self.interval_s = interval_s
        self._now = now
        self._stop = threading.Event()
        self._topic = topics.api_events(store_id)
        self._client = make_client(f"store-api-{store_id}-{device_id}", bus)
        self._bus = bus
        self._thread = threading.Thread(target=self._run, name="route-counts", daemon=True)
        self.sent = 0

    def start(self) -> RouteCountSender:
        connect(self._client, self._bus, clean_start=True, session_expiry_s=0)
        self._client.loop_start()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._send(self.counts.closed(self._now()), wait_s=0.0)

    def _send(self, rows: list[HourCount], wait_s: float) -> list[HourCount]:
        """Publish each row as one event; returns the rows the bus did not take."""
        if not rows:
            return []
        if not self._client.is_connected():
            self.counts.put_back(rows)
            return rows
        infos = []
        for r in rows:
            ev = make_event(
                RoutesAsked(
                    hour=r.hour,
                    destination=r.destination,
                    count=r.count,
                    accessible=r.accessible,
                    partial=r.partial,
                ),
                store_id=self.store_id,
                device_id=self.device_id,
            )
            infos.append((r, self._client.publish(self._topic, ev.to_json(), qos=1)))
        failed = [r for r, info in infos if info.rc != mqtt.MQTT_ERR_SUCCESS]
        deadline = time.monotonic() + wait_s
        for _, info in infos:
            left = deadline - time.monotonic()
            if left > 0 and not info.is_published():
                info.wait_for_publish(left)
        self.sent += len(rows) - len(failed)
        if failed:
            self.counts.put_back(failed)
        return failed

    def stop(self, wait_s: float = 3.0) -> None:
        """Send what is left (the current hour as partial), then disconnect."""
        self._stop.set()
        self._thread.join(5)
        deadline = time.monotonic() + wait_s
        while not self._client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)  # a stopping process: the bus may just be reconnecting
        rows = self.counts.drain(self._now())
        left = self._send(rows, wait_s=max(0.0, deadline - time.monotonic()))
        if rows and (left or not self._client.is_connected()):
            n = sum(r.count for r in (left or rows))
            log.warning("store api: %d route count(s) not sent (no in-store bus)", n)
        elif rows:
            log.info("store api: route counts of %d destination(s) sent", len(rows))
        self._client.loop_stop()
        self._client.disconnect()
