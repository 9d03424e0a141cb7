"""Rotating shopper token -> profile, in O(1) per advert.

The store app advertises an Eddystone-EID that changes every 2**K seconds. For every identity
key in the slice we precompute the EIDs of the previous, current and next period, so one dict
lookup resolves an advert; the table is rebuilt when the period rolls or the slice changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent.ble.eid import compute_eid, period_index


@dataclass
class TokenResolver:
    rotation_exponent: int
    keys: dict[str, bytes] = field(default_factory=dict)
    _table: dict[bytes, str] = field(default_factory=dict)
    _period: int | None = None

    def set_keys(self, keys: dict[str, bytes]) -> None:
        self.keys = dict(keys)
        self._period = None

    def _rebuild(self, period: int) -> None:
        k = self.rotation_exponent
        table: dict[bytes, str] = {}
        for pid, key in self.keys.items():
            for p in (period - 1, period, period + 1):
                if p >= 0:
                    table[compute_eid(key, p << k, k)] = pid
        self._table = table
        self._period = period

    def resolve(self, eid: bytes, now: float) -> str | None:
        period = period_index(int(now), self.rotation_exponent)
        if period != self._period:
            self._rebuild(period)
        return self._table.get(eid)
