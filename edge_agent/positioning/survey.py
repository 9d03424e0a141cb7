"""A fingerprint survey: labelled scans (cell label, recording day, RSSI per beacon)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.positioning.grid import cell_xy
from edge_agent.positioning.scan import NOT_HEARD, RSSI_MIN, ScanError


@dataclass(frozen=True, eq=False)
class Survey:
    """``rssi`` is (scans, beacons) with -200 for not heard; ``days`` say when each scan was taken
    (splits are by day: consecutive scans are near-duplicates)."""

    beacons: tuple[str, ...]
    labels: tuple[str, ...]
    days: tuple[str, ...]
    rssi: npt.NDArray[np.float64]
    level: int = 0
    # Seconds into the scan's day (order of the scans within a day); empty: all 0.
    times: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.labels)
        if not self.times:
            object.__setattr__(self, "times", (0.0,) * n)
        if len(self.times) != n:
            raise ValueError(f"survey: {n} labels, {len(self.times)} times")
        if self.rssi.shape != (n, len(self.beacons)) or len(self.days) != n:
            raise ValueError(
                f"survey: {n} labels, {len(self.days)} days, RSSI shape {self.rssi.shape} "
                f"for {len(self.beacons)} beacons"
            )
        if len(set(self.beacons)) != len(self.beacons):
            raise ValueError("survey: a beacon id appears twice")
        bad = ~((self.rssi == NOT_HEARD) | ((self.rssi >= RSSI_MIN) & (self.rssi < 0)))
        if bad.any():
            row, col = (int(v) for v in np.argwhere(bad)[0])
            raise ScanError(
                f"survey scan {row + 1}, {self.beacons[col]}: RSSI {self.rssi[row, col]!r} "
                "out of range"
            )
        for label in self.labels:
            cell_xy(label)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: Sequence[bool] | npt.NDArray[np.bool_]) -> Survey:
        m = np.asarray(mask, dtype=bool)
        idx = np.flatnonzero(m)
        return Survey(
            beacons=self.beacons,
            labels=tuple(self.labels[i] for i in idx),
            days=tuple(self.days[i] for i in idx),
            rssi=self.rssi[m],
            level=self.level,
            times=tuple(self.times[i] for i in idx),
        )

    def day_list(self) -> list[str]:
        """The recording days, in the order they first appear."""
        return list(dict.fromkeys(self.days))

    def coords(self) -> npt.NDArray[np.float64]:
        return np.array([cell_xy(lb) for lb in self.labels], dtype=float).reshape(-1, 2)
