"""Clocks: wall time in production, scaled trace time when replaying a recording.

Replaying a recording means the agent lives in the recording's time: dayparts, token rotation
and event times all follow the trace, so a replay gives the same outcome on any day. The other
processes on the bus (players, kiosks) keep wall time; ``wall_to_clock`` puts the instants they
report on the agent's clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    # The wall time at ``start``: one fixed reference, so a wall instant always maps to the
    # same instant here (an impression's end and its event time stay equal).
    _w0: float = field(default_factory=time.time)

    def now(self) -> float:
        return self.start + (time.monotonic() - self._m0) * self.speed

    def real_seconds_until(self, t: float) -> float:
        return max(0.0, (t - self.now()) / self.speed) if self.speed > 0 else 0.0

    def restart(self) -> None:
        """Be at ``start`` again now (a replay that waited for something before it began)."""
        self._m0, self._w0 = time.monotonic(), time.time()

    def from_wall(self, wall: datetime) -> datetime:
        """The wall-clock instant ``wall`` on this clock: as far from ``start``, ``speed``
        times over."""
        return _utc(self.start) + (_aware(wall) - _utc(self._w0)) * self.speed


@dataclass
class TraceClock:
    """Flat-out replay: the time is the timestamp of the last advert replayed."""

    t: float

    def now(self) -> float:
        return self.t

    def advance(self, t: float) -> None:
        if t > self.t:
            self.t = t

    def from_wall(self, wall: datetime) -> datetime:
        """The wall-clock instant ``wall`` on this clock, as far from the trace's now: only
        roughly, since a flat-out replay keeps no steady pace with wall time."""
        return _utc(self.t) + (_aware(wall) - _utc(time.time()))


def wall_to_clock(clock: Clock) -> Callable[[datetime], datetime] | None:
    """How to put a wall-clock instant (a player's impression, a kiosk's answer) on ``clock``;
    None when ``clock`` keeps wall time itself, as in production: nothing to map, so those
    times pass on exactly as their process wrote them."""
    if isinstance(clock, ScaledClock | TraceClock):
        return clock.from_wall
    return None


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _aware(t: datetime) -> datetime:
    # A bus client may send a time without an offset: read it as UTC rather than fail on it.
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
