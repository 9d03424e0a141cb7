"""Which configured store beacon sent a frame, and the telemetry it reports (plain or eTLM).

An Eddystone-TLM frame names no beacon: the spec pairs it with an identifying frame from the same
device address (a UID or URL for plain TLM, a resolved EID for encrypted TLM). So a beacon is
recognised by any of its identifying frames, and the address it was last recognised at ties the
telemetry that follows from it:

- iBeacon: the config's uuid, major and minor;
- Eddystone-UID: the same identity read the layout's way (edge_agent/box/firmware.py writes it):
  namespace = the UUID's first 4 and last 6 bytes, instance = 00 00, major, minor;
- Eddystone-EID: computed from the beacon's identity key (EIK) for its previous, current and
  next rotation period, as the shoppers' resolver does, so a beacon clock a period off still
  resolves. These EIDs are the store's, not shoppers': they never reach the resolver;
- a static ``address`` in the config, for a beacon that sends telemetry and nothing else.

Encrypted TLM is opened with the tied beacon's EIK (``etlm.open_etlm``); a frame whose MIC does
not match is refused with its reason. Only configured beacons are ever tied, and each keeps one
learned address (an EID beacon changes its address every period), so the table stays as small
as the store's beacon list. Pure: the caller passes the time; nothing here logs or does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_agent.config import BeaconConfig
from edge_agent.sensing.ble.decode import Frame, FrameError
from edge_agent.sensing.ble.eid import compute_eid
from edge_agent.sensing.ble.etlm import open_etlm

_IDENTIFYING = ("ibeacon", "eddystone_uid", "eddystone_eid")
_U32 = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Telemetry:
    beacon: str  # the config's (and layout's) name: the only way a beacon leaves this module
    fields: dict[str, Any]  # an ``eddystone_tlm`` frame's fields
    encrypted: bool


@dataclass(slots=True)
class Heard:
    """What one advert said about the store's beacons."""

    beacons: list[str] = field(default_factory=list)  # recognised by an identifying frame
    telemetry: list[Telemetry] = field(default_factory=list)
    # EIDs that are no store beacon's: the shoppers' rotating tokens, for the resolver.
    tokens: list[bytes] = field(default_factory=list)
    # (beacon, reason) of each eTLM refused: its MIC does not match in any window.
    refused: list[tuple[str, str]] = field(default_factory=list)
    no_key: list[str] = field(default_factory=list)  # eTLM from a beacon with no eik configured
    untied_tlm: int = 0  # telemetry from an address no configured beacon was heard at


@dataclass(frozen=True, slots=True)
class _EidBeacon:
    name: str
    eik: bytes
    k: int
    offset: int

    def time(self, ts: float) -> int:
        """The beacon's EID time counter at Unix time ``ts``."""
        return (int(ts) - self.offset) & _U32


def uid_of(uuid: str, major: int, minor: int) -> tuple[str, str]:
    """The Eddystone-UID (namespace hex, instance hex) the layout gives an iBeacon identity."""
    u = bytes.fromhex(uuid.replace("-", ""))
    instance = b"\x00\x00" + major.to_bytes(2, "big") + minor.to_bytes(2, "big")
    return (u[:4] + u[-6:]).hex(), instance.hex()


class StoreBeacons:
    def __init__(self, beacons: Sequence[BeaconConfig], default_rotation_exponent: int) -> None:
        self._ibeacon: dict[tuple[str, int, int], str] = {}
        self._uid: dict[tuple[str, str], str] = {}
        self._static: dict[str, str] = {}
        self._eid_beacons: dict[str, _EidBeacon] = {}
        for b in beacons:
            if b.uuid is not None and b.major is not None and b.minor is not None:
                u = b.uuid.replace("-", "").lower()
                self._ibeacon[(u, b.major, b.minor)] = b.name
                self._uid[uid_of(u, b.major, b.minor)] = b.name
            if b.address is not None:
                self._static[b.address.upper()] = b.name
            if b.eik is not None:
                k = b.eid_rotation_exponent
                self._eid_beacons[b.name] = _EidBeacon(
                    b.name,
                    bytes.fromhex(b.eik),
                    default_rotation_exponent if k is None else k,
                    b.eid_clock_offset_s,
                )
        # Learned ties: address -> beacon, and each beacon's one current address.
        self._at: dict[str, str] = {}
        self._address_of: dict[str, str] = {}
        # The beacons' EIDs for the Unix-time span [from, until) in which they are all valid.
        self._eids: dict[bytes, str] = {}
        self._eids_from = 1.0
        self._eids_until = 0.0

    # ---- recognising ---------------------------------------------------------------------
    def _eid_table(self, ts: float) -> dict[bytes, str]:
        if self._eids_from <= ts < self._eids_until:
            return self._eids  # the hot path: a shopper's EID costs one dict lookup
        table: dict[bytes, str] = {}
        start, until = float("-inf"), float("inf")
        for b in self._eid_beacons.values():
            period = b.time(ts) >> b.k
            for p in (period, period - 1, period + 1):
                if 0 <= p << b.k <= _U32:
                    table[compute_eid(b.eik, p << b.k, b.k)] = b.name
            # Unix times at which this beacon's period began and will end.
            begun = int(ts) - (b.time(ts) - (period << b.k))
            start, until = max(start, begun), min(until, begun + (1 << b.k))
        self._eids, self._eids_from, self._eids_until = table, start, until
        return table

    def _tie(self, address: str, name: str) -> None:
        old = self._address_of.get(name)
        if old == address:
            return
        if old is not None and self._at.get(old) == name:
            del self._at[old]
        self._at[address] = name
        self._address_of[name] = address

    def beacon_at(self, address: str) -> str | None:
        """The configured beacon last recognised at this address (or configured with it)."""
        a = address.upper()
        return self._at.get(a) or self._static.get(a)

    # ---- one advert ----------------------------------------------------------------------
    def observe(self, address: str, frames: Sequence[Frame], ts: float) -> Heard:
        """Recognise identifying frames first, then read telemetry as from whoever they named:
        a beacon often sends both in one advert."""
        heard = Heard()
        address = address.upper()
        for frame in frames:
            fmt = frame.format
            if fmt not in _IDENTIFYING:
                continue
            f = frame.fields
            name: str | None
            if fmt == "eddystone_eid":
                eid = bytes.fromhex(f["eid"])
                name = self._eid_table(ts).get(eid) if self._eid_beacons else None
                if name is None:
                    heard.tokens.append(eid)
                    continue
            elif fmt == "ibeacon":
                name = self._ibeacon.get((str(f["uuid"]).replace("-", ""), f["major"], f["minor"]))
            else:
                name = self._uid.get((f["namespace"], f["instance"]))
            if name is None:
                continue
            heard.beacons.append(name)
            if address:  # an advert without an address (some captures) ties nothing
                self._tie(address, name)
        static = self._static.get(address)
        if static is not None and static not in heard.beacons:
            heard.beacons.append(static)  # a TLM-only beacon is heard through its address
        for frame in frames:
            if frame.format == "eddystone_tlm":
                name = self.beacon_at(address) if address else None
                if name is None:
                    heard.untied_tlm += 1
                else:
                    self._report(heard, Telemetry(name, frame.fields, encrypted=False))
            elif frame.format == "eddystone_etlm":
                self._open(address, frame.fields, ts, heard)
        return heard

    @staticmethod
    def _report(heard: Heard, t: Telemetry) -> None:
        heard.telemetry.append(t)
        if t.beacon not in heard.beacons:
            heard.beacons.append(t.beacon)  # its telemetry is a sign of life too

    def _open(self, address: str, f: dict[str, Any], ts: float, heard: Heard) -> None:
        name = self.beacon_at(address) if address else None
        if name is None:
            heard.untied_tlm += 1
            return
        b = self._eid_beacons.get(name)
        if b is None:
            heard.no_key.append(name)
            return
        try:
            sealed = bytes.fromhex(f["etlm"] + f["salt"] + f["mic"])
            plain = open_etlm(sealed, b.eik, b.time(ts), b.k)
        except FrameError as exc:
            heard.refused.append((name, str(exc)))
            return
        self._report(heard, Telemetry(name, plain.fields, encrypted=True))
