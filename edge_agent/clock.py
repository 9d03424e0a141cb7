"""Clocks: wall time in production, scaled trace time when replaying a recording.

Replaying a recording means the agent lives in the recording's time: dayparts, token rotation
and event times all follow the trace, so a replay gives the same outcome on any day.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


@dataclass
class ScaledClock:
    """Starts at ``start`` (epoch seconds) and runs ``speed`` times faster than real time."""

    start: float
    speed: float = 1.0
    _m0: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return self.start + (time.monotonic() - self._m0) * self.speed

    def real_seconds_until(self, t: float) -> float:
        return max(0.0, (t - self.now()) / self.speed) if self.speed > 0 else 0.0

    def restart(self) -> None:
        """Be at ``start`` again now (a replay that waited for something before it began)."""
        self._m0 = time.monotonic()


@dataclass
class TraceClock:
    """Flat-out replay: the time is the timestamp of the last advert replayed."""

    t: float

    def now(self) -> float:
        return self.t

    def advance(self, t: float) -> None:
        if t > self.t:
            self.t = t
