"""Certificate renewals in bulk: every box past two thirds of its certificate's life keeps its
request retained on ``stores/<store>/devices/<device>/csr`` (``edge_agent/downlink/
credentials.py``); ``edge-ops pki sign-csr --all-pending`` reads them all, signs each one it can
verify and sends the certificate back with the signed ``install_certificate`` command.

The topic authenticates the request: the broker's ACL lets only ``<store>:<device>`` write its
own ``csr`` topic, so a request whose CN names another box is refused, not signed.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from central.pki import LEAF_DAYS, PkiError, sign_csr
from contracts import topics
from contracts.certnames import device_identity
from contracts.mqtt import BrokerConfig, connect, make_client


@dataclass(frozen=True)
class Signed:
    store: str
    device: str
    certificate_pem: str


@dataclass
class Outcome:
    signed: list[Signed] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (store/device, why)


def collect_pending(
    broker: BrokerConfig, store: str = "+", wait_s: float = 2.0
) -> dict[tuple[str, str], bytes]:
    """Every retained request, by (store, device); ConnectionError when the broker cannot be
    reached (never an empty "nothing pending" that is really a failed connect)."""
    got: dict[tuple[str, str], bytes] = {}
    lock = threading.Lock()
    subscribed = threading.Event()
    topic = f"{topics.device_base(store, '+')}/csr"

    def on_message(c: Any, u: Any, msg: Any) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 5 or not msg.payload:  # an empty retained message: answered
            return
        with lock:
            got[(parts[1], parts[3])] = bytes(msg.payload)

    client = make_client(f"edge-ops-csr-{uuid.uuid4().hex[:8]}", broker)
    client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = on_message
    connect(client, broker, clean_start=True, session_expiry_s=0)
    client.loop_start()
    try:
        if not subscribed.wait(max(wait_s, 5.0)):
            raise ConnectionError(
                f"could not reach {broker.host}:{broker.port} or subscribe to {topic}"
            )
        time.sleep(wait_s)  # retained messages follow the SUBACK
    finally:
        client.disconnect()
        client.loop_stop()
    with lock:
        return dict(got)


def sign_all(
    directory: Path, pending: dict[tuple[str, str], bytes], *, days: float = LEAF_DAYS
) -> Outcome:
    """Sign each request whose CN is the box it came from; refuse (and name) the rest."""
    out = Outcome()
    for (store, device), pem in sorted(pending.items()):
        who = f"{store}/{device}"
        try:
            cert = sign_csr(directory, pem, days=days, expect=device_identity(store, device))
        except (PkiError, ValueError) as exc:
            out.refused.append((who, str(exc)))
            continue
        out.signed.append(Signed(store, device, cert.decode()))
    return out


def install_body(signed: Signed) -> dict[str, Any]:
    return {"command": "install_certificate", "certificate_pem": signed.certificate_pem}
