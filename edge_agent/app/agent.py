"""The agent: sensors -> presence -> identity -> decision -> screen, and every event -> outbox.

One asyncio loop owns the state. Sensor callbacks, the camera thread and the bus thread only hand
data to it. Journey events are buffered and group-committed to the durable outbox; the uplink
ships them to the CDP, the downlink applies what central ops pushes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import shutil
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from contracts import topics
from contracts.events import (
    AudienceSample,
    AudienceTrack,
    BeaconTelemetry,
    CloudEvent,
    Conversion,
    DeviceHeartbeat,
    DownlinkApplied,
    Dwell,
    EventError,
    HoldoutAssigned,
    OfferShown,
    Payload,
    ShopperIdentified,
    ZoneEntered,
    ZoneLeft,
    make_event,
    parse_event,
    source_for,
)
from contracts.mqtt import connect, make_client
from contracts.screen_protocol import ScreenCommand
from edge_agent.box.liveness import StallPoint
from edge_agent.clock import Clock, SystemClock
from edge_agent.config import AgentConfig
from edge_agent.downlink import credentials
from edge_agent.downlink.content_manifest import ContentInstaller, parse_manifest
from edge_agent.identity.resolver import TokenResolver
from edge_agent.journey.campaigns import lint
from edge_agent.journey.content_store import ContentStore
from edge_agent.journey.decide import Decision, ScreenContext, World, staff_alerts
from edge_agent.journey.engine import JourneyEngine
from edge_agent.sensing.ble.advert import Advert, AdvertError
from edge_agent.sensing.ble.beacon_health import BeaconHealth
from edge_agent.sensing.ble.decode import decode_advert
from edge_agent.sensing.ble.sources import advert_from_line
from edge_agent.sensing.pos import Receipt, ReceiptDeduper
from edge_agent.sensing.presence import DwellTick, Entered, Left, tracker_from_config
from edge_agent.slice.store import ProfileSlice
from sync.outbox import PRIORITY_HIGH, OutboxFull, priority_of

log = logging.getLogger("edge_agent")
VERSION = "0.1.0"
# Seconds without a camera frame (agent clock) before staff are told the camera is lost.
CAMERA_LOST_AFTER_S = 10.0


@dataclass
class AgentStats:
    adverts: int = 0
    decode_errors: int = 0
    zone_entries: int = 0
    zone_exits: int = 0
    shoppers_resolved: int = 0
    unresolved_tokens: int = 0
    decisions: int = 0
    content_changes: int = 0
    events_accepted: int = 0
    events_refused_disk_full: int = 0  # droppable events a full disk refused (never accepted)
    impressions_received: int = 0
    bus_rejects: int = 0
    bus_adverts: int = 0  # from scanner nodes on the in-store bus
    bus_advert_rejects: int = 0
    audience_samples: int = 0
    audience_tracks: int = 0
    downlink_applied: int = 0
    downlink_refused: int = 0
    frames: int = 0
    staff_alerts: int = 0
    conversions: int = 0
    holdouts: int = 0
    last_people: int | None = None
    current: dict[str, str] = field(default_factory=dict)
    variants: Counter = field(default_factory=Counter)


@dataclass
class _ScreenState:
    decision: Decision | None = None
    shown_at: float = 0.0


def presence_salt(day: str, secret: bytes) -> bytes:
    """A salt that rotates daily, so presence keys cannot be joined across days."""
    return hmac.new(secret, day.encode(), hashlib.sha256).digest()


class Agent:
    def __init__(
        self,
        cfg: AgentConfig,
        *,
        clock: Clock | None = None,
        ble_source: Any,
        frame_source: Any | None = None,
        camera_opener: Any | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.tz = ZoneInfo(cfg.store.timezone)
        self.ble_source = ble_source
        self.frame_source = frame_source
        # Reopens a lost camera (or one that was not there at start), with backoff.
        self.camera_opener = camera_opener
        self.camera: Any = None  # the CameraWorker thread while running
        self._last_watchers: int | None = None
        paths = cfg.paths_resolved
        paths.state_dir.mkdir(parents=True, exist_ok=True)
        self.paths = paths
        self.stats = AgentStats()
        self.profiles = ProfileSlice(
            paths.profiles_db,
            key_path=cfg.profiles.key_file,
            store_id=cfg.store.store_id,
            cache_size=cfg.profiles.cache_size,
        )
        # Profiles deleted or withdrawn on the downlink/scheduler threads; the loop forgets them.
        self._forget: queue.SimpleQueue[str] = queue.SimpleQueue()
        # The token table is built on a worker thread and swapped in: adverts never wait.
        self.resolver = TokenResolver(
            cfg.ble.eid_rotation_exponent, background=True, clock=self.clock.now
        )
        self.resolver.set_keys(self.profiles.identity_keys())
        self.content = ContentStore(paths.state_dir)
        # Caps, attribution touches and KPIs around the pure decision.
        self.journey = JourneyEngine(self.content.bundle, cfg.pos.attribution_window_s)
        # When each present device entered the zone (by internal key), for dwell rules.
        self._entered_at: dict[str, float] = {}
        # Receipts arrive on the serial and bus threads; the loop drains them.
        self._receipts: queue.SimpleQueue[Receipt] = queue.SimpleQueue()
        self.receipts = ReceiptDeduper(self._receipts.put)
        self._alerted: set[tuple[str, str, str]] = set()
        self.campaign_warnings: list[str] = []
        self._last_audience = (0, 0)
        self._screen_status: dict[str, str] = {}
        self._frames_seen = 0
        self._camera_seen_at: float | None = None
        self._camera_alerted = False
        self._run_started_at: float | None = None
        self.presence = tracker_from_config(cfg.ble, paths.state_dir)
        self._secret = self._device_secret(paths.state_dir)
        self._pending: list[CloudEvent] = []
        self._pending_lock = threading.Lock()
        self._screens = {s.id: _ScreenState() for s in cfg.screens}
        self._dirty = True
        self._beacons = {
            (bc.uuid.replace("-", "").lower(), bc.major, bc.minor): bc for bc in cfg.ble.beacons
        }
        self._beacon_low: dict[str, bool] = {}
        self._addr_beacon: dict[str, str] = {}
        self.beacon_health = BeaconHealth(
            [bc.name for bc in cfg.ble.beacons], cfg.ble.beacon_missing_s
        )
        self._people_window: deque[int] = deque(maxlen=5)
        self._started = time.monotonic()
        self._stop = asyncio.Event()
        self.outbox: Any = None
        self._disk_full = False
        # Set to a list to keep every accepted id (the demo and tests audit delivery with it).
        self.accepted_ids: list[str] | None = None
        self.uplink: Any = None
        self.downlink: Any = None
        self.bus: Any = None
        # Set by `edge-agent run`: pushed configs replace this file (edge_agent/downlink/config_apply.py).
        self.config_path: Path | None = None
        self.config_sha256: str | None = None  # of the file this process loaded
        self._cert_sha256 = credentials.running_sha256(cfg.central)  # the same for the cert
        self.exit_code = 0  # RESTART_EXIT_STATUS after a restart command or a pushed config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._occupancy: dict[str, tuple[int, float]] = {}  # zone -> (people, when published)
        self._mmwave: dict[tuple[str, str], bool] = {}  # (zone, sensor) -> someone there
        self.content_installer = ContentInstaller(paths.content_dir, self._on_content_installed)

    # ---- setup -------------------------------------------------------------------------
    @staticmethod
    def _device_secret(state_dir: Path) -> bytes:
        p = state_dir / "presence.secret"
        if not p.exists():
            fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
        return p.read_bytes()

    def _presence_key(self, internal: str, ts: float) -> str:
        day = datetime.fromtimestamp(ts, self.tz).date().isoformat()
        salt = presence_salt(day, self._secret)
        return hmac.new(salt, internal.encode(), hashlib.sha256).hexdigest()[:16]

    def start_sync(self) -> None:
        """Outbox, uplink to central, downlink from central, in-store bus."""
        from contracts.signing import load_public_key
        from sync.downlink import Downlink
        from sync.outbox import Outbox
        from sync.uplink import Uplink

        cfg = self.cfg
        self.outbox = Outbox(
            self.paths.outbox_db, cap_bytes=int(cfg.uplink.outbox_cap_mb * 1_000_000)
        )
        self.uplink = Uplink(
            self.outbox,
            cfg.central,
            cfg.store.store_id,
            cfg.store.device_id,
            cfg.uplink,
            config_hash=hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:12],
        )
        self.uplink.start()
        self.downlink = Downlink(
            cfg.central,
            cfg.store.store_id,
            cfg.store.device_id,
            load_public_key(cfg.downlink.ops_public_key),
            self.paths.state_dir / "downlink-state.json",
            appliers={
                "campaigns": self._apply_campaigns,
                "profiles": self._apply_profiles,
                "command": self._apply_command,
                "config": self._apply_config,
                "content": self._apply_content,
            },
            on_result=self._on_downlink_result,
            max_bytes=cfg.downlink.max_message_bytes,
        )
        self.downlink.start()
        self._start_bus()

    def _start_bus(self) -> None:
        cfg = self.cfg
        client = make_client(f"agent-{cfg.store.store_id}-{cfg.store.device_id}", cfg.bus)
        store = cfg.store.store_id
        own_source = source_for(store, cfg.store.device_id)

        def on_connect(c, userdata, flags, reason_code, properties) -> None:
            if not reason_code.is_failure:
                c.subscribe(topics.screen_events(store), qos=1)
                c.subscribe(topics.kiosk_events(store), qos=1)
                if cfg.pos.bus:
                    c.subscribe(topics.pos_receipts(store), qos=1)
                c.subscribe(topics.screen_state(store), qos=1)
                c.subscribe(topics.screen_screenshot(store), qos=1)
                c.subscribe(topics.screen_errors(store), qos=1)
                c.subscribe(topics.scanner_adverts(store), qos=0)  # a lost advert is no loss
                c.subscribe(topics.mmwave(store), qos=1)
                log.info("bus: connected to %s:%s", cfg.bus.host, cfg.bus.port)

        def on_message(c, userdata, msg) -> None:
            # Runs in paho's thread: validate, then hand over; never raise out of here.
            if msg.topic.endswith("/state") and msg.topic.startswith(f"instore/{store}/screens/"):
                self._on_screen_state(msg.topic.split("/")[3], msg.payload)
                return
            if msg.topic.endswith("/adverts") and msg.topic.startswith(f"instore/{store}/ble/"):
                self._bus_advert(msg.topic.split("/")[3], msg.payload)
                return
            if "/mmwave/" in msg.topic and msg.topic.startswith(f"instore/{store}/zones/"):
                parts = msg.topic.split("/")
                self._mmwave[(parts[3], parts[5])] = msg.payload.strip().upper() == b"ON"
                return
            if msg.topic.endswith(("/screenshot", "/errors")):
                what = "screenshots" if msg.topic.endswith("/screenshot") else "screen-errors"
                self._relay_to_central(what, msg.topic.split("/")[3], msg.payload)
                return
            if msg.topic == topics.pos_receipts(store):
                if self.receipts.feed(msg.payload) is None and self.receipts.last_error:
                    log.warning("pos: %s", self.receipts.last_error)
                return
            try:
                event = parse_event(msg.payload)
            except EventError as exc:
                self.stats.bus_rejects += 1
                log.warning("bus: refused event on %s: %s", msg.topic, exc)
                return
            if event.source != own_source:
                # The CDP would refuse it under this device's topic: refuse it here, visibly.
                self.stats.bus_rejects += 1
                log.warning(
                    "bus: refused event on %s: source %r is not this box", msg.topic, event.source
                )
                return
            if event.type.endswith("content.impression.v1"):
                self.stats.impressions_received += 1
            elif event.type.endswith("survey.answer.v1"):
                self.journey.kpis.nps()
            self._emit_event(event)

        client.on_connect = on_connect
        client.on_message = on_message
        connect(client, cfg.bus)
        client.loop_start()
        self.bus = client

    # ---- downlink appliers -------------------------------------------------------------
    def _apply_profiles(self, body: dict[str, Any]) -> None:
        """A slice snapshot or delta (shapes in edge_agent/slice/model.py); all or nothing.
        A refusal (older, gap, bad row, other store) raises and the ack carries the reason."""
        res = self.profiles.apply(body)
        if res.duplicate:
            log.info("profiles: %s v%d already applied", res.kind, res.version)
            return
        if res.kind == "snapshot_part":
            # Staged; the current slice keeps serving until the last part swaps it in.
            log.info("profiles: snapshot v%d: %d/%d parts", res.version, res.staged, res.parts)
            return
        if res.keys_changed is None:
            self.resolver.set_keys(self.profiles.identity_keys())
        elif res.keys_changed:
            keys = self.profiles.identity_keys(res.keys_changed)
            self.resolver.update_keys(keys, removed=res.keys_changed - keys.keys())
        if res.forgotten:
            # Consent withdrawn or deleted: get() already returns None; the screen must not
            # keep a personal message up for its minimum hold either.
            for pid in res.forgotten:
                self._forget.put(pid)
            for st in self._screens.values():
                if st.decision is not None and st.decision.profile_id in res.forgotten:
                    st.shown_at = float("-inf")
        log.info("profiles: applied %s v%d (%d rows)", res.kind, res.version, res.rows)
        self._dirty = True

    def _forget_profiles(self) -> None:
        """Drop journey state (caps, touches) of profiles the slice no longer holds."""
        while True:
            try:
                self.journey.forget(self._forget.get_nowait())
            except queue.Empty:
                return

    def _purge_profiles(self) -> None:
        """The retention job (APScheduler thread): expired profiles and old journal entries."""
        days = self.cfg.profiles.journal_retention_days
        try:
            res = self.profiles.purge_expired(log_retention_s=days * 86400)
        except Exception:
            log.exception("profiles: retention purge failed")
            return
        if res.forgotten:
            self.resolver.update_keys({}, removed=res.forgotten)
            for pid in res.forgotten:
                self._forget.put(pid)
            self._dirty = True
        log.info("profiles: retention purged %d expired profiles", res.expired)

    def _start_retention(self) -> Any:
        from apscheduler.schedulers.background import BackgroundScheduler

        sched = BackgroundScheduler(daemon=True, timezone=self.tz)
        # First run at start: a box back from weeks offline must not use expired profiles.
        sched.add_job(
            self._purge_profiles,
            "interval",
            seconds=self.cfg.profiles.retention_interval_s,
            next_run_time=datetime.now(self.tz),
            id="profiles-retention",
            coalesce=True,
            max_instances=1,
        )
        sched.start()
        return sched

    def _apply_campaigns(self, body: dict[str, Any]) -> None:
        bundle = self.content.replace(body)
        log.info(
            "campaigns: applied bundle v%s with %d campaigns", bundle.version, len(bundle.campaigns)
        )
        # Campaigns this store can never run load anyway (others in the bundle may), but ops
        # hear about each in the log and the warnings count of the heartbeat.
        self.campaign_warnings = lint(
            bundle,
            zones=[z.id for z in self.cfg.zones],
            screens=[s.id for s in self.cfg.screens],
            max_people_for_personal=max(s.max_people_for_personal for s in self.cfg.screens),
            stock=self._stock() or None,
            now=self._now_dt(),
        )
        for line in self.campaign_warnings:
            log.warning("campaigns v%s: %s", bundle.version, line)
        self._dirty = True

    def _apply_command(self, body: dict[str, Any]) -> None:
        from edge_agent.downlink.commands import (
            RESTART_EXIT_STATUS,
            emergency_command,
            parse_command,
            target_screens,
        )

        screens = [s.id for s in self.cfg.screens]
        cmd = parse_command(body, screens)  # ValueError: refused, acked with the reason
        log.info("command %s%s", cmd.command, f" ({cmd.reason})" if cmd.reason else "")
        if cmd.command == "screenshot":
            if self.bus is None:
                raise RuntimeError("the in-store bus is not connected")
            for screen in target_screens(cmd, screens):
                ask = ScreenCommand(kind="screenshot")
                self.bus.publish(
                    topics.screen_cmd(self.cfg.store.store_id, screen), ask.to_bytes(), qos=1
                )
        elif cmd.command in ("emergency", "clear_emergency"):
            if self.bus is None:
                raise RuntimeError("the in-store bus is not connected")
            # Retained on the store's emergency topic: every screen obeys, also one that starts
            # later, until cleared.
            self.bus.publish(
                topics.emergency(self.cfg.store.store_id),
                emergency_command(cmd).to_bytes(),
                qos=1,
                retain=True,
            )
        elif cmd.command == "resync":
            if self.uplink is not None:
                self.uplink.resync()
            if self.downlink is not None and self.downlink._client is not None:
                # Central answers with fresh snapshots for whatever it finds behind.
                request = {"kind": "resync", "versions": self.downlink.state.all()}
                self.downlink._client.publish(self.downlink.ack_topic, json.dumps(request), 1)
        elif cmd.command == "rotate_credentials":
            store, device = self.cfg.store.store_id, self.cfg.store.device_id
            csr = credentials.request(self.cfg.central, store, device)
            if self.uplink is None or not self.uplink.publish_status("csr", csr, retain=True):
                raise RuntimeError("not connected to central: the request could not be sent")
        elif cmd.command == "install_certificate":
            assert cmd.certificate_pem is not None
            store, device = self.cfg.store.store_id, self.cfg.store.device_id
            credentials.check(self.cfg.central, store, device, cmd.certificate_pem)
            credentials.install(self.cfg.central, cmd.certificate_pem)
            self.request_restart("new client certificate", RESTART_EXIT_STATUS)
        else:
            self.request_restart("restart command", RESTART_EXIT_STATUS)

    def _apply_content(self, body: dict[str, Any]) -> None:
        # Checked now (a bad manifest is refused in the ack); assets download in the background
        # and the loop swaps only when all of them are verified.
        self.content_installer.install(parse_manifest(body))

    def _on_content_installed(self, version: int, ok: bool, reason: str) -> None:
        self._emit(
            DownlinkApplied(kind="content.installed", version=version, accepted=ok, reason=reason)
        )
        dl = self.downlink
        if dl is not None and dl._client is not None:
            # Shaped like the downlink's own acks, so ops tools read both the same way.
            doc = {"kind": "content.installed", "version": version, "accepted": ok}
            dl._client.publish(dl.ack_topic, json.dumps({**doc, "reason": reason}), 1)

    def _apply_config(self, body: dict[str, Any]) -> None:
        from edge_agent.downlink import config_apply
        from edge_agent.downlink.commands import RESTART_EXIT_STATUS

        if self.config_path is None:
            raise RuntimeError("this agent was not started from a config file")
        config_apply.stage(body, self.config_path, self.cfg)
        log.warning("config: new config installed; restarting on it (on probation)")
        self.request_restart("pushed config", RESTART_EXIT_STATUS)

    def request_restart(self, why: str, status: int) -> None:
        """Stop cleanly soon (after the downlink's ack is out) with ``status`` for systemd."""
        self.exit_code = status
        log.info("agent: restarting (%s)", why)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.call_later, 1.0, self.stop)
        else:
            self.stop()

    def _check_probation(self) -> None:
        """A pushed config or certificate is confirmed once central is reached with it, else
        rolled back."""
        from edge_agent.downlink import config_apply
        from edge_agent.downlink.commands import RESTART_EXIT_STATUS

        connected = self.uplink is not None and self.uplink.connected
        central = self.cfg.central
        cred_age = credentials.on_probation(central, self._cert_sha256)
        if cred_age is not None and connected:
            credentials.confirm(central)
            log.info("credentials: central accepted the new certificate; confirmed")
        elif cred_age is not None and cred_age > self.cfg.downlink.config_probation_s:
            log.error("%s", credentials.rollback(central, "central refused it"))
            self.request_restart("credential rollback", RESTART_EXIT_STATUS)
        age = config_apply.on_probation(self.config_path, self.config_sha256)
        if age is None or self.config_path is None:
            return
        if connected:
            config_apply.confirm(self.config_path)
            log.info("config: the pushed config reached central; confirmed")
        elif age > self.cfg.downlink.config_probation_s:
            log.error("%s", config_apply.rollback(self.config_path, "central unreachable with it"))
            self.request_restart("config rollback", RESTART_EXIT_STATUS)

    def _bus_advert(self, scanner: str, payload: bytes) -> None:
        """An advert from a scanner node over MQTT: same JSON and same path as the UART line.
        The topic names the receiver (a node cannot speak for another), and the box's clock
        stamps it when the node did not."""
        try:
            advert = advert_from_line(payload, self.clock.now(), receiver=scanner)
        except AdvertError as exc:
            self.stats.bus_advert_rejects += 1
            log.debug("bus advert from %s refused: %s", scanner, exc)
            return
        loop = self._loop
        if loop is None:
            return  # not running yet
        self.stats.bus_adverts += 1
        loop.call_soon_threadsafe(self.on_advert, advert)

    def _relay_to_central(self, what: str, screen_id: str, payload: bytes) -> None:
        """A player's screenshot (screen content only) or error report goes to central for ops
        (status, not an event: if central is unreachable it is simply not relayed)."""
        if self.uplink is not None and len(payload) <= self.cfg.downlink.max_message_bytes:
            self.uplink.publish_status(f"{what}/{screen_id}", payload, retain=False)

    def _on_downlink_result(self, result: Any) -> None:
        accepted = bool(getattr(result, "accepted", False))
        if accepted:
            self.stats.downlink_applied += 1
        else:
            self.stats.downlink_refused += 1
        self._emit(
            DownlinkApplied(
                kind=str(getattr(result, "kind", "") or "unknown"),
                version=int(getattr(result, "version", 0) or 0),
                accepted=accepted,
                reason=str(getattr(result, "reason", "")),
            )
        )

    # ---- events ------------------------------------------------------------------------
    def _now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), UTC)

    def _emit(
        self, payload: Payload, *, subject: str | None = None, ts: float | None = None
    ) -> None:
        when = datetime.fromtimestamp(ts, UTC) if ts is not None else self._now_dt()
        ev = make_event(
            payload,
            store_id=self.cfg.store.store_id,
            device_id=self.cfg.store.device_id,
            subject=subject,
            time=when,
        )
        self._emit_event(ev)

    def _emit_event(self, ev: CloudEvent) -> None:
        with self._pending_lock:
            self._pending.append(ev)

    def flush_events(self) -> int:
        """Group-commit buffered events to the outbox; they count as accepted once this returns."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
        if not batch:
            return 0
        if self.outbox is None:
            return 0
        try:
            self.outbox.append(batch)
        except OutboxFull as exc:
            # Keep what must not be lost in memory (bounded) and retry at the next flush.
            keep = [e for e in batch if priority_of(e.type) >= PRIORITY_HIGH][-10_000:]
            self.stats.events_refused_disk_full += len(batch) - len(keep)
            with self._pending_lock:
                self._pending[:0] = keep
            if not self._disk_full:
                log.error("%s; keeping %d important event(s) in memory", exc, len(keep))
            self._disk_full = True
            return 0
        if self._disk_full:
            log.info("outbox: disk has room again")
            self._disk_full = False
        self.stats.events_accepted += len(batch)
        if self.accepted_ids is not None:
            self.accepted_ids.extend(e.id for e in batch)
        return len(batch)

    # ---- BLE ---------------------------------------------------------------------------
    def on_advert(self, advert: Advert) -> None:
        """The one callback every BLE source calls. Never raises."""
        self.stats.adverts += 1
        try:
            result = decode_advert(advert)
        except Exception as exc:  # the decoder promises not to raise; be safe in the field anyway
            self.stats.decode_errors += 1
            log.warning("ble: decoder raised %s", type(exc).__name__)
            return
        if result.errors:
            self.stats.decode_errors += len(result.errors)
        ts = advert.timestamp or self.clock.now()
        for frame in result.frames:
            f = frame.fields
            if frame.format == "eddystone_eid":
                self._on_token(bytes.fromhex(f["eid"]), advert.rssi, ts, advert.receiver)
            elif frame.format == "ibeacon":
                key = (str(f["uuid"]).replace("-", ""), int(f["major"]), int(f["minor"]))
                beacon = self._beacons.get(key)
                if beacon is not None:
                    self._addr_beacon[advert.address] = beacon.name
                    self.beacon_health.heard(beacon.name, ts)
            elif frame.format == "eddystone_tlm":
                name = self._addr_beacon.get(advert.address)
                if name is not None:
                    self._on_tlm(name, f)

    def _on_token(self, eid: bytes, rssi: int, ts: float, receiver: str = "local") -> None:
        pid = self.resolver.resolve(eid, ts)
        internal = f"p:{pid}" if pid else f"t:{eid.hex()}"
        for change in self.presence.observe(internal, rssi, ts, receiver):
            self._on_presence(change)

    def _on_tlm(self, name: str, f: dict[str, Any]) -> None:
        bc = next(b for b in self.cfg.ble.beacons if b.name == name)
        mv = f.get("battery_mv")
        low = mv is not None and 0 < int(mv) < bc.low_battery_mv
        if self._beacon_low.get(name) != low:
            # Report on change only: the first TLM, and every crossing of the threshold.
            self._beacon_low[name] = low
            self._emit(
                BeaconTelemetry(
                    beacon=name,
                    zone_id=bc.zone,
                    battery_mv=mv,
                    temperature_c=f.get("temperature_c"),
                    low_battery=low,
                )
            )
            if low:
                self._staff_alert(
                    "beacon_battery_low",
                    f"Beacon {name} battery low ({mv} mV): replace it",
                    beacon=name,
                    battery_mv=mv,
                    zone_id=bc.zone,
                )

    def _staff_alert(self, kind: str, text: str, **fields: Any) -> None:
        """One alert for the staff kiosks on the in-store bus (never sent to the CDP)."""
        self.stats.staff_alerts += 1
        log.info("staff alert %s: %s", kind, text)
        if self.bus is not None:
            body = {
                "alert_id": secrets.token_hex(8),
                "kind": kind,
                "text": text,
                "ts": datetime.now(UTC).isoformat(),
                **fields,
            }
            self.bus.publish(topics.alerts(self.cfg.store.store_id), json.dumps(body), qos=1)

    def _profile_for(self, internal: str):
        return self.profiles.get(internal[2:]) if internal.startswith("p:") else None

    def _on_presence(self, change: Entered | Left | DwellTick) -> None:
        zone = change.zone or self.cfg.ble.zone
        profile = self._profile_for(change.key)
        pkey = self._presence_key(change.key, change.ts)
        # The profile id travels only with the shopper's analytics consent.
        pid = profile.profile_id if profile and profile.consent_analytics else None
        if isinstance(change, Entered):
            self.stats.zone_entries += 1
            self._entered_at[change.key] = change.ts
            if profile is not None:
                local = datetime.fromtimestamp(change.ts, self.tz)
                self.journey.entered_store(profile.profile_id, change.ts, local)
            self._emit(
                ZoneEntered(zone_id=zone, presence_key=pkey, profile_id=pid, rssi=change.rssi),
                ts=change.ts,
            )
            if profile is not None:
                self.stats.shoppers_resolved += 1
                if pid:
                    self._emit(
                        ShopperIdentified(
                            profile_id=pid,
                            zone_id=zone,
                            consent_personalisation=profile.consent_personalisation,
                        ),
                        subject=pid,
                        ts=change.ts,
                    )
            elif change.key.startswith("t:"):
                self.stats.unresolved_tokens += 1
        elif isinstance(change, Left):
            self.stats.zone_exits += 1
            self._entered_at.pop(change.key, None)
            self.journey.kpis.dwell(change.dwell_s)
            self._emit(
                ZoneLeft(
                    zone_id=zone,
                    presence_key=pkey,
                    profile_id=pid,
                    dwell_s=round(change.dwell_s, 2),
                ),
                ts=change.ts,
            )
        else:
            self._emit(
                Dwell(
                    zone_id=zone,
                    presence_key=pkey,
                    profile_id=pid,
                    dwell_s=round(change.dwell_s, 2),
                ),
                ts=change.ts,
            )
            return
        self._dirty = True

    # ---- camera ------------------------------------------------------------------------
    async def _camera_loop(self) -> None:
        from edge_agent.sensing.camera.capture import Backoff, CameraWorker, make_pipelines
        from edge_agent.sensing.camera.sources import CameraError

        assert self.cfg.camera is not None
        cam = self.cfg.camera
        speed = getattr(self.clock, "speed", 1.0) or 1.0
        observations: queue.SimpleQueue[Any] = queue.SimpleQueue()
        try:
            pipelines = make_pipelines(cam)
        except CameraError as exc:  # e.g. a face model file that is not a model
            log.error("camera disabled: %s", exc)
            return
        # Capture and analysis run in the camera's own thread; this loop only takes the counts,
        # so a slow or stuck camera never stalls the agent.
        self.camera = CameraWorker(
            pipelines,
            observations.put,
            source=self.frame_source,
            opener=self.camera_opener,
            interval_s=max(0.02, 1.0 / (cam.fps * speed)),
            now=self.clock.now,
            backoff=Backoff(0.5, 2.0, cam.reconnect_max_s),
        ).start()
        watchers_window: deque[int] = deque(maxlen=5)
        new_tracks = 0
        next_sample = self.clock.now() + cam.sample_interval_s
        try:
            while not self._stop.is_set():
                new_tracks += self._drain_camera(observations, watchers_window)
                now = self.clock.now()
                if now >= next_sample and self.stats.last_people is not None:
                    next_sample = now + cam.sample_interval_s
                    self.stats.audience_samples += 1
                    watchers = self._last_watchers or 0
                    self._audience_kpis(self.stats.last_people, watchers)
                    self._emit(
                        AudienceSample(
                            screen_id=cam.screen,
                            people=self.stats.last_people,
                            watchers=watchers,
                            new_tracks=new_tracks,
                        )
                    )
                    new_tracks = 0
                await asyncio.sleep(min(0.05, 0.5 / (cam.fps * speed)))
        finally:
            self.camera.stop(timeout=2.0)
            self._drain_camera(observations, watchers_window)

    def _drain_camera(self, observations: queue.SimpleQueue[Any], watchers: deque[int]) -> int:
        """Counts and finished visits from the camera thread; returns the new tracks seen."""
        cam = self.cfg.camera
        assert cam is not None
        new = 0
        while True:
            try:
                o = observations.get_nowait()
            except queue.Empty:
                break
            for tr in o.ended:
                self.stats.audience_tracks += 1
                self.journey.kpis.track_ended(tr.dwell_s, tr.attention_s)
                self._emit(
                    AudienceTrack(
                        screen_id=o.screen_id, dwell_s=tr.dwell_s, attention_s=tr.attention_s
                    ),
                    ts=tr.end,
                )
            if not o.seen or o.screen_id != cam.screen:
                continue
            new += o.new_tracks
            self.stats.frames += 1
            self._people_window.append(o.people)
            watchers.append(o.watchers)
            people = sorted(self._people_window)[len(self._people_window) // 2]
            looking = sorted(watchers)[len(watchers) // 2]
            if looking != self._last_watchers:
                self._last_watchers = looking
                self._dirty = True
            if people != self.stats.last_people:
                self.stats.last_people = people
                self._dirty = True
        h = self.camera.health()
        # A read stuck for a while (frozen driver, stalled stream) is as blind as a lost camera.
        stuck = h.frame_age_s is not None and h.frame_age_s > max(2.0, 5.0 / cam.fps)
        if (h.state != "ok" or stuck) and self.stats.last_people is not None:
            # Fail safe: a lost camera sees nobody until it delivers again.
            log.warning("camera: no frame; treating the screen as unobserved")
            self.stats.last_people = None
            self._last_watchers = None
            self._people_window.clear()
            watchers.clear()
            self._dirty = True
        return new

    def _audience_kpis(self, people: int, watchers: int) -> None:
        """Opportunities to see: people who came into view since the last sample (and looked)."""
        prev_people, prev_watchers = self._last_audience
        self.journey.kpis.audience(max(0, people - prev_people), max(0, watchers - prev_watchers))
        self._last_audience = (people, watchers)

    # ---- decisions ---------------------------------------------------------------------
    def _context(self, screen_id: str) -> ScreenContext:
        sc = self.cfg.screen(screen_id)
        shoppers = []
        unresolved = 0
        dwell: dict[str, float] = {}
        zone_dwell = 0.0
        now = self.clock.now()
        # Presence is per zone: a zone that no receiver covers has nobody in it.
        for key in sorted(self.presence.present(sc.zone)):
            stay = max(0.0, now - self._entered_at.get(key, now))
            zone_dwell = max(zone_dwell, stay)
            p = self._profile_for(key)
            if p is not None:
                shoppers.append(p)
                dwell[p.profile_id] = stay
            else:
                unresolved += 1
        people = watchers = None
        cam = self.cfg.camera
        if cam is not None and cam.enabled and cam.screen == screen_id:
            # Fail safe: a configured camera that is dead or silent counts as seeing nobody,
            # which rules out personal content until it sees again.
            people = self.stats.last_people if self.stats.last_people is not None else 0
            watchers = self._last_watchers or 0
        return ScreenContext(
            screen_id=screen_id,
            zone_id=sc.zone,
            max_people_for_personal=sc.max_people_for_personal,
            people_in_view=people,
            shoppers=tuple(shoppers),
            unresolved_shoppers=unresolved,
            dwell_s=dwell,
            zone_dwell_s=zone_dwell,
            watchers=watchers,
        )

    def decide_screens(self) -> None:
        now = self.clock.now()
        now_local = datetime.fromtimestamp(now, self.tz)
        dirty, self._dirty = self._dirty, False
        self._forget_profiles()
        for screen_id, st in self._screens.items():
            held = st.decision is not None and now - st.shown_at < st.decision.min_on_screen_s
            if not dirty and not held and st.decision is not None:
                continue
            if held:
                # Re-check when the hold ends; until then the screen keeps what it shows.
                self._dirty = True
                continue
            ctx = self._context(screen_id)
            self.journey.set_bundle(self.content.bundle)
            d = self.journey.decide(ctx, now_local, self._stock())
            self.stats.decisions += 1
            self._raise_staff_alerts(ctx, now_local)
            if st.decision is not None and d.content == st.decision.content:
                continue
            st.decision, st.shown_at = d, now
            self._show(screen_id, d, ctx, now, now_local)

    def _stock(self) -> dict[str, bool]:
        stock = getattr(self.profiles, "stock_levels", None)
        return stock() if callable(stock) else {}

    def _raise_staff_alerts(self, ctx: ScreenContext, now_local: datetime) -> None:
        """Campaign alerts for staff (order ready, VIP), once per shopper, campaign and day."""
        world = World(stock=self._stock())
        for a in staff_alerts(ctx, self.journey.index, now_local, world):
            key = (a.campaign_id, a.profile_id, now_local.date().isoformat())
            if key in self._alerted:
                continue
            self._alerted.add(key)
            self._staff_alert(a.kind, a.text, campaign_id=a.campaign_id, zone_id=a.zone_id)

    def _show(
        self,
        screen_id: str,
        d: Decision,
        ctx: ScreenContext | None = None,
        now: float | None = None,
        now_local: datetime | None = None,
    ) -> None:
        self.stats.content_changes += 1
        self.stats.current[screen_id] = d.content.content_id
        self.stats.variants[d.variant] += 1
        log.info(
            "screen %s: %s (%s) because %s",
            screen_id,
            d.content.content_id,
            d.variant,
            ", ".join(d.reasons[:3]),
        )
        cmd = ScreenCommand(
            kind="show" if d.variant != "default" else "default",
            content=d.content.model_copy(update={"rule": d.rule, "reasons": d.reasons[:8]}),
            min_duration_s=d.min_on_screen_s / (getattr(self.clock, "speed", 1.0) or 1.0),
            issued_at=datetime.now(UTC),
        )
        if self.bus is not None:
            self.bus.publish(
                topics.screen_cmd(self.cfg.store.store_id, screen_id),
                cmd.to_bytes(),
                qos=1,
                retain=True,
            )
        now = self.clock.now() if now is None else now
        now_local = now_local or datetime.fromtimestamp(now, self.tz)
        present = ctx.shoppers if ctx is not None else ()
        for cid, p in self.journey.shown(screen_id, d, now, now_local, present=present):
            self.stats.holdouts += 1
            hid = p.profile_id if p.consent_analytics else None
            self._emit(
                HoldoutAssigned(campaign_id=cid, screen_id=screen_id, profile_id=hid), subject=hid
            )
        if d.campaign_id is not None:
            # Shown to them, yes; tracked by id at the CDP only with their analytics consent.
            profile = self.profiles.get(d.profile_id) if d.profile_id else None
            pid = profile.profile_id if profile and profile.consent_analytics else None
            self._emit(
                OfferShown(
                    screen_id=screen_id,
                    campaign_id=d.campaign_id,
                    content_id=d.content.content_id,
                    variant=d.variant,  # type: ignore[arg-type]
                    profile_id=pid,
                    reasons=list(d.reasons[:8]),
                    rule=d.rule,
                ),
                subject=pid,
            )

    # ---- loops -------------------------------------------------------------------------
    def heartbeat(self) -> None:
        now = self.clock.now()
        today = datetime.fromtimestamp(now, self.tz)
        self.journey.housekeeping(now, today)
        self._alerted = {k for k in self._alerted if k[2] == today.date().isoformat()}
        self._check_probation()
        depth = self.outbox.depth() if self.outbox else 0
        oldest = self.outbox.oldest_pending_age_s() if self.outbox else 0.0
        free = shutil.disk_usage(self.paths.state_dir).free / 1e6
        self._emit(
            hb := DeviceHeartbeat(
                version=VERSION,
                uptime_s=round(time.monotonic() - self._started, 1),
                outbox_depth=depth,
                oldest_pending_s=round(oldest or 0.0, 1),
                disk_free_mb=round(free, 1),
                sensors={
                    "ble": "ok" if self.stats.adverts else "silent",
                    "ble_beacons": self.beacon_health.summary(),
                    **self.profiles.health(),
                    **self._camera_health(),
                },
                kpis=self.journey.kpis.snapshot(),
                dropped=self._dropped(),
                **self._clock_fields(),
            )
        )
        self._publish_health(hb)

    def _clock_fields(self) -> dict[str, float]:
        est = self.uplink.clock_offset() if self.uplink is not None else None
        if est is None:
            return {}
        return {"clock_offset_s": round(est[0], 4), "clock_uncertainty_s": round(est[1], 4)}

    def _publish_health(self, hb: DeviceHeartbeat) -> None:
        if self.uplink is not None:
            doc = {"ts": self.clock.now(), **hb.model_dump(mode="json")}
            self.uplink.publish_health({**doc, "uplink": self.uplink.stats()})

    def _dropped(self) -> dict[str, int]:
        out = dict(self.outbox.drops()) if self.outbox else {}
        if self.stats.events_refused_disk_full:
            out["refused:disk_full"] = self.stats.events_refused_disk_full
        return out

    def _camera_health(self) -> dict[str, str]:
        """Camera state for the heartbeat: ok, starting, stalled, reconnecting, ended, off..."""
        if self.camera is None:
            configured = self.frame_source is not None or self.camera_opener is not None
            return {"camera": "silent" if configured else "off"}
        h = self.camera.health()
        # Not the error text: it names the source, and a stream URL may carry credentials.
        return {
            "camera": h.state,
            "camera_fps": f"{h.fps:g}",
            "camera_reconnects": str(h.reconnects),
        }

    async def _tick_loop(self) -> None:
        speed = getattr(self.clock, "speed", 1.0) or 1.0
        next_hb = self.clock.now()
        # Test-only hang hooks (EDGE_AGENT_TEST_STALL, edge_agent/box/liveness.py); inert otherwise.
        stall, block = StallPoint("tick"), StallPoint("loop")
        while not self._stop.is_set():
            self._tick_at = time.monotonic()  # the watchdog's proof of life (watchdog.py)
            if stall.due():
                await asyncio.Event().wait()  # this loop hangs; the event loop runs on
            if block.due():
                time.sleep(3600)  # the whole event loop hangs
            now = self.clock.now()
            for change in self.presence.tick(now):
                self._on_presence(change)
            self._drain_receipts()
            self._check_camera(now)
            for name, silent in self.beacon_health.newly_missing(now):
                self._staff_alert(
                    "beacon_missing",
                    f"Beacon {name} not heard for {silent / 60:.0f} min: check it",
                    beacon=name,
                )
            self.decide_screens()
            self._publish_occupancy(now)
            if now >= next_hb:
                next_hb = now + self.cfg.uplink.heartbeat_s
                self.heartbeat()
            await asyncio.to_thread(self.flush_events)
            await asyncio.sleep(min(0.2, 0.5 / speed))

    def _publish_occupancy(self, now: float) -> None:
        """Live people per zone for the staff kiosks, retained on the bus: on every change and
        at least every 30 s (kiosks blank a figure older than two minutes). BLE devices present,
        or the camera's count where a camera watches the zone and sees more."""
        if self.bus is None:
            return
        cam = self.cfg.camera
        cam_zone = next((s.zone for s in self.cfg.screens if cam and s.id == cam.screen), None)
        for zone in self.cfg.zones:
            people = len(self.presence.present(zone.id))
            if zone.id == cam_zone and self.stats.last_people is not None:
                people = max(people, self.stats.last_people)
            if people == 0 and any(on for (z, _), on in self._mmwave.items() if z == zone.id):
                people = 1  # a radar sees someone that no phone or camera does: at least one
            last = self._occupancy.get(zone.id)
            if last is not None and last[0] == people and now - last[1] < 30:
                continue
            self._occupancy[zone.id] = (people, now)
            doc = {"zone_id": zone.id, "people": people, "ts": now}
            topic = topics.zone_occupancy(self.cfg.store.store_id, zone.id)
            self.bus.publish(topic, json.dumps(doc), qos=1, retain=True)

    def _on_screen_state(self, screen_id: str, payload: bytes) -> None:
        """A player's retained state (its last will says "offline"): staff hear of a dark screen."""
        try:
            status = json.loads(payload).get("status")
        except (ValueError, AttributeError):
            return
        if status not in ("online", "offline"):
            return
        was = self._screen_status.get(screen_id)
        self._screen_status[screen_id] = status
        if status == "offline" and was != "offline":
            self._staff_alert(
                "screen_offline", f"Screen {screen_id} is offline", screen_id=screen_id
            )

    def _check_camera(self, now: float) -> None:
        """A configured camera that stops delivering frames is a staff alert (once per outage)."""
        cam = self.cfg.camera
        if cam is None or not cam.enabled:
            return
        if self.stats.frames != self._frames_seen:
            self._frames_seen, self._camera_seen_at = self.stats.frames, now
            self._camera_alerted = False
            return
        silent_for = now - (self._camera_seen_at or self._run_started_at or now)
        if not self._camera_alerted and silent_for > CAMERA_LOST_AFTER_S:
            self._camera_alerted = True
            self._staff_alert(
                "camera_lost",
                f"Camera at {cam.screen} sends no images: personal content is off there",
                screen_id=cam.screen,
            )

    def _drain_receipts(self) -> None:
        while True:
            try:
                r = self._receipts.get_nowait()
            except queue.Empty:
                return
            self._on_receipt(r)

    def _on_receipt(self, r: Receipt) -> None:
        """A purchase: attributed to the offers before it, reported as a conversion."""
        ts = r.ts.timestamp()
        local = r.ts.astimezone(self.tz)
        profile = self.profiles.get(r.loyalty) if r.loyalty else None
        # A loyalty id not in this store's slice: no consent known, so treated as anonymous.
        known = profile.profile_id if profile is not None else None
        screens = self.cfg.pos.tills.get(r.till)
        result = self.journey.conversion(ts, known, local, screens)
        self.stats.conversions += 1
        pid = known if profile is not None and profile.consent_analytics else None
        self._emit(
            Conversion(
                receipt_id=r.receipt,
                profile_id=pid,
                skus=[i.sku for i in r.items],
                amount=r.total,
                currency=r.currency,
                till=r.till,
                attributed_campaign_id=result.last_campaign_id,
                first_touch_campaign_id=result.first_campaign_id,
                touches=result.attribution.touches,
                group=result.group,  # type: ignore[arg-type]
            ),
            subject=pid,
            ts=ts,
        )

    def _start_supervision(self) -> tuple[Any, Any]:
        """systemd READY/watchdog/STATUS (edge_agent/box/watchdog.py) and the metrics endpoint."""
        from edge_agent.box.liveness import Thresholds
        from edge_agent.box.metrics import start_metrics
        from edge_agent.box.watchdog import Supervisor

        sd = self.cfg.systemd
        limits = Thresholds(sd.tick_stale_s, sd.ble_silent_s, sd.camera_stall_s, sd.uplink_stall_s)
        self.supervisor = Supervisor(self, thresholds=limits)
        metrics = start_metrics(self, self.supervisor) if self.cfg.metrics.enabled else None
        return self.supervisor, metrics

    async def run(self, until: float | None = None) -> None:
        """Run until the BLE source ends (replay) or ``until`` (clock time), or ``stop()``."""
        self._loop = asyncio.get_running_loop()
        self._run_started_at = self.clock.now()
        tasks = [asyncio.create_task(self._tick_loop(), name="tick")]
        supervisor, metrics = self._start_supervision()
        tasks.append(asyncio.create_task(supervisor.run(), name="watchdog"))
        pos_reader = None
        if self.cfg.pos.serial_port:
            from edge_agent.sensing.serial_lines import SerialLineReader

            pos_reader = SerialLineReader(
                self.cfg.pos.serial_port,
                self.receipts.feed,
                baudrate=self.cfg.pos.serial_baud,
                name="pos",
            ).start()
        has_camera = self.frame_source is not None or self.camera_opener is not None
        if has_camera and self.cfg.camera is not None:
            tasks.append(asyncio.create_task(self._camera_loop(), name="camera"))
        ble = asyncio.create_task(self.ble_source.run(self.on_advert), name="ble")
        retention = self._start_retention()
        try:
            while not self._stop.is_set():
                if ble.done():
                    exc = ble.exception()
                    if exc is not None:
                        raise exc
                    break
                if until is not None and self.clock.now() >= until:
                    break
                await asyncio.sleep(0.05)
        finally:
            self._stop.set()
            supervisor.notifier.stopping()
            if metrics is not None:
                metrics.stop()
            retention.shutdown(wait=False)
            if pos_reader is not None:
                pos_reader.stop()
            ble.cancel()
            for t in tasks:
                t.cancel()
            await asyncio.gather(ble, *tasks, return_exceptions=True)
            # Everyone still present leaves now, so dwell is closed and counted.
            for change in self.presence.tick(float("inf")):
                self._on_presence(change)
            self._drain_receipts()
            # A last heartbeat on the way out: the CDP sees the day's final KPIs.
            self.heartbeat()
            self.flush_events()

    def stop(self) -> None:
        self._stop.set()

    def close(self, flush_timeout_s: float = 10.0) -> None:
        self.flush_events()
        if self.bus is not None:
            self.bus.loop_stop()
            self.bus.disconnect()
        if self.downlink is not None:
            self.downlink.stop()
        if self.uplink is not None:
            self.uplink.stop(flush_timeout_s)
        if self.outbox is not None:
            self.outbox.close()
        self.profiles.close()


def run_agent_cli(config_path: str) -> int:
    import signal
    import sys

    from edge_agent.clock import ScaledClock, TraceClock
    from edge_agent.config import load_or_report
    from edge_agent.downlink import config_apply
    from edge_agent.downlink.probation import file_sha256
    from edge_agent.sensing.ble.sources import (
        BleakSource,
        ReplaySource,
        SerialSource,
        SourceError,
        first_timestamp,
    )

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    note = config_apply.on_start(Path(config_path))
    if note:
        log.error("%s", note)
    cfg = load_or_report(config_path)
    if cfg is None:
        return 2
    clock: Clock = SystemClock()
    b = cfg.ble
    if b.source == "replay":
        assert b.replay_file is not None
        try:
            start = first_timestamp(b.replay_file)
        except (SourceError, OSError) as exc:
            print(f"edge-agent: ble.replay_file: {exc}", file=sys.stderr)
            return 1
        clock = ScaledClock(start, b.replay_speed) if b.replay_speed > 0 else TraceClock(start)
        source: Any = ReplaySource(b.replay_file, clock)
    elif b.source == "serial":
        source = SerialSource(b.serial_port or "", b.serial_baud)
    else:
        source = BleakSource(adapter=b.adapter, passive=b.passive_scan, stall_s=b.scan_stall_s)
    frames = opener = None
    if cfg.camera and cfg.camera.enabled:
        from edge_agent.sensing.camera.sources import CameraError, open_source

        cam = cfg.camera

        def opener() -> Any:
            return open_source(cam.source, clock=clock, width=cam.width, height=cam.height)

        try:
            frames = opener()
        except CameraError as exc:
            # BLE presence goes on; a configured but dead camera rules out personal content
            # until the camera thread manages to open it (it retries with backoff).
            log.error("camera not available yet: %s", exc)
    agent = Agent(cfg, clock=clock, ble_source=source, frame_source=frames, camera_opener=opener)
    agent.config_path = Path(config_path)
    agent.config_sha256 = file_sha256(agent.config_path)
    agent.start_sync()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    try:
        loop.run_until_complete(agent.run())
    except SourceError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    finally:
        agent.close()
        loop.close()
    return agent.exit_code
