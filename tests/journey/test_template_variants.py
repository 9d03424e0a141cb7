"""Campaign variants choose the retail templates (issue 17): a personal welcome, an order ready
for pickup, a survey's call to action. What each needs is refused at load (a survey without its
link) or named by ``lint`` (an order card with no order to announce, a welcome greeting nobody)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from demo.scenario import CAMPAIGNS_V1
from edge_agent.journey.campaigns import CampaignBundle, Variant, lint
from edge_agent.journey.decide import decide
from tests.journey.test_decision import CAROL, MORNING, ctx


def bundle(*campaigns: dict[str, Any]) -> CampaignBundle:
    return CampaignBundle.model_validate({**CAMPAIGNS_V1, "campaigns": list(campaigns)})


def problems(b: CampaignBundle) -> list[str]:
    return lint(b, zones=["entrance"], screens=["screen-entrance"])


def test_the_demo_order_card_is_an_order_ready_with_its_number_on_the_tag() -> None:
    d = decide(ctx(CAROL), bundle(*CAMPAIGNS_V1["campaigns"]), MORNING)
    assert d.content.template == "order_ready"
    assert d.content.highlight == "CC-4711"
    assert not [line for line in problems(bundle(*CAMPAIGNS_V1["campaigns"])) if "order" in line]


def test_a_survey_needs_its_link() -> None:
    with pytest.raises(ValidationError, match="template survey needs qr_url"):
        Variant(template="survey", title="How did we do?")
    v = Variant(template="survey", title="How did we do?", qr_url="https://x.example/s")
    assert v.template == "survey"


def test_an_emergency_is_not_a_campaigns_template() -> None:
    with pytest.raises(ValidationError):
        Variant.model_validate({"template": "emergency", "title": "Leave"})


def test_lint_names_an_order_card_without_an_order_and_a_welcome_without_a_name() -> None:
    b = bundle(
        {
            "id": "pickup-wrong",
            "segments_any": ["outdoor"],
            "personalised": {"template": "order_ready", "title": "Your order is ready"},
            "anonymous": {"template": "order_ready", "title": "Orders are ready"},
        },
        {
            "id": "hello",
            "segments_any": ["outdoor"],
            "personalised": {"template": "welcome", "title": "Welcome back"},
        },
    )
    got = problems(b)
    assert (
        "pickup-wrong: personalised: template order_ready, but the campaign does not require "
        "a ready order (trigger order_ready)" in got
    )
    assert (
        "pickup-wrong: anonymous: template order_ready, but only a personalised variant has "
        "an order" in got
    )
    assert any("names neither {order_id} nor {pickup_point}" in line for line in got)
    assert (
        "hello: personalised: a personal welcome without {first_name} in its title greets nobody"
        in got
    )
