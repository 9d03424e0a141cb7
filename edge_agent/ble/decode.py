"""Beacon frame decoders: pure functions from advert bytes to typed fields.

Formats: Apple iBeacon and AltBeacon (manufacturer data), and every Eddystone frame (service
data under 0xFEAA): UID, URL, TLM, encrypted TLM, EID. One advert can carry several frames (a
store beacon sending iBeacon and TLM together); each is reported. A frame that claims a known
format but has the wrong size or content yields a one-line reason in ``errors``; nothing here
raises, whatever the bytes. ``distance_m`` uses bluetooth-data-tools' path-loss model.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from bluetooth_data_tools import calculate_distance_meters

from edge_agent.ble.advert import Advert

APPLE = 0x004C
EDDYSTONE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"

_IBEACON = struct.Struct(">2s16sHHb")  # 0x02 0x15, uuid, major, minor, measured power
_ALTBEACON = struct.Struct(">2s20sbB")  # 0xBE 0xAC, beacon id, reference rssi, reserved
_TLM = struct.Struct(">BBHhII")  # frame 0x20, version 0, battery mV, temp 8.8, adv count, 0.1 s

_URL_SCHEMES = ("http://www.", "https://www.", "http://", "https://")
_URL_CODES = (
    ".com/", ".org/", ".edu/", ".net/", ".info/", ".biz/", ".gov/",
    ".com", ".org", ".edu", ".net", ".info", ".biz", ".gov",
)  # fmt: skip


# Not frozen: frozen dataclasses pay for object.__setattr__ on every construction, and these are
# built thousands of times a second.
@dataclass(slots=True)
class Frame:
    format: str
    fields: dict[str, Any]

    def to_json_obj(self) -> dict[str, Any]:
        return {"format": self.format, "fields": self.fields}


@dataclass(slots=True)
class DecodeResult:
    frames: list[Frame] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Bad(ValueError):
    """A frame of a known format with bad content; its message becomes the reason."""


def _uuid(b: bytes) -> str:
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def distance_m(power: int, rssi: int) -> float | None:
    """Rough distance from measured power at 1 m; for installers, not the presence hot path."""
    if power >= 0 or rssi >= 0 or rssi < -127:
        return None
    d = calculate_distance_meters(power, rssi)
    return None if d is None else round(float(d), 2)


def decode_ibeacon(data: bytes) -> Frame:
    if len(data) != _IBEACON.size:
        raise _Bad(f"ibeacon: frame is {len(data)} bytes, expected {_IBEACON.size}")
    _, uuid, major, minor, power = _IBEACON.unpack(data)
    return Frame(
        "ibeacon",
        {
            "uuid": _uuid(uuid),
            "major": major,
            "minor": minor,
            "measured_power": power,
        },
    )


def decode_altbeacon(company_id: int, data: bytes) -> Frame:
    if len(data) != _ALTBEACON.size:
        raise _Bad(f"altbeacon: frame is {len(data)} bytes, expected {_ALTBEACON.size}")
    _, beacon_id, ref_rssi, reserved = _ALTBEACON.unpack(data)
    return Frame(
        "altbeacon",
        {
            "company_id": company_id,
            "beacon_id": beacon_id.hex(),
            "measured_power": ref_rssi,
            "mfg_reserved": reserved,
        },
    )


def _tx(b: int) -> int:
    return b - 256 if b > 127 else b


def decode_eddystone(data: bytes) -> Frame:
    if not data:
        raise _Bad("eddystone: empty service data")
    kind = data[0]
    n = len(data)
    if kind == 0x00:
        # Spec: 18 bytes plus 2 reserved bytes that many beacons omit.
        if n not in (18, 20):
            raise _Bad(f"eddystone: UID frame is {n} bytes, expected 18 or 20")
        return Frame(
            "eddystone_uid",
            {
                "namespace": data[2:12].hex(),
                "instance": data[12:18].hex(),
                "tx_power_0m": _tx(data[1]),
            },
        )
    if kind == 0x10:
        if not 4 <= n <= 20:
            raise _Bad(f"eddystone: URL frame is {n} bytes, expected 4 to 20")
        if data[2] >= len(_URL_SCHEMES):
            raise _Bad(f"eddystone: URL scheme code 0x{data[2]:02x} is not defined")
        parts = [_URL_SCHEMES[data[2]]]
        for b in data[3:]:
            if b < len(_URL_CODES):
                parts.append(_URL_CODES[b])
            elif 0x20 < b < 0x7F:
                parts.append(chr(b))
            else:
                raise _Bad(f"eddystone: URL byte 0x{b:02x} is not printable or an expansion code")
        return Frame("eddystone_url", {"url": "".join(parts), "tx_power_0m": _tx(data[1])})
    if kind == 0x20:
        if n < 2:
            raise _Bad("eddystone: TLM frame has no version byte")
        if data[1] == 0x00:
            if n != _TLM.size:
                raise _Bad(f"eddystone: TLM frame is {n} bytes, expected {_TLM.size}")
            _, _, mv, temp, adv, secs = _TLM.unpack(data)
            return Frame(
                "eddystone_tlm",
                {
                    # 0 mV means "not supported" (mains powered); 0x8000 means "no sensor".
                    "battery_mv": mv or None,
                    "temperature_c": None if temp == -0x8000 else round(temp / 256, 2),
                    "adv_count": adv,
                    "uptime_s": secs / 10,
                },
            )
        if data[1] == 0x01:
            if n != 18:
                raise _Bad(f"eddystone: encrypted TLM frame is {n} bytes, expected 18")
            return Frame(
                "eddystone_etlm",
                {"etlm": data[2:14].hex(), "salt": data[14:16].hex(), "mic": data[16:18].hex()},
            )
        raise _Bad(f"eddystone: TLM version 0x{data[1]:02x} is not defined")
    if kind == 0x30:
        if n != 10:
            raise _Bad(f"eddystone: EID frame is {n} bytes, expected 10")
        return Frame("eddystone_eid", {"eid": data[2:10].hex(), "tx_power_0m": _tx(data[1])})
    raise _Bad(f"eddystone: unknown frame type 0x{kind:02x}")


def decode_advert(advert: Advert) -> DecodeResult:
    """Every beacon frame the advert carries, and a reason for each malformed one."""
    frames: list[Frame] = []
    errors: list[str] = []
    for company, data in advert.manufacturer_data.items():
        head = data[:2]
        try:
            if head == b"\x02\x15" and company == APPLE:
                frames.append(decode_ibeacon(data))
            elif head == b"\xbe\xac":
                frames.append(decode_altbeacon(company, data))
        except _Bad as exc:
            errors.append(str(exc))
    data = advert.service_data.get(EDDYSTONE_UUID)
    if data is not None:
        try:
            frames.append(decode_eddystone(data))
        except _Bad as exc:
            errors.append(str(exc))
    return DecodeResult(frames, errors)
