"""The advert as every source delivers it: bleak's shape, plain data.

Live scanning (bleak), ESP32 nodes on a UART and recorded traces all become an ``Advert`` and go
through the same callback. The JSON form is the one ``edge-agent ble decode`` reads and the replay
traces store: hex strings for bytes, manufacturer company ids as decimal string keys.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from contracts.payload import PayloadError, loads


class AdvertError(ValueError):
    """An advert that cannot be read at all; the message names the field."""


@dataclass(frozen=True, slots=True)
class Advert:
    address: str
    rssi: int
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)
    service_uuids: tuple[str, ...] = ()
    tx_power: int | None = None
    local_name: str | None = None
    # Seconds (epoch for live, trace time for replay); set by the source.
    timestamp: float = 0.0
    # Which receiver heard it: "local" for this box's radio, or a scanner node id.
    receiver: str = "local"

    def to_json_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "address": self.address,
            "rssi": self.rssi,
            "manufacturer_data": {str(k): v.hex() for k, v in self.manufacturer_data.items()},
            "service_data": {k: v.hex() for k, v in self.service_data.items()},
            "service_uuids": list(self.service_uuids),
        }
        if self.tx_power is not None:
            obj["tx_power"] = self.tx_power
        if self.local_name is not None:
            obj["local_name"] = self.local_name
        if self.timestamp:
            obj["ts"] = self.timestamp
        if self.receiver != "local":
            obj["receiver"] = self.receiver
        return obj

    @classmethod
    def from_json_obj(cls, obj: Any) -> Advert:
        if not isinstance(obj, dict):
            raise AdvertError("advert must be a JSON object")
        address = obj.get("address", "")
        if not isinstance(address, str):
            raise AdvertError("address: must be a string")
        rssi = _finite(obj.get("rssi", 0), "rssi")
        if not -127 <= rssi <= 127:
            raise AdvertError(f"rssi: {rssi} is outside -127..127 dBm")
        md_raw = obj.get("manufacturer_data") or {}
        sd_raw = obj.get("service_data") or {}
        if not isinstance(md_raw, dict):
            raise AdvertError("manufacturer_data: must be an object")
        if not isinstance(sd_raw, dict):
            raise AdvertError("service_data: must be an object")
        md: dict[int, bytes] = {}
        for k, v in md_raw.items():
            try:
                cid = int(k)
            except (TypeError, ValueError):
                raise AdvertError(
                    f"manufacturer_data: key {k!r} is not a decimal company id"
                ) from None
            if not 0 <= cid <= 0xFFFF:
                raise AdvertError(f"manufacturer_data: company id {cid} out of range")
            md[cid] = _hex(v, f"manufacturer_data[{k}]")
        sd = {normalise_uuid(str(k)): _hex(v, f"service_data[{k}]") for k, v in sd_raw.items()}
        uuids = obj.get("service_uuids") or []
        if not isinstance(uuids, list) or not all(isinstance(u, str) for u in uuids):
            raise AdvertError("service_uuids: must be a list of strings")
        tx = obj.get("tx_power")
        if tx is not None and (not isinstance(tx, int) or isinstance(tx, bool)):
            raise AdvertError("tx_power: must be an integer")
        if tx is not None and not -127 <= tx <= 127:
            raise AdvertError(f"tx_power: {tx} is outside -127..127 dBm")
        name = obj.get("local_name")
        ts = _finite(obj.get("ts", 0.0), "ts")
        return cls(
            address=address,
            rssi=int(rssi),
            manufacturer_data=md,
            service_data=sd,
            service_uuids=tuple(normalise_uuid(u) for u in uuids),
            tx_power=tx,
            local_name=name if isinstance(name, str) else None,
            timestamp=float(ts),
            receiver=str(obj.get("receiver", "local")),
        )

    @classmethod
    def from_json(cls, line: str | bytes) -> Advert:
        try:
            # NaN/Infinity are not JSON; refusing them here keeps them out of every filter.
            obj = loads(line, parse_constant=_refuse_constant, what="advert")
        except PayloadError as exc:
            raise AdvertError(str(exc)) from None
        return cls.from_json_obj(obj)

    def to_json(self) -> str:
        return json.dumps(self.to_json_obj(), separators=(",", ":"))


BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def normalise_uuid(u: str) -> str:
    """Lowercase 128-bit form; scanner nodes often send 16-bit ("feaa", "0xFEAA") service ids."""
    u = u.strip().lower().removeprefix("0x")
    if len(u) == 4 and all(c in "0123456789abcdef" for c in u):
        return f"0000{u}{BASE_UUID_SUFFIX}"
    if len(u) == 8 and all(c in "0123456789abcdef" for c in u):
        return f"{u}{BASE_UUID_SUFFIX}"
    return u


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _finite(value: Any, where: str) -> float:
    """A real, finite number (1e400 parses to inf in Python, so check after the type)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise AdvertError(f"{where}: must be a number")
    try:
        number = float(value)
    except OverflowError:
        raise AdvertError(f"{where}: number out of range") from None
    if not math.isfinite(number):
        raise AdvertError(f"{where}: must be finite")
    return number


def _hex(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise AdvertError(f"{where}: must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise AdvertError(f"{where}: not valid hex") from None
