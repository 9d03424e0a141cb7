"""A walk: a store recording of BLE presence with ground truth (issue 18).

A staff member walks the store carrying a tag (a store beacon of ``[ble] beacons``) and taps, on
the kiosk, each zone as they step into it and "out" as they step out. The agent writes what its
receivers heard of that tag and the taps, one JSON object per line:

    {"walk": 1, "store": "s1", "tag": "walker", "started": "2026-12-03T09:00:00+00:00",
     "zones": ["entrance", "womens"],
     "receivers": {"local": {"zone": "entrance", "rssi_1m": -59.0, "path_loss_n": 2.0}}}
    {"t": 0.84, "rx": "local", "rssi": -71}
    {"t": 3.2, "tap": "entrance"}
    {"t": 21.9, "tap": null}
    {"t": 60.0, "end": true}

``t`` is seconds since the start. ``zones`` are the store's: a zone no receiver covers may be
tapped (the pipelines cannot name it, and are scored for that). The tag is named by its configured name, never by address or
token; nothing else heard is written. ``edge-agent bench ble --walk FILE`` runs every pipeline
and anchor of the BLE bench on it (bench/ble_walk.py), with the taps as the truth.

Pure: parsing and line building; the agent's ``sensing/walk_stage.py`` owns the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

FORMAT = 1
MAX_LINE = 4096  # a longer line is not one of ours
# Readings from several receivers reach the recorder each with its own delay (a node on the
# bus, the local radio): their times may step back a little, never by more than this.
MAX_DISORDER_S = 2.0


class WalkError(ValueError):
    """A walk file that cannot be used, with the line it went wrong on."""


@dataclass(frozen=True, slots=True)
class WalkReceiver:
    zone: str
    rssi_1m: float
    path_loss_n: float


@dataclass(frozen=True, slots=True)
class Walk:
    store: str
    tag: str
    started: str
    receivers: dict[str, WalkReceiver]
    zones: tuple[str, ...] = ()
    # (t, receiver id, rssi), in file order (t never decreases).
    adverts: list[tuple[float, str, int]] = field(default_factory=list)
    # (t, zone or None): the walker stepped into that zone, or out of every zone.
    taps: list[tuple[float, str | None]] = field(default_factory=list)
    duration_s: float = 0.0

    def zone_at(self, t: float) -> str | None:
        """The truth: the zone of the last tap at or before ``t``."""
        zone = None
        for ts, z in self.taps:
            if ts > t:
                break
            zone = z
        return zone


def header_line(
    store: str,
    tag: str,
    started: str,
    receivers: dict[str, WalkReceiver],
    zones: tuple[str, ...] = (),
) -> str:
    """``zones``: the store's (the receivers' own are always among them)."""
    rx = {
        r: {"zone": w.zone, "rssi_1m": w.rssi_1m, "path_loss_n": w.path_loss_n}
        for r, w in receivers.items()
    }
    every = sorted({*zones, *(w.zone for w in receivers.values())})
    doc = {
        "walk": FORMAT,
        "store": store,
        "tag": tag,
        "started": started,
        "zones": every,
        "receivers": rx,
    }
    return json.dumps(doc, separators=(",", ":"))


def advert_line(t: float, receiver: str, rssi: int) -> str:
    return json.dumps({"t": round(t, 3), "rx": receiver, "rssi": int(rssi)}, separators=(",", ":"))


def tap_line(t: float, zone: str | None) -> str:
    return json.dumps({"t": round(t, 3), "tap": zone}, separators=(",", ":"))


def end_line(t: float) -> str:
    return json.dumps({"t": round(t, 3), "end": True}, separators=(",", ":"))


def _number(doc: dict[str, Any], key: str, where: str) -> float:
    v = doc.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise WalkError(f"{where}: {key!r} must be a number, got {v!r}")
    return float(v)


def _header(doc: Any) -> tuple[str, str, str, dict[str, WalkReceiver], tuple[str, ...]]:
    where = "walk line 1"
    if not isinstance(doc, dict) or doc.get("walk") != FORMAT:
        raise WalkError(f'{where}: not a walk header (expected {{"walk": {FORMAT}, ...}})')
    texts = []
    for key in ("store", "tag", "started"):
        v = doc.get(key)
        if not isinstance(v, str) or not v:
            raise WalkError(f"{where}: {key!r} must be a non-empty string")
        texts.append(v)
    rx = doc.get("receivers")
    if not isinstance(rx, dict) or not rx:
        raise WalkError(f"{where}: 'receivers' must name at least one receiver")
    receivers: dict[str, WalkReceiver] = {}
    for rid, r in rx.items():
        here = f"{where}: receiver {rid!r}"
        if not isinstance(r, dict) or not isinstance(r.get("zone"), str) or not r["zone"]:
            raise WalkError(f"{here}: needs a zone")
        n = _number(r, "path_loss_n", here)
        if not 1.0 <= n <= 6.0:
            raise WalkError(f"{here}: path_loss_n {n} is not a path loss exponent (1-6)")
        receivers[rid] = WalkReceiver(r["zone"], _number(r, "rssi_1m", here), n)
    zones = doc.get("zones", [])
    if not isinstance(zones, list) or not all(isinstance(z, str) and z for z in zones):
        raise WalkError(f"{where}: 'zones' must be a list of zone ids")
    every = tuple(sorted({*zones, *(r.zone for r in receivers.values())}))
    return texts[0], texts[1], texts[2], receivers, every


def _load(line: str, where: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise WalkError(f"{where}: not JSON ({exc.msg})") from None
    except RecursionError:  # "[[[[..." within the line limit: nested deeper than Python goes
        raise WalkError(f"{where}: nested too deep") from None


def parse_walk(text: str) -> Walk:
    """A walk file's text; ``WalkError`` names the first line that is wrong and why."""
    lines = text.splitlines()
    if not lines:
        raise WalkError("walk: the file is empty")
    first = _load(lines[0], "walk line 1") if len(lines[0]) <= MAX_LINE else None
    store, tag, started, receivers, zones = _header(first)
    walk = Walk(store, tag, started, receivers, zones)
    last = 0.0
    for no, line in enumerate(lines[1:], start=2):
        where = f"walk line {no}"
        if not line.strip():
            continue
        if len(line) > MAX_LINE:
            raise WalkError(f"{where}: longer than {MAX_LINE} characters")
        doc = _load(line, where)
        if not isinstance(doc, dict):
            raise WalkError(f"{where}: expected a JSON object")
        t = _number(doc, "t", where)
        if t < last - MAX_DISORDER_S:
            raise WalkError(f"{where}: time goes back ({t} after {last})")
        last = max(last, t)
        if "rx" in doc:
            rid = doc["rx"]
            if rid not in receivers:
                raise WalkError(f"{where}: receiver {rid!r} is not in the header")
            rssi = _number(doc, "rssi", where)
            if not -127 <= rssi <= 20:
                raise WalkError(f"{where}: rssi {rssi} is out of range")
            walk.adverts.append((t, rid, int(rssi)))
        elif "tap" in doc:
            zone = doc["tap"]
            if zone is not None and zone not in zones:
                raise WalkError(f"{where}: tap names zone {zone!r}, not one of the store's")
            walk.taps.append((t, zone))
        elif doc.get("end") is not True:
            raise WalkError(f"{where}: neither an advert (rx), a tap nor the end")
    if not walk.taps:
        raise WalkError("walk: no taps, so no truth to score against")
    # Lines are in the order the recorder got them: receivers report with their own delays.
    walk.adverts.sort(key=lambda a: a[0])
    walk.taps.sort(key=lambda tap: tap[0])
    return Walk(store, tag, started, receivers, zones, walk.adverts, walk.taps, last)
