"""ESPHome configs and the agent's zones/beacons, rendered from one store layout.

Pure: ``render(layout)`` returns {file name: text}; ``write_rendered`` puts them in a
directory. Because every ESP32 node config and the agent fragment come from the same
``StoreLayout``, a beacon's major/minor or a scanner's name cannot drift between firmware and
agent (tests/box/test_firmware.py parses both back and compares them).

Rendered per layout:
- ``<scanner>.yaml``: an ESP32 BLE scanner that forwards every advert as one JSON line (the
  format of ``scanner-line.schema.json``, read by ``edge_agent/sensing/ble/sources.py`` SerialSource)
  over its UART, or publishes the same line on ``instore/<store>/ble/<scanner>/adverts``;
- ``<beacon>.yaml``: an ESP32 store beacon (ESPHome's ``esp32_ble_beacon``), or with
  ``eddystone = true`` a beacon that alternates iBeacon and Eddystone-UID frames;
- ``<sensor>.yaml``: an LD2410 mmWave radar publishing ON/OFF (retained) on
  ``instore/<store>/zones/<zone>/mmwave/<sensor>``;
- ``agent-fragment.toml``: ``[[zones]]``, ``[[ble.beacons]]`` and ``[ble.receivers]`` for
  agent.toml;
- ``secrets.yaml.example`` when a node needs Wi-Fi (the layout names secrets, never holds them).

A Wi-Fi node logs in to the bus as its id with its own password and takes OTA updates with
another (``!secret`` names from ``box/node_bus.py``; ``edge-agent firmware render`` generates
the values into ``secrets.yaml`` and the box's mosquitto files beside the configs).
HM-10 beacons get no file: ``edge-agent provision`` configures them over serial; nor do
bought Eddystone beacons (``hardware = "eddystone"``), set up with their maker's tool.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from contracts import topics
from edge_agent.box.layout import LayoutBeacon, LayoutPresenceSensor, LayoutScanner, StoreLayout
from edge_agent.box.node_bus import CA_SECRET, mqtt_password_secret, ota_password_secret

FRAGMENT = "agent-fragment.toml"
SECRETS_EXAMPLE = "secrets.yaml.example"

# ESP32 logs would interleave with advert lines on the one UART: logger off there.
_SCANNER_LINE = r"""std::string line = "{\"address\":\"" + x.address_str() + "\",\"rssi\":" +
    to_string(x.get_rssi()) + ",\"manufacturer_data\":{";
bool first = true;
for (auto &m : x.get_manufacturer_datas()) {
  if (!first) line += ",";
  first = false;
  char hex[3];
  std::string data;
  for (auto b : m.data) { snprintf(hex, sizeof(hex), "%02x", b); data += hex; }
  line += "\"" + to_string(m.uuid.get_uuid().uuid.uuid16) + "\":\"" + data + "\"";
}
line += "},\"service_data\":{";
first = true;
for (auto &s : x.get_service_datas()) {
  if (!first) line += ",";
  first = false;
  char hex[3];
  std::string data;
  for (auto b : s.data) { snprintf(hex, sizeof(hex), "%02x", b); data += hex; }
  line += "\"" + s.uuid.to_string() + "\":\"" + data + "\"";
}
line += "},\"receiver\":\"RECEIVER\"}";
"""


def scanner_topic(store_id: str, scanner_id: str) -> str:
    return topics.scanner_adverts(store_id, scanner_id)


def mmwave_topic(store_id: str, zone: str, sensor_id: str) -> str:
    return topics.mmwave(store_id, zone, sensor_id)


def node_name(name: str) -> str:
    """An ESPHome node name (a hostname) for a layout name: lowercase, hyphens."""
    return name.lower().replace("_", "-").replace(".", "-")


@dataclass(frozen=True)
class Secret:
    """``!secret NAME``: resolved by ESPHome from secrets.yaml at build time."""

    name: str


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, s: str) -> yaml.Node:
    # Lambdas stay readable C++ (a block scalar), not one escaped line.
    style = "|" if "\n" in s else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(Secret, lambda d, s: d.represent_scalar("!secret", s.name))


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!secret", lambda loader, node: Secret(loader.construct_scalar(node)))
_Loader.add_constructor("!lambda", lambda loader, node: loader.construct_scalar(node))


def load_rendered(text: str) -> dict:
    """Parse a rendered (or hand-written) ESPHome YAML, keeping ``!secret`` as ``Secret``."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _dump(header: str, doc: dict) -> str:
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)
    # PyYAML quotes a tagged scalar; ESPHome's own docs write `!secret name` (names are [a-z0-9_]).
    body = re.sub(r"!secret '([a-z0-9_]+)'", r"!secret \1", body)
    return "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + body


def _base(name: str, board: str, comment: str) -> dict:
    return {
        "esphome": {"name": node_name(name), "comment": comment[:255]},
        "esp32": {"board": board, "framework": {"type": "esp-idf"}},
    }


def _network(layout: StoreLayout, node_id: str) -> dict:
    """Wi-Fi, the bus with this node's own credentials, and OTA: what every bus node shares."""
    assert layout.bus is not None and layout.wifi is not None  # the layout checks this
    return {
        "wifi": {
            "ssid": Secret(layout.wifi.ssid_secret),
            "password": Secret(layout.wifi.password_secret),
        },
        "mqtt": {
            "id": "bus",
            # The box by name or address, from the layout: what the box's LAN listener serves.
            "broker": layout.bus.host,
            "port": layout.bus.port,
            # Its username is its id: the broker's ACL (node_bus.render_acl) is keyed by it.
            "username": node_id,
            "password": Secret(mqtt_password_secret(node_id)),
            # The in-store bus is not Home Assistant: no discovery messages on it.
            "discovery": False,
            # Nor ESPHome's dashboard: it would publish its IP to esphome/discover/<node>, a
            # topic the ACL does not grant (the broker would drop it on every connect).
            "discover_ip": False,
            # Birth and last will on instore/<store>/nodes/<node>/status, granted to the node.
            "topic_prefix": topics.node_base(layout.store.store_id, node_id),
            # Logs stay on the node's own serial console: the bus carries data, and the ACL
            # grants no log topic.
            "log_topic": None,
            # With [bus] tls: the store's bus CA (bus_tls.py), which signed the box's
            # certificate for this host; the password then never crosses the Wi-Fi in clear.
            **(
                {"certificate_authority": Secret(CA_SECRET), "skip_cert_cn_check": False}
                if layout.bus.tls
                else {}
            ),
        },
        # Updates over Wi-Fi (`esphome run NODE.yaml --device <address>`), with a password of
        # this node's own: one node's secret opens no other node.
        "ota": [{"platform": "esphome", "password": Secret(ota_password_secret(node_id))}],
    }


def render_scanner(layout: StoreLayout, s: LayoutScanner) -> dict:
    store = layout.store.store_id
    line = _SCANNER_LINE.replace("RECEIVER", s.id)
    if s.output == "uart":
        doc = _base(s.id, s.board, f"BLE scanner, zone {s.zone}, adverts as JSON lines on UART")
        doc["logger"] = {"baud_rate": 0}  # the UART carries adverts, not logs
        doc["uart"] = {
            "id": "box",
            "tx_pin": s.uart.tx_pin,
            "rx_pin": s.uart.rx_pin,
            "baud_rate": s.uart.baud,
        }
        sink = 'line += "\\n";\nid(box).write_str(line.c_str());\n'
    else:
        topic = scanner_topic(store, s.id)
        doc = _base(s.id, s.board, f"BLE scanner, zone {s.zone}, adverts as JSON on {topic}")
        doc["logger"] = {}
        doc.update(_network(layout, s.id))
        sink = f'id(bus).publish("{topic}", line);\n'
    doc["esp32_ble_tracker"] = {
        # Passive: the box needs adverts, not scan responses; it halves the air time.
        "scan_parameters": {"active": False, "interval": "100ms", "window": "90ms"},
        "on_ble_advertise": [{"then": [{"lambda": line + sink}]}],
    }
    header = (
        f"ESPHome: BLE scanner node {s.id!r} of store {store}, zone {s.zone!r}, output {s.output}.\n"
        "Generated by `edge-agent firmware render`; edit the layout, not this file.\n"
        "Line format: firmware_configs/scanner-line.schema.json."
    )
    return {"header": header, "doc": doc}


def _hex_bytes(data: bytes) -> str:
    return ", ".join(f"0x{b:02X}" for b in data)


def ibeacon_adv(uuid: str, major: int, minor: int, measured_power: int) -> bytes:
    """A complete legacy advertising payload: flags + Apple iBeacon manufacturer data."""
    body = (
        b"\x4c\x00\x02\x15"
        + bytes.fromhex(uuid.replace("-", ""))
        + major.to_bytes(2, "big")
        + minor.to_bytes(2, "big")
        + (measured_power & 0xFF).to_bytes(1, "big")
    )
    return b"\x02\x01\x06" + bytes([len(body) + 1, 0xFF]) + body


def eddystone_uid_adv(uuid: str, major: int, minor: int, measured_power: int) -> bytes:
    """Eddystone-UID with the iBeacon's identity: namespace = the UUID elided to its first 4 and
    last 6 bytes (the Eddystone spec's way), instance = 00 00 + major + minor."""
    u = bytes.fromhex(uuid.replace("-", ""))
    namespace = u[:4] + u[10:]
    instance = b"\x00\x00" + major.to_bytes(2, "big") + minor.to_bytes(2, "big")
    # Eddystone carries the power at 0 m: 41 dB above the 1 m figure (the spec's rule).
    tx0 = max(-100, min(20, measured_power + 41)) & 0xFF
    frame = b"\xaa\xfe\x00" + bytes([tx0]) + namespace + instance + b"\x00\x00"
    return b"\x02\x01\x06" + b"\x03\x03\xaa\xfe" + bytes([len(frame) + 1, 0x16]) + frame


def _power_level(dbm: int) -> str:
    return f"ESP_PWR_LVL_{'N' if dbm < 0 else 'P'}{abs(dbm)}" if dbm else "ESP_PWR_LVL_N0"


def render_beacon(layout: StoreLayout, b: LayoutBeacon) -> dict:
    uuid, major, minor = layout.ibeacon_id(b)
    doc = _base(b.name, "esp32dev", f"store beacon, zone {b.zone}, major {major} minor {minor}")
    doc["logger"] = {}
    interval = f"{int(b.interval_ms)}ms"
    if not b.eddystone:
        doc["esp32_ble_beacon"] = {
            "type": "iBeacon",
            "uuid": uuid,
            "major": major,
            "minor": minor,
            "min_interval": interval,
            "max_interval": interval,
            "measured_power": b.measured_power,
            "tx_power": f"{b.tx_power_dbm}dBm",
        }
    else:
        ib = ibeacon_adv(uuid, major, minor, b.measured_power)
        ed = eddystone_uid_adv(uuid, major, minor, b.measured_power)
        units = max(0x20, min(0x4000, round(b.interval_ms / 0.625)))  # 0.625 ms BLE units
        code = (
            "// iBeacon and Eddystone-UID take turns every second; both carry this identity.\n"
            f"static const uint8_t IBEACON[] = {{{_hex_bytes(ib)}}};\n"
            f"static const uint8_t EDDYSTONE[] = {{{_hex_bytes(ed)}}};\n"
            "static bool started = false;\n"
            "static bool eddystone = false;\n"
            "if (eddystone) {\n"
            "  esp_ble_gap_config_adv_data_raw((uint8_t *) EDDYSTONE, sizeof(EDDYSTONE));\n"
            "} else {\n"
            "  esp_ble_gap_config_adv_data_raw((uint8_t *) IBEACON, sizeof(IBEACON));\n"
            "}\n"
            "eddystone = !eddystone;\n"
            "if (!started) {\n"
            f"  esp_ble_tx_power_set(ESP_BLE_PWR_TYPE_ADV, {_power_level(b.tx_power_dbm)});\n"
            "  esp_ble_adv_params_t params = {};\n"
            f"  params.adv_int_min = 0x{units:04X};\n"
            f"  params.adv_int_max = 0x{units:04X};\n"
            "  params.adv_type = ADV_TYPE_NONCONN_IND;\n"
            "  params.own_addr_type = BLE_ADDR_TYPE_PUBLIC;\n"
            "  params.channel_map = ADV_CHNL_ALL;\n"
            "  params.adv_filter_policy = ADV_FILTER_ALLOW_SCAN_ANY_CON_ANY;\n"
            "  started = esp_ble_gap_start_advertising(&params) == ESP_OK;\n"
            "}\n"
        )
        doc["esp32_ble"] = {"id": "ble"}
        doc["interval"] = [
            {
                "interval": "1s",
                "then": [{"if": {"condition": "ble.enabled", "then": [{"lambda": code}]}}],
            }
        ]
    frames = "iBeacon + Eddystone-UID" if b.eddystone else "iBeacon"
    header = (
        f"ESPHome: store beacon {b.name!r} of store {layout.store.store_id}, zone {b.zone!r}, "
        f"{frames}.\n"
        f"uuid {uuid} major {major} minor {minor}, {b.measured_power} dBm at 1 m, "
        f"at ({b.position[0]:g}, {b.position[1]:g}) m.\n"
        "Generated by `edge-agent firmware render`; edit the layout, not this file."
    )
    return {"header": header, "doc": doc}


def render_presence(layout: StoreLayout, p: LayoutPresenceSensor) -> dict:
    store = layout.store.store_id
    topic = mmwave_topic(store, p.zone, p.id)
    doc = _base(p.id, p.board, f"LD2410 mmWave presence, zone {p.zone}, ON/OFF on {topic}")
    doc["logger"] = {}
    doc.update(_network(layout, p.id))
    doc["uart"] = {
        "id": "radar",
        "tx_pin": p.tx_pin,
        "rx_pin": p.rx_pin,
        "baud_rate": 256000,  # the LD2410's factory rate
        "parity": "NONE",
        "stop_bits": 1,
    }
    doc["ld2410"] = {"id": "ld2410_radar", "uart_id": "radar"}
    doc["binary_sensor"] = [
        {
            "platform": "ld2410",
            "ld2410_id": "ld2410_radar",
            "has_target": {"name": "presence", "state_topic": topic},
        }
    ]
    header = (
        f"ESPHome: mmWave presence sensor {p.id!r} (HLK-LD2410) of store {store}, zone {p.zone!r}.\n"
        f"Publishes ON/OFF, retained, on {topic}.\n"
        "Generated by `edge-agent firmware render`; edit the layout, not this file."
    )
    return {"header": header, "doc": doc}


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def render_agent_fragment(layout: StoreLayout, source: str = "") -> str:
    out = [
        "# Zones, store beacons and scanner nodes for agent.toml, generated by",
        f"# `edge-agent firmware render {source}`.".replace("  ", " "),
        "# Replace the same sections of agent.toml with these; edit the layout, not this file.",
        *(
            ["# It holds beacon identity keys (eik): keep it, like agent.toml, private."]
            if any(b.eik for b in layout.beacons)
            else []
        ),
        "",
    ]
    for z in layout.zones:
        out += ["[[zones]]", f"id = {_toml_str(z.id)}", f"name = {_toml_str(z.name)}", ""]
    for b in layout.beacons:
        out += ["[[ble.beacons]]", f"name = {_toml_str(b.name)}"]
        if b.major is not None:
            uuid, major, minor = layout.ibeacon_id(b)
            out += [f"uuid = {_toml_str(uuid)}", f"major = {major}", f"minor = {minor}"]
        out.append(f"zone = {_toml_str(b.zone)}")
        if b.address is not None:
            out.append(f"address = {_toml_str(b.address.upper())}")
        if b.eik is not None:
            out.append(f"eik = {_toml_str(b.eik.lower())}")
            if b.eid_rotation_exponent is not None:
                out.append(f"eid_rotation_exponent = {b.eid_rotation_exponent}")
            if b.eid_clock_offset_s:
                out.append(f"eid_clock_offset_s = {b.eid_clock_offset_s}")
        out.append("")
    out.append("[ble.receivers]")
    out += [f"{_toml_str(s.id)} = {_toml_str(s.zone)}" for s in layout.scanners]
    return "\n".join(out) + "\n"


def render(layout: StoreLayout, source: str = "") -> dict[str, str]:
    """Every file for this layout, by name. Deterministic: the same layout, the same bytes."""
    files: dict[str, str] = {}
    parts = [render_scanner(layout, s) for s in layout.scanners]
    parts += [render_beacon(layout, b) for b in layout.beacons if b.hardware == "esp32"]
    parts += [render_presence(layout, p) for p in layout.presence_sensors]
    for part in parts:
        name = part["doc"]["esphome"]["name"] + ".yaml"
        files[name] = _dump(part["header"], part["doc"])
    files[FRAGMENT] = render_agent_fragment(layout, source)
    if layout.wifi is not None and any("wifi" in p["doc"] for p in parts):
        files[SECRETS_EXAMPLE] = (
            "# Add these to secrets.yaml beside the rendered files; never commit it.\n"
            "# `edge-agent firmware render` writes each node's MQTT and OTA passwords there\n"
            "# itself (generated once, kept on every later render); the store Wi-Fi is yours.\n"
            f'{layout.wifi.ssid_secret}: "store Wi-Fi name"\n'
            f'{layout.wifi.password_secret}: "store Wi-Fi password"\n'
        )
    return files


def write_rendered(
    files: dict[str, str], out_dir: Path, private: frozenset[str] = frozenset()
) -> list[Path]:
    """Write each file atomically (temp + rename), so a half-written config is never flashed.
    Names may hold one directory level (``mosquitto/nodes.conf``). Files named in ``private``
    are created 0600 from their first byte (a password hash is never readable by others, not
    even until a chmod)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)  # a leftover of a crash may have other modes
        mode = 0o600 if name in private else 0o644
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        tmp.replace(path)
        written.append(path)
    return written
