"""Routes on the screens, the agent's side (edge_agent/journey/wayfinding_stage.py): a campaign
names a place, the stage adds the way from the screen on the map this box has, or nothing."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts.screen_protocol import Content
from demo import scenario
from edge_agent.config import parse_config
from edge_agent.journey.campaigns import CampaignBundle
from edge_agent.journey.wayfinding_stage import MapLoadError, ScreenWayfinder, load_venue
from edge_agent.wayfinding.products import Planogram

REPO = Path(__file__).resolve().parents[2]
DEMO_MAP = REPO / "demo" / "store-map.toml"
CARD = Content(content_id="trail-shoes:personalised", title="Hi Alice", language="en")


@pytest.fixture(scope="module")
def wayfinder() -> ScreenWayfinder:
    venue, version = load_venue(DEMO_MAP)
    return ScreenWayfinder(venue, version)


def test_the_demo_campaigns_name_their_places() -> None:
    bundle = CampaignBundle.model_validate(scenario.CAMPAIGNS_V2)
    ways = {c.id: c.wayfinding.to for c in bundle.campaigns if c.wayfinding}
    assert ways == {"order-ready": "Pickup", "trail-shoes": "sku:SKU-RIDGE-GTX-42"}
    with pytest.raises(ValidationError, match="to"):
        CampaignBundle.model_validate(
            {
                **scenario.CAMPAIGNS_V1,
                "campaigns": [{**scenario.CAMPAIGNS_V1["campaigns"][0], "wayfinding": {"to": ""}}],
            }
        )


def test_the_way_is_added_from_the_screen_and_cached(wayfinder: ScreenWayfinder) -> None:
    built = wayfinder.routes_built
    shown = wayfinder.attach(CARD, "screen-entrance", "Aisle 4")
    w = shown.wayfinding
    assert w is not None and w.destination_label == "Aisle 4 – Rain gear"
    assert 10 < w.distance_m < 30 and w.steps
    # Everything else of the card is as decided.
    assert shown.model_copy(update={"wayfinding": None}) == CARD
    # Shown again (the director re-sends content all day): no new route.
    assert wayfinder.attach(CARD, "screen-entrance", "Aisle 4") == shown
    assert wayfinder.routes_built == built + 1
    # Another language is another payload: the steps are in it.
    de = wayfinder.attach(CARD.model_copy(update={"language": "de"}), "screen-entrance", "Aisle 4")
    assert de.wayfinding is not None and "geradeaus" in de.wayfinding.steps[0]
    assert wayfinder.routes_built == built + 2


def test_no_map_no_place_no_route_means_the_card_as_it_was(
    wayfinder: ScreenWayfinder, caplog: pytest.LogCaptureFixture
) -> None:
    assert ScreenWayfinder().attach(CARD, "screen-entrance", "Aisle 4") == CARD
    assert wayfinder.attach(CARD, "screen-entrance", None) == CARD
    with caplog.at_level(logging.WARNING, "edge_agent"):
        for _ in range(3):
            assert wayfinder.attach(CARD, "screen-entrance", "Aisle 99") == CARD
            # Staff only: the router refuses it, so no screen shows the way there.
            assert wayfinder.attach(CARD, "screen-entrance", "Stock room") == CARD
            # A screen the map does not place.
            assert wayfinder.attach(CARD, "screen-nowhere", "Aisle 4") == CARD
    # Each miss is said once, with why.
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert any("staff only" in line for line in lines)


def test_a_new_map_version_never_serves_an_old_route(tmp_path: Path) -> None:
    venue, version = load_venue(DEMO_MAP)
    wf = ScreenWayfinder(venue, version)
    first = wf.attach(CARD, "screen-entrance", "Pickup").wayfinding
    assert first is not None
    # The same plan with counter 2 moved to the back of the store: a new version.
    moved = DEMO_MAP.read_text().replace("rect = [14.5, 1, 17, 2]", "rect = [14.5, 13, 17, 14]")
    path = tmp_path / "store-map.toml"
    path.write_text(moved.replace('layout = "../', f'layout = "{REPO}/'))
    venue2, version2 = load_venue(path)
    assert version2 != version
    wf.use(venue2, version2)
    second = wf.attach(CARD, "screen-entrance", "Pickup").wayfinding
    assert second is not None and second.destination[1] > 10 > first.destination[1]


def test_the_map_path_in_the_config(tmp_path: Path) -> None:
    data = {
        "store": {"store_id": "s", "device_id": "d"},
        "zones": [{"id": "z"}],
        "screens": [{"id": "a", "zone": "z"}],
        "ble": {"source": "bleak", "zone": "z"},
        "downlink": {"ops_public_key": "k"},
        "map": {"path": "maps/store.toml"},
    }
    cfg = parse_config(data, base_dir=tmp_path)
    assert cfg.map is not None and cfg.map.path == tmp_path / "maps" / "store.toml"
    # A map that cannot be read: the agent runs, its screens show no routes.
    assert ScreenWayfinder.from_path(cfg.map.path).version is None
    with pytest.raises(MapLoadError):
        load_venue(tmp_path / "nothing.toml")


def test_a_campaign_naming_a_product_follows_the_planogram(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``wayfinding = {to = "sku:..."}``: the way leads to the product's shelf on the planogram
    the box has; the product moved is the route moved; no location or no planogram, no map."""
    from edge_agent.wayfinding.planogram_store import PlanogramStore, load_file

    venue, version = load_venue(DEMO_MAP)
    store = PlanogramStore(tmp_path / "planogram.db")
    wf = ScreenWayfinder(venue, version, products=store)
    to = "sku:SKU-RIDGE-GTX-42"
    try:
        with caplog.at_level(logging.WARNING, "edge_agent"):
            # No planogram yet: the card without a map, the reason said.
            assert wf.attach(CARD, "screen-entrance", to) == CARD
            assert "no planogram loaded" in caplog.text
        demo = load_file(REPO / "demo" / "data" / "planogram.csv", version=1)
        store.replace(demo)
        w = wf.attach(CARD, "screen-entrance", to).wayfinding
        assert w is not None
        # It ends on the product's point on shelf 1 (demo/data/planogram.csv: 8.65, 5.0).
        shoe = demo.by_sku()["SKU-RIDGE-GTX-42"]
        assert shoe.location is not None
        assert abs(w.destination[0] - shoe.location.x) < 1.0
        assert abs(w.destination[1] - shoe.location.y) < 1.0
        # The ERP moves it to shelf 6 upstairs (version 2): the same campaign, the new way.
        moved = [
            p if p.sku != shoe.sku else replace(p, location=replace(
                shoe.location, level_id="L1", unit_id="outdoor-floor", section_id="shelf-6",
                x=12.0, y=6.2))
            for p in demo.products
        ]  # fmt: skip
        store.replace(Planogram(2, tuple(moved), "moved"))
        w2 = wf.attach(CARD, "screen-entrance", to).wayfinding
        assert w2 is not None and w2.distance_m > w.distance_m
        assert abs(w2.destination[0] - 12.0) < 1.0
        # A product with no place on the planogram: never a way, the reason said once.
        caplog.clear()
        with caplog.at_level(logging.WARNING, "edge_agent"):
            for _ in range(2):
                assert wf.attach(CARD, "screen-entrance", "sku:SKU-GIFT-CARD-50") == CARD
                assert wf.attach(CARD, "screen-entrance", "sku:NOT-A-SKU") == CARD
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 2, lines
        assert any("no location" in line for line in lines)
        assert any("no product NOT-A-SKU" in line for line in lines)
    finally:
        store.close()
