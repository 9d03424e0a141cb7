"""Closed loop: which offers a purchase follows, first touch and last touch.

A touch is an offer shown (or, for a held-out shopper, the offer they would have seen). A
conversion from an identified shopper (loyalty card or app at the till) is attributed to that
shopper's touches within the window before the purchase; an anonymous one to the anonymous
touches at the screens linked to the till. Holdout touches put a conversion in the control group
of its campaign, so the CDP can compare conversion rates of exposed and held-out shoppers.
Pure bookkeeping: the agent feeds it, events carry the result.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Group = Literal["exposed", "holdout"]


@dataclass(frozen=True, slots=True)
class Touch:
    ts: float
    campaign_id: str
    screen_id: str
    # The shopper it was shown to; None for an anonymous audience. Stays on the box.
    profile_id: str | None
    group: Group = "exposed"
    event_id: str = ""


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

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._touches: deque[Touch] = deque()

    def add(self, touch: Touch) -> None:
        # Touches arrive in time order from one agent; keep it that way for pruning.
        if self._touches and touch.ts < self._touches[-1].ts:
            touch = Touch(
                self._touches[-1].ts,
                touch.campaign_id,
                touch.screen_id,
                touch.profile_id,
                touch.group,
                touch.event_id,
            )
        self._touches.append(touch)

    def prune(self, now: float) -> None:
        horizon = now - self.window_s
        while self._touches and self._touches[0].ts < horizon:
            self._touches.popleft()

    def forget(self, profile_id: str) -> None:
        """Consent withdrawn: the shopper's touches go, so nothing is attributed to them later."""
        self._touches = deque(t for t in self._touches if t.profile_id != profile_id)

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
