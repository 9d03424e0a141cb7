"""Closed loop: which offers a purchase follows, first touch and last touch.

A touch is an offer shown (or, for a held-out shopper, the offer they would have seen). A
conversion from an identified shopper (loyalty card or app at the till) is attributed to that
shopper's touches within the window before the purchase; an anonymous one to the anonymous
touches at the screens linked to the till. Holdout touches put a conversion in the control group
of its campaign, so the CDP can compare conversion rates of exposed and held-out shoppers.
Pure bookkeeping: the agent feeds it, events carry the result.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Group = Literal["exposed", "holdout"]


@dataclass(frozen=True, slots=True)
class Touch:
    ts: float
    campaign_id: str
    screen_id: str
    # The shopper it was shown to; None for an anonymous audience. Stays in the store.
    profile_id: str | None
    group: Group = "exposed"
    event_id: str = ""
    # The box whose screen showed it; "" for this box. Boxes of a store share their touches
    # (journey/touch_share.py), so any of them attributes a receipt to every screen's offers.
    origin: str = ""

    @property
    def key(self) -> tuple[str, str, str, str | None, str]:
        """What makes a touch the same touch when it arrives twice (from a peer's snapshot)."""
        return (self.event_id, self.campaign_id, self.screen_id, self.profile_id, self.group)


@dataclass(frozen=True, slots=True)
class Attribution:
    first: Touch | None
    last: Touch | None
    touches: int

    @property
    def group(self) -> Group | None:
        return self.last.group if self.last else None


NONE = Attribution(None, None, 0)


class AttributionBook:
    """Touches of the last ``window_s`` seconds, searched per shopper or per screen."""

    def __init__(self, window_s: float, max_touches: int = 200_000) -> None:
        self.window_s = window_s
        # A bound for a pathological day (or a peer flooding the bus): the oldest go first.
        self.max_touches = max_touches
        self._touches: list[Touch] = []  # sorted by ts
        self._keys: set[tuple[str, str, str, str | None, str]] = set()

    def add(self, touch: Touch) -> bool:
        """Keep ``touch`` in time order; False when it is already here (a peer resending it)."""
        if touch.event_id:
            if touch.key in self._keys:
                return False
            self._keys.add(touch.key)
        if not self._touches or touch.ts >= self._touches[-1].ts:
            self._touches.append(touch)  # the usual case: this box's touches come in order
        else:
            bisect.insort(self._touches, touch, key=lambda t: t.ts)
        if len(self._touches) > self.max_touches:
            self._drop(len(self._touches) - self.max_touches)
        return True

    def _drop(self, n: int) -> None:
        for t in self._touches[:n]:
            self._keys.discard(t.key)
        del self._touches[:n]

    def touches(self) -> list[Touch]:
        return list(self._touches)

    def prune(self, now: float) -> None:
        horizon = now - self.window_s
        self._drop(bisect.bisect_left(self._touches, horizon, key=lambda t: t.ts))

    def forget(self, profile_id: str) -> None:
        """Consent withdrawn: the shopper's touches go, so nothing is attributed to them later."""
        self._touches = [t for t in self._touches if t.profile_id != profile_id]
        self._keys = {t.key for t in self._touches if t.event_id}

    def attribute(
        self, ts: float, profile_id: str | None, screens: Iterable[str] | None = None
    ) -> Attribution:
        """Touches before ``ts`` within the window: the shopper's, or anonymous ones at
        ``screens`` (all screens when None) for a purchase without a known shopper."""
        lo = ts - self.window_s
        wanted = None if screens is None else set(screens)
        hits = [
            t
            for t in self._touches
            if lo <= t.ts <= ts
            and (
                t.profile_id == profile_id
                if profile_id is not None
                else t.profile_id is None and (wanted is None or t.screen_id in wanted)
            )
        ]
        if not hits:
            return NONE
        return Attribution(hits[0], hits[-1], len(hits))

    def __len__(self) -> int:
        return len(self._touches)
