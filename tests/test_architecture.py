"""The dependency rule of ARCHITECTURE.md, checked on the source: who may import whom.

contracts  <-  box (edge_agent, sync, signage_ui), central, demo, testbed
the box never imports central, demo or testbed; the pure core imports no I/O.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BOX = ("edge_agent", "sync", "signage_ui")
OURS = {"contracts", "edge_agent", "sync", "signage_ui", "central", "demo", "testbed", "bench"}

# Pure logic: decisions, presence engines, parsers, playback rules, kiosk model, wire shapes.
PURE = [
    "central/console/charts.py",
    "central/console/security.py",
    "contracts/events.py",
    "contracts/kiosk_finder.py",
    "contracts/planogram_csv.py",
    "edge_agent/positioning/fallback.py",
    "edge_agent/positioning/fingerprint.py",
    "edge_agent/positioning/grid.py",
    "edge_agent/positioning/pathloss.py",
    "edge_agent/positioning/scan.py",
    "edge_agent/positioning/smoothing.py",
    "edge_agent/positioning/survey.py",
    "edge_agent/store_api/ratelimit.py",
    "contracts/screen_protocol.py",
    "contracts/slice_parts.py",
    "contracts/topics.py",
    "contracts/uplift.py",
    "contracts/validation.py",
    "contracts/walk.py",
    "edge_agent/journey/attribution.py",
    "edge_agent/journey/campaigns.py",
    "edge_agent/journey/caps.py",
    "edge_agent/journey/decide.py",
    "edge_agent/journey/engine.py",
    "edge_agent/journey/kpis.py",
    "edge_agent/sensing/ble/advert.py",
    "edge_agent/sensing/ble/bayes.py",
    "edge_agent/sensing/ble/calibrate.py",
    "edge_agent/sensing/ble/beacon_health.py",
    "edge_agent/sensing/ble/decode.py",
    "edge_agent/sensing/ble/eid.py",
    "edge_agent/sensing/ble/etlm.py",
    "edge_agent/sensing/ble/filters.py",
    "edge_agent/sensing/ble/profiles.py",
    "edge_agent/sensing/ble/walk.py",
    "edge_agent/sensing/ble/store_beacons.py",
    "edge_agent/sensing/ble/zones.py",
    "edge_agent/sensing/fusion.py",
    "edge_agent/sensing/presence.py",
    "edge_agent/downlink/commands.py",
    "edge_agent/slice/model.py",
    "edge_agent/wayfinding/products.py",
    "edge_agent/box/firmware.py",
    "edge_agent/box/layout.py",
    "edge_agent/box/node_bus.py",
    "edge_agent/box/bus_tls.py",
    "edge_agent/wayfinding/graph.py",
    "edge_agent/wayfinding/imdf.py",
    "edge_agent/wayfinding/model.py",
    "edge_agent/wayfinding/plan.py",
    "edge_agent/wayfinding/product_places.py",
    "edge_agent/wayfinding/route.py",
    "edge_agent/wayfinding/screen_map.py",
    "edge_agent/wayfinding/steps.py",
    "signage_ui/kiosk_model.py",
    "signage_ui/finder_model.py",
    "signage_ui/fit.py",
    "signage_ui/offer_layout.py",
    "signage_ui/qr.py",
    "signage_ui/layout.py",
    "signage_ui/map_frame.py",
    "signage_ui/loop.py",
    "signage_ui/playback.py",
    "signage_ui/style.py",
    "signage_ui/template.py",
]
# Network, databases, devices, screens, processes, threads and event loops.
IO = {
    "asyncio",
    "bleak",
    "cv2",
    "http",
    "kivy",
    "paho",
    "serial",
    "socket",
    "sqlite3",
    "sqlite_utils",
    "ssl",
    "subprocess",
    "threading",
    "urllib",
}


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions count too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (REPO / pkg).rglob("*.py"))


def top(name: str) -> str:
    return name.split(".", 1)[0]


def test_the_rule_sees_every_import_style(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import central.pki\nfrom central import acl\ndef f():\n    from demo import x\n")
    assert {"central.pki", "central", "central.acl", "demo", "demo.x"} <= imports(f)


@pytest.mark.parametrize("path", sources(*BOX), ids=lambda p: str(p.relative_to(REPO)))
def test_the_box_never_imports_central_demo_or_test_fixtures(path: Path) -> None:
    bad = {m for m in imports(path) if top(m) in {"central", "demo", "testbed"}}
    # The player's `--bench` mode runs the UI bench in its own process: bench code, not central.
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sources("contracts"), ids=lambda p: str(p.relative_to(REPO)))
def test_contracts_import_nothing_of_ours_but_contracts(path: Path) -> None:
    bad = {m for m in imports(path) if top(m) in OURS - {"contracts"}}
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sources("central"), ids=lambda p: str(p.relative_to(REPO)))
def test_central_speaks_to_the_box_only_through_contracts(path: Path) -> None:
    bad = {m for m in imports(path) if top(m) in OURS - {"contracts", "central"}}
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


@pytest.mark.parametrize(
    "path", sources("signage_ui", "sync"), ids=lambda p: str(p.relative_to(REPO))
)
def test_player_and_wire_know_the_agent_only_by_its_config(path: Path) -> None:
    # The player reads the box's one TOML file; the uplink takes its [uplink] section. Nothing
    # else of the agent: the player knows it only by bus messages.
    agent = {m for m in imports(path) if top(m) == "edge_agent"}
    assert agent <= {
        "edge_agent.config",
        "edge_agent.config.AgentConfig",
        "edge_agent.config.load_or_report",
        "edge_agent.config.UplinkConfig",
        "edge_agent.config.BrokerConfig",
        "edge_agent.config.ConfigError",
        "edge_agent.config.load_config",
    }, f"{path.relative_to(REPO)} imports {sorted(agent)}"


@pytest.mark.parametrize("rel", PURE)
def test_pure_logic_imports_no_io(rel: str) -> None:
    path = REPO / rel
    bad = {m for m in imports(path) if top(m) in IO}
    assert not bad, f"{rel} imports {sorted(bad)}"
    # ...and nothing of ours that does I/O: only other pure modules, models and contracts.
    ours = {m for m in imports(path) if top(m) in OURS}
    pure_mods = {p.removesuffix(".py").replace("/", ".") for p in PURE}
    allowed = pure_mods | {"edge_agent.config", "contracts"}
    for m in ours:
        assert not m.startswith("contracts.mqtt"), f"{rel} imports {m}"
        assert any(m == a or m.startswith(a + ".") for a in allowed), f"{rel} imports {m}"
