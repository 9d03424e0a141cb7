"""Where no fingerprints were surveyed: beacon positions and a calibrated path loss.

Each heard beacon's RSSI gives a distance by the log-distance model,
``d = 10 ** ((tx_power - rssi) / (10 * n))`` (``tx_power``: the calibrated RSSI at 1 m, ``n``:
the path-loss exponent). The estimate is the centroid of the heard beacons weighted by
``1 / d ** 2``: a convex combination, so it always lies within the heard beacons' hull, and one
wildly wrong distance cannot throw it off the floor the way a least-squares trilateration can.
The level is the one most of the weight is on; only that level's beacons place the point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edge_agent.positioning.scan import NOT_HEARD

MIN_DISTANCE_M = 0.5
MAX_DISTANCE_M = 50.0


@dataclass(frozen=True)
class Beacon:
    id: str
    x: float
    y: float
    level: int = 0
    tx_power: float = -59.0  # calibrated RSSI at 1 m, dBm
    path_loss_n: float = 2.0


@dataclass(frozen=True)
class FallbackEstimate:
    x: float
    y: float
    level: int
    confidence: float
    beacons_used: int


def distance_m(rssi: float, tx_power: float, n: float) -> float:
    """Log-distance path loss, clamped to [0.5, 50] m."""
    d = 10.0 ** ((tx_power - rssi) / (10.0 * max(n, 0.5)))
    return min(MAX_DISTANCE_M, max(MIN_DISTANCE_M, d))


def weighted_centroid(
    beacons: Sequence[Beacon], rssi: Mapping[str, float]
) -> FallbackEstimate | None:
    """The 1/d^2-weighted centroid of the heard beacons; None when none of them is heard."""
    heard: list[tuple[Beacon, float]] = []
    for b in beacons:
        v = rssi.get(b.id)
        if v is None or not math.isfinite(v) or v <= NOT_HEARD or v >= 0:
            continue
        d = distance_m(v, b.tx_power, b.path_loss_n)
        heard.append((b, 1.0 / (d * d)))
    if not heard:
        return None
    by_level: dict[int, float] = {}
    for b, w in heard:
        by_level[b.level] = by_level.get(b.level, 0.0) + w
    level = max(sorted(by_level), key=lambda lv: by_level[lv])
    used = [(b, w) for b, w in heard if b.level == level]
    total = sum(w for _, w in used)
    x = sum(b.x * w for b, w in used) / total
    y = sum(b.y * w for b, w in used) / total
    # Within the hull by construction; rounding can leave it a hair outside, so clamp to the box.
    x = min(max(x, min(b.x for b, _ in used)), max(b.x for b, _ in used))
    y = min(max(y, min(b.y for b, _ in used)), max(b.y for b, _ in used))
    # Confident when the nearest beacon is close and more than one is heard.
    nearest = max(w for _, w in used)
    conf = min(1.0, math.sqrt(nearest)) * (1.0 - 0.5 ** len(used))
    return FallbackEstimate(
        x=x, y=y, level=level, confidence=round(conf, 4), beacons_used=len(used)
    )
