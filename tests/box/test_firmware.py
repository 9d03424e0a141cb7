"""Rendered firmware: ESPHome accepts it, the agent decodes what it will send, and the agent
fragment names the same zones, beacons and scanners as the firmware (no drift)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.box.firmware import (
    FRAGMENT,
    SECRETS_EXAMPLE,
    Secret,
    eddystone_uid_adv,
    ibeacon_adv,
    load_rendered,
    mmwave_topic,
    render,
    scanner_topic,
    write_rendered,
)
from edge_agent.box.firmware_cli import bus_certificates, update_secrets
from edge_agent.box.layout import load_layout, parse_layout
from edge_agent.box.node_bus import CA_SECRET
from edge_agent.cli import main
from edge_agent.config import parse_config
from edge_agent.sensing.ble.decode import advert_from_gap, decode_advert

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "firmware_configs" / "demo-store.layout.toml"
ESPHOME = ROOT / ".venv-esphome" / "bin" / "esphome"


@pytest.fixture(scope="module")
def layout():
    return load_layout(EXAMPLE)


@pytest.fixture(scope="module")
def files(layout) -> dict[str, str]:
    return render(layout, "firmware_configs/demo-store.layout.toml")


def variant_layout():
    """The demo layout with every other option: an iBeacon-only ESP32 beacon, a UART scanner on
    other pins and baud rate, no Wi-Fi nodes (so no secrets)."""
    data = tomllib.loads(EXAMPLE.read_text())
    data["beacons"][0].update(eddystone=False, tx_power_dbm=-12, interval_ms=350)
    data["scanners"] = [
        {"id": "node-a", "zone": "womens", "uart": {"tx_pin": "GPIO17", "rx_pin": "GPIO16"}}
    ]
    data["presence_sensors"] = []
    return parse_layout(copy.deepcopy(data))


def lambda_bytes(code: str, name: str) -> bytes:
    m = re.search(rf"{name}\[\] = \{{([^}}]*)\}}", code)
    assert m, f"no {name} array"
    return bytes(int(x, 16) for x in m[1].split(","))


def test_files_and_determinism(layout, files):
    assert sorted(files) == sorted(
        [
            "node-entrance-1.yaml",
            "node-womens-1.yaml",
            "entrance-door.yaml",
            "mmwave-entrance.yaml",
            FRAGMENT,
            SECRETS_EXAMPLE,
        ]
    )
    # HM-10 beacons are provisioned over serial, not flashed.
    assert "entrance-shelf.yaml" not in files
    assert render(layout, "firmware_configs/demo-store.layout.toml") == files
    assert "wifi_password" not in files["node-womens-1.yaml"].replace("!secret wifi_password", "")


def test_agent_fragment_parses_and_matches_the_firmware(layout, files):
    """The drift check: everything the agent knows comes from the same layout as the firmware."""
    fragment = tomllib.loads(files[FRAGMENT])
    base = {
        "store": {"store_id": layout.store.store_id, "device_id": "box-1"},
        "screens": [{"id": "s1", "zone": "entrance"}],
        "ble": {"source": "bleak", "zone": "entrance"},
        "downlink": {"ops_public_key": "x"},
    }
    base["zones"] = fragment["zones"]
    base["ble"].update(fragment["ble"])
    cfg = parse_config(base)

    docs = {n: load_rendered(t) for n, t in files.items() if n.endswith(".yaml")}
    # Zones: every node's zone is a zone of the agent.
    assert [z.id for z in cfg.zones] == [z.id for z in layout.zones]

    # Scanner nodes: the name in each advert line is a receiver the agent maps to its zone.
    scanners = {}
    for doc in docs.values():
        tracker = doc.get("esp32_ble_tracker")
        if tracker:
            code = tracker["on_ble_advertise"][0]["then"][0]["lambda"]
            receiver = re.search(r'\\"receiver\\":\\"([^\\]+)\\"', code)[1]
            assert receiver == doc["esphome"]["name"]
            scanners[receiver] = doc
    assert set(scanners) == set(cfg.ble.receivers)
    assert cfg.ble.receivers == {s.id: s.zone for s in layout.scanners}
    # The MQTT scanner publishes on the documented topic; the UART one writes the line + LF.
    mqtt_code = scanners["node-womens-1"]["esp32_ble_tracker"]["on_ble_advertise"][0]["then"][0]
    assert scanner_topic("store-0042", "node-womens-1") in mqtt_code["lambda"]
    assert scanners["node-womens-1"]["wifi"]["ssid"] == Secret("wifi_ssid")
    uart_code = scanners["node-entrance-1"]["esp32_ble_tracker"]["on_ble_advertise"][0]["then"][0]
    assert "id(box).write_str" in uart_code["lambda"] and 'line += "\\n"' in uart_code["lambda"]

    # Beacons: what each ESP32 beacon advertises is what the agent decodes and looks up.
    agent_beacons = {(b.uuid, b.major, b.minor): b.name for b in cfg.ble.beacons}
    code = docs["entrance-door.yaml"]["interval"][0]["then"][0]["if"]["then"][0]["lambda"]
    advert = advert_from_gap(lambda_bytes(code, "IBEACON"), -60)
    (frame,) = decode_advert(advert).frames
    ident = (frame.fields["uuid"], frame.fields["major"], frame.fields["minor"])
    assert agent_beacons[ident] == "entrance-door"
    assert frame.fields["measured_power"] == -59
    eddy = decode_advert(advert_from_gap(lambda_bytes(code, "EDDYSTONE"), -60)).frames
    assert [f.format for f in eddy] == ["eddystone_uid"]
    assert eddy[0].fields["instance"] == "000000640001"
    assert eddy[0].fields["namespace"] == "f7826da6" + "bc5b71e0893e"
    # The HM-10s are in the agent config too (provisioned from the same layout).
    assert set(agent_beacons.values()) == {b.name for b in layout.beacons}

    # mmWave: ON/OFF on the zone's topic.
    radar = docs["mmwave-entrance.yaml"]
    topic = radar["binary_sensor"][0]["has_target"]["state_topic"]
    assert topic == mmwave_topic("store-0042", "entrance", "mmwave-entrance")
    assert radar["mqtt"]["broker"] == layout.bus.host == "edge-box-0042.local"
    assert radar["mqtt"]["discovery"] is False

    # Each bus node logs in as itself, with its own secrets (names only in the YAML); OTA too.
    for name in ("mmwave-entrance", "node-womens-1"):
        mqtt = docs[f"{name}.yaml"]["mqtt"]
        secret = name.replace("-", "_")
        assert mqtt["username"] == name
        assert mqtt["password"] == Secret(f"{secret}_mqtt_password")
        assert mqtt["topic_prefix"] == f"instore/store-0042/nodes/{name}"
        assert mqtt["log_topic"] is None and mqtt["discover_ip"] is False
        (ota,) = docs[f"{name}.yaml"]["ota"]
        assert ota == {"platform": "esphome", "password": Secret(f"{secret}_ota_password")}
    # No network, no OTA: the UART scanner and the beacon are flashed over USB.
    assert "ota" not in docs["node-entrance-1.yaml"] and "ota" not in docs["entrance-door.yaml"]


def test_ibeacon_only_variant_uses_esphome_component():
    layout = variant_layout()
    files = render(layout)
    doc = load_rendered(files["entrance-door.yaml"])
    beacon = doc["esp32_ble_beacon"]
    assert (beacon["uuid"], beacon["major"], beacon["minor"]) == (
        "f7826da6-4fa2-4e98-8024-bc5b71e0893e",
        100,
        1,
    )
    assert beacon["tx_power"] == "-12dBm" and beacon["min_interval"] == "350ms"
    assert SECRETS_EXAMPLE not in files
    node = load_rendered(files["node-a.yaml"])
    assert node["uart"]["tx_pin"] == "GPIO17" and "wifi" not in node
    assert tomllib.loads(files[FRAGMENT])["ble"]["receivers"] == {"node-a": "womens"}


@given(
    uuid=st.uuids(),
    major=st.integers(0, 65535),
    minor=st.integers(0, 65535),
    power=st.integers(-127, 0),
)
@settings(max_examples=200, deadline=None)
def test_advertising_payloads_decode_to_the_same_identity(uuid, major, minor, power):
    ib = ibeacon_adv(str(uuid), major, minor, power)
    ed = eddystone_uid_adv(str(uuid), major, minor, power)
    assert len(ib) <= 31 and len(ed) <= 31  # one legacy advertising PDU
    (frame,) = decode_advert(advert_from_gap(ib, -70)).frames
    assert frame.fields == {
        "uuid": str(uuid),
        "major": major,
        "minor": minor,
        "measured_power": power,
    }
    (uid,) = decode_advert(advert_from_gap(ed, -70)).frames
    assert uid.fields["namespace"] == uuid.hex[:8] + uuid.hex[20:]
    assert uid.fields["instance"] == f"0000{major:04x}{minor:04x}"


def test_cli_render_writes_files_and_refuses_a_bad_layout(tmp_path, capsys):
    out = tmp_path / "fw"
    assert main(["firmware", "render", str(EXAMPLE), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*render(load_layout(EXAMPLE)), "secrets.yaml", "mosquitto", "bus-ca.key", "bus-ca.crt"]
    )
    assert sorted(p.name for p in (out / "mosquitto").iterdir()) == [
        "nodes-server.crt",
        "nodes-server.key",
        "nodes.acl",
        "nodes.conf",
        "nodes.passwd",
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace("major = 200", "major = -1"))
    out2 = tmp_path / "fw2"
    assert main(["firmware", "render", str(bad), "--out", str(out2)]) == 2
    assert "beacons[2].major: Input should be greater than or equal to 0" in capsys.readouterr().err
    assert not out2.exists()


def _esphome_config(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ESPHOME), "config", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(
    not ESPHOME.exists(),
    reason="ESPHome is not installed in .venv-esphome (run `make esphome`, about 40 s)",
)
def test_esphome_validates_every_rendered_file(tmp_path, layout):
    """ESPHome's own validator on each node config (lambdas are C++: it checks the YAML, the
    components and their options, not the C++, which only a full build compiles)."""
    demo = tmp_path / "demo"
    other = tmp_path / "variant"
    paths = write_rendered(render(layout), demo) + write_rendered(render(variant_layout()), other)
    # The node passwords and the bus CA as `firmware render` makes them, then the Wi-Fi an
    # installer adds.
    _server, ca = bus_certificates(demo, layout)
    update_secrets(demo / "secrets.yaml", layout, {CA_SECRET: ca})
    with (demo / "secrets.yaml").open("a") as f:
        f.write((demo / SECRETS_EXAMPLE).read_text())
    shutil.copy(ROOT / "firmware_configs" / "esp32-scanner.yaml", other / "esp32-scanner.yaml")
    paths.append(other / "esp32-scanner.yaml")
    checked = []
    for path in paths:
        if path.suffix != ".yaml":
            continue
        proc = _esphome_config(path)
        assert proc.returncode == 0, f"{path.name}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
        assert "Configuration is valid!" in proc.stdout + proc.stderr
        checked.append(path.name)
    assert len(checked) == 7, checked


@pytest.mark.skipif(not ESPHOME.exists(), reason="ESPHome is not installed in .venv-esphome")
def test_esphome_rejects_a_broken_render(tmp_path, layout):
    """The validator check can fail: a beacon major out of range is refused by ESPHome too."""
    files = render(variant_layout())
    path = tmp_path / "entrance-door.yaml"
    path.write_text(files["entrance-door.yaml"].replace("major: 100", "major: 70000"))
    proc = _esphome_config(path)
    assert proc.returncode != 0


def test_eddystone_beacons_reach_the_agent_with_their_address_and_key_and_no_firmware():
    data = tomllib.loads(EXAMPLE.read_text())
    key = "0f1e2d3c4b5a69788796a5b4c3d2e1ff"
    data["beacons"] += [
        {"name": "fitting-room", "zone": "womens", "hardware": "eddystone",
         "address": "d0:0d:00:00:00:01"},
        {"name": "till-eid", "zone": "entrance", "hardware": "eddystone", "eik": key.upper(),
         "eid_rotation_exponent": 12, "eid_clock_offset_s": 1_759_000_000},
        {"name": "uid-tag", "zone": "womens", "hardware": "eddystone", "major": 300, "minor": 4},
    ]  # fmt: skip
    layout = parse_layout(data)
    files = render(layout)
    # Set up with their maker's tool: nothing to flash.
    assert not {"fitting-room.yaml", "till-eid.yaml", "uid-tag.yaml"} & set(files)
    fragment = files[FRAGMENT]
    assert "keep it, like agent.toml, private" in fragment
    base = {
        "store": {"store_id": layout.store.store_id, "device_id": "box-1"},
        "screens": [{"id": "s1", "zone": "entrance"}],
        "ble": {"source": "bleak", "zone": "entrance"},
        "downlink": {"ops_public_key": "x"},
    }
    parsed = tomllib.loads(fragment)
    base["zones"] = parsed["zones"]
    base["ble"].update(parsed["ble"])
    beacons = {b.name: b for b in parse_config(base).ble.beacons}
    fitting, till, uid = beacons["fitting-room"], beacons["till-eid"], beacons["uid-tag"]
    assert (fitting.address, fitting.uuid, fitting.eik) == ("D0:0D:00:00:00:01", None, None)
    assert (till.eik, till.eid_rotation_exponent, till.eid_clock_offset_s) == (
        key,
        12,
        1_759_000_000,
    )
    assert (uid.uuid, uid.major, uid.minor) == (layout.store.beacon_uuid, 300, 4)
    # The demo layout's own beacons are unchanged, and no key is written where none was given.
    assert beacons["entrance-door"].eik is None and beacons["entrance-door"].major == 100
    assert fragment.count("eik = ") == 1
