"""Store plans: one-line errors with key paths; the same plan writes the same IMDF."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import pytest

from edge_agent.box.layout import load_layout
from edge_agent.wayfinding.plan import PlanError, author, parse_plan, plan_to_imdf

from .conftest import DEMO_PLAN, REPO


@pytest.fixture
def demo_data() -> dict[str, Any]:
    return tomllib.loads(DEMO_PLAN.read_text())


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(PlanError) as exc:
        parse_plan(data)
    return exc.value.errors


def test_the_same_plan_writes_the_same_bytes(demo_data: dict[str, Any]) -> None:
    plan = parse_plan(demo_data)
    a, _, _ = plan_to_imdf(plan)
    b, _, _ = plan_to_imdf(parse_plan(copy.deepcopy(demo_data)))
    assert a == b


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["doors"][2].update(level="L9"), "doors[2].level: unknown level 'L9'"),
        (lambda d: d["venue"].update(nmae="x"), "venue.nmae: Extra inputs are not permitted"),
        (
            lambda d: d["areas"][0].update(rect=[6, 0, 0, 3]),
            "areas[0].rect: [x0, y0, x1, y1] with x1 > x0 and y1 > y0",
        ),
        (
            lambda d: d["connectors"][0].update(levels=["L0", "L7"]),
            "connectors[0].levels[1]: unknown level 'L7'",
        ),
        (
            lambda d: d["shelves"][1].update(id=d["shelves"][0]["id"]),
            "(features): duplicate id 'shelf-1'",
        ),
        (
            lambda d: d["connectors"][1].update(direction="up"),
            "connectors[1].direction: only an escalator runs one way",
        ),
        (
            lambda d: d["screens"][0].update(facing_deg=400),
            "screens[0].facing_deg: Input should be less than 360",
        ),
    ],
)
def test_plan_errors_name_their_key(demo_data: dict[str, Any], change: Any, expected: str) -> None:
    change(demo_data)
    assert expected in errors_of(demo_data)


def test_geometry_errors_are_traced_back_to_the_plan(demo_data: dict[str, Any]) -> None:
    demo_data["doors"][0]["line"] = [[2, 1.5], [4, 1.5]]  # the middle of the lobby
    plan = parse_plan(demo_data)
    _, result, errors, _ = author(plan)
    assert not result.ok
    assert any(e.startswith("doors[0]: geometry: lies on no unit") for e in errors), errors


def test_placements_must_be_the_layouts(demo_data: dict[str, Any]) -> None:
    layout = load_layout(REPO / "firmware_configs" / "demo-store.layout.toml")
    demo_data["screens"][0]["id"] = "screen-nowhere"
    demo_data["zones"][0]["id"] = "garden"
    demo_data["beacons"].append({"name": "ghost", "level": "L0"})
    demo_data["screens"].append(
        {"id": "screen-entrance", "level": "L0", "position": [20, 5], "facing_deg": 0}
    )
    _, _, errors, _ = author(parse_plan(demo_data), layout)
    assert "screens[0].id: 'screen-nowhere' is not a screen of the store layout" in errors
    assert "zones[0].id: 'garden' is not a zone of the store layout" in errors
    assert "beacons[3].position: missing (and no layout beacon 'ghost')" in errors
    # (20, 5) is in the stock room, which is an area: placed, but routes from it are refused.
    assert not any(e.startswith("screens[1]") for e in errors)
