"""Holdout uplift: did shoppers who saw a campaign convert more than those held out of it?

One pure function shared by the box (the daily KPIs in its heartbeat) and central (the CDP's
figures, ``edge-ops uplift``), so both tiers say the same thing about the same counts.

The interval for the difference of the two conversion rates is Newcombe's hybrid score interval
(method 10 of Newcombe, "Interval estimation for the difference between independent
proportions: comparison of eleven methods", Stat Med 1998;17:873-890), built from the Wilson
score interval of each rate. A store's holdout is small (a few shoppers a day, often none
converting): the textbook Wald interval collapses to a point at 0/n and strays outside [-1, 1]
there, while this one stays inside [-1, 1], keeps about its nominal coverage down to single
digits and needs no iteration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

# Two-sided 95%: the quantile itself rather than 1.96, so other levels are the same code.
Z95 = NormalDist().inv_cdf(0.975)

NOT_ENOUGH_DATA = "not enough data"


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval (no continuity correction) for ``successes / n``; None when n is 0."""
    _check(successes, n)
    if n == 0:
        return None
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # Exactly 0 at 0/n and 1 at n/n (floating point lands a hair off), never outside [0, 1].
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def newcombe_difference(
    x1: int, n1: int, x2: int, n2: int, z: float = Z95
) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval for ``x1/n1 - x2/n2``; None when either group is empty."""
    w1, w2 = wilson(x1, n1, z), wilson(x2, n2, z)
    if w1 is None or w2 is None:
        return None
    (l1, u1), (l2, u2) = w1, w2
    p1, p2 = x1 / n1, x2 / n2
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, high)


@dataclass(frozen=True, slots=True)
class Uplift:
    """Exposed against holdout for one campaign: counts, rates, difference and its interval.

    Rates, differences and bounds are None when a group has no shoppers: there is nothing to
    compare, and a 0 would read as "no effect"."""

    exposed_shoppers: int
    exposed_conversions: int
    holdout_shoppers: int
    holdout_conversions: int
    exposed_rate: float | None
    holdout_rate: float | None
    # exposed_rate - holdout_rate, as a proportion (0.05 = five percentage points).
    difference: float | None
    # difference / holdout_rate; None also when nobody in the holdout converted.
    relative: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def enough_data(self) -> bool:
        return self.difference is not None

    def missing(self) -> str | None:
        """Why there is no figure, in words; None when there is one."""
        gone = [
            g
            for g, n in (("exposed", self.exposed_shoppers), ("holdout", self.holdout_shoppers))
            if n == 0
        ]
        if not gone:
            return None
        return f"{NOT_ENOUGH_DATA} (no {' and no '.join(gone)} shoppers)"

    def as_dict(self, digits: int = 4) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, digits)

        return {
            "exposed_shoppers": self.exposed_shoppers,
            "exposed_conversions": self.exposed_conversions,
            "exposed_rate": r(self.exposed_rate),
            "holdout_shoppers": self.holdout_shoppers,
            "holdout_conversions": self.holdout_conversions,
            "holdout_rate": r(self.holdout_rate),
            "uplift": r(self.difference),
            "uplift_relative": r(self.relative),
            "uplift_ci_low": r(self.ci_low),
            "uplift_ci_high": r(self.ci_high),
        }

    def describe(self) -> str:
        """One line for people: the difference in percentage points and its 95% interval."""
        why = self.missing()
        if why is not None:
            return why
        d, lo, hi = self.difference, self.ci_low, self.ci_high
        assert d is not None and lo is not None and hi is not None
        return f"{points(d)} pts (95% CI {points(lo)} to {points(hi)})"


def uplift(
    exposed_conversions: int,
    exposed_shoppers: int,
    holdout_conversions: int,
    holdout_shoppers: int,
    z: float = Z95,
) -> Uplift:
    """Uplift of the exposed over the holdout group, from converters and shoppers per group.

    Conversions here are shoppers who converted (at most one per shopper), so each rate is a
    proportion; ValueError when a count is negative or exceeds its group."""
    _check(exposed_conversions, exposed_shoppers)
    _check(holdout_conversions, holdout_shoppers)
    pe = exposed_conversions / exposed_shoppers if exposed_shoppers else None
    ph = holdout_conversions / holdout_shoppers if holdout_shoppers else None
    diff = pe - ph if pe is not None and ph is not None else None
    ci = newcombe_difference(
        exposed_conversions, exposed_shoppers, holdout_conversions, holdout_shoppers, z
    )
    return Uplift(
        exposed_shoppers=exposed_shoppers,
        exposed_conversions=exposed_conversions,
        holdout_shoppers=holdout_shoppers,
        holdout_conversions=holdout_conversions,
        exposed_rate=pe,
        holdout_rate=ph,
        difference=diff,
        relative=diff / ph if diff is not None and ph else None,
        ci_low=ci[0] if ci else None,
        ci_high=ci[1] if ci else None,
    )


def _check(successes: int, n: int) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= conversions <= shoppers, got {successes} of {n}")


def points(v: float) -> str:
    """A difference of rates in percentage points, signed: 0.052 -> "+5.2" (never "-0.0")."""
    s = f"{v * 100:+.1f}"
    return "+0.0" if s == "-0.0" else s
