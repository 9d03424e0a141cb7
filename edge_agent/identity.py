"""Rotating shopper token -> profile, in O(1) per advert.

The store app advertises an Eddystone-EID that changes every 2**K seconds. For every identity
key in the slice we precompute the EIDs of the previous, current and next period, so one dict
lookup resolves an advert. When the period rolls, only the new "next" period is computed (the
other two are kept); when a delta changes a few profiles, only their entries are replaced: a full
rebuild costs ~6 us x 3 per key, which is seconds at 100k keys.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from edge_agent.ble.eid import compute_eid, period_index

Keys = bytes | Sequence[bytes]


def _as_tuple(keys: Keys) -> tuple[bytes, ...]:
    return (keys,) if isinstance(keys, bytes | bytearray) else tuple(keys)


@dataclass
class TokenResolver:
    rotation_exponent: int
    keys: dict[str, tuple[bytes, ...]] = field(default_factory=dict)
    _table: dict[bytes, str] = field(default_factory=dict)
    # period -> EIDs computed for it, so a roll drops exactly the one that left the window
    _by_period: dict[int, dict[bytes, str]] = field(default_factory=dict)
    _period: int | None = None
    # Keys change on the downlink thread while adverts resolve on the loop: writers and rebuilds
    # take the lock; a lookup within the period only reads the current table (one dict get).
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def set_keys(self, keys: Mapping[str, Keys]) -> None:
        """Replace every key (a snapshot); the table is rebuilt on the next resolve."""
        new = {pid: _as_tuple(k) for pid, k in keys.items()}
        with self._lock:
            self.keys = new
            self._period = None

    def update_keys(self, changed: Mapping[str, Keys], removed: Iterable[str] = ()) -> None:
        """A delta: new keys for some profiles, none for others; only those entries change."""
        with self._lock:
            self._update(changed, removed)

    def _update(self, changed: Mapping[str, Keys], removed: Iterable[str]) -> None:
        gone = set(removed) | set(changed)
        for pid in gone:
            self.keys.pop(pid, None)
        for pid, k in changed.items():
            ks = _as_tuple(k)
            if ks:
                self.keys[pid] = ks
        if self._period is None:
            return
        # New dicts, swapped in at the end: a lookup never sees a half-updated table.
        fresh = {pid: self.keys[pid] for pid in changed if pid in self.keys}
        by_period = {}
        for p, table in self._by_period.items():
            t = {e: pid for e, pid in table.items() if pid not in gone}
            self._fill(t, p, fresh)
            by_period[p] = t
        self._by_period = by_period
        self._merge()

    def _fill(self, table: dict[bytes, str], period: int, keys: Mapping[str, tuple[bytes, ...]]):
        k = self.rotation_exponent
        if period < 0:
            return
        for pid, ks in keys.items():
            for key in ks:
                table[compute_eid(key, period << k, k)] = pid

    def _merge(self) -> None:
        table: dict[bytes, str] = {}
        for p in sorted(self._by_period):
            table.update(self._by_period[p])
        self._table = table

    def _rebuild(self, period: int) -> None:
        wanted = (period - 1, period, period + 1)
        # Keep the periods already computed (a roll by one keeps two of three).
        if self._period is None:
            self._by_period = {}
        kept = {p: t for p, t in self._by_period.items() if p in wanted}
        for p in wanted:
            if p not in kept:
                kept[p] = {}
                self._fill(kept[p], p, self.keys)
        self._by_period = kept
        self._merge()
        self._period = period

    def resolve(self, eid: bytes, now: float) -> str | None:
        period = period_index(int(now), self.rotation_exponent)
        if period != self._period:
            with self._lock:
                if period != self._period:
                    self._rebuild(period)
        return self._table.get(eid)
