"""Store beacons' adverts as raw advertising bytes (AD structures), the spec layouts written out:
what tests hand to ``advert_from_gap``, so their frames take the decoder path every source takes.
For iBeacon and Eddystone-UID adverts, tests use edge_agent/box/firmware.py's encoders (the bytes
the ESP32 beacons are built to send)."""

from __future__ import annotations

import struct
from dataclasses import replace

from edge_agent.sensing.ble.advert import Advert
from edge_agent.sensing.ble.decode import advert_from_gap
from edge_agent.sensing.ble.eid import compute_eid
from edge_agent.sensing.ble.etlm import seal_etlm


def tlm_plain(mv: int, temp_8_8: int = 22 * 256, adv: int = 4242, tenths: int = 360_000) -> bytes:
    """The 12 bytes after a TLM frame's version byte (eddystone-tlm/tlm-plain.md)."""
    return struct.pack(">HhII", mv, temp_8_8, adv, tenths)


def gap_eddystone(frame: bytes) -> bytes:
    """Raw advertising data of an Eddystone frame: flags, the 0xFEAA service, its data."""
    return bytes([2, 0x01, 0x06, 3, 0x03, 0xAA, 0xFE, len(frame) + 3, 0x16, 0xAA, 0xFE]) + frame


def tlm_adv(mv: int) -> bytes:
    return gap_eddystone(b"\x20\x00" + tlm_plain(mv))


def etlm_adv(mv: int, eik: bytes, beacon_time: int, k: int, salt: bytes = b"\x3c\xa5") -> bytes:
    return gap_eddystone(b"\x20\x01" + seal_etlm(tlm_plain(mv), eik, beacon_time, k, salt))


def eid_adv(eik: bytes, beacon_time: int, k: int) -> bytes:
    return gap_eddystone(b"\x30\xee" + compute_eid(eik, beacon_time, k))


def tampered(raw: bytes, at: int = -1) -> bytes:
    """The same advert with one byte of its last AD structure flipped (the MIC, by default)."""
    out = bytearray(raw)
    out[at] ^= 0x5A
    return bytes(out)


def heard(raw: bytes, address: str, ts: float, rssi: int = -70) -> Advert:
    return replace(advert_from_gap(raw, rssi=rssi, address=address), timestamp=ts)
