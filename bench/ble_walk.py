"""A recorded walk (edge_agent/sensing/ble/walk.py) as a bench trace: the staff member is the
one shopper, the kiosk taps are the truth, each receiver's readings are what the pipelines hear.

The bench's pipelines name a receiver by its zone, so a walk whose zone has two receivers is
refused (say which) rather than scored on half its readings.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench.ble_sim import Shopper, Trace, Visit
from edge_agent.sensing.ble.walk import Walk, WalkError


@dataclass
class WalkedShopper(Shopper):
    """A shopper whose truth is the walk's taps, not a path on the simulated floor."""

    walk: Walk | None = None

    def true_zone(self, t: float) -> str | None:
        assert self.walk is not None
        return self.walk.zone_at(t)


def trace_of(walk: Walk) -> Trace:
    by_zone: dict[str, str] = {}
    for rid, rx in walk.receivers.items():
        if rx.zone in by_zone:
            raise WalkError(
                f"walk: zone {rx.zone!r} has receivers {by_zone[rx.zone]!r} and {rid!r}; "
                "the bench takes one receiver per zone"
            )
        by_zone[rx.zone] = rid
    end = max(walk.duration_s, walk.taps[-1][0])
    visits = [
        Visit(zone, t, nxt)
        for (t, zone), (nxt, _) in zip(walk.taps, [*walk.taps[1:], (end, None)], strict=True)
        if zone is not None
    ]
    times = [t for t, _, _ in walk.adverts]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False) if b > a]
    shopper = WalkedShopper(
        key=f"walk:{walk.tag}",
        interval=round(statistics.median(gaps), 2) if gaps else 1.0,
        t_start=0.0,
        t_end=end,
        visits=visits,
        walk=walk,
    )
    adverts = [(t, 0, walk.receivers[rid].zone, rssi) for t, rid, rssi in walk.adverts]
    cal = {rx.zone: rx.rssi_1m for rx in walk.receivers.values()}
    n = statistics.median(rx.path_loss_n for rx in walk.receivers.values())
    return Trace([shopper], adverts, cal, cal, end, path_loss_n=n)
