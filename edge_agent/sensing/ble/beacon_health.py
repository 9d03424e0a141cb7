"""Store beacons' health: which configured beacons went silent, for staff alerts and heartbeats.

Pure: the agent reports when it hears a configured beacon and asks, on its tick, which ones
have been silent longer than ``missing_after_s`` (one alert per outage, again only after the
beacon was heard and lost anew). A beacon never heard since start gets the same allowance
from the start time, so a box that boots next to a dead beacon still says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BeaconHealth:
    names: list[str]
    missing_after_s: float = 900.0
    started: float | None = None
    _last: dict[str, float] = field(default_factory=dict)
    _alerted: set[str] = field(default_factory=set)

    def heard(self, name: str, ts: float) -> None:
        self._last[name] = ts
        self._alerted.discard(name)

    def newly_missing(self, now: float) -> list[tuple[str, float]]:
        """(name, silent seconds) of each beacon that just crossed the limit."""
        if self.started is None:
            self.started = now
        out = []
        for name in self.names:
            silent = now - self._last.get(name, self.started)
            if silent > self.missing_after_s and name not in self._alerted:
                self._alerted.add(name)
                out.append((name, silent))
        return out

    def summary(self) -> str:
        """For the heartbeat: "heard/configured", e.g. "2/3"."""
        ok = sum(1 for n in self.names if n in self._last and n not in self._alerted)
        return f"{ok}/{len(self.names)}"
