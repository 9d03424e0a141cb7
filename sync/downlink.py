"""The downlink: signed pushes from central ops, verified, version-checked, applied once, acked.

Subscribes (QoS 1, persistent session, so pushes made while the box was offline still arrive) to
``stores/<store>/devices/<device>/cmd/+`` and ``stores/<store>/cmd/+``. For every message:

1. ``verify_message`` (size, JSON, base64, Ed25519 signature and key, expiry, addressee);
2. the kind in the payload must match the topic's last level (a signed message re-routed to
   another kind's topic is refused);
3. version check: the payload's version must be greater than the last applied version of that
   kind (replays, older and equal versions are refused);
4. the applier for the kind runs; if it raises, nothing is recorded and the ack says why;
5. the new version is persisted atomically (temp file + fsync + ``os.replace`` + dir fsync);
6. an ack ``{"kind", "version", "accepted", "reason", "digest"}`` goes to
   ``stores/<store>/devices/<device>/acks`` (QoS 1) and ``on_result`` is called.

``version`` is 0 in an ack when the message was too broken to tell. Nothing here raises out of
paho's callback: any input ends as an ack.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts import topics
from contracts.files import atomic_write
from contracts.mqtt import make_client, network_alive, start_subscriber
from contracts.signing import DEFAULT_MAX_BYTES, DownlinkRejected, SignedMessage, verify_message
from edge_agent.config import BrokerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DownlinkResult:
    kind: str
    version: int  # 0 when the message was unreadable
    accepted: bool
    reason: str
    topic: str = ""
    digest: str = ""

    def __post_init__(self) -> None:
        # One line, bounded: a reason may quote hostile input (a key named "\n", say) and
        # ends up in logs and acks.
        one = "".join(c if c.isprintable() else repr(c)[1:-1] for c in self.reason)
        object.__setattr__(self, "reason", one[:300])

    def ack_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "version": self.version,
                "accepted": self.accepted,
                "reason": self.reason,
                "digest": self.digest,
            }
        )


class VersionState:
    """Last applied version per kind, in a small JSON file replaced atomically."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._versions: dict[str, int] = {}
        try:
            data = json.loads(self.path.read_text())
            self._versions = {str(k): int(v) for k, v in data.get("versions", {}).items()}
        except FileNotFoundError:
            pass
        except (ValueError, AttributeError, TypeError) as exc:
            # A corrupt state file would otherwise allow replays: refuse to start instead.
            raise RuntimeError(f"{self.path}: unreadable downlink state: {exc}") from None

    def get(self, kind: str) -> int:
        return self._versions.get(kind, 0)

    def all(self) -> dict[str, int]:
        return dict(self._versions)

    def set(self, kind: str, version: int) -> None:
        versions = {**self._versions, kind: version}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"versions": versions}, sort_keys=True).encode()
        atomic_write(self.path, body, mode=0o600)
        self._versions = versions


def _kind_from_topic(topic: str) -> str:
    return topic.rsplit("/", 1)[-1] if "/cmd/" in topic else "unknown"


class Downlink:
    def __init__(
        self,
        broker: BrokerConfig,
        store_id: str,
        device_id: str,
        public_key: Ed25519PublicKey,
        state_path: Path | str,
        appliers: dict[str, Callable[[dict[str, Any]], None]],
        on_result: Callable[[DownlinkResult], None] | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        client_id: str | None = None,
    ) -> None:
        self.broker = broker
        self.store_id = store_id
        self.device_id = device_id
        self.public_key = public_key
        self.appliers = dict(appliers)
        self.on_result = on_result
        self.max_bytes = max_bytes
        self.client_id = client_id or f"edge-{store_id}-{device_id}-downlink"
        self.state = VersionState(state_path)
        self.ack_topic = topics.acks(store_id, device_id)
        self.subscriptions = [topics.device_cmd(store_id, device_id), topics.store_cmd(store_id)]
        # paho runs callbacks in one thread, but handle() may also be called directly (tests).
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._subscribed = threading.Event()
        self._connected = False
        # Acks of this box's own (a resumed content install, a release result) published while
        # not connected: sent at the next connect, in order. paho does not keep them reliably
        # before the first connect, and an install resumed at start can finish before it.
        self._pending_acks: deque[str] = deque(maxlen=64)
        self._acks_lock = threading.Lock()
        self.results: list[DownlinkResult] = []  # the last few, for stats and tests
        # The message whose applier runs now: an applier that finishes later (a release) names
        # its version in the later ack.
        self.applying: SignedMessage | None = None
        self.applied = 0
        self.refused = 0

    def start(self, wait_s: float = 0.0) -> bool:
        """Connect and subscribe; with ``wait_s`` > 0, wait that long for the SUBACK."""
        client = make_client(self.client_id, self.broker)
        self._client = client
        return start_subscriber(client, self.broker, self, self._subscribed, wait_s)

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    @property
    def subscribed(self) -> bool:
        """Whether the broker has granted the subscriptions (pushes from now on reach us)."""
        return self._subscribed.is_set()

    @property
    def network_alive(self) -> bool | None:
        """Whether paho's network thread of the downlink runs (None before ``start``)."""
        return network_alive(self._client)

    def publish_ack(self, doc: dict[str, Any], *, defer: bool = False) -> bool:
        """A message of this box's own on its acks topic (a later ack, a resync request), shaped
        like the downlink's acks so ops tools read them the same way. While not connected it
        waits for the next connect; before ``start`` it is refused (False) unless ``defer``: a
        content install resumed at start can finish before the downlink even starts."""
        body = json.dumps(doc)
        with self._acks_lock:
            client = self._client
            if client is None and not defer:
                return False
            if client is None or not self._connected:
                self._pending_acks.append(body)
                return True
        client.publish(self.ack_topic, body, 1)
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "refused": self.refused,
            "connected": self._connected,
            "versions": self.state.all(),
        }

    # ---- paho callbacks ----------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("downlink: connect refused: %s", reason_code)
            return
        if not self._connected:
            log.info("downlink: connected, subscribing to %s", self.subscriptions)
        client.subscribe([(t, 1) for t in self.subscriptions])
        with self._acks_lock:
            self._connected = True
            while self._pending_acks:
                client.publish(self.ack_topic, self._pending_acks.popleft(), 1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected:
            # Our own disconnect() is routine; anything else is worth a warning.
            level = logging.INFO if reason_code == 0 else logging.WARNING
            log.log(level, "downlink: disconnected (%s)", reason_code)
        self._connected = False

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if not any(rc.is_failure for rc in reason_codes):
            self._subscribed.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        try:
            result = self.handle(msg.topic, bytes(msg.payload))
        except Exception as exc:  # handle() does not raise; this is the last line of defence
            log.exception("downlink: unexpected error")
            result = DownlinkResult(_kind_from_topic(msg.topic), 0, False, f"internal: {exc!r}")
        try:
            client.publish(self.ack_topic, result.ack_json(), qos=1)
        except Exception as exc:
            log.warning("downlink: could not publish ack: %r", exc)

    # ---- the work ----------------------------------------------------------------------
    def handle(self, topic: str, raw: bytes) -> DownlinkResult:
        """Verify, version-check and apply one message; returns (and reports) the result."""
        with self._lock:
            result = self._handle(topic, raw)
            if result.accepted:
                self.applied += 1
                log.info("downlink: applied %s v%d", result.kind, result.version)
            else:
                self.refused += 1
                log.warning(
                    "downlink: refused %s v%d: %s", result.kind, result.version, result.reason
                )
            self.results = [*self.results[-99:], result]
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:
                log.exception("downlink: on_result failed")
        return result

    def _handle(self, topic: str, raw: bytes) -> DownlinkResult:
        topic_kind = _kind_from_topic(topic)
        try:
            msg: SignedMessage = verify_message(
                self.public_key, bytes(raw), self.store_id, self.device_id, self.max_bytes
            )
        except DownlinkRejected as exc:
            return DownlinkResult(topic_kind, 0, False, exc.reason, topic)
        ref = {"topic": topic, "digest": msg.digest}
        if msg.kind != topic_kind:
            return DownlinkResult(
                msg.kind, msg.version, False, f"kind {msg.kind!r} sent on {topic!r}", **ref
            )
        last = self.state.get(msg.kind)
        if msg.version <= last:
            what = "replayed" if msg.version == last else "older"
            return DownlinkResult(
                msg.kind,
                msg.version,
                False,
                f"{what} version {msg.version} <= applied {last}",
                **ref,
            )
        applier = self.appliers.get(msg.kind)
        if applier is None:
            return DownlinkResult(
                msg.kind, msg.version, False, f"no applier for {msg.kind!r}", **ref
            )
        self.applying = msg
        try:
            applier(msg.body)
        except Exception as exc:
            return DownlinkResult(
                msg.kind,
                msg.version,
                False,
                f"apply failed: {type(exc).__name__}: {exc}"[:300],
                **ref,
            )
        finally:
            self.applying = None
        try:
            self.state.set(msg.kind, msg.version)
        except OSError as exc:
            # Applied but not recorded: say so; a replay would re-apply, which appliers tolerate
            # (they replace whole bundles).
            return DownlinkResult(
                msg.kind, msg.version, True, f"applied; state not saved: {exc}", **ref
            )
        return DownlinkResult(msg.kind, msg.version, True, "applied", **ref)
