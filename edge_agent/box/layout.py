"""The store layout: one file an installer writes, from which firmware and agent config are made.

Zones, screens, store beacons (position, iBeacon identity, calibrated power at 1 m, radio
settings; for a bought Eddystone beacon, its address and EID identity key), ESP32 scanner nodes (zone, UART or MQTT output) and optional mmWave presence
sensors. TOML or YAML (by extension), validated with pydantic; every error names its key path
(``beacons[2].interval_ms: ...``) the same way ``edge_agent/config.py`` does. Pure: no I/O but
reading the one file.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from contracts.validation import ID_PATTERN, StrictModel

# Zones and screens are the same things in the layout as in the agent's config: one model each.
from edge_agent.config import (
    ADDRESS_PATTERN,
    KEY_PATTERN,
    UUID_PATTERN,
    ScreenConfig,
    ZoneConfig,
    format_validation_error,
)

# ESPHome node names become hostnames: lowercase letters, digits and hyphens.
NODE_PATTERN = r"^[a-z0-9][a-z0-9-]{0,30}$"
GPIO_PATTERN = r"^GPIO[0-9]{1,2}$"
# A DNS or mDNS name (letters, digits, hyphens, dots) or an IPv4/IPv6 address.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_PATTERN = rf"^{_LABEL}(\.{_LABEL})*$|^[0-9A-Fa-f:.]+$"

# On the box's broker a node's client id is its id (node_bus.render_listener): it must not be
# one the box's own clients take (app/agent.py, box/metrics.py, signage_ui), or a node would
# take over their session.
RESERVED_NODE_PREFIXES = ("agent-", "metrics-", "kiosk-", "signage-")

# HM-10 radio settings are codes, not free values (JNHuaMao "HM Bluetooth module datasheet"
# V605, AT+POWE and AT+ADVI); its AT+MARJ/AT+MINO take 0x0001..0xFFFE only.
HM10_POWER_DBM = {-23: 0, -6: 1, 0: 2, 6: 3}
HM10_ID_RANGE = (0x0001, 0xFFFE)
HM10_INTERVAL_MS = {
    100.0: "0",
    152.5: "1",
    211.25: "2",
    318.75: "3",
    417.5: "4",
    546.25: "5",
    760.0: "6",
    852.5: "7",
    1022.5: "8",
    1285.0: "9",
    2000.0: "A",
    3000.0: "B",
    4000.0: "C",
    5000.0: "D",
    6000.0: "E",
    7000.0: "F",
}
# ESPHome's esp32_ble_beacon accepts exactly these TX power levels.
ESP32_POWER_DBM = (-12, -9, -6, -3, 0, 3, 6, 9)


class LayoutStore(StrictModel):
    store_id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    # The iBeacon UUID every store beacon shares unless it sets its own.
    beacon_uuid: str = Field(pattern=UUID_PATTERN)


class LayoutBeacon(StrictModel):
    name: str = Field(pattern=ID_PATTERN)
    zone: str
    # "eddystone": a bought Eddystone beacon set up with its maker's tool. The layout only says
    # how the agent knows it (major/minor as its Eddystone-UID, address, eik); no firmware is
    # rendered for it and `edge-agent provision` does not touch it.
    hardware: Literal["esp32", "hm10", "eddystone"] = "esp32"
    uuid: str | None = Field(None, pattern=UUID_PATTERN)
    # Required for esp32 and hm10 (they send iBeacon); optional for an Eddystone beacon.
    major: int | None = Field(None, ge=0, le=65535)
    minor: int | None = Field(None, ge=0, le=65535)
    # Calibrated RSSI at 1 m (the iBeacon "measured power" byte).
    measured_power: int = Field(-59, ge=-127, le=0)
    tx_power_dbm: int = 0
    interval_ms: float = Field(100.0, ge=20, le=10240)
    # Where it hangs, in metres from the store's origin (for installers and the floor plan).
    position: tuple[float, float] = (0.0, 0.0)
    # ESP32 only: also advertise an Eddystone-UID frame with the same identity.
    eddystone: bool = False
    # Its static address, for a beacon that sends telemetry but no identifying frame.
    address: str | None = Field(None, pattern=ADDRESS_PATTERN)
    # Eddystone-EID: identity key (32 hex digits), rotation exponent K and clock offset (beacon
    # time = Unix time - offset), as set when the beacon was registered; the agent opens its
    # encrypted telemetry with them. Unlike the Wi-Fi password, which this file only names, the
    # agent needs the key itself: a layout with keys is kept as private as agent.toml.
    eik: str | None = Field(None, pattern=KEY_PATTERN, repr=False)
    eid_rotation_exponent: int | None = Field(None, ge=0, le=15)
    eid_clock_offset_s: int = 0

    @model_validator(mode="after")
    def _radio(self) -> LayoutBeacon:
        for key, other in (("major", self.minor), ("minor", self.major)):
            if getattr(self, key) is not None:
                continue
            if self.hardware != "eddystone":
                raise ValueError(f"{key}: required (an {self.hardware} beacon sends iBeacon)")
            if other is not None:
                raise ValueError(f"{key}: an Eddystone-UID needs both major and minor")
        if self.hardware == "eddystone":
            if self.eddystone:
                raise ValueError(
                    "eddystone: for an ESP32 only (set this beacon's frames in its tool)"
                )
            if self.major is None and self.address is None and self.eik is None:
                raise ValueError(
                    "address: an Eddystone beacon needs major/minor (its UID), an address or "
                    "an eik, else the agent cannot tell it apart"
                )
        elif self.hardware == "hm10":
            if self.tx_power_dbm not in HM10_POWER_DBM:
                raise ValueError(
                    f"tx_power_dbm: an HM-10 transmits at {sorted(HM10_POWER_DBM)} dBm only"
                )
            if self.interval_ms not in HM10_INTERVAL_MS:
                allowed = ", ".join(f"{v:g}" for v in HM10_INTERVAL_MS)
                raise ValueError(f"interval_ms: an HM-10 advertises every {allowed} ms only")
            if self.eddystone:
                raise ValueError("eddystone: an HM-10 advertises iBeacon only")
            low, high = HM10_ID_RANGE
            for key, cmd in (("major", "AT+MARJ"), ("minor", "AT+MINO")):
                value = getattr(self, key)
                if value is not None and not low <= value <= high:
                    raise ValueError(
                        f"{key}: an HM-10 takes {low}..{high} only ({cmd} 0x0001..0xFFFE), "
                        f"not {value}"
                    )
        else:
            if self.tx_power_dbm not in ESP32_POWER_DBM:
                raise ValueError(
                    f"tx_power_dbm: an ESP32 transmits at {list(ESP32_POWER_DBM)} dBm only"
                )
            if self.interval_ms != int(self.interval_ms):
                raise ValueError("interval_ms: an ESP32 beacon takes whole milliseconds")
        return self


class UartOutput(StrictModel):
    tx_pin: str = Field("GPIO1", pattern=GPIO_PATTERN)
    rx_pin: str = Field("GPIO3", pattern=GPIO_PATTERN)
    baud: int = Field(115200, ge=1200, le=2_000_000)


class LayoutScanner(StrictModel):
    """An ESP32 that hears adverts in a zone and forwards each as one JSON line."""

    id: str = Field(pattern=NODE_PATTERN)
    zone: str
    output: Literal["uart", "mqtt"] = "uart"
    board: str = "esp32dev"
    position: tuple[float, float] = (0.0, 0.0)
    uart: UartOutput = Field(default_factory=UartOutput)


class LayoutPresenceSensor(StrictModel):
    """An mmWave radar (HLK-LD2410) on an ESP32: someone is there, moving or still."""

    id: str = Field(pattern=NODE_PATTERN)
    zone: str
    kind: Literal["ld2410"] = "ld2410"
    board: str = "esp32dev"
    position: tuple[float, float] = (0.0, 0.0)
    tx_pin: str = Field("GPIO17", pattern=GPIO_PATTERN)
    rx_pin: str = Field("GPIO16", pattern=GPIO_PATTERN)


class LayoutBus(StrictModel):
    """The in-store MQTT bus as the ESP32 nodes reach it, and where the box's mosquitto listens
    for them (``edge_agent/box/node_bus.py`` renders that listener, its passwords and ACL).

    ``host`` is what a node dials: the box's name (``<hostname>.local`` where the box announces
    itself over mDNS, as Raspberry Pi OS does with avahi, or a name the store's DNS serves), or
    an address. The box's listener is bound by interface (``listen_interface = "eth0"``: no fixed
    address needed, the box may take its address by DHCP) or by address; either way never on
    every interface, so the loopback listener of the agent and players keeps its own port.
    """

    host: str = Field(pattern=HOST_PATTERN)
    # TLS on the nodes' listener (``edge_agent/box/bus_tls.py``): their passwords never cross
    # the store Wi-Fi in the clear. The port defaults to 8883 with it, 1883 without.
    tls: bool = False
    port: int = Field(1883, ge=1, le=65535)
    listen_interface: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,15}$")
    listen_address: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: object) -> object:
        if isinstance(data, dict) and "port" not in data and data.get("tls") is True:
            return {**data, "port": 8883}
        return data

    @field_validator("listen_address")
    @classmethod
    def _ip(cls, v: str | None) -> str | None:
        if v is not None:
            ip = ipaddress.ip_address(v)  # ValueError names the bad value
            if ip.is_loopback or ip.is_unspecified:
                raise ValueError(
                    f"{v} is not a store LAN address (loopback is the agent's listener, "
                    "an unspecified address would take its port too)"
                )
        return v

    @model_validator(mode="after")
    def _listener(self) -> LayoutBus:
        if self.listen_interface is not None and self.listen_address is not None:
            raise ValueError("listen_address: give listen_interface or listen_address, not both")
        unbound = self.listen_interface is None and self.listen_address is None
        if unbound and not _is_ip(self.host):
            raise ValueError(
                f"listen_interface: required when host {self.host!r} is a name (the box's "
                'store LAN interface, e.g. "eth0"; or listen_address)'
            )
        return self

    @property
    def bind_address(self) -> str | None:
        """The address the box's LAN listener binds (None: bound by interface)."""
        if self.listen_interface is not None:
            return None
        return self.listen_address or self.host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class LayoutWifi(StrictModel):
    # Names of entries in ESPHome's secrets.yaml: the layout never holds a password.
    ssid_secret: str = Field("wifi_ssid", pattern=r"^[a-z0-9_]+$")
    password_secret: str = Field("wifi_password", pattern=r"^[a-z0-9_]+$")


class StoreLayout(StrictModel):
    store: LayoutStore
    zones: list[ZoneConfig] = Field(min_length=1)
    screens: list[ScreenConfig] = Field(default_factory=list)
    beacons: list[LayoutBeacon] = Field(default_factory=list)
    scanners: list[LayoutScanner] = Field(default_factory=list)
    presence_sensors: list[LayoutPresenceSensor] = Field(default_factory=list)
    bus: LayoutBus | None = None
    wifi: LayoutWifi | None = None

    @field_validator("zones")
    @classmethod
    def _unique_zones(cls, v: list[ZoneConfig]) -> list[ZoneConfig]:
        _unique("zones", [z.id for z in v])
        return v

    @model_validator(mode="after")
    def _references(self) -> StoreLayout:
        zones = {z.id for z in self.zones}
        for section in ("screens", "beacons", "scanners", "presence_sensors"):
            for i, item in enumerate(getattr(self, section)):
                if item.zone not in zones:
                    raise ValueError(f"{section}[{i}].zone: unknown zone {item.zone!r}")
        _unique("screens", [s.id for s in self.screens])
        _unique("beacons", [b.name for b in self.beacons])
        _unique("scanners", [s.id for s in self.scanners])
        _unique("presence_sensors", [p.id for p in self.presence_sensors])
        for section in ("scanners", "presence_sensors"):
            for i, node in enumerate(getattr(self, section)):
                if node.id.startswith(RESERVED_NODE_PREFIXES):
                    raise ValueError(
                        f"{section}[{i}].id: {node.id!r} starts like the box's own bus clients "
                        f"({', '.join(RESERVED_NODE_PREFIXES)})"
                    )
        # Node names are hostnames on one network: scanners and sensors share the namespace.
        scanner_ids = {s.id for s in self.scanners}
        for i, p in enumerate(self.presence_sensors):
            if p.id in scanner_ids:
                raise ValueError(f"presence_sensors[{i}].id: {p.id!r} is also a scanner's id")
        seen: dict[tuple[str, int, int], str] = {}
        keys: dict[str, str] = {}
        for i, b in enumerate(self.beacons):
            if b.major is not None and b.minor is not None:
                key = (self.beacon_uuid(b), b.major, b.minor)
                if key in seen:
                    raise ValueError(
                        f"beacons[{i}]: same uuid/major/minor as {seen[key]!r} "
                        "(the agent could not tell them apart)"
                    )
                seen[key] = b.name
            for what, v in (("address", b.address), ("eik", b.eik)):
                if v is not None:
                    if f"{what}:{v.upper()}" in keys:
                        other = keys[f"{what}:{v.upper()}"]
                        raise ValueError(f"beacons[{i}].{what}: same as {other!r}")
                    keys[f"{what}:{v.upper()}"] = b.name
        needs_network = [s.id for s in self.scanners if s.output == "mqtt"] + [
            p.id for p in self.presence_sensors
        ]
        if needs_network and self.bus is None:
            raise ValueError(f"bus: required by {needs_network[0]!r} (it publishes over MQTT)")
        if needs_network and self.wifi is None:
            raise ValueError(f"wifi: required by {needs_network[0]!r} (it publishes over MQTT)")
        return self

    def ibeacon_id(self, beacon: LayoutBeacon) -> tuple[str, int, int]:
        """uuid, major, minor of a beacon that sends iBeacon (esp32 and hm10 always do)."""
        if beacon.major is None or beacon.minor is None:
            raise LayoutError("<layout>", [f"beacons: {beacon.name!r} has no major/minor"])
        return self.beacon_uuid(beacon), beacon.major, beacon.minor

    def beacon_uuid(self, beacon: LayoutBeacon) -> str:
        """The beacon's UUID in canonical lowercase 8-4-4-4-12 form."""
        return canonical_uuid(beacon.uuid or self.store.beacon_uuid)

    def beacon(self, name: str) -> LayoutBeacon:
        for b in self.beacons:
            if b.name == name:
                return b
        known = ", ".join(b.name for b in self.beacons) or "none"
        raise LayoutError("<layout>", [f"beacons: no beacon named {name!r} (known: {known})"])


def _unique(section: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i, v in enumerate(ids):
        if v in seen:
            raise ValueError(f"{section}[{i}]: duplicate id {v!r}")
        seen.add(v)


def canonical_uuid(u: str) -> str:
    h = u.replace("-", "").lower()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class LayoutError(Exception):
    """An invalid layout; ``errors`` holds one line per problem, each naming its key path."""

    def __init__(self, path: Path | str, errors: list[str]) -> None:
        self.path = str(path)
        self.errors = errors
        super().__init__(f"{path}: " + "; ".join(errors))


_SECTIONS = set(StoreLayout.model_fields)


def _format(exc: ValidationError) -> list[str]:
    lines = []
    for line in format_validation_error(exc):
        # Cross-field messages from our validators already start with their own key path.
        head = line.split(": ", 1)
        if len(head) == 2 and ": " in head[1]:
            inner, rest = head[1].split(": ", 1)
            if inner.replace("[", ".").split(".")[0] in _SECTIONS:
                line = head[1]
            elif inner.isidentifier() and head[0] != "(root)":
                # A model check naming one of its own fields: beacons[2].tx_power_dbm: ...
                line = f"{head[0]}.{inner}: {rest}"
        lines.append(line)
    return lines


def parse_layout(data: object, origin: str = "<layout>") -> StoreLayout:
    if not isinstance(data, dict):
        raise LayoutError(origin, ["(root): a layout is a table/mapping of sections"])
    try:
        return StoreLayout.model_validate(data)
    except ValidationError as exc:
        raise LayoutError(origin, _format(exc)) from None


def load_layout(path: Path | str) -> StoreLayout:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LayoutError(path, [f"cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise LayoutError(path, ["not UTF-8 text"]) from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise LayoutError(path, [f"not valid YAML: {' '.join(str(exc).split())}"]) from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise LayoutError(path, [f"not valid TOML: {exc}"]) from None
    return parse_layout(data, origin=str(path))
