"""Products on the map in use: a planogram location checked against one map version, turned into
a route end, or refused with the reason naming the map version.

The reference scheme. An ERP's planogram names places the way the store does, so each of a
location's ``level_id``, ``unit_id`` and ``section_id`` is either an IMDF feature id or the
store's own id for the place: the plan id of an authored map (``L0``, ``sales-floor``,
``shelf-1``, ``aisle-4``), carried in the IMDF as ``"edge_agent": {"plan_id": ...}`` and
resolved by ``VenueMap.feature_id``. ``section_id`` is the place the product sits in or on:
an IMDF section (an aisle) or a fixture (a shelf run, a counter). ``shelf`` stays the ERP's own
label (``S-1-2``), shown, never looked up. The point ``[x, y]`` is in the map's metres on that
level (for an authored plan: the plan's own coordinates).

A location is used only if the level, unit and section are all on this map, the unit and the
section are on that level, and the point lies in both: a planogram written for another map
version (a shelf moved, renamed, removed) is refused, never routed to.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shapely.geometry import Point

from edge_agent.wayfinding.model import VenueMap
from edge_agent.wayfinding.products import (
    Location,
    Planogram,
    Product,
    ProductIndex,
    Refusal,
    check_place,
)
from edge_agent.wayfinding.route import Place, RefError, Resolver

# A point on a shelf's edge, rounded by an ERP export to 2 decimals, still counts as on it.
EDGE_TOLERANCE_M = 0.05
STALE_SHOWN = 5  # entries named in an apply-time warning; the count says how many in all


@dataclass(frozen=True)
class MapPlaces:
    """The map in use and its version, as the planogram sees it."""

    venue: VenueMap
    version: int | str

    def __call__(self, ref: str) -> bool:
        """``KnownPlaces`` for ``ProductIndex.search``: is ``ref`` on this map?"""
        return self.venue.feature_id(ref) is not None

    def locate(self, product: Product) -> Place | Refusal:
        """Where a route to ``product`` ends, or why there is none."""
        ref = f"sku:{product.sku}"
        routable, reason = check_place(product, self, self.version)
        loc = product.location
        if not routable or loc is None:
            return Refusal(ref, reason)
        level = self.venue.feature_id(loc.level_id)
        assert level is not None  # checked by misplaced()
        return Place(
            "product",
            product.sku,
            level,
            (loc.x, loc.y),
            dict(product.names),
            None,
            (loc.x, loc.y),
        )

    def misplaced(self, loc: Location) -> str:
        """Why ``loc`` is not a place on this map ("" when it is)."""
        vm, on = self.venue, f"map version {self.version}"
        level = vm.feature_id(loc.level_id)
        if level is None or level not in vm.levels:
            return f"level {loc.level_id} is not on {on}"
        unit_id = vm.feature_id(loc.unit_id)
        unit = vm.units.get(unit_id or "")
        if unit is None:
            return f"unit {loc.unit_id} is not a unit on {on}"
        pt = Point(loc.x, loc.y)
        if unit.level_id != level:
            return f"unit {loc.unit_id} is not on level {loc.level_id} on {on}"
        if unit.polygon.distance(pt) > EDGE_TOLERANCE_M:
            return f"point [{loc.x:g}, {loc.y:g}] is outside unit {loc.unit_id} on {on}"
        if loc.section_id is None:
            return ""
        shelf = _shelf_name(loc)
        area = vm.areas.get(vm.feature_id(loc.section_id) or "")
        if area is None:
            return f"shelf {shelf} is not on {on}"
        if area.level_id != level:
            return f"shelf {shelf} is not on level {loc.level_id} on {on}"
        if area.polygon.distance(pt) > EDGE_TOLERANCE_M:
            return f"point [{loc.x:g}, {loc.y:g}] is not on shelf {shelf} on {on}"
        return ""

    def stale(self, planogram: Planogram) -> list[tuple[str, str]]:
        """(sku, reason) of every located product this map cannot route to; products without
        a location are the planogram's own business, not the map's."""
        out = []
        for p in planogram.products:
            if p.location is None:
                continue
            got = self.locate(p)
            if isinstance(got, Refusal):
                out.append((p.sku, got.reason))
        return out

    def resolver(self, products: Mapping[str, Product] | ProductIndex) -> Resolver:
        """``resolve_ref``'s ``sku`` resolver; raises RefError with the reason."""
        table = products.planogram.by_sku() if isinstance(products, ProductIndex) else products

        def resolve(sku: str) -> Place:
            sku = sku.strip()
            p = table.get(sku)
            if p is None:
                raise RefError(f"sku:{sku[:64]}: no product {sku[:64]} on the planogram")
            got = self.locate(p)
            if isinstance(got, Refusal):
                raise RefError(f"sku:{sku}: {p.name('en')}: {got.reason}")
            return got

        return resolve


def _shelf_name(loc: Location) -> str:
    """The shelf as the ERP and the map name it: ``S-1-2 (shelf-1)``."""
    sid = loc.section_id or ""
    return f"{loc.shelf} ({sid})" if loc.shelf and loc.shelf != sid else sid


def stale_summary(stale: list[tuple[str, str]], total: int) -> str:
    """One line for a log or an ack: the count and the first few."""
    if not stale:
        return ""
    shown = "; ".join(f"{sku}: {why}" for sku, why in stale[:STALE_SHOWN])
    more = f"; and {len(stale) - STALE_SHOWN} more" if len(stale) > STALE_SHOWN else ""
    return f"{len(stale)} of {total} products point to places not on the map: {shown}{more}"
