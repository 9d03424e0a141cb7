"""Named presence profiles: one tuning each of the zone rules, a point on the curves of flaps
against enter and leave latency that BENCHMARKS.md ("BLE presence") measures.

No BLE rule is best on all three at once (the radio's slow shadowing is what every rule must
wait out), so a store picks the point it needs: ``[ble] profile = "steady"`` for screens where a
flap is worse than a late greeting, ``"eager"`` where entering fast matters most. Each profile
is measured against the anchors on the bench's trace (``pareto`` in ``edge-agent bench ble``):
the profile named there for an anchor beats it on flaps, enter p90 and leave p90 at once.

A profile carries timing and filtering only; the zone's edges stay the site's own
(``enter_rssi``/``leave_rssi``, calibrated per receiver). A profile that enters on the first
reading near the edge widens them by a factor instead of naming distances of its own.

Pure data and arithmetic; the tracker and the bench build their engines from the same profile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from edge_agent.sensing.ble.bayes import BayesParams
from edge_agent.sensing.ble.filters import FilterSpec
from edge_agent.sensing.ble.zones import ZoneParams

ZoneMethod = Literal["hysteresis", "bayes"]


@dataclass(frozen=True, slots=True)
class PresenceProfile:
    name: str
    summary: str
    method: ZoneMethod = "hysteresis"
    filter: FilterSpec = field(default_factory=FilterSpec)
    min_dwell_s: float = 3.0
    leave_hold_s: float = 1.0
    min_samples: int = 2
    # Multipliers of the site's enter and leave distances (1 = the site's edges as configured).
    enter_scale: float = 1.0
    exit_scale: float = 1.0
    # For method "bayes": BayesParams fields this profile sets (correlation, edge and away times,
    # the posterior that enters). Its distances come from the site's edges, as for hysteresis.
    bayes: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.enter_scale <= 0 or self.exit_scale <= 0:
            raise ValueError(f"presence profile {self.name}: edge scales must be positive")
        bad = {k for k, _ in self.bayes} - {f.name for f in dataclasses.fields(BayesParams)}
        if bad:
            raise ValueError(f"presence profile {self.name}: unknown bayes settings {sorted(bad)}")

    def with_overrides(self, **given: Any) -> PresenceProfile:
        """This profile with some settings a site chose itself (``filter`` is a kind's name);
        None leaves a setting as the profile has it."""
        given = {k: v for k, v in given.items() if v is not None}
        if "filter" in given:
            given["filter"] = dataclasses.replace(self.filter, kind=given["filter"])
        return dataclasses.replace(self, **given)

    def zone_params(
        self,
        enter_m: float,
        exit_m: float,
        *,
        away_min_s: float = 2.0,
        away_max_s: float = 12.0,
        away_misses: float = 8.0,
        dwell_report_s: float = 30.0,
    ) -> ZoneParams:
        """The hysteresis engine's settings for a site whose edges are ``enter_m``/``exit_m``."""
        return ZoneParams(
            enter_m=enter_m * self.enter_scale,
            exit_m=exit_m * self.exit_scale,
            min_dwell_s=self.min_dwell_s,
            leave_hold_s=self.leave_hold_s,
            min_samples=self.min_samples,
            away_min_s=min(away_min_s, away_max_s),
            away_max_s=away_max_s,
            away_misses=away_misses,
            dwell_report_s=dwell_report_s,
            filter=self.filter,
        )

    def bayes_params(self, zone: ZoneParams) -> BayesParams:
        """The Bayesian filter's settings: its edge is the hysteresis engine's enter distance."""
        edge = zone.enter_m
        return BayesParams(
            zone_m=edge,
            near_m=min(1.0, edge / 2),
            approach_m=2 * edge,
            far_m=max(4 * edge, zone.exit_m + edge),
            away_min_s=zone.away_min_s,
            away_max_s=zone.away_max_s,
            away_misses=zone.away_misses,
            dwell_report_s=zone.dwell_report_s,
            **dict(self.bayes),
        )


PROFILES: dict[str, PresenceProfile] = {
    p.name: p
    for p in (
        PresenceProfile(
            "responsive",
            "the default: 2 s fenced median, 3 s least dwell, 1 s leave hold",
        ),
        PresenceProfile(
            "steady",
            "fewest flaps: Kalman (q 1 dB^2/s), 4 s least dwell, 1.5 s leave hold, a tighter exit",
            filter=FilterSpec(kind="kalman", kalman_q=1.0),
            min_dwell_s=4.0,
            leave_hold_s=1.5,
            exit_scale=4.0 / 4.2,  # tuned as 4.0 m where the others leave at 4.2 m
        ),
        PresenceProfile(
            "brisk",
            "enters sooner: 1-euro on every reading, edges 1.3x / 1.1x wider, 2 s least dwell",
            filter=FilterSpec(kind="one_euro"),
            min_dwell_s=2.0,
            min_samples=1,
            enter_scale=1.3,
            exit_scale=1.1,
        ),
        PresenceProfile(
            "eager",
            "enters soonest: as brisk with a lighter 1-euro (cutoff 1 Hz) and 1 s least dwell",
            filter=FilterSpec(kind="one_euro", one_euro_min_cutoff=1.0),
            min_dwell_s=1.0,
            min_samples=1,
            enter_scale=1.3,
            exit_scale=1.1,
        ),
        PresenceProfile(
            "bayes",
            "the Bayesian zone filter with its module defaults",
            method="bayes",
        ),
        PresenceProfile(
            "bayes_steady",
            "the Bayesian filter: readings 1 s apart count as one, 2 s at the edge, enter at 0.7",
            method="bayes",
            bayes=(("corr_s", 1.0), ("near_s", 2.0), ("far_s", 10.0), ("p_enter", 0.7)),
        ),
    )
}
DEFAULT_PROFILE = "responsive"
