"""The demo store's map (demo/store-map.toml) as IMDF files, a VenueMap and its graph."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.wayfinding.graph import NavGraph, build_graph
from edge_agent.wayfinding.model import VenueMap
from edge_agent.wayfinding.plan import author, load_plan

REPO = Path(__file__).resolve().parents[2]
DEMO_PLAN = REPO / "demo" / "store-map.toml"


@pytest.fixture(scope="session")
def demo_files() -> dict[str, bytes]:
    plan, layout = load_plan(DEMO_PLAN)
    files, result, errors, warnings = author(plan, layout)
    assert (errors, warnings) == ([], [])
    return files


@pytest.fixture(scope="session")
def demo_map() -> VenueMap:
    plan, layout = load_plan(DEMO_PLAN)
    _, result, errors, _ = author(plan, layout)
    assert not errors and result.venue is not None
    return result.venue


@pytest.fixture(scope="session")
def demo_graph(demo_map: VenueMap) -> NavGraph:
    return build_graph(demo_map)
