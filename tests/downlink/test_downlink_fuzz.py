"""Bad downlink input, properly signed: whatever body central (or an attacker with a stolen
signing key) sends for any kind, the box refuses it with a reason, never crashes, and changes
nothing. (Unsigned, forged and malformed envelopes: tests/contracts/test_signing.py.)"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from contracts import topics
from contracts.signing import expires_in, load_public_key, sign_message
from demo import scenario
from edge_agent.app.agent import Agent
from edge_agent.clock import ScaledClock
from edge_agent.config import BrokerConfig
from edge_agent.downlink.content_manifest import parse_manifest
from edge_agent.sensing.ble.sources import ReplaySource
from edge_agent.wayfinding.products import parse_body
from sync.downlink import Downlink
from tests.app.test_agent_journey import demo_config
from tests.downlink.test_commands import PRIV, PUB, demo_toml

STORE, DEVICE = "store-0042", "box-entrance-1"
KINDS = ["campaigns", "profiles", "content", "config", "command", "map", "planogram"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
# Bodies that look almost right: the real top-level keys with hostile values.
near_miss = st.fixed_dictionaries(
    {},
    optional={
        k: json_values
        for k in ("command", "screen", "toml", "playlist", "assets", "version", "type",
                  "profiles", "campaigns", "default", "title", "certificate_pem", "store_id",
                  "manifest", "collections", "products")
    },
)  # fmt: skip
bodies = st.dictionaries(st.text(max_size=12), json_values, max_size=6) | near_miss


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("fuzzbox")
    cfg = demo_config(tmp, 1, PUB, camera=False)
    clock = ScaledClock(scenario.T0, 1.0)
    agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
    agent.profiles.load_snapshot(scenario.profile_slice(), version=1)
    agent.handlers.config_path = tmp / "agent.toml"
    agent.handlers.config_path.write_text(demo_toml(tmp))
    dl = Downlink(
        BrokerConfig(),
        STORE,
        DEVICE,
        load_public_key(PUB),
        tmp / "downlink-state.json",
        appliers={
            "campaigns": agent.handlers.apply_campaigns,
            "profiles": agent.handlers.apply_profiles,
            "command": agent.handlers.apply_command,
            "config": agent.handlers.apply_config,
            "content": agent.handlers.apply_content,
            "map": agent.handlers.appliers()["map"],
            "planogram": agent.handlers.appliers()["planogram"],
        },
    )
    yield agent, dl, tmp
    agent.profiles.close()
    shutil.rmtree(tmp, ignore_errors=True)


def snapshot(agent: Agent, tmp: Path) -> tuple:
    content = agent.paths.content_dir
    return (
        agent.content.bundle.version,
        agent.profiles.count(),
        sorted(agent.profiles.identity_keys()),
        agent.handlers.config_path.read_bytes(),  # type: ignore[union-attr]
        (content / "playlist.json").exists(),
        agent.exit_code,
        agent.handlers.wayfinding.health() if agent.handlers.wayfinding else None,
        sorted(p.name for p in (agent.paths.state_dir / "map").glob("*")),
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(kind=st.sampled_from(KINDS), body=bodies, version=st.integers(1, 2**31))
def test_any_signed_body_is_refused_cleanly_and_changes_nothing(box, kind, body, version) -> None:
    agent, dl, tmp = box
    if kind == "content":
        # An empty loop is a legitimate manifest (the player falls back to its default card).
        with contextlib.suppress(ValueError):
            parse_manifest(body)
            assume(False)
    if kind == "planogram":
        # An empty planogram is a legitimate push too.
        with contextlib.suppress(ValueError):
            parse_body(body)
            assume(False)
    before = snapshot(agent, tmp)
    raw = sign_message(PRIV, kind, body, STORE, DEVICE, version, expires_in(600))
    result = dl.handle(topics.device_cmd(STORE, DEVICE, kind), raw)
    assert not result.accepted, (kind, body)
    assert result.reason and "\n" not in result.reason and len(result.reason) <= 300
    assert snapshot(agent, tmp) == before
    json.loads(result.ack_json())  # the ack itself is well-formed
