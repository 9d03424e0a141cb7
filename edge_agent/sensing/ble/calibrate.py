"""Distance from RSSI with a per-receiver calibration, and the calibration file.

Log-distance path loss: ``rssi(d) = rssi_1m - 10 * n * log10(d)``. Every receiver (the box's own
radio behind a screen, or an ESP32 node) has its own antenna, enclosure and mounting, so the
RSSI at 1 m differs by several dB between them; ``edge-agent ble calibrate`` measures it with a
reference beacon held at 1 m (and, optionally, the exponent ``n`` from a second point further
away) and writes it here. Zone thresholds are in metres, so one config fits every screen.

The file is JSON, one entry per receiver id (``local`` for the box's radio, else the scanner
node id), written atomically; it holds no address, only the beacon's configured name.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from contracts.files import atomic_write

DEFAULT_RSSI_1M = -59.0  # a typical phone / tag at 0 dBm as a Pi-class radio hears it
DEFAULT_PATH_LOSS_N = 2.0


class CalibrationError(ValueError):
    """A calibration file or run that cannot be used; the message is one line."""


@dataclass(frozen=True, slots=True)
class Calibration:
    rssi_1m: float = DEFAULT_RSSI_1M
    path_loss_n: float = DEFAULT_PATH_LOSS_N
    samples: int = 0
    spread_db: float = 0.0  # interquartile range of the 1 m samples: a noisy run shows here
    beacon: str = ""
    at: str = ""  # ISO time of the run

    def distance_m(self, rssi: float) -> float:
        return 10.0 ** ((self.rssi_1m - rssi) / (10.0 * self.path_loss_n))

    def rssi_at(self, distance_m: float) -> float:
        return self.rssi_1m - 10.0 * self.path_loss_n * math.log10(max(distance_m, 1e-3))


def summarise(rssi: list[float]) -> tuple[float, float]:
    """Median and interquartile range: robust to the fades every BLE capture has."""
    if not rssi:
        raise CalibrationError("no samples from the reference beacon")
    if len(rssi) < 4:
        return float(statistics.median(rssi)), 0.0
    q1, q2, q3 = statistics.quantiles(rssi, n=4)
    return float(q2), float(q3 - q1)


def fit_exponent(rssi_1m: float, rssi_d: float, distance_m: float) -> float:
    """Path-loss exponent from the 1 m level and a level at ``distance_m`` (> 1 m)."""
    if distance_m <= 1.0:
        raise CalibrationError("the second point must be further than 1 m")
    n = (rssi_1m - rssi_d) / (10.0 * math.log10(distance_m))
    if not 1.0 <= n <= 6.0:
        raise CalibrationError(
            f"path-loss exponent {n:.2f} is outside 1..6: check the beacon position"
        )
    return round(n, 2)


def load(path: Path | str) -> dict[str, Calibration]:
    """Calibrations by receiver id; a missing file is an empty map (every receiver default)."""
    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CalibrationError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise CalibrationError(f"{p}: not JSON: {exc}") from None
    recv = obj.get("receivers") if isinstance(obj, dict) else None
    if not isinstance(recv, dict):
        raise CalibrationError(f"{p}: receivers: must be an object")
    out: dict[str, Calibration] = {}
    for rid, entry in recv.items():
        out[str(rid)] = _entry(entry, f"{p}: receivers.{rid}")
    return out


def _entry(entry: Any, where: str) -> Calibration:
    if not isinstance(entry, dict):
        raise CalibrationError(f"{where}: must be an object")
    try:
        rssi_1m = float(entry["rssi_1m"])
        n = float(entry.get("path_loss_n", DEFAULT_PATH_LOSS_N))
    except KeyError:
        raise CalibrationError(f"{where}.rssi_1m: missing") from None
    except (TypeError, ValueError):
        raise CalibrationError(f"{where}: rssi_1m and path_loss_n must be numbers") from None
    if not (math.isfinite(rssi_1m) and -110 <= rssi_1m <= 0):
        raise CalibrationError(f"{where}.rssi_1m: {rssi_1m} is outside -110..0 dBm")
    if not (math.isfinite(n) and 1.0 <= n <= 6.0):
        raise CalibrationError(f"{where}.path_loss_n: {n} is outside 1..6")
    return Calibration(
        rssi_1m=rssi_1m,
        path_loss_n=n,
        samples=int(entry.get("samples", 0) or 0),
        spread_db=float(entry.get("spread_db", 0.0) or 0.0),
        beacon=str(entry.get("beacon", "")),
        at=str(entry.get("at", "")),
    )


def save(path: Path | str, cals: dict[str, Calibration]) -> None:
    """Atomic replace, so a power cut mid-write leaves the old file, never half a file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    body = {"version": 1, "receivers": {rid: asdict(c) for rid, c in sorted(cals.items())}}
    atomic_write(p, (json.dumps(body, indent=2) + "\n").encode(), mode=0o600)
