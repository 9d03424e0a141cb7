"""Frequency-cap ledger: how often each campaign was shown, per shopper per day, per screen per hour.

Days and hours are the store's local calendar (a cap "per day" resets at local midnight, also on
DST days). The ledger only counts; the decision reads it through ``CapsView`` and stays pure.
Profile ids stay on the box (saved across restarts by journey/memory.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime


def hour_key(now_local: datetime) -> tuple[date, int, int]:
    # fold tells the two 02:00 hours of a fall-back night apart.
    return (now_local.date(), now_local.hour, now_local.fold)


@dataclass
class CapsLedger:
    _shopper: Counter[tuple[str, str, date]] = field(default_factory=Counter)
    _screen: Counter[tuple[str, str, tuple[date, int, int]]] = field(default_factory=Counter)

    def record(
        self, campaign_id: str, screen_id: str, profile_id: str | None, now_local: datetime
    ) -> None:
        self._screen[(campaign_id, screen_id, hour_key(now_local))] += 1
        if profile_id is not None:
            self._shopper[(campaign_id, profile_id, now_local.date())] += 1

    def restore_shopper(self, campaign_id: str, profile_id: str, day: date, n: int) -> None:
        """A count saved before a restart (journey/memory.py)."""
        self._shopper[(campaign_id, profile_id, day)] = n

    def restore_screen(
        self, campaign_id: str, screen_id: str, hour: tuple[date, int, int], n: int
    ) -> None:
        self._screen[(campaign_id, screen_id, hour)] = n

    def shopper_today(self, campaign_id: str, profile_id: str, now_local: datetime) -> int:
        return self._shopper[(campaign_id, profile_id, now_local.date())]

    def screen_this_hour(self, campaign_id: str, screen_id: str, now_local: datetime) -> int:
        return self._screen[(campaign_id, screen_id, hour_key(now_local))]

    def forget(self, profile_id: str) -> None:
        """A shopper who withdrew consent leaves no trace here either."""
        for key in [k for k in self._shopper if k[1] == profile_id]:
            del self._shopper[key]

    def prune(self, now_local: datetime) -> None:
        """Drop counts older than today; they can no longer cap anything."""
        today = now_local.date()
        for key in [k for k in self._shopper if k[2] < today]:
            del self._shopper[key]
        for skey in [k for k in self._screen if k[2][0] < today]:
            del self._screen[skey]

    def __len__(self) -> int:
        return len(self._shopper) + len(self._screen)
