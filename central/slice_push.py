"""Central's side of a chunked profile snapshot: split, sign each part, publish, collect acks.

``edge-ops push-slice`` runs this. Each part is its own signed downlink message of kind
``profiles`` with downlink versions ``start_version, start_version + 1, ...`` (the downlink
refuses anything not above the last applied version, so parts go out in that order, one
connection, QoS 1). If the push stops part way, run it again with a ``--start-version`` above
the last one used: the snapshot id is derived from the content, so the box treats the parts it
already staged as duplicates and swaps once the missing ones arrive. ``only`` resends a few.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contracts import topics
from contracts.mqtt import BrokerConfig, connect, make_client
from contracts.signing import sign_message
from contracts.slice_parts import split_snapshot


@dataclass
class PushReport:
    snapshot_id: str
    parts: int
    published: list[int] = field(default_factory=list)  # downlink versions
    acks: dict[int, dict[str, Any]] = field(default_factory=dict)  # version -> ack
    largest_message: int = 0

    @property
    def refused(self) -> dict[int, str]:
        return {v: a.get("reason", "") for v, a in self.acks.items() if not a.get("accepted")}

    def summary(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "parts": self.parts,
            "published": len(self.published),
            "versions": [self.published[0], self.published[-1]] if self.published else [],
            "largest_message_bytes": self.largest_message,
            "acked": len(self.acks),
            "refused": {str(v): r for v, r in sorted(self.refused.items())},
        }


class PushError(RuntimeError):
    """The push could not be made (no broker, no PUBACK); the message is one line."""


def signed_parts(
    body: dict[str, Any],
    private_pem: bytes,
    store: str,
    device: str | None,
    start_version: int,
    expires_at: datetime,
    *,
    max_bytes: int,
    part_rows: int | None = None,
    only: Iterable[int] | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[int, bytes]]]:
    """(parts, [(downlink version, signed message)]) for the parts selected by ``only``."""
    if body.get("store_id", store) != store:
        raise ValueError(f"store_id: the file is for store {body.get('store_id')!r}, not {store!r}")
    parts = split_snapshot({**body, "store_id": store}, max_bytes=max_bytes, part_rows=part_rows)
    wanted = sorted(set(only)) if only is not None else list(range(len(parts)))
    bad = [n for n in wanted if not 0 <= n < len(parts)]
    if bad:
        raise ValueError(f"only: part {bad[0]} does not exist (0..{len(parts) - 1})")
    out = []
    for i, n in enumerate(wanted):
        version = start_version + i
        msg = sign_message(private_pem, "profiles", parts[n], store, device, version, expires_at)
        if len(msg) > max_bytes:  # split_snapshot's budget is conservative; never expected
            raise ValueError(f"part {n}: {len(msg)} bytes signed, over {max_bytes}")
        out.append((version, msg))
    return parts, out


def publish_parts(
    broker: BrokerConfig,
    store: str,
    device: str | None,
    snapshot_id: str,
    n_parts: int,
    messages: list[tuple[int, bytes]],
    *,
    timeout_s: float = 10.0,
    wait_ack_s: float | None = None,
) -> PushReport:
    """Publish in version order on one connection; with ``wait_ack_s``, wait for every ack."""
    report = PushReport(snapshot_id, n_parts)
    report.largest_message = max((len(m) for _, m in messages), default=0)
    topic = (
        topics.device_cmd(store, device, "profiles")
        if device
        else topics.store_cmd(store, "profiles")
    )
    versions = {v for v, _ in messages}
    client = make_client(f"edge-ops-slice-{os.getpid()}", broker)
    ready = threading.Event()
    all_acked = threading.Event()
    lock = threading.Lock()

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            return
        if wait_ack_s is not None:
            c.subscribe(topics.acks(store, device or "+"), qos=1)
        else:
            ready.set()

    def on_subscribe(c, userdata, mid, reason_codes, properties) -> None:
        ready.set()

    def on_message(c, userdata, msg) -> None:
        try:
            ack = json.loads(msg.payload)
            version = int(ack.get("version"))
        except (ValueError, TypeError, AttributeError):
            return
        if ack.get("kind") == "profiles" and version in versions:
            with lock:
                report.acks[version] = ack
                if versions <= report.acks.keys():
                    all_acked.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    # A one-shot client: clean session, nothing left behind on the broker.
    connect(client, broker, clean_start=True, session_expiry_s=0)
    client.loop_start()
    try:
        if not ready.wait(timeout_s):
            raise PushError(f"could not connect to {broker.host}:{broker.port}")
        for version, msg in messages:
            info = client.publish(topic, msg, qos=1)
            info.wait_for_publish(timeout_s)
            if not info.is_published():
                raise PushError(f"no PUBACK from the broker for version {version}")
            report.published.append(version)
        if wait_ack_s is not None and messages:
            all_acked.wait(wait_ack_s)
        return report
    finally:
        client.disconnect()
        client.loop_stop()
