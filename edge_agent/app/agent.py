"""The composition root: builds the stages of the box, wires them, and runs their loops.

    sensors -> PresenceStage / AudienceStage -> ScreenDirector -> in-store bus -> screens
    every event -> EventJournal -> Outbox -> Uplink -> central (CDP)
    central -> Downlink (verify) -> DownlinkHandlers (apply)

One asyncio loop owns the state. Sensor callbacks, the camera thread and the bus thread only
hand data to it. This module holds no domain logic: each step lives in its stage.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from contracts import topics
from contracts.events import BoxMetrics, make_event
from edge_agent.app.alerts import StaffAlerts
from edge_agent.app.bus import InStoreBus
from edge_agent.app.inbox import BusInbox
from edge_agent.app.live_report import LiveReport
from edge_agent.box.bus_auth import LOG_TOPIC, BusAuthWatch
from edge_agent.box.heartbeat import VERSION, Heartbeat, LatencyWindow, ProcessSampler
from edge_agent.box.liveness import StallPoint
from edge_agent.box.log_relay import LogRelay
from edge_agent.clock import Clock, SystemClock, wall_to_clock
from edge_agent.config import AgentConfig
from edge_agent.downlink.content_manifest import ContentInstaller
from edge_agent.downlink.handlers import DownlinkHandlers
from edge_agent.downlink.wayfinding_apply import WayfindingApplier
from edge_agent.identity.resolver import TokenResolver
from edge_agent.journey.checkout import Checkout
from edge_agent.journey.content_store import ContentStore
from edge_agent.journey.director import ScreenDirector
from edge_agent.journey.engine import Converted, JourneyEngine
from edge_agent.journey.kiosk_finder import DEFAULT_LINK_BASE, KioskFinder
from edge_agent.journey.memory import JourneyMemory
from edge_agent.journey.touch_share import TouchShare
from edge_agent.journey.wayfinding_stage import LinkMaker, ScreenWayfinder
from edge_agent.sensing.audience_stage import AudienceStage, Camera
from edge_agent.sensing.ble.advert import Advert
from edge_agent.sensing.ble.sources import AdvertCallback
from edge_agent.sensing.fusion_stage import FusionStage
from edge_agent.sensing.occupancy import ZoneOccupancy
from edge_agent.sensing.presence import tracker_from_config
from edge_agent.sensing.presence_stage import PresenceStage, device_secret
from edge_agent.sensing.walk_stage import WalkStage
from edge_agent.slice.store import ProfileSlice
from sync.journal import EventJournal

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

    from edge_agent.box.metrics import MetricsServer
    from edge_agent.box.watchdog import Supervisor
    from edge_agent.sensing.camera.sources import FrameSource
    from sync.downlink import Downlink
    from sync.outbox import Outbox
    from sync.uplink import Uplink

__all__ = ["VERSION", "Agent", "AgentStats"]

log = logging.getLogger("edge_agent")

KPI_SAVE_S = 2.0  # the day's KPIs lost to a kill -9 at most (clock seconds)
# After an event wakes the tick loop: the rest of a burst (a group walking in) lands first.
WAKE_COALESCE_S = 0.01


class AdvertSource(Protocol):
    """A BLE source (radio, UART scanner node, recorded trace): calls back with every advert
    until it ends (a replay) or is cancelled."""

    async def run(self, callback: AdvertCallback) -> None: ...


@dataclass
class AgentStats:
    """A read-only view of every stage's counters (the demo, metrics and tests read it)."""

    adverts: int = 0
    decode_errors: int = 0
    zone_entries: int = 0
    zone_exits: int = 0
    shoppers_resolved: int = 0
    unresolved_tokens: int = 0
    decisions: int = 0
    content_changes: int = 0
    events_accepted: int = 0
    events_refused_disk_full: int = 0
    impressions_received: int = 0
    bus_rejects: int = 0
    bus_adverts: int = 0
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
    variants: Counter[str] = field(default_factory=Counter)


class Agent:
    def __init__(
        self,
        cfg: AgentConfig,
        *,
        clock: Clock | None = None,
        ble_source: AdvertSource,
        frame_source: FrameSource | None = None,
        camera_opener: Callable[[], FrameSource] | None = None,
        camera_worker: bool = False,
    ) -> None:
        """``camera_worker``: run the configured camera in a worker process (issue 20; what
        ``edge-agent run`` does by default) rather than from ``frame_source``/``camera_opener``
        in a thread of this process."""
        self.cfg = cfg
        self.clock = clock or SystemClock()
        now = self.clock.now
        speed = getattr(self.clock, "speed", 1.0) or 1.0
        self.tz = ZoneInfo(cfg.store.timezone)
        self.ble_source = ble_source
        paths = cfg.paths_resolved
        paths.state_dir.mkdir(parents=True, exist_ok=True)
        self.paths = paths
        store, device = cfg.store.store_id, cfg.store.device_id

        # What the stages share: the slice, the token table, campaigns, journey state.
        self.profiles = ProfileSlice(
            paths.profiles_db,
            key_path=cfg.profiles.key_file,
            store_id=store,
            cache_size=cfg.profiles.cache_size,
        )
        # The token table is built on a worker thread and swapped in: adverts never wait.
        self.resolver = TokenResolver(cfg.ble.eid_rotation_exponent, background=True, clock=now)
        self.resolver.set_keys(self.profiles.identity_keys())
        self.content = ContentStore(paths.state_dir)
        # Caps, attribution touches and KPIs around the pure decision, kept across restarts.
        self.journey = JourneyEngine(self.content.bundle, cfg.pos.attribution_window_s)
        self.memory = JourneyMemory(paths.state_dir / "journey.db")
        t0 = now()
        restored = self.memory.load_into(self.journey, t0, datetime.fromtimestamp(t0, self.tz))
        if restored["touches"] or restored["caps"]:
            log.info(
                "journey: carried on with %d touch(es) and %d cap count(s) from before the restart",
                restored["touches"],
                restored["caps"],
            )
        self._kpis_saved_at = float("-inf")
        self._converted: list[str] = []  # receipts to mark counted once the outbox has them

        # The wire on both sides: the journal (-> outbox -> uplink) and the in-store bus.
        self.journal = EventJournal(store, device, now)
        self.bus = InStoreBus(cfg.bus, f"agent-{store}-{device}")
        # ESP32 node logins the broker refused, from its log on $SYS (box/bus_auth.py).
        self.bus_auth = BusAuthWatch()
        # Open alerts survive restarts (alerts.db) and are retained for the kiosks.
        self.alerts = StaffAlerts(self.bus, store, device, paths.alerts_db, cfg.alerts)
        self.touch_share = TouchShare(self.bus, store, device, self.journey, now)
        self.outbox: Outbox | None = None
        self.uplink: Uplink | None = None
        self.downlink: Downlink | None = None

        # The stages, in flow order.
        tracker = tracker_from_config(cfg.ble, paths.state_dir)
        self.presence = PresenceStage(
            cfg,
            now=now,
            tracker=tracker,
            resolver=self.resolver,
            profiles=self.profiles,
            journey=self.journey,
            journal=self.journal,
            alerts=self.alerts,
            invalidate=self._invalidate,
            secret=device_secret(paths.state_dir),
            # Other devices (the crowd without a camera) by the same zone rules as shoppers.
            devices=dataclasses.replace(tracker),
        )
        # The walk survey: a staff tag's readings and the kiosk's taps, as a store trace.
        self.walk = WalkStage(
            store=store,
            walks_dir=paths.state_dir / "walks",
            tags={b.name for b in cfg.ble.beacons},
            zones={z.id for z in cfg.zones},
            receivers={
                "local": (cfg.ble.zone, tracker.calibration),
                **tracker.receivers,
            },
            bus=self.bus,
            now=now,
        )
        self.presence.on_beacon = self.walk.on_tag
        self.audience = AudienceStage(
            cfg.camera,
            now=now,
            speed=speed,
            kpis=self.journey.kpis,
            journal=self.journal,
            alerts=self.alerts,
            invalidate=self._invalidate,
            frame_source=frame_source,
            camera_opener=camera_opener,
            worker_setup=self._camera_worker_setup() if camera_worker else None,
        )
        self.occupancy = ZoneOccupancy(
            cfg,
            presence=self.presence,
            audience=self.audience,
            bus=self.bus,
            invalidate=self._invalidate,
        )
        # People per zone and open staff alerts, summarised for central ops (retained).
        self.live = LiveReport(self.occupancy.people, self.alerts, [z.id for z in cfg.zones])
        # The pushed map (central's word on the store) wins over [map] path, from the start and
        # on every push; the screens' routes then follow it.
        wayfinding = WayfindingApplier(paths.state_dir, store)
        wayfinder = ScreenWayfinder.from_path(cfg.map.path if cfg.map else None)
        wayfinding.on_map = wayfinder.use
        wayfinder.products = wayfinding.planograms  # campaigns may name a product: sku:<sku>
        # Every way on a screen also goes to the phone: a QR code of the store API's page.
        wayfinder.links = LinkMaker(
            cfg.map.link_base if cfg.map else DEFAULT_LINK_BASE, store, time.time
        )
        self.fusion = FusionStage(
            cfg,
            presence=self.presence,
            audience=self.audience,
            radar=self.occupancy.radar,
            invalidate=self._invalidate,
        )
        self.director = ScreenDirector(
            cfg,
            now=now,
            speed=speed,
            presence=self.presence,
            audience=self.audience,
            profiles=self.profiles,
            content=self.content,
            journey=self.journey,
            journal=self.journal,
            bus=self.bus,
            alerts=self.alerts,
            radar=self.occupancy.radar,
            wayfinder=wayfinder,
            fusion=self.fusion,
        )
        # Kiosks' product finder: results, stock and the way on the screens' map (a worker thread).
        self.kiosk_finder = KioskFinder.from_config(
            cfg, self.bus, self.director.wayfinder, self.profiles
        )
        self.checkout = Checkout(
            cfg, profiles=self.profiles, journey=self.journey, journal=self.journal
        )
        self.handlers = DownlinkHandlers(
            cfg,
            now=now,
            profiles=self.profiles,
            resolver=self.resolver,
            content=self.content,
            director=self.director,
            journal=self.journal,
            bus=self.bus,
            request_restart=self.request_restart,
            content_dir=paths.content_dir,
            wayfinding=wayfinding,  # the pushed store map and planogram
        )
        self.heartbeat_stage = Heartbeat(
            now=now,
            state_dir=paths.state_dir,
            presence=self.presence,
            audience=self.audience,
            profiles=self.profiles,
            journey=self.journey,
            journal=self.journal,
        )
        # What the heartbeat's metrics summary needs beyond the stages' own counters.
        self.decide_ms = LatencyWindow()
        self.process = ProcessSampler()
        # WARN+ records to central as device.log.v1 events; installed by run() (an Agent built
        # by a test or a bench leaves the process's logging alone).
        self.log_relay: LogRelay | None = None
        self._relay_at = 0.0
        self.inbox = BusInbox(
            store,
            device,
            journal=self.journal,
            kpis=self.journey.kpis,
            receipts=self.checkout.receipts,
            max_relay_bytes=cfg.downlink.max_message_bytes,
            to_clock=wall_to_clock(self.clock),
            screens={
                sc.id: {"zone": sc.zone, "max_people_for_personal": sc.max_people_for_personal}
                for sc in cfg.screens
            },
        )
        self._route_bus()

        self.receipts = self.checkout.receipts  # every till line feeds this
        self.receipts.remember(self.memory.receipts_seen())
        self.supervisor: Supervisor | None = None  # systemd watchdog, once run() starts
        self.tick_at: float | None = None  # the watchdog's proof of life (box/watchdog.py)
        self.exit_code = 0  # RESTART_EXIT_STATUS after a restart command or a pushed config
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set when something a decision depends on changed (a shopper entered, the crowd at a
        # screen changed, a push landed): the tick loop runs now instead of at its next beat.
        self._wake = asyncio.Event()
        self.wake_on_events = True  # False: decide on the tick only (the bench's baseline)

    def _invalidate(self) -> None:
        self.director.invalidate()
        if not self.wake_on_events:
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:  # a bus or downlink thread
            loop.call_soon_threadsafe(self._wake.set)

    # ---- views the demo, the watchdog, metrics and tests read ----------------------------
    @property
    def stats(self) -> AgentStats:
        p, a, d = self.presence.counts, self.audience.counts, self.director.counts
        return AgentStats(
            adverts=p.adverts,
            decode_errors=p.decode_errors,
            zone_entries=p.zone_entries,
            zone_exits=p.zone_exits,
            shoppers_resolved=p.shoppers_resolved,
            unresolved_tokens=p.unresolved_tokens,
            decisions=d.decisions,
            content_changes=d.content_changes,
            events_accepted=self.journal.counts.accepted,
            events_refused_disk_full=self.journal.counts.refused_disk_full,
            impressions_received=self.inbox.counts.impressions,
            bus_rejects=self.inbox.counts.rejects,
            bus_adverts=p.bus_adverts,
            bus_advert_rejects=p.bus_advert_rejects,
            audience_samples=a.audience_samples,
            audience_tracks=a.audience_tracks,
            downlink_applied=self.handlers.counts.applied,
            downlink_refused=self.handlers.counts.refused,
            frames=a.frames,
            staff_alerts=self.alerts.raised,
            conversions=self.checkout.counts.conversions,
            holdouts=d.holdouts,
            last_people=self.audience.people,
            current=dict(d.current),
            variants=Counter(d.variants),
        )

    @property
    def camera(self) -> Camera | None:
        return self.audience.camera

    @property
    def accepted_ids(self) -> list[str] | None:
        return self.journal.accepted_ids

    @accepted_ids.setter
    def accepted_ids(self, ids: list[str] | None) -> None:
        self.journal.accepted_ids = ids

    @property
    def content_installer(self) -> ContentInstaller:
        return self.handlers.content_installer

    @property
    def campaign_warnings(self) -> list[str]:
        return self.handlers.campaign_warnings

    def on_advert(self, advert: Advert) -> None:
        """The one callback every BLE source calls."""
        self.presence.on_advert(advert)

    def flush_events(self) -> int:
        return self.journal.flush()

    # ---- wiring --------------------------------------------------------------------------
    def _route_bus(self) -> None:
        """Which stage hears which topic of the in-store bus."""
        cfg, bus = self.cfg, self.bus
        store = cfg.store.store_id

        def screen_of(topic: str) -> str:
            return topic.split("/")[3]

        # The store's other boxes: the offers their screens showed, for attribution.
        bus.route(topics.touches(store), self.touch_share.on_message)
        bus.route(topics.touches_window(store), self.touch_share.on_message)
        bus.route(topics.screen_events(store), self.inbox.on_event)
        bus.route(topics.kiosk_events(store), self.inbox.on_event)
        bus.route(topics.api_events(store), self.inbox.on_event)
        if cfg.pos.bus:
            bus.route(topics.pos_receipts(store), self.inbox.on_receipt)

        def on_screen_state(t: str, p: bytes) -> None:
            self.director.on_screen_state(screen_of(t), p)
            self.inbox.on_screen_state(screen_of(t), p)

        bus.route(topics.screen_state(store), on_screen_state)
        bus.route(
            topics.screen_screenshot(store),
            lambda t, p: self.inbox.relay("screenshots", screen_of(t), p),
        )
        bus.route(
            topics.screen_errors(store),
            lambda t, p: self.inbox.relay("screen-errors", screen_of(t), p),
        )
        # A lost advert is no loss: QoS 0.
        bus.route(
            topics.scanner_adverts(store),
            lambda t, p: self.presence.on_bus_advert(t.split("/")[3], p),
            qos=0,
        )
        bus.route(
            topics.mmwave(store),
            lambda t, p: self.occupancy.on_mmwave(t.split("/")[3], t.split("/")[5], p),
        )
        bus.route(topics.kiosk_find(store), self.kiosk_finder.on_find)
        bus.route(topics.walk_cmd(store), self.walk.on_command)
        # The broker's notices (the box's mosquitto.conf logs to $SYS too); on a broker that
        # does not, nothing arrives and the count stays 0. QoS 0: mosquitto sends them so.
        bus.route(LOG_TOPIC, self.bus_auth.on_log, qos=0)
        # Kiosks' acks close alerts for every kiosk; open ones are published again on connect.
        self.alerts.listen(bus)

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
        self.journal.outbox = self.heartbeat_stage.outbox = self.outbox
        self.uplink = Uplink(
            self.outbox,
            cfg.central,
            cfg.store.store_id,
            cfg.store.device_id,
            cfg.uplink,
            config_hash=hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:12],
        )
        self.uplink.start()
        self.handlers.uplink = self.heartbeat_stage.uplink = self.inbox.uplink = self.uplink
        self.live.uplink = self.uplink
        self.downlink = Downlink(
            cfg.central,
            cfg.store.store_id,
            cfg.store.device_id,
            load_public_key(cfg.downlink.ops_public_key),
            self.paths.state_dir / "downlink-state.json",
            appliers=self.handlers.appliers(),
            on_result=self.handlers.on_result,
            max_bytes=cfg.downlink.max_message_bytes,
        )
        self.downlink.start()
        self.handlers.downlink = self.downlink
        self.heartbeat_stage.applied = self.downlink.state.all
        # A new release is kept only once READY went out (box/watchdog.py).
        self.handlers.ready = lambda: (
            self.supervisor is not None and self.supervisor.ready_at is not None
        )
        self.bus.start()

    def request_restart(self, why: str, status: int) -> None:
        """Stop cleanly soon (after the downlink's ack is out) with ``status`` for systemd."""
        self.exit_code = status
        log.info("agent: restarting (%s)", why)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.call_later, 1.0, self.stop)
        else:
            self.stop()

    def _start_retention(self) -> BackgroundScheduler:
        from apscheduler.schedulers.background import BackgroundScheduler

        sched = BackgroundScheduler(daemon=True, timezone=self.tz)
        # First run at start: a box back from weeks offline must not use expired profiles.
        sched.add_job(
            self.handlers.purge_profiles,
            "interval",
            seconds=self.cfg.profiles.retention_interval_s,
            next_run_time=datetime.now(self.tz),
            id="profiles-retention",
            coalesce=True,
            max_instances=1,
        )
        sched.start()
        return sched

    def _start_supervision(self) -> tuple[Supervisor, MetricsServer | None]:
        """systemd READY/watchdog/STATUS (box/watchdog.py) and the metrics endpoint."""
        from edge_agent.box.liveness import Thresholds
        from edge_agent.box.watchdog import Supervisor

        sd = self.cfg.systemd
        limits = Thresholds(sd.tick_stale_s, sd.ble_silent_s, sd.camera_stall_s, sd.uplink_stall_s)
        sup = self.supervisor = Supervisor(self, thresholds=limits)
        if not self.cfg.metrics.enabled:
            return sup, None
        # prometheus_client (and the http.server it serves with) only for a box that exports.
        from edge_agent.box.metrics import start_metrics

        return sup, start_metrics(self, sup)

    def _camera_worker_setup(self) -> dict[str, Any] | None:
        cam = self.cfg.camera
        if cam is None or not cam.enabled:
            return None
        from edge_agent.sensing.camera.process import worker_setup

        return worker_setup(cam, self.clock)

    # ---- loops ---------------------------------------------------------------------------
    def decide_screens(self) -> None:
        self.director.decide_screens()

    def save_journey(self, now: float, *, final: bool = False) -> None:
        """Caps and touches of this tick saved before its events reach the outbox (an offer the
        CDP hears of is one the caps remember), shared with the store's other boxes; the KPIs
        with them, else every few seconds (audience counts change with every camera frame)."""
        changes = self.journey.drain_changes()
        # An offer shown or a shopper forgotten saves them at once, with the caps.
        kpis_due = final or bool(changes) or now - self._kpis_saved_at >= KPI_SAVE_S
        if kpis_due:
            self._kpis_saved_at = now
        self.memory.apply(changes, self.journey.kpis if kpis_due else None)
        self.touch_share.publish(changes)
        self._converted += [c.receipt for c in changes if isinstance(c, Converted) and c.receipt]

    def flush_journal(self) -> None:
        """The tick's events to the outbox; then the receipts they convert count as seen."""
        # 0 with conversions pending: a full disk holds them in memory; not counted yet.
        if self.journal.flush() and self._converted:
            today = datetime.fromtimestamp(self.clock.now(), self.tz).date()
            self.memory.mark_receipts(self._converted, today)
            self._converted = []

    def heartbeat(self) -> None:
        now = self.clock.now()
        today = datetime.fromtimestamp(now, self.tz)
        self.journey.housekeeping(now, today)
        self.memory.prune(now - self.journey.book.window_s, today.date())
        self.director.new_day(today.date().isoformat())
        self.alerts.expire()
        self.handlers.check_probation()
        cert_days, cert_health = self.handlers.check_certificate()
        sup = self.supervisor
        problems = list(sup.snapshot.problems) if sup is not None else []
        dropped = {f"bus:{why}": n for why, n in self.inbox.counts.dropped.items()}
        if self.bus.counts.handler_errors:
            dropped["bus:unreadable"] = self.bus.counts.handler_errors
        self.heartbeat_stage.beat(
            problems,
            dropped,
            {
                **self.director.health(),
                **self.fusion.health(),
                **self.alerts.health(),
                **self.bus_auth.health(),
                **self._wayfinding(),
                **cert_health,
                **{f"content_{k}": v for k, v in self.content_installer.state.items()},
                **(
                    {
                        **{f"release_{k}": v for k, v in self.handlers.release.health().items()},
                        # Ops (and the tests) know a push can reach the box from here on.
                        "downlink_subscribed": "yes"
                        if self.downlink is not None and self.downlink.subscribed
                        else "no",
                    }
                    if self.handlers.release is not None
                    else {}
                ),
            },
            self.box_metrics(),
            cert_days_left=cert_days,
        )

    def box_metrics(self) -> BoxMetrics:
        """The heartbeat's summary of the Prometheus metrics (edge_agent/box/metrics.py)."""
        sup = self.supervisor
        st = self.stats
        up = self.uplink.stats() if self.uplink is not None else {}
        cam = self.camera
        relay = self.log_relay
        return BoxMetrics(
            adverts_per_s=round(sup.snapshot.adverts_per_s, 1) if sup is not None else 0.0,
            decide_p99_ms=self.decide_ms.take_p99(),
            decisions=st.decisions,
            events_accepted=st.events_accepted,
            outbox_depth=int(up.get("depth") or 0),
            uplink_published=int(up.get("published_events") or 0),
            central_connected=bool(up.get("connected")),
            bus_connected=self.bus.is_connected(),
            rss_mb=self.process.rss_mb(),
            cpu_percent=self.process.cpu_percent(),
            disk_free_mb=round(shutil.disk_usage(self.paths.state_dir).free / 1e6, 1),
            camera_fps=round(cam.health().fps, 1) if cam is not None else None,
            log_relayed=relay.counts.relayed if relay is not None else 0,
            log_suppressed=relay.counts.suppressed if relay is not None else 0,
        )

    def relay_logs(self, *, final: bool = False) -> None:
        """The relay's waiting WARN+ records to the journal, every ``flush_s`` (wall time: a
        log's time is real even when a replay runs the clock fast)."""
        relay = self.log_relay
        if relay is None:
            return
        now = time.monotonic()
        if not final and now - self._relay_at < self.cfg.log_relay.flush_s:
            return
        self._relay_at = now
        store, device = self.cfg.store.store_id, self.cfg.store.device_id
        for when, rec in relay.drain(final=final):
            self.journal.emit_event(make_event(rec, store_id=store, device_id=device, time=when))

    def _wayfinding(self) -> dict[str, str]:
        w = self.handlers.wayfinding
        return w.health() if w is not None else {}

    async def _tick_loop(self) -> None:
        speed = getattr(self.clock, "speed", 1.0) or 1.0
        next_hb = self.clock.now()
        # Test-only hang hooks (EDGE_AGENT_TEST_STALL, box/liveness.py); inert otherwise.
        stall, block = StallPoint("tick"), StallPoint("loop")
        while not self._stop.is_set():
            self.tick_at = time.monotonic()
            if stall.due():
                await asyncio.Event().wait()  # this loop hangs; the event loop runs on
            if block.due():
                time.sleep(3600)  # the whole event loop hangs
            now = self.clock.now()
            self.presence.tick(now)
            self.touch_share.drain()
            self.checkout.drain()
            self.audience.check(now)
            self.fusion.tick(now)
            t0 = time.perf_counter()
            before = self.director.counts.decisions
            self.director.decide_screens()
            if self.director.counts.decisions != before:  # a tick with nothing to decide is not
                self.decide_ms.add((time.perf_counter() - t0) * 1000.0)  # a decision's latency
            self.occupancy.publish(now)
            self.live.tick()
            if now >= next_hb:
                next_hb = now + self.cfg.uplink.heartbeat_s
                self.heartbeat()
            self.save_journey(now)
            self.relay_logs()
            await asyncio.to_thread(self.flush_journal)
            beat = min(0.2, 0.5 / speed)
            try:
                await asyncio.wait_for(self._wake.wait(), beat)
                # Woken by an event: let a burst of them (a group walking in) land first.
                await asyncio.sleep(WAKE_COALESCE_S)
            except TimeoutError:
                pass
            self._wake.clear()

    async def run(self, until: float | None = None) -> None:
        """Run until the BLE source ends (replay) or ``until`` (clock time), or ``stop()``."""
        self._loop = asyncio.get_running_loop()
        self.presence.loop = self._loop
        self.audience.started_at = self.clock.now()
        lr = self.cfg.log_relay
        if lr.enabled and self.log_relay is None:
            from edge_agent.box import log_relay

            self.log_relay = log_relay.install(
                LogRelay(capacity=lr.capacity, burst=lr.burst, per_minute=lr.per_minute)
            )
        tasks = [asyncio.create_task(self._tick_loop(), name="tick")]
        supervisor, metrics = self._start_supervision()
        tasks.append(asyncio.create_task(supervisor.run(), name="watchdog"))
        pos_reader = None
        if self.cfg.pos.serial_port:
            from edge_agent.sensing.serial_lines import SerialLineReader

            pos_reader = SerialLineReader(
                self.cfg.pos.serial_port,
                self.checkout.receipts.feed,
                baudrate=self.cfg.pos.serial_baud,
                name="pos",
            ).start()
        if self.audience.configured:
            tasks.append(asyncio.create_task(self.audience.run(self._stop), name="camera"))
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
            self.presence.close_all()
            self.checkout.drain()
            # A last heartbeat on the way out: the CDP sees the day's final KPIs.
            self.heartbeat()
            self.save_journey(self.clock.now(), final=True)
            self.relay_logs(final=True)  # what the relay held, and what it suppressed, goes too
            self.flush_journal()
            if self.log_relay is not None:
                from edge_agent.box import log_relay

                log_relay.uninstall(self.log_relay)

    def stop(self) -> None:
        self._stop.set()

    def close(self, flush_timeout_s: float = 10.0) -> None:
        self.journal.flush()
        self.bus.stop()
        self.alerts.shutdown()
        self.kiosk_finder.close()
        self.walk.close()
        self.content_installer.close()  # a download waiting to retry stops waiting
        if self.downlink is not None:
            self.downlink.stop()
        if self.uplink is not None:
            self.uplink.stop(flush_timeout_s)
        if self.outbox is not None:
            self.outbox.close()
        self.profiles.close()
        self.memory.close()
        if self.handlers.wayfinding is not None:
            self.handlers.wayfinding.close()
