"""What the store API serves, read from the box's own files and followed as they change: the map
in use (pushed by central, else ``[map] path``), the planogram (``planogram.db``) and the store
beacons a phone may position itself with. Read-only: the API never writes the agent's state.

Each getter checks cheaply whether its source changed (the ``map/current`` symlink's target, a
file's mtime, the planogram's version) and rebuilds only then, so a push reaches phones on their
next request without the API restarting.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.box.layout import StoreLayout
from edge_agent.config import AgentConfig
from edge_agent.wayfinding.graph import NavGraph, build_graph
from edge_agent.wayfinding.model import VenueMap
from edge_agent.wayfinding.planogram_store import PlanogramStore
from edge_agent.wayfinding.product_places import MapPlaces
from edge_agent.wayfinding.products import Product, ProductIndex

log = logging.getLogger("edge_agent")


class NoMap(Exception):
    """The box has no usable map: the API answers 503 with this line."""


@dataclass(frozen=True)
class MapSnapshot:
    version: str
    files: dict[str, bytes]  # the IMDF delivery, by file name
    venue: VenueMap
    graph: NavGraph
    layout: StoreLayout | None

    @property
    def etag(self) -> str:
        return f'"map-{self.version}"'

    @property
    def places(self) -> MapPlaces:
        return MapPlaces(self.venue, self.version)


@dataclass(frozen=True)
class Catalogue:
    version: int
    index: ProductIndex
    by_sku: dict[str, Product]


def _load_map(source: tuple[str, ...]) -> MapSnapshot:
    from contracts.map_bundle import read_delivery
    from edge_agent.wayfinding.imdf import parse_imdf
    from edge_agent.wayfinding.plan import PlanError, author, load_plan

    kind, path = source[0], Path(source[1])
    layout = None
    if kind == "pushed":
        files = read_delivery(path)
        version = path.resolve().name.removeprefix("v")
    elif path.suffix.lower() == ".toml":
        try:
            plan, layout = load_plan(path)
        except PlanError as exc:
            raise NoMap(f"{path}: {'; '.join(exc.errors[:2])}") from None
        files, _, errors, _ = author(plan, layout)
        if errors:
            raise NoMap(f"{path}: {errors[0]}")
        version = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    else:
        files = read_delivery(path)
        h = hashlib.sha256()
        for name in sorted(files):
            h.update(files[name])
        version = h.hexdigest()[:16]
    result = parse_imdf(files)
    if result.errors or result.venue is None:
        first = str(result.errors[0]) if result.errors else "no map"
        raise NoMap(f"{path}: {first}")
    return MapSnapshot(version, files, result.venue, build_graph(result.venue), layout)


class StoreData:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.state_dir = cfg.paths_resolved.state_dir
        self._lock = threading.Lock()
        self._map: tuple[tuple[str, ...], MapSnapshot] | None = None
        self._catalogue: Catalogue | None = None
        self._planograms: PlanogramStore | None = None
        self._positioner: tuple[tuple[object, ...], Any] | None = None

    # ---- the map -------------------------------------------------------------------------
    def _map_source(self) -> tuple[str, ...]:
        current = self.state_dir / "map" / "current"
        try:
            # A push renames the symlink: its target names the version (v<N>).
            return ("pushed", str(current), os.readlink(current))
        except OSError:
            pass
        if self.cfg.map is None:
            raise NoMap("no map on this box (none pushed, no [map] path)")
        path = self.cfg.map.path
        try:
            return ("configured", str(path), str(path.stat().st_mtime_ns))
        except OSError as exc:
            raise NoMap(f"{path}: {exc.strerror}") from None

    def map(self) -> MapSnapshot:
        source = self._map_source()
        cached = self._map
        if cached is not None and cached[0] == source:
            return cached[1]
        with self._lock:
            cached = self._map
            if cached is not None and cached[0] == source:
                return cached[1]
            try:
                snapshot = _load_map(source)
            except OSError as exc:
                raise NoMap(f"{source[1]}: {exc}") from None
            self._map = (source, snapshot)
            log.info("store api: map version %s", snapshot.version)
            return snapshot

    # ---- the planogram -------------------------------------------------------------------
    def catalogue(self) -> Catalogue | None:
        db = self.state_dir / "planogram.db"
        if self._planograms is None:
            if not db.exists():
                return None
            self._planograms = PlanogramStore(db)
        version = self._planograms.version
        if version is None:
            return None
        cat = self._catalogue
        if cat is not None and cat.version == version:
            return cat
        with self._lock:
            cat = self._catalogue
            if cat is not None and cat.version == version:
                return cat
            planogram = self._planograms.load()
            if planogram is None:
                return None
            cat = Catalogue(planogram.version, ProductIndex.build(planogram), planogram.by_sku())
            self._catalogue = cat
            return cat

    # ---- beacons -------------------------------------------------------------------------
    def beacons(self, snapshot: MapSnapshot) -> list[dict[str, Any]]:
        """The store beacons a phone may use to place itself: identity, place and calibrated
        power at 1 m. Never a shopper's token, never a beacon's key."""
        placed = {
            pl.id: pl for (kind, _), pl in snapshot.venue.placements.items() if kind == "beacon"
        }
        calibrated: dict[str, int] = {}
        store_uuid = None
        if snapshot.layout is not None:
            store_uuid = snapshot.layout.store.beacon_uuid
            calibrated = {b.name: b.measured_power for b in snapshot.layout.beacons}
        out = []
        for b in self.cfg.ble.beacons:
            pl = placed.get(b.name)
            uuid = b.uuid or store_uuid
            if pl is None or uuid is None or b.major is None or b.minor is None:
                continue  # not placed on the map, or not an iBeacon a phone can hear as one
            out.append(
                {
                    "name": b.name,
                    "uuid": uuid.lower(),
                    "major": b.major,
                    "minor": b.minor,
                    "level": pl.level_id,  # the IMDF level's id, as in /v1/map
                    "level_ordinal": snapshot.venue.levels[pl.level_id].ordinal,
                    "x": round(pl.xy[0], 2),
                    "y": round(pl.xy[1], 2),
                    "measured_power": calibrated.get(b.name, -59),
                    "calibrated": b.name in calibrated,
                }
            )
        return out

    # ---- positioning ---------------------------------------------------------------------
    def positioner(self, snapshot: MapSnapshot) -> Any:
        """Where a phone is from its own scan: fingerprints when a survey of this store is on
        the box (``<state_dir>/position-survey.csv``), else the placed beacons' path loss. One
        per map version (beacons move with the map)."""
        from edge_agent.positioning.dataset import read_survey
        from edge_agent.positioning.fallback import Beacon
        from edge_agent.positioning.positioner import Positioner

        survey = self.state_dir / "position-survey.csv"
        stamp = survey.stat().st_mtime_ns if survey.exists() else None
        key = (snapshot.version, stamp)
        cached = self._positioner
        if cached is not None and cached[0] == key:
            return cached[1]
        with self._lock:
            beacons = [
                Beacon(b["name"], b["x"], b["y"], b["level_ordinal"], float(b["measured_power"]))
                for b in self.beacons(snapshot)
            ]
            # A beacon's place, as a shopper would say it: its zone's name.
            zones = {z.id: z.name or z.id for z in self.cfg.zones}
            labels = {b.name: zones.get(b.zone, b.zone) for b in self.cfg.ble.beacons}
            if stamp is not None:
                model = Positioner.from_survey(read_survey(survey), beacons=beacons)
            elif beacons:
                model = Positioner(beacons=beacons, beacon_labels=labels)
            else:
                model = None
            self._positioner = (key, model)
            return model

    def close(self) -> None:
        if self._planograms is not None:
            self._planograms.close()
