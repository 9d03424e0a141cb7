"""The store app's question: one scan in, one position out.

`Positioner.locate(scan, session, now)` reads the scan (refusing a malformed one with a one-line
`ScanError`), asks the fingerprint model where it was taken (smoothed over the session's earlier
scans when the caller names a session) or, where no fingerprints exist, the beacons' positions
and path loss. The scan is dropped once answered; a session holds only its last belief over cells
(bounded, expiring: `smoothing.SessionWindows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edge_agent.positioning.fallback import Beacon, weighted_centroid
from edge_agent.positioning.fingerprint import CellModel, CellParams
from edge_agent.positioning.scan import NOT_HEARD, ScanError, scan_vector
from edge_agent.positioning.smoothing import MotionModel, MotionParams, SessionWindows
from edge_agent.positioning.survey import Survey

MAX_SESSION_LEN = 128


@dataclass(frozen=True)
class Position:
    """``label``: the grid cell (fingerprints) or the nearest beacon's place (fallback); ``x``,
    ``y`` in the map's units (grid cells times ``cell_m``; the beacons' own for the fallback);
    None when nothing was heard and no fingerprints exist."""

    label: str | None
    x: float | None
    y: float | None
    level: int | None
    confidence: float
    method: str  # "fingerprint", "fingerprint+track", "beacons" or "none"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Positioner:
    def __init__(
        self,
        model: CellModel | None = None,
        beacons: Sequence[Beacon] = (),
        motion: MotionParams | None = None,
        cell_m: float = 1.0,
        beacon_labels: dict[str, str] | None = None,
    ) -> None:
        if model is None and not beacons:
            raise ValueError("positioner: neither fingerprints nor beacon positions")
        self.model = model
        self.beacons = tuple(beacons)
        self.cell_m = cell_m
        self._beacon_labels = dict(beacon_labels or {})
        known = list(model.beacons) if model is not None else []
        known += [b.id for b in self.beacons if b.id not in set(known)]
        self.known: tuple[str, ...] = tuple(known)
        self._n_model = len(model.beacons) if model is not None else 0
        self.windows = (
            SessionWindows(MotionModel(model.coords, motion)) if model is not None else None
        )

    @classmethod
    def from_survey(
        cls,
        survey: Survey,
        params: CellParams | None = None,
        motion: MotionParams | None = None,
        beacons: Sequence[Beacon] = (),
        cell_m: float = 1.0,
    ) -> Positioner:
        return cls(CellModel(survey, params), beacons=beacons, motion=motion, cell_m=cell_m)

    def locate(self, scan: Any, session: str | None = None, now: float = 0.0) -> Position:
        vec = scan_vector(scan, self.known)
        if session is not None and (not isinstance(session, str) or len(session) > MAX_SESSION_LEN):
            raise ScanError(f"session: expected an opaque string of at most {MAX_SESSION_LEN}")
        if self.model is not None:
            return self._fingerprint(vec[: self._n_model], session, now)
        return self._fallback(vec)

    def _fingerprint(self, vec: np.ndarray, session: str | None, now: float) -> Position:
        assert self.model is not None and self.windows is not None
        prior = self.windows.prior(session, now) if session is not None else None
        post = self.model.posterior(vec, prior)
        if session is not None:
            self.windows.update(session, post, now)
        est = self.model.summarise(post)
        return Position(
            label=est.label,
            x=round(est.x * self.cell_m, 3),
            y=round(est.y * self.cell_m, 3),
            level=self.model.level,
            confidence=round(est.confidence, 4),
            method="fingerprint+track" if prior is not None else "fingerprint",
        )

    def _fallback(self, vec: np.ndarray) -> Position:
        rssi = {b: float(v) for b, v in zip(self.known, vec, strict=True) if v > NOT_HEARD}
        est = weighted_centroid(self.beacons, rssi)
        if est is None:
            return Position(None, None, None, None, 0.0, "none")
        loudest = max(
            (b for b in self.beacons if b.id in rssi and b.level == est.level),
            key=lambda b: rssi[b.id] - b.tx_power,
        )
        return Position(
            label=self._beacon_labels.get(loudest.id, loudest.id),
            x=round(est.x, 3),
            y=round(est.y, 3),
            level=est.level,
            confidence=est.confidence,
            method="beacons",
        )

    def forget(self, session: str) -> None:
        """The app's session ended: its belief goes now rather than at expiry."""
        if self.windows is not None:
            self.windows.forget(session)
