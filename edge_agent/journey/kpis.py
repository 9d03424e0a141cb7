"""Journey KPIs computed on the box for the current store day, sent in every heartbeat.

Only counts and averages leave the box; the per-shopper sets used to count unique shoppers and
time to value stay on the box (in its state directory across restarts, journey/memory.py) and
are cleared at local midnight (``roll``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from statistics import median
from typing import Any

from contracts.uplift import uplift


@dataclass
class CampaignKpi:
    shown: int = 0
    exposed: set[str] = field(default_factory=set)
    holdout: set[str] = field(default_factory=set)
    exposed_conversions: int = 0
    holdout_conversions: int = 0
    anonymous_conversions: int = 0

    def snapshot(self) -> dict[str, float | int | None]:
        # A shopper shown the offer after being held out (the campaign's holdout share changed
        # today) saw it: exposed, as the CDP counts them, so the two groups stay disjoint.
        exposed = len(self.exposed)
        holdout = len(self.holdout - self.exposed)
        # The box counts purchases, the statistics need converters: a shopper buying twice
        # (or a purchase attributed after midnight to a touch of yesterday, whose shopper
        # today's sets no longer hold) must not push a rate past 1. The CDP counts distinct
        # converters from the events; this is the box's close, live estimate of it.
        u = uplift(
            min(self.exposed_conversions, exposed),
            exposed,
            min(self.holdout_conversions, holdout),
            holdout,
        ).as_dict()
        return {
            "shown": self.shown,
            "exposed_shoppers": exposed,
            "holdout_shoppers": holdout,
            "exposed_conversions": self.exposed_conversions,
            "holdout_conversions": self.holdout_conversions,
            "anonymous_conversions": self.anonymous_conversions,
            "exposed_conversion_rate": u["exposed_rate"],
            "holdout_conversion_rate": u["holdout_rate"],
            # Exposed minus holdout rate and its 95% interval (contracts/uplift.py); None when
            # either group has nobody yet.
            "uplift": u["uplift"],
            "uplift_relative": u["uplift_relative"],
            "uplift_ci_low": u["uplift_ci_low"],
            "uplift_ci_high": u["uplift_ci_high"],
        }


@dataclass
class JourneyKpis:
    day: date | None = None
    opportunities_to_see: int = 0
    watchers: int = 0
    dwell_total_s: float = 0.0
    dwell_count: int = 0
    attention_total_s: float = 0.0
    attention_count: int = 0
    offers_shown: int = 0
    conversions: int = 0
    nps_answers: int = 0
    campaigns: dict[str, CampaignKpi] = field(default_factory=dict)
    _entered: dict[str, float] = field(default_factory=dict)
    _valued: set[str] = field(default_factory=set)
    _time_to_value: list[float] = field(default_factory=list)

    def roll(self, today: date) -> None:
        """A new store day starts from zero (and forgets every shopper of yesterday).

        Only forward: a late event from yesterday (a receipt replayed by a till) counts today
        rather than wiping today's figures."""
        if self.day is None or today > self.day:
            fresh = JourneyKpis(day=today)
            self.__dict__.update(fresh.__dict__)

    def _c(self, campaign_id: str) -> CampaignKpi:
        return self.campaigns.setdefault(campaign_id, CampaignKpi())

    # ---- feeds -----------------------------------------------------------------------------
    def audience(self, new_people: int, new_watchers: int) -> None:
        self.opportunities_to_see += new_people
        self.watchers += new_watchers

    def track_ended(self, dwell_s: float, attention_s: float) -> None:
        """A camera track ended: how long the person stayed, and looked."""
        self.dwell(dwell_s)
        if attention_s > 0:
            self.attention_total_s += attention_s
            self.attention_count += 1

    def dwell(self, seconds: float) -> None:
        """A stay ended (a camera track, or a BLE device leaving the zone)."""
        self.dwell_total_s += seconds
        self.dwell_count += 1

    def store_entry(self, profile_id: str, ts: float) -> None:
        self._entered.setdefault(profile_id, ts)

    def shown(self, campaign_id: str, profile_id: str | None, ts: float) -> None:
        self.offers_shown += 1
        c = self._c(campaign_id)
        c.shown += 1
        if profile_id is not None:
            c.exposed.add(profile_id)
            self._value(profile_id, ts)

    def held_out(self, campaign_id: str, profile_id: str) -> None:
        self._c(campaign_id).holdout.add(profile_id)

    def conversion(
        self, campaign_id: str | None, group: str | None, profile_id: str | None, ts: float
    ) -> None:
        self.conversions += 1
        if profile_id is not None:
            self._value(profile_id, ts)
        if campaign_id is None:
            return
        c = self._c(campaign_id)
        if profile_id is None:
            c.anonymous_conversions += 1
        elif group == "holdout":
            c.holdout_conversions += 1
        else:
            c.exposed_conversions += 1

    def nps(self) -> None:
        self.nps_answers += 1

    def forget(self, profile_id: str) -> None:
        for c in self.campaigns.values():
            c.exposed.discard(profile_id)
            c.holdout.discard(profile_id)
        self._entered.pop(profile_id, None)
        self._valued.discard(profile_id)

    def _value(self, profile_id: str, ts: float) -> None:
        # Time to value: store entry to the first relevant interaction (offer or purchase).
        if profile_id in self._valued or profile_id not in self._entered:
            return
        self._valued.add(profile_id)
        self._time_to_value.append(max(0.0, ts - self._entered[profile_id]))

    # ---- out -------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        ttv = self._time_to_value
        return {
            "day": self.day.isoformat() if self.day else None,
            "opportunities_to_see": self.opportunities_to_see,
            "watchers": self.watchers,
            "avg_dwell_s": round(self.dwell_total_s / self.dwell_count, 1)
            if self.dwell_count
            else None,
            "avg_attention_s": round(self.attention_total_s / self.attention_count, 1)
            if self.attention_count
            else None,
            "offers_shown": self.offers_shown,
            "conversions": self.conversions,
            "nps_answers": self.nps_answers,
            "time_to_value_p50_s": round(median(ttv), 1) if ttv else None,
            "campaigns": {cid: c.snapshot() for cid, c in sorted(self.campaigns.items())},
        }

    # ---- persistence (journey/memory.py keeps the day across restarts) --------------------
    def to_state(self) -> dict[str, Any]:
        """Everything needed to carry on counting the same day after a restart (ids included:
        this stays in the box's state directory, it is never sent)."""
        return {
            "day": self.day.isoformat() if self.day else None,
            "counters": {name: getattr(self, name) for name in _COUNTERS},
            "campaigns": {
                cid: {
                    "shown": c.shown,
                    "exposed": sorted(c.exposed),
                    "holdout": sorted(c.holdout),
                    "exposed_conversions": c.exposed_conversions,
                    "holdout_conversions": c.holdout_conversions,
                    "anonymous_conversions": c.anonymous_conversions,
                }
                for cid, c in self.campaigns.items()
            },
            "entered": self._entered,
            "valued": sorted(self._valued),
            "time_to_value": self._time_to_value,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Carry on from ``state`` in place: the stages that feed the KPIs hold this object."""
        self.__dict__.update(JourneyKpis.from_state(state).__dict__)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> JourneyKpis:
        k = cls(day=date.fromisoformat(state["day"]) if state.get("day") else None)
        for name, value in state.get("counters", {}).items():
            if name in _COUNTERS:
                setattr(k, name, type(getattr(k, name))(value))
        for cid, c in state.get("campaigns", {}).items():
            k.campaigns[str(cid)] = CampaignKpi(
                shown=int(c["shown"]),
                exposed=set(c["exposed"]),
                holdout=set(c["holdout"]),
                exposed_conversions=int(c["exposed_conversions"]),
                holdout_conversions=int(c["holdout_conversions"]),
                anonymous_conversions=int(c["anonymous_conversions"]),
            )
        k._entered = {str(p): float(t) for p, t in state.get("entered", {}).items()}
        k._valued = set(state.get("valued", []))
        k._time_to_value = [float(x) for x in state.get("time_to_value", [])]
        return k


_COUNTERS = (
    "opportunities_to_see",
    "watchers",
    "dwell_total_s",
    "dwell_count",
    "attention_total_s",
    "attention_count",
    "offers_shown",
    "conversions",
    "nps_answers",
)
