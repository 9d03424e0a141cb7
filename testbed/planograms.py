"""Planograms on a real map, for tests and benches: products placed at the map's own sections
(IMDF ids and points), where the demo CSV still names layout slugs the demo map does not have."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from edge_agent.wayfinding.model import VenueMap
from edge_agent.wayfinding.products import Location, Planogram


def place(venue: VenueMap, section_en: str) -> dict[str, Any]:
    """A planogram location at a section of the map, in the unit that holds it."""
    a = next(
        a
        for a in venue.areas.values()
        if a.feature_type == "section" and a.name.get("en") == section_en
    )
    p = a.polygon.representative_point()
    u = next(u for u in venue.units.values() if u.level_id == a.level_id and u.polygon.contains(p))
    return {
        "level_id": a.level_id,
        "unit_id": u.id,
        "section_id": a.id,
        "shelf": "S-1-2",
        "point": [round(p.x, 2), round(p.y, 2)],
    }


def map_planogram(venue: VenueMap, version: int = 3) -> dict[str, Any]:
    """Four products: one downstairs in stock, one upstairs sold out, one without a location,
    one on a shelf the map no longer has."""
    stale = {**place(venue, "Aisle 2 – Jackets"), "section_id": "sec-gone", "shelf": "S-9-9"}

    def product(sku: str, en: str, de: str, brand: str, cat: str, qty: int, **loc: Any) -> Any:
        names = {"en": en, "de": de}
        return {"sku": sku, "names": names, "brand": brand, "category": cat, "quantity": qty, **loc}

    return {
        "type": "planogram",
        "version": version,
        "products": [
            product(
                "SKU-RIDGE-GTX-42",
                "Ridge GTX trail shoe",
                "Ridge GTX Trailschuh",
                "Ridgeline",
                "Trail shoes",
                7,
                location=place(venue, "Aisle 1 – Footwear"),
            ),
            product(
                "SKU-PACK-30L",
                "Daypack 30 L",
                "Tagesrucksack 30 L",
                "Northwind",
                "Backpacks",
                0,
                location=place(venue, "Aisle 6 – Backpacks"),
            ),
            product(
                "SKU-GIFT-CARD-50", "Gift card 50", "Geschenkkarte 50", "Northwind", "Gifts", 40
            ),
            product(
                "SKU-NW-SHELL-L",
                "Storm shell jacket",
                "Sturm-Regenjacke",
                "Northwind",
                "Jackets",
                2,
                location=stale,
            ),
        ],
    }


def sections(venue: VenueMap) -> list[dict[str, Any]]:
    """A planogram location for every named section of the map."""
    return [
        place(venue, a.name["en"])
        for a in venue.areas.values()
        if a.feature_type == "section" and a.name.get("en")
    ]


def placed(planogram: Planogram, venue: VenueMap, rng: random.Random) -> Planogram:
    """``planogram`` with every product moved to a random section of ``venue``."""
    spots = sections(venue)
    products = []
    for p in planogram.products:
        s = rng.choice(spots)
        x, y = s["point"]
        loc = Location(s["level_id"], s["unit_id"], s["section_id"], s["shelf"], x, y)
        products.append(dataclasses.replace(p, location=loc))
    return dataclasses.replace(planogram, products=tuple(products))
