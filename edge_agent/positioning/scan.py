"""One phone scan, checked: beacon id -> RSSI in dBm, the phone's own readings.

-200 (the survey's mark), 0 (what iOS reports for a beacon it ranged without a reading) or
absence mean "not heard". Anything else that is not a number in [-130, 0) dBm, a beacon id the
store does not have, or a scan that is not an object is refused with a one-line `ScanError`.
The scan is read into a vector and not kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

NOT_HEARD = -200.0
RSSI_MIN = -130.0
MAX_SCAN_ENTRIES = 512

Vector = npt.NDArray[np.float64]


class ScanError(ValueError):
    """A scan the model cannot read; the message is one line naming the beacon at fault."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def scan_vector(scan: Any, beacons: Sequence[str]) -> Vector:
    """``{"b3001": -71, ...}`` -> RSSI per beacon in ``beacons`` order, -200 where not heard."""
    if not isinstance(scan, Mapping):
        raise ScanError(f"scan: expected an object of beacon id -> RSSI, got {type(scan).__name__}")
    if len(scan) > MAX_SCAN_ENTRIES:
        raise ScanError(f"scan: {len(scan)} entries, at most {MAX_SCAN_ENTRIES}")
    index = {b: i for i, b in enumerate(beacons)}
    out = np.full(len(beacons), NOT_HEARD)
    for key, value in scan.items():
        if not isinstance(key, str):
            raise ScanError(f"scan: beacon id {_short(key)} is not a string")
        i = index.get(key)
        if i is None:
            raise ScanError(f"scan: unknown beacon id {_short(key)}")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ScanError(f"scan[{key}]: RSSI {_short(value)} is not a number")
        v = float(value)
        if not math.isfinite(v):
            raise ScanError(f"scan[{key}]: RSSI {_short(value)} is not a finite number")
        if v == NOT_HEARD or v == 0.0:
            continue
        if not RSSI_MIN <= v < 0.0:
            raise ScanError(
                f"scan[{key}]: RSSI {v:g} dBm out of range (from {RSSI_MIN:g} to below 0, "
                f"or {NOT_HEARD:g} for not heard)"
            )
        out[i] = v
    return out


def heard(vec: Vector) -> npt.NDArray[np.bool_]:
    return vec > NOT_HEARD
