"""Routes asked per destination per hour: the aggregate the store API may send up (issue 16,
"Privacy": scans and requests are used and dropped; only counts leave the API).

Pure: ``record`` a route answered, ``closed(now)`` takes the hours that ended, ``drain()`` takes
everything (the process is stopping; those rows are marked partial). Nothing of the phone, not
even where it asked from, is kept: a destination and a count per hour.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

HOUR_S = 3600
# Destinations are what phones ask for: bounded, so a client inventing names cannot grow this.
MAX_DESTINATIONS_PER_HOUR = 2000
OTHER = "(other)"


@dataclass(frozen=True, slots=True)
class HourCount:
    hour: datetime
    destination: str
    count: int
    accessible: int
    partial: bool = False


class RouteCounts:
    """Thread-safe: uvicorn answers routes on its worker threads, the sender drains on its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[int, str], list[int]] = {}  # (hour start s, dest) -> [n, accessible]
        self._per_hour: dict[int, int] = {}

    def record(self, destination: str, accessible: bool, now: float) -> None:
        with self._lock:
            self._record(destination, accessible, now)

    def _record(self, destination: str, accessible: bool, now: float) -> None:
        hour = int(now // HOUR_S) * HOUR_S
        key = (hour, destination)
        row = self._rows.get(key)
        if row is None:
            if self._per_hour.get(hour, 0) >= MAX_DESTINATIONS_PER_HOUR:
                key = (hour, OTHER)
                row = self._rows.get(key)
            if row is None:
                row = self._rows[key] = [0, 0]
                self._per_hour[hour] = self._per_hour.get(hour, 0) + 1
        row[0] += 1
        row[1] += accessible

    def closed(self, now: float) -> list[HourCount]:
        """The rows of every hour that has ended by ``now``, removed."""
        current = int(now // HOUR_S) * HOUR_S
        return self._take(lambda hour: hour < current, current)

    def drain(self, now: float) -> list[HourCount]:
        """Every row, removed (the process is stopping): the current hour's marked partial."""
        return self._take(lambda hour: True, int(now // HOUR_S) * HOUR_S)

    def put_back(self, rows: list[HourCount]) -> None:
        """Rows that could not be sent: counted again (a later send carries them)."""
        with self._lock:
            self._put_back(rows)

    def _put_back(self, rows: list[HourCount]) -> None:
        for r in rows:
            h = int(r.hour.timestamp())
            row = self._rows.setdefault((h, r.destination), [0, 0])
            row[0] += r.count
            row[1] += r.accessible
            self._per_hour[h] = len({d for (hh, d) in self._rows if hh == h})

    def _take(self, which: Callable[[int], bool], current: int) -> list[HourCount]:
        with self._lock:
            return self._take_locked(which, current)

    def _take_locked(self, which: Callable[[int], bool], current: int) -> list[HourCount]:
        out = [
            HourCount(datetime.fromtimestamp(hour, UTC), dest, n, acc, partial=hour >= current)
            for (hour, dest), (n, acc) in sorted(self._rows.items())
            if which(hour)
        ]
        for r in out:
            h = int(r.hour.timestamp())
            del self._rows[(h, r.destination)]
            self._per_hour.pop(h, None)
        return out
