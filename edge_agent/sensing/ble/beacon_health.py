"""Store beacons' health: which configured beacons went silent or run low on battery, for staff
alerts and heartbeats.

Pure: the agent reports when it hears a configured beacon and asks, on its tick, which ones
have been silent longer than ``missing_after_s`` (one alert per outage, again only after the
beacon was heard and lost anew). A beacon never heard since start gets the same allowance
from the start time, so a box that boots next to a dead beacon still says so. Battery readings
go to ``BatteryWatch``: one low-battery episode per flat battery, however often it is read.
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


# An episode ends only when the voltage is this far above the threshold, i.e. a new battery: a
# cell hovering at the threshold as the store warms and cools must not alert every hour.
RECOVERED_MARGIN_MV = 100


@dataclass
class BatteryWatch:
    recovered_margin_mv: int = RECOVERED_MARGIN_MV
    _low: dict[str, bool] = field(default_factory=dict)

    def reading(self, name: str, battery_mv: int | None, low_below_mv: int) -> bool | None:
        """The beacon's new state (True: low) when it changes, else None.

        Changes are the first reading, the start of an episode and its end. ``None`` mV (mains
        powered, or no sensor) says nothing about an episode under way.
        """
        was = self._low.get(name)
        if battery_mv is None:
            low = bool(was)
        elif was:
            low = battery_mv < low_below_mv + self.recovered_margin_mv
        else:
            low = battery_mv < low_below_mv
        if was is low:
            return None
        self._low[name] = low
        return low
