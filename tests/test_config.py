"""The config file: one TOML, validated; every error names its key path."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edge_agent.config import ConfigError, load_config, parse_config

DEMO = Path(__file__).parents[1] / "demo" / "store.toml"


def demo_data() -> dict:
    return tomllib.loads(DEMO.read_text())


def test_the_shipped_demo_config_is_valid() -> None:
    cfg = load_config(DEMO)
    assert cfg.store.store_id == "store-0042"
    # Relative paths resolve against the config file's directory, not the working directory.
    assert cfg.ble.replay_file == DEMO.parent / "data" / "trace.jsonl.gz"
    assert cfg.paths_resolved.outbox_db == DEMO.parent / "var" / "outbox.db"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["store"].pop("store_id"), "store.store_id: Field required"),
        (
            lambda d: d["screens"][0].update(zone="basement"),
            "screens[0].zone: unknown zone 'basement'",
        ),
        (lambda d: d["ble"].update(enter_rssi=-90), "leave_rssi must be below enter_rssi"),
        (lambda d: d["store"].update(timezone="Mars/Olympus"), "store.timezone: unknown time zone"),
        (lambda d: d["ble"].update(colour="blue"), "ble.colour: Extra inputs are not permitted"),
        (lambda d: d["ble"]["beacons"][1].update(major=70000), "ble.beacons[1].major"),
        (lambda d: d["central"].update(port="mqtt"), "central.port"),
        (lambda d: d["central"].update(tls=True), "ca_file is required when tls = true"),
        (
            lambda d: d["ble"]["beacons"][0].pop("uuid"),
            "ble.beacons[0]: uuid, major and minor: give all three or none",
        ),
        (
            lambda d: d["ble"]["beacons"].append({"name": "tlm", "zone": "womens"}),
            "ble.beacons[3]: a beacon needs uuid/major/minor, an address or an eik",
        ),
        (
            lambda d: d["ble"]["beacons"].append(
                {"name": "tlm", "zone": "womens", "address": "C0:FF:EE:00:64"}
            ),
            "ble.beacons[3].address: String should match",
        ),
        (
            lambda d: d["ble"]["beacons"].extend(
                [
                    {"name": "a", "zone": "womens", "eik": "ab" * 16},
                    {"name": "b", "zone": "womens", "eik": "AB" * 16},
                ]
            ),
            "ble.beacons[4].eik: same as 'a'",
        ),
        (
            lambda d: d["ble"]["beacons"].append(dict(d["ble"]["beacons"][0], major=9)),
            "ble.beacons[3].name: same as 'entrance-door'",
        ),
        (
            lambda d: d.update(fusion={"identity_keep_p": 0.9}),
            "fusion: need 0 < identity_keep_p <= identity_p < 1",
        ),
        (lambda d: d.update(fusion={"turnover_hold_s": -1}), "fusion.turnover_hold_s"),
    ],
)
def test_errors_name_the_key(mutate, expected: str) -> None:
    data = demo_data()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=DEMO.parent)
    assert any(expected in line for line in info.value.errors), info.value.errors


def test_every_error_is_reported_at_once() -> None:
    data = demo_data()
    data["store"].pop("device_id")
    data["uplink"]["max_batch"] = 0
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=DEMO.parent)
    keys = " ".join(info.value.errors)
    assert "store.device_id" in keys and "uplink.max_batch" in keys


def test_not_toml_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[store\nstore_id = ")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert len(info.value.errors) == 1 and "not valid TOML" in info.value.errors[0]


def test_config_check_cli_exits_2_with_key_paths(tmp_path: Path) -> None:
    text = DEMO.read_text().replace('zone = "entrance"\norientation', 'zone = "attic"\norientation')
    bad = tmp_path / "store.toml"
    bad.write_text(text)
    out = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "config", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "screens[0].zone: unknown zone 'attic'" in out.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "config", "check", str(DEMO)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr


def test_agent_refuses_to_start_on_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "store.toml"
    bad.write_text(DEMO.read_text().replace("replay_speed = 4.0", "replay_speed = -1"))
    out = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "ble.replay_speed" in out.stderr


def test_a_beacon_key_is_not_shown_in_errors_or_repr() -> None:
    data = demo_data()
    key = "0f1e2d3c4b5a69788796a5b4c3d2e1ff"
    data["ble"]["beacons"].append({"name": "till", "zone": "entrance", "eik": key})
    cfg = parse_config(data, base_dir=DEMO.parent)
    assert cfg.ble.beacons[3].eik == key
    assert key not in repr(cfg)
    data["ble"]["beacons"][3]["eik"] = key[:-1] + "g"
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=DEMO.parent)
    assert info.value.errors and not any(key[:-1] in line for line in info.value.errors)


def test_a_config_holding_beacon_keys_must_not_be_world_readable(tmp_path: Path) -> None:
    import io
    import os

    from edge_agent.config import load_for_agent
    from tests.app.test_agent_process import write_config

    path = write_config(tmp_path, 1883, "box-keys", speed=0)
    path.write_text(
        path.read_text()
        + '\n[[ble.beacons]]\nname = "till"\nzone = "entrance"\n'
        + 'eik = "0f1e2d3c4b5a69788796a5b4c3d2e1ff"\n'
    )
    said = io.StringIO()
    os.chmod(path, 0o644)
    assert load_for_agent(path, said) is not None  # it runs, and says what to fix
    assert "readable by everyone (mode 0644); chmod 0640" in said.getvalue()
    assert "0f1e2d3c" not in said.getvalue()
    os.chmod(path, 0o640)
    quiet = io.StringIO()
    assert load_for_agent(path, quiet) is not None and quiet.getvalue() == ""
