"""The event batch and the CDP's confirmation, as they travel between a box and central.

A batch, one MQTT PUBLISH on ``stores/<store>/devices/<device>/events``, QoS 1::

    {"batch_id": "<uuid7>", "store": "<store>", "device": "<device>",
     "events": [<CloudEvent JSON with "sequence">, ...]}

UTF-8 JSON, or zlib-compressed JSON above ``compress_over`` bytes; the MQTT 5 properties say
which (``ContentType`` and a user property ``encoding``); over MQTT 3.1.1 the sink sniffs.
A confirmation, on ``.../delivered`` after the sink's commit: ``{"batch_id", "ids", "t"}``.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contracts.payload import loads

ENCODING_IDENTITY = "identity"
ENCODING_ZLIB = "zlib"
CONTENT_TYPE = "application/json"
DEFAULT_COMPRESS_OVER = 4096
NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT 5 PUBACK reason: accepted, but delivered to nobody
MAX_CONFIRMATION_BYTES = 1_048_576


def encode_confirmation(batch_id: str | None, ids: list[str], t: float | None = None) -> bytes:
    """The CDP's confirmation; ``t`` is the CDP's wall clock at its commit (for clock offset)."""
    doc: dict[str, Any] = {"batch_id": batch_id, "ids": ids}
    if t is not None:
        doc["t"] = t
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_confirmation(payload: bytes) -> tuple[str | None, list[str], float | None]:
    """``(batch_id, ids, cdp_time)`` from a confirmation; ValueError says what is wrong."""
    doc = loads(payload, max_bytes=MAX_CONFIRMATION_BYTES, what="confirmation")
    if not isinstance(doc, dict):
        raise ValueError("confirmation is not a JSON object")
    ids = doc.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError("confirmation has no list of string ids")
    bid = doc.get("batch_id")
    t = doc.get("t")
    ok_t = isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t)
    cdp_time = float(t) if ok_t and isinstance(t, int | float) else None
    return (bid if isinstance(bid, str) else None), ids, cdp_time


def encode_batch(
    batch_id: str, store_id: str, device_id: str, bodies: list[str], compress_over: int
) -> tuple[bytes, str]:
    """The batch as bytes plus its encoding. Bodies are already JSON: splice, don't re-encode."""
    head = json.dumps({"batch_id": batch_id, "store": store_id, "device": device_id})
    raw = (head[:-1] + ',"events":[' + ",".join(bodies) + "]}").encode()
    if len(raw) > compress_over:
        return zlib.compress(raw, 6), ENCODING_ZLIB
    return raw, ENCODING_IDENTITY


def publish_properties(encoding: str) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = CONTENT_TYPE
    props.UserProperty = [("encoding", encoding)]
    return props
