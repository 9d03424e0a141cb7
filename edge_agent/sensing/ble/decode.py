"""Beacon frame decoders: pure functions from advert bytes to typed fields.

Formats: Apple iBeacon and AltBeacon (manufacturer data), and every Eddystone frame (service
data under 0xFEAA): UID, URL, TLM, encrypted TLM, EID. One advert can carry several frames (a
store beacon sending iBeacon and TLM together); each is reported. A frame that claims a known
format but has the wrong size or content yields a one-line reason in ``errors``; anything else
(phones' Apple "nearby" data, other vendors' payloads) is ignored, and nothing here raises,
whatever the bytes.

bluetooth-data-tools does the parts it already does well: ``advert_from_gap`` uses its GAP
parser for raw advertising bytes (the form public test suites and some scanner firmwares use),
and ``distance_m`` its path-loss model. It has no iBeacon/Eddystone decoders; those are here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from bluetooth_data_tools import calculate_distance_meters, parse_advertisement_data_tuple

from edge_agent.sensing.ble.advert import Advert

APPLE = 0x004C
EDDYSTONE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"

FORMATS = (
    "ibeacon",
    "altbeacon",
    "eddystone_uid",
    "eddystone_url",
    "eddystone_tlm",
    "eddystone_etlm",
    "eddystone_eid",
)

# Bound unpackers: one attribute lookup fewer per frame, and each length is checked before use.
_IBEACON = struct.Struct(">16sHHb")  # after 0x02 0x15: uuid, major, minor, measured power at 1 m
_IBEACON_LEN = 2 + _IBEACON.size
_ibeacon_unpack = _IBEACON.unpack_from
_ALTBEACON = struct.Struct(">20sbB")  # after 0xBE 0xAC: beacon id, reference RSSI, mfg reserved
_ALTBEACON_LEN = 2 + _ALTBEACON.size
_altbeacon_unpack = _ALTBEACON.unpack_from
_TLM = struct.Struct(">HhII")  # after 0x20 0x00: battery mV, temp 8.8, adv count, uptime 0.1 s
_TLM_LEN = 2 + _TLM.size
_tlm_unpack = _TLM.unpack_from
_ETLM_LEN = 18  # 0x20 0x01, 12 bytes encrypted TLM, 2 salt, 2 MIC
_EID_LEN = 10  # 0x30, tx power, 8 bytes EID
_UID_LENS = (18, 20)  # the spec's 2 trailing reserved bytes are often left out

# Eddystone-URL: scheme prefix codes, then expansion codes 0x00-0x0D inside the URL.
_URL_SCHEMES = ("http://www.", "https://www.", "http://", "https://")
_URL_CODES = (
    ".com/", ".org/", ".edu/", ".net/", ".info/", ".biz/", ".gov/",
    ".com", ".org", ".edu", ".net", ".info", ".biz", ".gov",
)  # fmt: skip
# Everything else outside printable ASCII (space included) is reserved by the spec.
_URL_CHARS = {i: chr(i) for i in range(0x21, 0x7F)} | dict(enumerate(_URL_CODES))


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded beacon frame; ``fields`` holds JSON-ready values (hex, int, float, str)."""

    format: str
    fields: dict[str, Any]

    def to_json_obj(self) -> dict[str, Any]:
        # A copy: callers add presentation fields (distance) without touching the frame.
        return {"format": self.format, "fields": dict(self.fields)}


@dataclass(frozen=True, slots=True)
class DecodeResult:
    frames: list[Frame]
    errors: list[str]


class FrameError(ValueError):
    """A frame of a known format with bad size or content; the message is the one-line reason."""


# A store has a handful of beacon UUIDs seen thousands of times a second: format each once.
_UUID_CACHE: dict[bytes, str] = {}
_UUID_CACHE_MAX = 4096


def _uuid(b: bytes) -> str:
    s = _UUID_CACHE.get(b)
    if s is None:
        h = b.hex()
        s = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        if len(_UUID_CACHE) >= _UUID_CACHE_MAX:
            _UUID_CACHE.clear()  # random UUIDs (a fuzzer, a hostile sender) must not grow it
        _UUID_CACHE[bytes(b)] = s
    return s


def _tx(b: int) -> int:
    return b - 256 if b > 127 else b


def decode_ibeacon(data: bytes) -> Frame:
    """Apple iBeacon: manufacturer data under company 0x004C starting 0x02 0x15."""
    if len(data) != _IBEACON_LEN:
        raise FrameError(f"ibeacon: frame is {len(data)} bytes, expected {_IBEACON_LEN}")
    uuid, major, minor, power = _ibeacon_unpack(data, 2)
    return Frame(
        "ibeacon", {"uuid": _uuid(uuid), "major": major, "minor": minor, "measured_power": power}
    )


def decode_altbeacon(company_id: int, data: bytes) -> Frame:
    """AltBeacon: manufacturer data under any company id starting 0xBE 0xAC."""
    if len(data) != _ALTBEACON_LEN:
        raise FrameError(f"altbeacon: frame is {len(data)} bytes, expected {_ALTBEACON_LEN}")
    beacon_id, ref_rssi, reserved = _altbeacon_unpack(data, 2)
    return Frame(
        "altbeacon",
        {
            "company_id": company_id,
            "beacon_id": beacon_id.hex(),
            "measured_power": ref_rssi,
            "mfg_reserved": reserved,
        },
    )


def decode_manufacturer(company_id: int, data: bytes) -> Frame | None:
    """The beacon frame in one manufacturer-data entry, None when it is not a beacon format.

    Raises FrameError when the entry starts like a beacon but is cut short or too long.
    """
    head = data[:2]
    if head == b"\x02\x15" and company_id == APPLE:
        return decode_ibeacon(data)
    if head == b"\xbe\xac":
        return decode_altbeacon(company_id, data)
    return None


def _decode_url(data: bytes, n: int) -> Frame:
    if not 4 <= n <= 20:
        raise FrameError(f"eddystone: URL frame is {n} bytes, expected 4 to 20")
    scheme = data[2]
    if scheme >= len(_URL_SCHEMES):
        raise FrameError(f"eddystone: URL scheme code 0x{scheme:02x} is not defined")
    parts = [_URL_SCHEMES[scheme]]
    for b in data[3:]:
        c = _URL_CHARS.get(b)
        if c is None:
            raise FrameError(f"eddystone: URL byte 0x{b:02x} is not printable or an expansion code")
        parts.append(c)
    return Frame("eddystone_url", {"url": "".join(parts), "tx_power_0m": _tx(data[1])})


def _decode_tlm(data: bytes, n: int) -> Frame:
    if n < 2:
        raise FrameError("eddystone: TLM frame has no version byte")
    version = data[1]
    if version == 0x00:
        if n != _TLM_LEN:
            raise FrameError(f"eddystone: TLM frame is {n} bytes, expected {_TLM_LEN}")
        mv, temp, adv, tenths = _tlm_unpack(data, 2)
        return Frame(
            "eddystone_tlm",
            {
                # The spec's "not supported" markers: 0 mV (mains powered), 0x8000 (no sensor).
                "battery_mv": mv or None,
                # 8.8 fixed point: every value is an exact binary fraction, so no rounding.
                "temperature_c": None if temp == -0x8000 else temp / 256,
                "adv_count": adv,
                "uptime_s": tenths / 10,
            },
        )
    if version == 0x01:
        if n != _ETLM_LEN:
            raise FrameError(f"eddystone: encrypted TLM frame is {n} bytes, expected {_ETLM_LEN}")
        return Frame(
            "eddystone_etlm",
            {"etlm": data[2:14].hex(), "salt": data[14:16].hex(), "mic": data[16:18].hex()},
        )
    raise FrameError(f"eddystone: TLM version 0x{version:02x} is not defined")


def decode_eddystone(data: bytes) -> Frame:
    """One Eddystone frame (the service data under 0xFEAA). Raises FrameError when malformed."""
    n = len(data)
    if not n:
        raise FrameError("eddystone: empty service data")
    kind = data[0]
    # Most frequent first: EID (shoppers' app tokens), then TLM (store beacons' telemetry).
    if kind == 0x30:
        if n != _EID_LEN:
            raise FrameError(f"eddystone: EID frame is {n} bytes, expected {_EID_LEN}")
        return Frame("eddystone_eid", {"eid": data[2:10].hex(), "tx_power_0m": _tx(data[1])})
    if kind == 0x20:
        return _decode_tlm(data, n)
    if kind == 0x00:
        if n not in _UID_LENS:
            raise FrameError(f"eddystone: UID frame is {n} bytes, expected 18 or 20")
        return Frame(
            "eddystone_uid",
            {
                "namespace": data[2:12].hex(),
                "instance": data[12:18].hex(),
                "tx_power_0m": _tx(data[1]),
            },
        )
    if kind == 0x10:
        return _decode_url(data, n)
    raise FrameError(f"eddystone: unknown frame type 0x{kind:02x}")


def decode_advert(advert: Advert) -> DecodeResult:
    """Every beacon frame the advert carries, and a one-line reason for each malformed one.

    Never raises: the parsers check lengths themselves; the broad handlers only catch what no
    parser expects (a source handing over a str instead of bytes, say), so one odd advert
    cannot stop the agent's BLE callback.
    """
    frames: list[Frame] = []
    errors: list[str] = []
    try:
        md = advert.manufacturer_data
        if md:
            for company, data in md.items():
                try:
                    frame = decode_manufacturer(company, data)
                except FrameError as exc:
                    errors.append(str(exc))
                    continue
                except Exception as exc:
                    errors.append(f"manufacturer {company!r}: undecodable ({type(exc).__name__})")
                    continue
                if frame is not None:
                    frames.append(frame)
        sd = advert.service_data
        if sd:
            eddystone = sd.get(EDDYSTONE_UUID)
            if eddystone is not None:
                try:
                    frames.append(decode_eddystone(eddystone))
                except FrameError as exc:
                    errors.append(str(exc))
                except Exception as exc:
                    errors.append(f"eddystone: undecodable ({type(exc).__name__})")
    except Exception as exc:  # not an Advert at all (no such attribute, not a mapping)
        errors.append(f"advert: undecodable ({type(exc).__name__})")
    return DecodeResult(frames, errors)


def advert_from_gap(raw: bytes, rssi: int, address: str = "", receiver: str = "local") -> Advert:
    """An Advert from raw advertising data (length-type-value AD structures), as bleak shapes it.

    bluetooth-data-tools' parser drops a structure whose length runs past the end, so a cut
    capture loses that field instead of yielding a half frame.
    """
    name, uuids, service_data, manufacturer_data, tx_power = parse_advertisement_data_tuple(
        (bytes(raw),)
    )
    return Advert(
        address=address,
        rssi=rssi,
        manufacturer_data=dict(manufacturer_data),
        service_data=dict(service_data),
        service_uuids=tuple(uuids),
        tx_power=tx_power,
        local_name=name,
        receiver=receiver,
    )


def distance_m(power: int, rssi: int) -> float | None:
    """Rough distance from measured power at 1 m; for installers, not the presence hot path."""
    if power >= 0 or rssi >= 0 or rssi < -127:
        return None
    d = calculate_distance_meters(power, rssi)
    return None if d is None else round(float(d), 2)
