"""Targeted variants carry everything the loop can show (issue 17): a product photo and where
its subject is, today's price from the slice's stock table, a badge, a call to action, a QR
link, validity, in the shopper's language; `lint` says which photo the screens do not have and
which placeholder nothing can fill."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from demo.scenario import CAMPAIGNS_V1
from edge_agent.journey.campaigns import CampaignBundle, Variant, lint
from edge_agent.journey.decide import World, decide
from edge_agent.slice.model import StockPrice
from tests.journey.test_decision import ALICE, BOB, MORNING, ctx

PHOTO = "ab" * 32
CLIP = "cd" * 32


def shoe_offer(**personalised: Any) -> CampaignBundle:
    campaign = {
        "id": "ridge-gtx",
        "priority": 80,
        "segments_any": ["outdoor"],
        "stock_sku": "SKU-RIDGE-GTX-42",
        "personalised": {
            "title": "{first_name}, the Ridge GTX is back",
            "body": "Waterproof and light: try a pair today.",
            "image_sha256": PHOTO,
            "image_focus": [0.4, 0.6],
            "price": 149.0,  # typed weeks ago; the shelf says otherwise today
            "badge": "-25 %",
            "cta": "Ask us for your size, {first_name}",
            "qr_url": "https://northwind.example/p/SKU-RIDGE-GTX-42",
            "valid_until": "2026-12-24",
            "translations": {
                "de": {"title": "{first_name}, der Ridge GTX ist zurück", "cta": "Fragen Sie uns"}
            },
            **personalised,
        },
        "anonymous": {"title": "The Ridge GTX is back", "price": 149.0, "template": "offer_card"},
    }
    return CampaignBundle.model_validate({**CAMPAIGNS_V1, "campaigns": [campaign]})


def test_a_targeted_card_carries_the_photo_price_badge_and_qr() -> None:
    today = World(
        stock={"SKU-RIDGE-GTX-42": True},
        prices={"SKU-RIDGE-GTX-42": StockPrice(89.0, 119.0, "EUR")},
    )
    d = decide(ctx(ALICE), shoe_offer(), MORNING, today)
    c = d.content
    assert d.variant == "personalised" and c.campaign_id == "ridge-gtx"
    assert c.title == "Alice, the Ridge GTX is back"
    assert (c.image_sha256, c.image_focus) == (PHOTO, (0.4, 0.6))
    # The shelf's price today, not the campaign's typed one.
    assert (c.price, c.was_price, c.currency) == (89.0, 119.0, "EUR")
    assert c.badge == "-25 %" and c.cta == "Ask us for your size, Alice"
    assert c.qr_url == "https://northwind.example/p/SKU-RIDGE-GTX-42"
    assert c.valid_until == date(2026, 12, 24)
    # Without a price on the stock table, the campaign's own.
    d = decide(ctx(ALICE), shoe_offer(), MORNING, World(stock={"SKU-RIDGE-GTX-42": True}))
    assert (d.content.price, d.content.was_price) == (149.0, None)


def test_the_shoppers_language_carries_its_call_to_action() -> None:
    german = replace(ALICE, language="de")
    world = World(stock={"SKU-RIDGE-GTX-42": True})
    c = decide(ctx(german), shoe_offer(), MORNING, world).content
    assert c.language == "de" and c.title == "Alice, der Ridge GTX ist zurück"
    assert c.cta == "Fragen Sie uns" and c.badge == "-25 %"  # no German badge: the variant's


def test_an_anonymous_card_never_fills_a_name() -> None:
    # Alice with someone else at the screen: her segment picks the offer, her name stays off.
    world = World(stock={"SKU-RIDGE-GTX-42": True})
    d = decide(ctx(ALICE, BOB, people=2), shoe_offer(), MORNING, world)
    assert d.variant == "anonymous" and "Alice" not in d.content.model_dump_json()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"template": "image", "image_sha256": None}, "template image needs image_sha256"),
        ({"template": "video"}, "template video needs video_sha256"),
        ({"image_focus": [1.2, 0.5]}, "between 0 and 1"),
        ({"image_sha256": "not-a-hash"}, "image_sha256"),
        ({"qr_url": "http://northwind.example/p"}, "qr_url"),
        ({"qr_url": "javascript:alert(1)"}, "qr_url"),
        ({"cta": "Hello {email}"}, "unknown template field"),
        ({"badge": "x" * 25}, "badge"),
        ({"price": -1}, "price"),
    ],
)
def test_a_broken_variant_is_refused_naming_the_field(change: dict, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        shoe_offer(**change)


def test_lint_names_a_photo_the_screens_do_not_have_and_empty_placeholders() -> None:
    bundle = shoe_offer(video_sha256=CLIP)
    lines = lint(bundle, zones=["entrance"], screens=["screen-entrance"], assets={PHOTO})
    assert lines == [
        f"ridge-gtx: personalised: video_sha256 {CLIP[:12]}... is neither in the screens' "
        "content cache nor announced by a manifest"
    ]
    assert lint(bundle, zones=["entrance"], screens=["screen-entrance"], assets={PHOTO, CLIP}) == []
    # A name on the anonymous card, an order on a card that needs none: said.
    raw = bundle.model_dump(mode="json")
    raw["campaigns"][0]["anonymous"]["title"] = "Hi {first_name}"
    raw["campaigns"][0]["personalised"]["body"] = "Order {order_id} waits"
    raw["campaigns"][0]["personalised"]["badge"] = "{category}"
    lines = lint(CampaignBundle.model_validate(raw), zones=["entrance"], screens=[])
    assert "ridge-gtx: anonymous: {first_name} would be empty" in " | ".join(lines)
    assert "ridge-gtx: personalised: {order_id} may be empty" in " | ".join(lines)
    assert "{category} would be empty: the campaign has no affinity_category" in " | ".join(lines)


def test_the_bundle_names_every_file_it_shows() -> None:
    bundle = shoe_offer(video_sha256=CLIP)
    assert bundle.assets() == {PHOTO, CLIP}
    assert Variant(title="x").assets() == set()
