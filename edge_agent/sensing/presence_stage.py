"""The presence stage: advert -> decode -> token -> zone events, and the store's beacons.

Every BLE source (radio, UART scanner node, recorded trace) and every scanner node on the bus
calls ``on_advert`` with the same ``Advert``. Shopper tokens are resolved to profiles, zones
are decided by the zone engine, and each change becomes a journey event keyed by a salted,
daily rotating presence key: raw addresses and tokens never leave this stage.

Every other device close by (an advert with no beacon frame and no app token: phones' own
adverts, watches, earbuds) goes through a second zone engine with the same rules, for the
privacy guard's crowd estimate only: it leaves the stage as a count per zone, never as an event.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from contracts.events import (
    BeaconTelemetry,
    Dwell,
    ShopperIdentified,
    ZoneEntered,
    ZoneLeft,
)
from edge_agent.app.alerts import StaffAlerts
from edge_agent.config import AgentConfig
from edge_agent.identity.resolver import TokenResolver
from edge_agent.journey.engine import JourneyEngine
from edge_agent.sensing.ble.advert import Advert, AdvertError
from edge_agent.sensing.ble.beacon_health import BatteryWatch, BeaconHealth
from edge_agent.sensing.ble.decode import decode_advert
from edge_agent.sensing.ble.sources import advert_from_line
from edge_agent.sensing.ble.store_beacons import StoreBeacons
from edge_agent.sensing.fusion import Candidate, ReceiverWatch
from edge_agent.sensing.presence import (
    PRESENT_P,
    DwellTick,
    Entered,
    Left,
    PresenceTracker,
    ZoneTracker,
)
from edge_agent.slice.model import Profile
from edge_agent.slice.store import ProfileSlice
from sync.journal import EventJournal

log = logging.getLogger("edge_agent")

# A device in a zone longer than this is part of the furniture (a payment terminal, the screen's
# own controller), not a shopper: phones change their private address every 15 min or so.
FIXTURE_S = 20 * 60.0


def presence_salt(day: str, secret: bytes) -> bytes:
    """A salt that rotates daily, so presence keys cannot be joined across days."""
    return hmac.new(secret, day.encode(), hashlib.sha256).digest()


def device_secret(state_dir: Path) -> bytes:
    """This box's secret for presence keys, made once (0600)."""
    p = state_dir / "presence.secret"
    if not p.exists():
        fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    return p.read_bytes()


@dataclass
class PresenceCounts:
    adverts: int = 0
    decode_errors: int = 0
    zone_entries: int = 0
    zone_exits: int = 0
    shoppers_resolved: int = 0
    unresolved_tokens: int = 0
    bus_adverts: int = 0  # from scanner nodes on the in-store bus
    bus_advert_rejects: int = 0
    beacon_telemetry: int = 0  # TLM frames paired with a configured beacon (eTLM opened)
    untied_tlm: int = 0  # TLM from an address where no configured beacon was heard
    etlm_refused: int = 0  # eTLM whose MIC matched in no window (also a decode error)
    etlm_no_key: int = 0  # eTLM from a configured beacon that has no eik


class PresenceStage:
    def __init__(
        self,
        cfg: AgentConfig,
        *,
        now: Callable[[], float],
        tracker: ZoneTracker,
        resolver: TokenResolver,
        profiles: ProfileSlice,
        journey: JourneyEngine,
        journal: EventJournal,
        alerts: StaffAlerts,
        invalidate: Callable[[], None],
        secret: bytes,
        devices: ZoneTracker | None = None,
    ) -> None:
        self.cfg = cfg
        self.tz = ZoneInfo(cfg.store.timezone)
        self._now = now
        self.tracker = tracker
        self.resolver = resolver
        self.profiles = profiles
        self.journey = journey
        self.journal = journal
        self.alerts = alerts
        self.invalidate = invalidate
        self._secret = secret
        self.counts = PresenceCounts()
        # When each present device entered its zone (by internal key), for dwell rules.
        self.entered_at: dict[str, float] = {}
        self.store_beacons = StoreBeacons(cfg.ble.beacons, cfg.ble.eid_rotation_exponent)
        # A store beacon heard (name, receiver, rssi, time): the walk survey's tag readings.
        self.on_beacon: Callable[[str, str, int, float], None] | None = None
        self._beacon_cfg = {bc.name: bc for bc in cfg.ble.beacons}
        self._zone_names = {z.id: z.name or z.id for z in cfg.zones}
        self.battery = BatteryWatch()
        self._told: set[tuple[str, str]] = set()  # (beacon, problem) already logged
        self.beacon_health = BeaconHealth(
            [bc.name for bc in cfg.ble.beacons], cfg.ble.beacon_missing_s
        )
        self.loop: asyncio.AbstractEventLoop | None = None  # set when the agent runs
        # Other devices by the tracker's zone rules (None: not tracked, counted as none).
        self.devices = devices
        # Addresses that carried an app token, and when: the same phone's other adverts are
        # the shopper already counted, not a second person.
        self._token_addresses: dict[str, float] = {}
        # Each receiver's usual gap between receptions (of anything): one silent past it makes
        # its zone "unknown" to the fused presence, never "empty" (Bermuda #764).
        self.receivers = ReceiverWatch()
        self._zone_receivers: dict[str, list[str]] = {}
        for node, z in cfg.ble.receivers.items():
            self._zone_receivers.setdefault(z, []).append(node)
        self._zone_receivers.setdefault(cfg.ble.zone, []).append("local")

    # ---- who is where --------------------------------------------------------------------
    def present(self, zone: str) -> set[str]:
        return self.tracker.present(zone)

    def devices_in(self, zone: str, now: float) -> int:
        """Other BLE devices in ``zone`` now (not app tokens, not beacons, not fixtures)."""
        devices = self.devices
        if devices is None:
            return 0
        return sum(1 for key in devices.present(zone) if devices.dwell_s(key, now) < FIXTURE_S)

    def zone_silent(self, zone: str, now: float) -> bool:
        """Every receiver covering ``zone`` has gone quiet for longer than it usually does."""
        rx = self._zone_receivers.get(zone, [])
        return bool(rx) and all(self.receivers.silent(r, now) for r in rx)

    def ble_view(self, zone: str, now: float) -> list[Candidate] | None:
        """The app devices that may be in ``zone`` with P(in it), for the fused presence; None
        while the zone's receivers are silent (unknown, not empty)."""
        if self.zone_silent(zone, now):
            return None
        tracker = self.tracker
        if isinstance(tracker, PresenceTracker):
            p_in = tracker.in_zone_p(zone)
        else:
            p_in = dict.fromkeys(tracker.present(zone), PRESENT_P)
        return [Candidate(k, p, resolved=self.profile_for(k) is not None) for k, p in p_in.items()]

    def profile_for(self, internal: str) -> Profile | None:
        return self.profiles.get(internal[2:]) if internal.startswith("p:") else None

    def presence_key(self, internal: str, ts: float) -> str:
        day = datetime.fromtimestamp(ts, self.tz).date().isoformat()
        salt = presence_salt(day, self._secret)
        return hmac.new(salt, internal.encode(), hashlib.sha256).hexdigest()[:16]

    # ---- adverts -------------------------------------------------------------------------
    def on_advert(self, advert: Advert) -> None:
        """The one callback every BLE source calls. Never raises."""
        self.counts.adverts += 1
        try:
            result = decode_advert(advert)
        except Exception as exc:  # the decoder promises not to raise; be safe in the field anyway
            self.counts.decode_errors += 1
            log.warning("ble: decoder raised %s", type(exc).__name__)
            return
        if result.errors:
            self.counts.decode_errors += len(result.errors)
        ts = advert.timestamp or self._now()
        self.receivers.heard(advert.receiver or "local", ts)
        if not result.frames and not result.errors:
            # No beacon frame at all: a phone, a watch. A malformed frame is a tag, not counted.
            self._on_other_device(advert, ts)
            return
        heard = self.store_beacons.observe(advert.address, result.frames, ts)
        for token in heard.tokens:
            self._token_addresses[advert.address] = ts
            self._on_token(token, advert.rssi, ts, advert.receiver)
        for name in heard.beacons:
            self.beacon_health.heard(name, ts)
            if self.on_beacon is not None:
                self.on_beacon(name, advert.receiver or "local", advert.rssi, ts)
        for t in heard.telemetry:
            self.counts.beacon_telemetry += 1
            self._on_tlm(t.beacon, t.fields)
        self.counts.untied_tlm += heard.untied_tlm
        for name, reason in heard.refused:
            self.counts.etlm_refused += 1
            self.counts.decode_errors += 1
            self._tell(name, "refused", "ble: beacon %s: %s", name, reason)
        for name in heard.no_key:
            self.counts.etlm_no_key += 1
            self._tell(name, "no_key", "ble: beacon %s sends encrypted TLM: give it its eik", name)

    def _tell(self, name: str, problem: str, msg: str, *args: object) -> None:
        """A beacon's problem is logged once at warning (an installer must fix it), then at
        debug: a beacon repeats it every few seconds."""
        first = (name, problem) not in self._told
        self._told.add((name, problem))
        log.log(logging.WARNING if first else logging.DEBUG, msg, *args)

    def on_bus_advert(self, scanner: str, payload: bytes) -> None:
        """An advert from a scanner node over MQTT (bus thread): same JSON and same path as the
        UART line. The topic names the receiver (a node cannot speak for another), and the box's
        clock stamps it when the node did not."""
        try:
            advert = advert_from_line(payload, self._now(), receiver=scanner)
        except AdvertError as exc:
            self.counts.bus_advert_rejects += 1
            log.debug("bus advert from %s refused: %s", scanner, exc)
            return
        loop = self.loop
        if loop is None:
            return  # not running yet
        self.counts.bus_adverts += 1
        loop.call_soon_threadsafe(self.on_advert, advert)

    def _on_token(self, eid: bytes, rssi: int, ts: float, receiver: str = "local") -> None:
        pid = self.resolver.resolve(eid, ts)
        internal = f"p:{pid}" if pid else f"t:{eid.hex()}"
        for change in self.tracker.observe(internal, rssi, ts, receiver):
            self.on_change(change)

    def _on_other_device(self, advert: Advert, ts: float) -> None:
        if self.devices is None or advert.address in self._token_addresses:
            return
        key = f"d:{advert.address}"
        for change in self.devices.observe(key, advert.rssi, ts, advert.receiver):
            if not isinstance(change, DwellTick):
                self.invalidate()  # the crowd at a screen changed

    def _on_tlm(self, name: str, f: dict[str, Any]) -> None:
        bc = self._beacon_cfg[name]
        mv = f.get("battery_mv")
        low = self.battery.reading(name, None if mv is None else int(mv), bc.low_battery_mv)
        if low is not None:
            # Report on change only: the first TLM, the start and the end of an episode.
            self.journal.emit(
                BeaconTelemetry(
                    beacon=name,
                    zone_id=bc.zone,
                    battery_mv=mv,
                    temperature_c=f.get("temperature_c"),
                    low_battery=low,
                )
            )
            if low:
                # Staff find it by its layout name and zone; no address or key leaves here.
                where = self._zone_names.get(bc.zone, bc.zone)
                self.alerts.raise_alert(
                    "beacon_battery_low",
                    f"Beacon {name} ({where}) battery low ({mv} mV): replace it",
                    beacon=name,
                    battery_mv=mv,
                    zone_id=bc.zone,
                )

    # ---- the clock -----------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Leaves and dwell ticks that only time decides; beacons gone quiet."""
        for change in self.tracker.tick(now):
            self.on_change(change)
        if self.devices is not None:
            if any(not isinstance(c, DwellTick) for c in self.devices.tick(now)):
                self.invalidate()
            if len(self._token_addresses) > 256:
                # Phones rotate addresses: the map only grows unless those unheard go. Once its
                # token is gone, a phone's other adverts are the only sign of that person left.
                away = self.cfg.ble.away_timeout_s
                self._token_addresses = {
                    a: t for a, t in self._token_addresses.items() if now - t < away
                }
        for name, silent in self.beacon_health.newly_missing(now):
            self.alerts.raise_alert(
                "beacon_missing",
                f"Beacon {name} not heard for {silent / 60:.0f} min: check it",
                beacon=name,
            )

    def close_all(self) -> None:
        """Everyone still present leaves now, so dwell is closed and counted."""
        for change in self.tracker.tick(float("inf")):
            self.on_change(change)

    # ---- zone changes --------------------------------------------------------------------
    def on_change(self, change: Entered | Left | DwellTick) -> None:
        zone = change.zone or self.cfg.ble.zone
        profile = self.profile_for(change.key)
        pkey = self.presence_key(change.key, change.ts)
        # The profile id travels only with the shopper's analytics consent.
        pid = profile.profile_id if profile and profile.consent_analytics else None
        emit = self.journal.emit
        if isinstance(change, Entered):
            self.counts.zone_entries += 1
            self.entered_at[change.key] = change.ts
            if profile is not None:
                local = datetime.fromtimestamp(change.ts, self.tz)
                self.journey.entered_store(profile.profile_id, change.ts, local)
            emit(
                ZoneEntered(zone_id=zone, presence_key=pkey, profile_id=pid, rssi=change.rssi),
                ts=change.ts,
            )
            if profile is not None:
                self.counts.shoppers_resolved += 1
                if pid:
                    emit(
                        ShopperIdentified(
                            profile_id=pid,
                            zone_id=zone,
                            consent_personalisation=profile.consent_personalisation,
                        ),
                        subject=pid,
                        ts=change.ts,
                    )
            elif change.key.startswith("t:"):
                self.counts.unresolved_tokens += 1
        elif isinstance(change, Left):
            self.counts.zone_exits += 1
            self.entered_at.pop(change.key, None)
            self.journey.kpis.dwell(change.dwell_s)
            emit(
                ZoneLeft(
                    zone_id=zone,
                    presence_key=pkey,
                    profile_id=pid,
                    dwell_s=round(change.dwell_s, 2),
                ),
                ts=change.ts,
            )
        else:
            emit(
                Dwell(
                    zone_id=zone,
                    presence_key=pkey,
                    profile_id=pid,
                    dwell_s=round(change.dwell_s, 2),
                ),
                ts=change.ts,
            )
            return
        self.invalidate()
