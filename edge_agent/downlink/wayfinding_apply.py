"""The store map and the planogram pushed by central (downlink kinds ``map`` and ``planogram``):
validated whole, swapped atomically, and checked against each other.

A map is refused with its first IMDF error (feature and field named) and the old one stays in
use. After either is applied, every planogram entry whose place the map in use does not have is
counted and the first few named, as a warning: the push is not refused (the ERP and the map team
work on their own clocks; the other half may be on its way), but those products are refused at
route time, naming the map version, until both agree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.map_bundle import unbundle
from edge_agent.wayfinding.imdf import parse_imdf
from edge_agent.wayfinding.map_store import MapStore
from edge_agent.wayfinding.model import VenueMap
from edge_agent.wayfinding.planogram_store import PlanogramStore
from edge_agent.wayfinding.product_places import MapPlaces, stale_summary

log = logging.getLogger("edge_agent")

# (kind, version, one line): a warning ops should hear about, sent as its own ack.
WarningSink = Callable[[str, int, str], None]
# The map now in use and its version, for whoever draws routes (the screens' wayfinder).
MapSink = Callable[[VenueMap, str], None]


@dataclass
class OffMap:
    """Planogram entries the map in use cannot route to, as of the last apply."""

    count: int = 0
    first: list[tuple[str, str]] = field(default_factory=list)


class WayfindingApplier:
    def __init__(self, state_dir: Path, store_id: str, on_warning: WarningSink | None = None):
        self.store_id = store_id
        self.maps = MapStore(state_dir / "map")
        self.planograms = PlanogramStore(state_dir / "planogram.db", store_id)
        self.off_map = OffMap()
        self.on_warning: WarningSink | None = None
        self._check("startup", 0)  # the heartbeat counts entries off the map from the start
        self.on_warning = on_warning
        self._on_map: MapSink | None = None
        # After a map or planogram is in use (the screens' "find us" loop items redraw ways).
        self.on_applied: Callable[[], None] | None = None

    @property
    def on_map(self) -> MapSink | None:
        return self._on_map

    @on_map.setter
    def on_map(self, sink: MapSink | None) -> None:
        """Told the map in use at once (a box restarting on a pushed map) and on every push."""
        self._on_map = sink
        loaded = self.maps.load()
        if sink is not None and loaded is not None:
            sink(loaded[1], str(loaded[0]))

    def close(self) -> None:
        self.planograms.close()

    def _check_store(self, body: Any, kind: str) -> None:
        store = body.get("store_id") if isinstance(body, dict) else None
        if store is not None and store != self.store_id:
            raise ValueError(
                f"store_id: {kind} for store {str(store)[:64]!r}, this box is in {self.store_id!r}"
            )

    def apply_map(self, body: dict[str, Any]) -> None:
        self._check_store(body, "map")
        version, files = unbundle(body)
        current = self.maps.version()
        if current is not None and version <= current:
            raise ValueError(f"version: map {version} is not newer than {current}")
        result = parse_imdf(files)
        if result.errors or result.venue is None:
            more = f" (and {len(result.errors) - 1} more)" if len(result.errors) > 1 else ""
            first = str(result.errors[0]) if result.errors else "no map"
            raise ValueError(f"map {version}: {first}{more}")
        for w in result.warnings[:5]:
            log.warning("map v%d: %s", version, w)
        self.maps.install(version, files)
        log.info("map: v%d in use (%s)", version, _counts(result.counts))
        if self._on_map is not None:
            self._on_map(result.venue, str(version))
        self._check("map", version)
        self._applied()

    def apply_planogram(self, body: dict[str, Any]) -> None:
        res = self.planograms.apply(body)  # PlanogramError names the row and field
        if res.duplicate:
            return
        log.info("planogram: v%d applied (%d products)", res.version, res.products)
        self._check("planogram", res.version)
        self._applied()

    def _applied(self) -> None:
        if self.on_applied is not None:
            try:
                self.on_applied()
            except Exception as exc:  # the push is in; a follower's trouble is its own
                log.error("wayfinding: after apply: %s: %s", type(exc).__name__, exc)

    def _check(self, kind: str, version: int) -> None:
        loaded = self.maps.load()
        planogram = self.planograms.load()
        if loaded is None or planogram is None:
            self.off_map = OffMap()
            return
        places = MapPlaces(loaded[1], loaded[0])
        stale = places.stale(planogram)
        self.off_map = OffMap(len(stale), stale[:5])
        line = stale_summary(stale, len(planogram.products))
        if line:
            line = f"{line} (map version {loaded[0]}, planogram version {planogram.version})"
            log.warning("%s v%d: %s", kind, version, line)
            if self.on_warning is not None:
                self.on_warning(kind, version, line)

    def health(self) -> dict[str, str]:
        """String values for the heartbeat's ``sensors`` map, like the slice's versions."""
        map_v, pg_v = self.maps.version(), self.planograms.version
        return {
            "map_version": "none" if map_v is None else str(map_v),
            "planogram_version": "none" if pg_v is None else str(pg_v),
            "planogram_off_map": str(self.off_map.count),
        }


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
