"""The event batch and the CDP's confirmation, as they travel between a box and central.

A batch, one MQTT PUBLISH on ``stores/<store>/devices/<device>/events``, QoS 1::

    {"batch_id": "<uuid7>", "store": "<store>", "device": "<device>",
     "events": [<CloudEvent JSON with "sequence">, ...]}

UTF-8 JSON, or zlib-compressed JSON above ``compress_over`` bytes; the MQTT 5 properties say
which (``ContentType`` and a user property ``encoding``); over MQTT 3.1.1 the sink sniffs.
A confirmation, on ``.../delivered`` after the sink's commit: ``{"batch_id", "ids", "seq"?,
"t"}`` (``seq``: the sequences dealt with as ``[first, last]`` ranges; ``ids``: those without one).
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


MAX_RANGES = 100_000


def seq_ranges(sequences: list[int]) -> list[list[int]]:
    """Sorted, merged ``[first, last]`` runs: a batch of 500 consecutive events is one pair."""
    out: list[list[int]] = []
    for n in sorted(set(sequences)):
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return out


def encode_confirmation(
    batch_id: str | None,
    ids: list[str],
    t: float | None = None,
    seq: list[list[int]] | None = None,
) -> bytes:
    """The CDP's confirmation; ``t`` is the CDP's wall clock at its commit (for clock offset).
    Events the box numbered are confirmed by their sequences as ranges (``seq``: a few bytes per
    batch instead of 39 per event id); ``ids`` carries only what had no sequence."""
    doc: dict[str, Any] = {"batch_id": batch_id, "ids": ids}
    if seq:
        doc["seq"] = seq
    if t is not None:
        doc["t"] = t
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_confirmation(
    payload: bytes,
) -> tuple[str | None, list[str], float | None, list[tuple[int, int]]]:
    """``(batch_id, ids, cdp_time, sequence ranges)`` from a confirmation; ValueError says what
    is wrong."""
    doc = loads(payload, max_bytes=MAX_CONFIRMATION_BYTES, what="confirmation")
    if not isinstance(doc, dict):
        raise ValueError("confirmation is not a JSON object")
    ids = doc.get("ids", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError("confirmation: ids: expected a list of string ids")
    raw = doc.get("seq", [])
    if not isinstance(raw, list) or len(raw) > MAX_RANGES:
        raise ValueError(f"confirmation: seq: expected at most {MAX_RANGES} [first, last] pairs")
    ranges: list[tuple[int, int]] = []
    for r in raw:
        ok = (
            isinstance(r, list)
            and len(r) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in r)
            and r[0] <= r[1]
        )
        if not ok:
            raise ValueError("confirmation: seq: expected [first, last] pairs of sequences")
        ranges.append((r[0], r[1]))
    if "ids" not in doc and "seq" not in doc:
        raise ValueError("confirmation has neither ids nor seq")
    bid = doc.get("batch_id")
    t = doc.get("t")
    ok_t = isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t)
    cdp_time = float(t) if ok_t and isinstance(t, int | float) else None
    return (bid if isinstance(bid, str) else None), ids, cdp_time, ranges


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
