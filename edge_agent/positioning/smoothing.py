"""Smoothing over one phone's consecutive scans: a forward filter over the grid's cells.

The caller names the phone's session with an opaque id (the app's, rotating as it likes); the
window keeps, per session, only the last posterior over cells and when it was made: no scan, no
phone id. Sessions expire after ``ttl_s`` without a scan and at most ``max_sessions`` are held
(the least recently used goes first). Between scans the belief spreads by a movement prior: a
Gaussian over grid distance (``step_cells`` per scan) mixed with a small uniform jump.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MotionParams:
    step_cells: float = 1.5  # one scan to the next: how far a phone moves (sd, grid cells)
    jump: float = 0.2  # probability of landing anywhere (a lost track recovers)
    ttl_s: float = 30.0  # a session without a scan for this long starts afresh
    max_sessions: int = 2048


class MotionModel:
    """Row-stochastic transition over cells from their grid distance."""

    def __init__(self, coords: Array, params: MotionParams | None = None) -> None:
        self.params = params or MotionParams()
        d2 = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
        k = np.exp(-0.5 * d2 / max(self.params.step_cells, 1e-6) ** 2)
        k /= k.sum(axis=1, keepdims=True)
        n = len(coords)
        j = min(max(self.params.jump, 0.0), 1.0)
        self.matrix: Array = (1.0 - j) * k + j / n

    def predict(self, belief: Array) -> Array:
        out = belief @ self.matrix
        s = float(out.sum())
        return out / s if s > 0 else np.full_like(belief, 1.0 / len(belief))


@dataclass
class _Track:
    belief: Array
    at: float


class SessionWindows:
    """Per-session beliefs: bounded, expiring, nothing else kept."""

    def __init__(self, motion: MotionModel) -> None:
        self.motion = motion
        self._tracks: OrderedDict[str, _Track] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tracks)

    def prior(self, session: str, now: float) -> Array | None:
        """The predicted belief for the session's next scan, or None (a new or expired one)."""
        self.expire(now)
        track = self._tracks.get(session)
        if track is None:
            return None
        return self.motion.predict(track.belief)

    def update(self, session: str, belief: Array, now: float) -> None:
        self._tracks[session] = _Track(belief=belief, at=now)
        self._tracks.move_to_end(session)
        while len(self._tracks) > max(1, self.motion.params.max_sessions):
            self._tracks.popitem(last=False)

    def forget(self, session: str) -> None:
        self._tracks.pop(session, None)

    def expire(self, now: float) -> None:
        ttl = self.motion.params.ttl_s
        while self._tracks:
            first = next(iter(self._tracks.values()))
            if now - first.at < ttl and first.at <= now:
                break
            self._tracks.popitem(last=False)
