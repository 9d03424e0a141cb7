"""The store layout schema: the shipped example loads; every mistake names its key."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest
import yaml

from edge_agent.box.layout import LayoutError, load_layout, parse_layout
from edge_agent.cli import main

pytestmark = pytest.mark.timeout(30)

EXAMPLE = Path(__file__).resolve().parents[2] / "firmware_configs" / "demo-store.layout.toml"
# A bought Eddystone beacon, before it is told how the agent knows it.
EDDY = {"name": "eddy", "zone": "womens", "hardware": "eddystone"}
ADDR = "D0:0D:00:00:00:01"


@pytest.fixture()
def data() -> dict:
    return tomllib.loads(EXAMPLE.read_text())


def errors_of(data: dict) -> list[str]:
    with pytest.raises(LayoutError) as exc:
        parse_layout(data)
    return exc.value.errors


def test_example_loads_and_matches_the_demo_store():
    from edge_agent.config import load_config

    layout = load_layout(EXAMPLE)
    demo = load_config(Path("demo/store.toml").resolve())
    assert layout.store.store_id == demo.store.store_id
    assert {z.id for z in layout.zones} == {z.id for z in demo.zones}
    demo_beacons = {(b.name, b.uuid, b.major, b.minor, b.zone) for b in demo.ble.beacons}
    assert {
        (b.name, layout.beacon_uuid(b), b.major, b.minor, b.zone) for b in layout.beacons
    } == demo_beacons


def test_yaml_layout_is_the_same_as_toml(tmp_path, data):
    path = tmp_path / "store.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_layout(path) == load_layout(EXAMPLE)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["beacons"][1].update(tx_power_dbm=3), "beacons[1].tx_power_dbm: an HM-10"),
        (lambda d: d["beacons"][1].update(interval_ms=500), "beacons[1].interval_ms: an HM-10"),
        (lambda d: d["beacons"][1].update(eddystone=True), "beacons[1].eddystone: an HM-10"),
        (lambda d: d["beacons"][0].update(tx_power_dbm=4), "beacons[0].tx_power_dbm: an ESP32"),
        (lambda d: d["beacons"][0].update(major=70000), "beacons[0].major: Input should be"),
        (lambda d: d["beacons"][2].update(zone="nowhere"), "beacons[2].zone: unknown zone"),
        (lambda d: d["beacons"][2].update(colour="red"), "beacons[2].colour: Extra inputs"),
        (lambda d: d["beacons"][2].update(minor=2, major=100), "beacons[2]: same uuid/major/minor"),
        (lambda d: d["scanners"][1].update(id="Node_1"), "scanners[1].id: String should match"),
        (lambda d: d["scanners"][1].update(zone="x"), "scanners[1].zone: unknown zone"),
        (
            lambda d: d["scanners"][1].update(id="mmwave-entrance"),
            "presence_sensors[0].id: 'mmwave-entrance' is also",
        ),
        (lambda d: d["screens"][0].update(zone="x"), "screens[0].zone: unknown zone"),
        (lambda d: d["zones"].append({"id": "womens"}), "zones[2]: duplicate id"),
        (lambda d: d["scanners"].append(d["scanners"][0]), "scanners[2]: duplicate id"),
        (lambda d: d.pop("bus"), "bus: required by 'node-womens-1'"),
        (lambda d: d.pop("wifi"), "wifi: required by 'node-womens-1'"),
        (lambda d: d["store"].update(beacon_uuid="nope"), "store.beacon_uuid: String should"),
        (lambda d: d["presence_sensors"][0].update(kind="ld9999"), "presence_sensors[0].kind"),
        (lambda d: d["beacons"][0].pop("major"), "beacons[0].major: required (an esp32"),
        (lambda d: d["beacons"][1].pop("minor"), "beacons[1].minor: required (an hm10"),
        (
            lambda d: d["beacons"][1].update(major=0),
            "beacons[1].major: an HM-10 takes 1..65534 only (AT+MARJ 0x0001..0xFFFE), not 0",
        ),
        (
            lambda d: d["beacons"][1].update(minor=65535),
            "beacons[1].minor: an HM-10 takes 1..65534 only (AT+MINO 0x0001..0xFFFE), not 65535",
        ),
        (lambda d: d["beacons"].append(EDDY | {"major": 7}), "beacons[3].minor: an Eddystone-UID"),
        (
            lambda d: d["beacons"].append(dict(EDDY)),
            "beacons[3].address: an Eddystone beacon needs major/minor (its UID), an address",
        ),
        (
            lambda d: d["beacons"].append(EDDY | {"eddystone": True, "address": ADDR}),
            "beacons[3].eddystone: for an ESP32 only",
        ),
        (lambda d: d["beacons"].append(EDDY | {"address": "D0:0D"}), "beacons[3].address: String"),
        (lambda d: d["beacons"].append(EDDY | {"eik": "12" * 15}), "beacons[3].eik: String should"),
        (
            lambda d: d["beacons"].extend(
                [EDDY | {"address": ADDR}, EDDY | {"name": "b", "address": ADDR.lower()}]
            ),
            "beacons[4].address: same as 'eddy'",
        ),
        (
            lambda d: d["beacons"].extend(
                [EDDY | {"eik": "ab" * 16}, EDDY | {"name": "b", "eik": "AB" * 16}]
            ),
            "beacons[4].eik: same as 'eddy'",
        ),
    ],
)
def test_each_mistake_names_its_key(data, mutate, expected):
    bad = copy.deepcopy(data)
    mutate(bad)
    errs = errors_of(bad)
    assert any(e.startswith(expected) for e in errs), errs


def test_not_a_table():
    assert errors_of([1, 2]) == ["(root): a layout is a table/mapping of sections"]  # type: ignore[arg-type]


def test_cli_check_reports_every_error_one_line_each(tmp_path, capsys, data):
    data["beacons"][1]["tx_power_dbm"] = 3
    data["scanners"][0]["colour"] = "red"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert main(["firmware", "check", str(bad)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{bad}: ") for line in lines)
    assert main(["firmware", "check", str(EXAMPLE)]) == 0


@pytest.mark.parametrize(
    "text, suffix, expected",
    [
        ("store = [", ".toml", "not valid TOML"),
        ("store: [", ".yaml", "not valid YAML"),
        (b"\xff\xfe", ".toml", "not UTF-8 text"),
    ],
)
def test_unreadable_files(tmp_path, text, suffix, expected):
    path = tmp_path / f"l{suffix}"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(LayoutError) as exc:
        load_layout(path)
    assert exc.value.errors[0].startswith(expected)
    with pytest.raises(LayoutError, match="cannot read"):
        load_layout(tmp_path / "missing.toml")
