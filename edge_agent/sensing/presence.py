"""Zone presence for the agent: RSSI thresholds in, enter/leave/dwell changes out.

Pure logic: feed observations and clock ticks, get presence changes back. The agent turns
changes into journey events; nothing here knows about MQTT, SQLite or BLE bytes.

``PresenceTracker`` keeps the agent's original interface (thresholds in dBm as the box's own
radio hears them) on top of ``edge_agent.sensing.ble.zones.ZoneEngine``, which does the work: per
device and receiver smoothing (EMA, 1-euro, Kalman or fenced median), calibrated distance,
enter/exit hysteresis, minimum dwell, and an away timeout learned from each device's
advertising interval. ``method="bayes"`` uses ``edge_agent.sensing.ble.bayes.BayesZoneEngine``
instead (a forward filter over zones; ``enter_rssi``'s distance is the zone's edge). Thresholds
given in dBm are turned into metres with the default
calibration, so a box that was never calibrated behaves exactly as its dBm thresholds say, and
a calibrated one keeps the same physical distance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge_agent.sensing.ble.bayes import BayesZoneEngine
from edge_agent.sensing.ble.calibrate import Calibration, CalibrationError
from edge_agent.sensing.ble.calibrate import load as load_calibrations
from edge_agent.sensing.ble.filters import FilterKind, FilterSpec
from edge_agent.sensing.ble.profiles import PresenceProfile
from edge_agent.sensing.ble.zones import (
    DwellTick,
    Entered,
    Left,
    PresenceChange,
    Receiver,
    ZoneEngine,
    ZoneTracker,
)

__all__ = [
    "DwellTick",
    "Entered",
    "Left",
    "PresenceChange",
    "PresenceTracker",
    "ZoneTracker",
    "tracker_from_config",
]

log = logging.getLogger(__name__)
CALIBRATION_FILE = "ble-calibration.json"
# What a device the hysteresis engine says is present counts as in the fused presence: odds 9:1,
# so alone against the stranger prior it reaches 0.9 (>= identity_p 0.8) and two reach 0.47.
PRESENT_P = 0.9


@dataclass
class PresenceTracker:
    """Presence in ``zone`` as heard by the ``local`` receiver and any extra ``receivers``.

    Enter when the smoothed RSSI reaches ``enter_rssi`` after ``min_samples`` adverts; leave
    when it falls below ``leave_rssi`` (the gap is the hysteresis) no sooner than
    ``min_dwell_s`` after entering, or when the device has not been heard for its learned away
    timeout (``away_misses`` advertising intervals, within ``away_min_s``..``away_timeout_s``).
    """

    enter_rssi: float = -70.0
    leave_rssi: float = -80.0
    away_timeout_s: float = 12.0
    ema_alpha: float = 0.3
    dwell_report_s: float = 30.0
    min_samples: int = 2
    # "ema" by default here so the bare tracker keeps its original behaviour; the agent passes
    # the configured filter.
    filter: FilterKind = "ema"
    min_dwell_s: float = 0.0
    leave_hold_s: float = 0.0
    away_min_s: float = 2.0
    away_misses: float = 8.0
    zone: str = ""
    calibration: Calibration = field(default_factory=Calibration)
    # Other receivers (scanner nodes) by id -> (zone, calibration); unknown ids count as local.
    receivers: dict[str, tuple[str, Calibration]] = field(default_factory=dict)
    # "hysteresis": smoothed RSSI against enter/exit distances (ZoneEngine); "bayes": the
    # forward filter of edge_agent/sensing/ble/bayes.py, whose zone edge is enter_rssi's distance.
    method: Literal["hysteresis", "bayes"] = "hysteresis"
    # A named profile (edge_agent/sensing/ble/profiles.py): when given, its timing and filter
    # replace the five settings above (the agent passes the one its config resolved).
    profile: PresenceProfile | None = None
    engine: ZoneEngine | BayesZoneEngine = field(init=False)

    def __post_init__(self) -> None:
        profile = self.profile or PresenceProfile(
            "custom",
            "this tracker's own settings",
            method=self.method,
            filter=FilterSpec(kind=self.filter, ema_alpha=self.ema_alpha),
            min_dwell_s=self.min_dwell_s,
            leave_hold_s=self.leave_hold_s,
            min_samples=self.min_samples,
        )
        ref = Calibration()
        params = profile.zone_params(
            ref.distance_m(self.enter_rssi),
            ref.distance_m(self.leave_rssi),
            away_min_s=self.away_min_s,
            away_max_s=self.away_timeout_s,
            away_misses=self.away_misses,
            dwell_report_s=self.dwell_report_s,
        )
        local = Receiver("local", self.zone, self.calibration)
        others = [Receiver(rid, z, c) for rid, (z, c) in self.receivers.items()]
        if profile.method == "bayes":
            self.engine: ZoneTracker = BayesZoneEngine(
                [local, *others], profile.bayes_params(params), fallback=local
            )
            return
        self.engine = ZoneEngine([local, *others], params, fallback=local)

    def observe(
        self, key: str, rssi: float, ts: float, receiver: str = "local"
    ) -> list[PresenceChange]:
        return self.engine.observe(key, rssi, ts, receiver)

    def tick(self, now: float) -> list[PresenceChange]:
        return self.engine.tick(now)

    def present(self, zone: str | None = None) -> set[str]:
        return self.engine.present(zone)

    def dwell_s(self, key: str, now: float) -> float:
        return self.engine.dwell_s(key, now)

    def in_zone_p(self, zone: str) -> dict[str, float]:
        """P(in ``zone``) of the devices that may be in it, for the fused presence. The Bayesian
        filter has a posterior; the hysteresis engine only says present or not, so a present
        device counts as ``PRESENT_P`` (alone it is an identity, two are ambiguous)."""
        if isinstance(self.engine, BayesZoneEngine):
            rows = self.engine.in_zone_probabilities()
            return {k: row[zone] for k, row in rows.items() if zone in row}
        return dict.fromkeys(self.engine.present(zone), PRESENT_P)


def tracker_from_config(ble: Any, state_dir: Path) -> PresenceTracker:
    """The agent's tracker from its ``[ble]`` section and the calibration file.

    A missing calibration file means defaults; an unreadable one is logged (one line naming the
    file and the key) and defaults are used: presence must not stop over a calibration.
    """
    path = ble.calibration_file or state_dir / CALIBRATION_FILE
    try:
        cals = load_calibrations(path)
    except CalibrationError as exc:
        log.error("ble: calibration ignored: %s", exc)
        cals = {}
    default = Calibration()
    return PresenceTracker(
        enter_rssi=ble.enter_rssi,
        leave_rssi=ble.leave_rssi,
        away_timeout_s=ble.away_timeout_s,
        ema_alpha=ble.ema_alpha,
        dwell_report_s=ble.dwell_report_s,
        away_min_s=ble.away_min_s,
        zone=ble.zone,
        calibration=cals.get("local", default),
        receivers={node: (z, cals.get(node, default)) for node, z in ble.receivers.items()},
        profile=ble.presence_profile(),
    )
