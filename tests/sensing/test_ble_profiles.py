"""Named presence profiles (edge_agent/sensing/ble/profiles.py): what the config selects, what
the tracker builds from it, and that each profile sits where BENCHMARKS.md says on a store with
ground truth."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from edge_agent.sensing.ble.bayes import BayesZoneEngine
from edge_agent.sensing.ble.profiles import DEFAULT_PROFILE, PROFILES, PresenceProfile
from edge_agent.sensing.ble.zones import ZoneEngine
from tests.sensing.test_ble_presence import ble_cfg


def test_the_config_offers_exactly_the_shipped_profiles() -> None:
    from edge_agent.config import BleConfig

    offered = typing.get_args(BleConfig.model_fields["profile"].annotation)
    assert set(offered) == set(PROFILES)
    assert BleConfig.model_fields["profile"].default == DEFAULT_PROFILE


def test_the_default_profile_is_what_the_section_s_own_defaults_say(tmp_path: Path) -> None:
    ble = ble_cfg(tmp_path).ble
    p = ble.presence_profile()
    assert p.name == "responsive" and p.method == ble.zone_method == "hysteresis"
    assert (p.filter.kind, p.min_dwell_s, p.leave_hold_s) == (
        ble.filter,
        ble.min_dwell_s,
        ble.leave_hold_s,
    )
    assert p.filter.ema_alpha == ble.ema_alpha


def test_a_profile_s_settings_yield_to_keys_the_site_sets(tmp_path: Path) -> None:
    steady = ble_cfg(tmp_path, profile="steady").ble.presence_profile()
    assert (steady.filter.kind, steady.filter.kalman_q, steady.min_dwell_s) == ("kalman", 1.0, 4.0)
    mine = ble_cfg(tmp_path, profile="steady", min_dwell_s=2.0, filter="median").ble
    p = mine.presence_profile()
    assert (p.filter.kind, p.min_dwell_s, p.leave_hold_s) == ("median", 2.0, 1.5)
    # A key left at its default but written out still counts as the site's choice.
    explicit = ble_cfg(tmp_path, profile="eager", zone_method="hysteresis", leave_hold_s=1.0).ble
    assert explicit.presence_profile().leave_hold_s == 1.0
    assert (
        ble_cfg(tmp_path, profile="bayes", zone_method="hysteresis").ble.presence_profile().method
        == "hysteresis"
    )


def test_an_unknown_profile_is_refused_naming_the_key(tmp_path: Path) -> None:
    from edge_agent.config import ConfigError

    with pytest.raises(ConfigError, match=r"ble\.profile"):
        ble_cfg(tmp_path, profile="fastest")
    with pytest.raises(ValueError, match="unknown bayes settings"):
        PresenceProfile("x", "", method="bayes", bayes=(("corr_ms", 1.0),))


def test_the_tracker_builds_the_engine_its_profile_names(tmp_path: Path) -> None:
    from edge_agent.sensing.presence import tracker_from_config

    def engine(**ble):
        return tracker_from_config(ble_cfg(tmp_path, **ble).ble, tmp_path).engine

    base, eager, bayes = engine(), engine(profile="eager"), engine(profile="bayes_steady")
    assert isinstance(base, ZoneEngine) and isinstance(eager, ZoneEngine)
    assert eager.params.enter_m == pytest.approx(base.params.enter_m * 1.3)
    assert eager.params.exit_m == pytest.approx(base.params.exit_m * 1.1)
    assert (eager.params.min_samples, eager.params.filter.kind) == (1, "one_euro")
    assert isinstance(bayes, BayesZoneEngine)
    assert (bayes.params.corr_s, bayes.params.p_enter) == (1.0, 0.7)
    assert bayes.params.zone_m == pytest.approx(base.params.enter_m)  # the site's own edge


def test_eager_enters_sooner_and_steady_flaps_less_on_a_store_with_ground_truth() -> None:
    """The ordering the profiles are named for, on a store the bench did not tune on."""
    from bench.ble import _replay, _score
    from bench.ble_anchors import Ours, profile_params
    from bench.ble_sim import PATH_LOSS_N, generate

    tr = generate(40, 900.0, seed=7)
    score = {
        name: _score(tr, _replay(tr, Ours(tr.calibration, PATH_LOSS_N, profile_params(name))))
        for name in ("responsive", "steady", "eager")
    }
    enter = {k: s["enter_latency_s"]["p90"] for k, s in score.items()}
    flaps = {k: s["flaps_per_shopper_hour"] for k, s in score.items()}
    assert all(s["stops"] > 40 for s in score.values())
    assert enter["eager"] < enter["responsive"] < enter["steady"], enter
    assert flaps["steady"] < flaps["responsive"] < flaps["eager"], flaps


def test_pareto_names_the_fewest_flaps_among_the_profiles_that_beat_an_anchor() -> None:
    from bench.ble import ANCHORS, PROFILE_PIPES, pareto

    def q(flaps: float, enter: float | None, leave: float) -> dict:
        return {
            "flaps_per_shopper_hour": flaps,
            "enter_latency_s": {"p90": enter},
            "leave_latency_s": {"p90": leave},
        }

    quality = {pipe: q(50.0, 9.0, 9.0) for pipe in PROFILE_PIPES.values()}
    quality["room_assistant"] = q(100.0, 3.0, 8.0)  # beaten by brisk and eager
    quality["espresense"] = q(4.0, 13.0, 18.0)  # beaten by steady only
    quality["ha_mqtt_room"] = q(140.0, 1.0, 10.0)  # beaten by none
    quality["ours_brisk"] = q(70.0, 2.5, 5.5)
    quality["ours_eager"] = q(90.0, 2.0, 5.5)
    quality["ours_steady"] = q(3.0, 8.0, 9.0)
    quality["ours_median"] = q(20.0, None, 5.0)  # never entered: not a win on enter
    got = pareto(quality)
    assert set(got) == set(ANCHORS)
    assert got == {"room_assistant": "brisk", "espresense": "steady", "ha_mqtt_room": None}
    quality["ours_eager"] = q(60.0, 2.0, 5.5)  # now eager flaps least of the two
    assert pareto(quality)["room_assistant"] == "eager"
