"""Chunked snapshots: a store slice too big for one signed downlink message, sent in parts.

Pure data, no I/O. A snapshot of 100k-1M profiles is tens to hundreds of MB of JSON; one downlink
message is capped (``DownlinkConfig.max_message_bytes``, 1 MB by default). Central splits it into
parts, each its own signed message of kind ``profiles`` (downlink versions increasing)::

    {"type": "snapshot_part", "store_id": S, "snapshot_id": ID, "part": i, "parts": n,
     "version": V, "expires_at"?: T, "rows": [profile row...], "stock"?: [stock row...]}

``part`` counts from 0; ``version`` is the slice version the whole snapshot brings (the same in
every part); a part carrying ``stock`` (even empty) makes the snapshot replace the stock table.
The box stages parts as they arrive (``ProfileSlice``) and swaps the slice when all are in.

``snapshot_id`` is derived from the content and the split, so re-running the same push after an
interruption resumes the same staging on the box (parts already there are duplicates).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from contracts.signing import DEFAULT_MAX_BYTES, canonical_json

SNAPSHOT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_PARTS = 100_000
PART_FIELDS = frozenset(
    {"type", "store_id", "snapshot_id", "part", "parts", "version", "expires_at", "rows", "stock"}
)
# The signed envelope around a body: base64 (4/3) of the payload plus the signature, key id and
# the payload's own fields (kind, store, device, versions, times). Generous on purpose.
_ENVELOPE_BYTES = 1024


class SplitError(ValueError):
    """The snapshot cannot be split (bad shape, or one row alone bigger than a message)."""


def snapshot_id_for(body: dict[str, Any], budget: int) -> str:
    h = hashlib.sha256(canonical_json(body))
    h.update(str(budget).encode())
    return "s-" + h.hexdigest()[:24]


def split_snapshot(
    body: dict[str, Any],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    part_rows: int | None = None,
    snapshot_id: str | None = None,
) -> list[dict[str, Any]]:
    """The parts of a ``snapshot`` body, each small enough to be signed into ``max_bytes``.

    Stock rows go first, then profiles, packed greedily by their JSON size (and at most
    ``part_rows`` items per part when given). Rows are not validated here: the box does that,
    naming the part and row, and central's own tooling should have done it before.
    """
    if not isinstance(body, dict) or body.get("type", "snapshot") != "snapshot":
        raise SplitError("type: expected a snapshot body")
    store = body.get("store_id")
    version = body.get("version")
    rows = body.get("profiles")
    stock = body.get("stock")
    if not isinstance(store, str):
        raise SplitError("store_id: missing")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SplitError("version: expected an integer >= 1")
    if not isinstance(rows, list):
        raise SplitError("profiles: expected a list")
    if stock is not None and not isinstance(stock, list):
        raise SplitError("stock: expected a list")
    if part_rows is not None and part_rows < 1:
        raise SplitError("part_rows: expected an integer >= 1")
    # Base64 turns 3 bytes into 4; what is left after the envelope is for the body.
    budget = (max_bytes - _ENVELOPE_BYTES) * 3 // 4
    sid = snapshot_id or snapshot_id_for(body, min(budget, part_rows or budget))
    if not SNAPSHOT_ID.match(sid):
        raise SplitError("snapshot_id: 1-64 of A-Z a-z 0-9 _ . : - (starting alphanumeric)")
    skeleton = {
        "type": "snapshot_part",
        "store_id": store,
        "snapshot_id": sid,
        "part": MAX_PARTS,
        "parts": MAX_PARTS,
        "version": version,
        "rows": [],
        "stock": [],
    }
    if "expires_at" in body:
        skeleton["expires_at"] = body["expires_at"]
    room = budget - len(canonical_json(skeleton))
    if room < 256:
        raise SplitError(f"max_bytes: {max_bytes} leaves no room for rows")

    items = [("stock", i, r) for i, r in enumerate(stock or [])]
    items += [("profiles", i, r) for i, r in enumerate(rows)]
    chunks: list[tuple[list[Any], list[Any]]] = []
    cur_rows: list[Any] = []
    cur_stock: list[Any] = []
    used = 0
    for where, i, item in items:
        size = len(canonical_json(item)) + 1  # and its comma
        if size > room:
            raise SplitError(f"{where}[{i}]: {size} bytes, more than one message holds ({room})")
        full = used + size > room or (
            part_rows is not None and len(cur_rows) + len(cur_stock) >= part_rows
        )
        if full:
            chunks.append((cur_rows, cur_stock))
            cur_rows, cur_stock, used = [], [], 0
        (cur_stock if where == "stock" else cur_rows).append(item)
        used += size
    chunks.append((cur_rows, cur_stock))  # also the one empty part of an empty snapshot
    if len(chunks) > MAX_PARTS:
        raise SplitError(f"parts: {len(chunks)} parts, at most {MAX_PARTS}")

    parts = []
    for n, (part_rows_, part_stock) in enumerate(chunks):
        part: dict[str, Any] = {
            "type": "snapshot_part",
            "store_id": store,
            "snapshot_id": sid,
            "part": n,
            "parts": len(chunks),
            "version": version,
            "rows": part_rows_,
        }
        if "expires_at" in body:
            part["expires_at"] = body["expires_at"]
        # "stock" present (even empty) in the snapshot means: replace the stock table.
        if part_stock or (n == 0 and stock is not None):
            part["stock"] = part_stock
        parts.append(part)
    return parts


def join_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The snapshot the parts make (for tests and for checking a split before pushing)."""
    ordered = sorted(parts, key=lambda p: p["part"])
    first = ordered[0]
    body: dict[str, Any] = {
        "type": "snapshot",
        "store_id": first["store_id"],
        "version": first["version"],
        "profiles": [r for p in ordered for r in p["rows"]],
    }
    if any("stock" in p for p in ordered):
        body["stock"] = [s for p in ordered for s in p.get("stock", [])]
    if "expires_at" in first:
        body["expires_at"] = first["expires_at"]
    return body
