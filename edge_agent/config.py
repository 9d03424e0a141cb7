"""The one place for configuration: a TOML file validated with pydantic.

Errors name the key path (``screens[0].zone``) so an installer can fix the file in one go.
Relative paths in the file are resolved against the file's own directory.
"""

from __future__ import annotations

import dataclasses
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from contracts.mqtt import BrokerConfig
from contracts.validation import ID_PATTERN, StrictModel, key_path

if TYPE_CHECKING:
    from edge_agent.sensing.ble.profiles import PresenceProfile
    from edge_agent.sensing.fusion import FusionParams


class StoreConfig(StrictModel):
    store_id: str = Field(pattern=ID_PATTERN)
    device_id: str = Field(pattern=ID_PATTERN)
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class ZoneConfig(StrictModel):
    id: str = Field(pattern=ID_PATTERN)
    name: str = ""


class ScreenConfig(StrictModel):
    id: str = Field(pattern=ID_PATTERN)
    zone: str
    orientation: Literal["landscape", "portrait"] = "landscape"
    width: int = Field(1280, ge=160, le=7680)
    height: int = Field(720, ge=120, le=4320)
    # More people in view than this switches personalised content to the anonymous variant.
    max_people_for_personal: int = Field(1, ge=1)
    # Only a camera can tell that a shopper is alone at a screen; BLE and mmWave only show that
    # someone else is there. So a screen without a camera stays anonymous, unless it is a spot
    # one person uses at a time (a fitting-room mirror, a kiosk with a privacy filter): then set
    # this, and personal content runs while no more than max_people_for_personal BLE devices
    # (app tokens and other phones, watches, ...) are in its zone.
    personal_without_crowd_sensor: bool = False
    min_on_screen_s: float = Field(8.0, ge=0)
    # A touch screen: a tap on a card opens its details (a bigger card with its QR code and the
    # way, when it has them), which close after touch_idle_s without a touch.
    touch: bool = False
    touch_idle_s: float = Field(20.0, gt=0, le=600)


UUID_PATTERN = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
ADDRESS_PATTERN = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"
KEY_PATTERN = r"^[0-9A-Fa-f]{32}$"


class BeaconConfig(StrictModel):
    """A store beacon, known by its iBeacon identity (uuid, major, minor; its Eddystone-UID is
    read the layout's way from the same), its EID identity key, or its static address. Its
    telemetry (Eddystone-TLM, plain or encrypted) is paired with it through the address it is
    heard from (edge_agent/sensing/ble/store_beacons.py)."""

    name: str
    uuid: str | None = Field(None, pattern=UUID_PATTERN)
    major: int | None = Field(None, ge=0, le=65535)
    minor: int | None = Field(None, ge=0, le=65535)
    zone: str
    low_battery_mv: int = Field(2400, ge=0)
    # A beacon that never changes its address (most TLM-only beacons): "AA:BB:CC:DD:EE:FF".
    address: str | None = Field(None, pattern=ADDRESS_PATTERN)
    # Eddystone-EID: the beacon's 16-byte identity key (hex) opens its encrypted TLM and
    # recognises its EID frames. A key: keep this file readable by the agent only.
    eik: str | None = Field(None, pattern=KEY_PATTERN, repr=False)
    # Its EID rotation exponent K (default: ble.eid_rotation_exponent), and its time counter's
    # offset: the beacon's clock reads Unix time minus this many seconds.
    eid_rotation_exponent: int | None = Field(None, ge=0, le=15)
    eid_clock_offset_s: int = 0

    @model_validator(mode="after")
    def _known_somehow(self) -> BeaconConfig:
        ibeacon = (self.uuid, self.major, self.minor)
        if any(v is not None for v in ibeacon) and any(v is None for v in ibeacon):
            raise ValueError("uuid, major and minor: give all three or none")
        if self.uuid is None and self.address is None and self.eik is None:
            raise ValueError(
                "a beacon needs uuid/major/minor, an address or an eik (else nothing "
                "it sends can be told apart)"
            )
        return self


class BleConfig(StrictModel):
    source: Literal["replay", "bleak", "serial"] = "bleak"
    replay_file: Path | None = None
    # 0 = as fast as possible; 1 = real time.
    replay_speed: float = Field(1.0, ge=0)
    adapter: str | None = None
    # bleak: passive scanning (with or_patterns) where BlueZ supports it, else active; the
    # scanner restarts when no advert arrives for scan_stall_s.
    passive_scan: bool = True
    scan_stall_s: float = Field(30.0, gt=0)
    serial_port: str | None = None
    serial_baud: int = 115200
    # The zone this box's receiver covers (usually its screen's zone).
    zone: str
    enter_rssi: float = Field(-70.0, le=0)
    leave_rssi: float = Field(-80.0, le=0)
    away_timeout_s: float = Field(12.0, gt=0)
    ema_alpha: float = Field(0.3, gt=0, le=1)
    dwell_report_s: float = Field(30.0, gt=0)
    beacons: list[BeaconConfig] = Field(default_factory=list)
    # Eddystone-EID rotation exponent: tokens rotate every 2**K seconds.
    eid_rotation_exponent: int = Field(10, ge=0, le=15)
    # Presence (edge_agent/sensing/ble/zones.py; figures in BENCHMARKS.md, "BLE presence"): the RSSI
    # filter, how long a shopper stays in a zone before a weak leave, how long the signal
    # must stay weak, and the floor of the away timeout learned from advertising intervals
    # (away_timeout_s is its ceiling).
    filter: Literal["ema", "one_euro", "kalman", "median"] = "median"
    min_dwell_s: float = Field(3.0, ge=0)
    leave_hold_s: float = Field(1.0, ge=0)
    away_min_s: float = Field(2.0, gt=0)
    # How a zone is decided: "hysteresis" (the filter above against enter/leave levels) or
    # "bayes" (a forward filter over zones, edge_agent/sensing/ble/bayes.py; enter_rssi is the edge).
    zone_method: Literal["hysteresis", "bayes"] = "hysteresis"
    # A named point on the flaps / enter / leave curves (edge_agent/sensing/ble/profiles.py,
    # BENCHMARKS.md "BLE presence"): its filter and timings, unless the keys above are set here.
    profile: Literal["responsive", "steady", "brisk", "eager", "bayes", "bayes_steady"] = (
        "responsive"
    )
    # Per-receiver RSSI at 1 m (`edge-agent ble calibrate`); default: state_dir/ble-calibration.json.
    calibration_file: Path | None = None
    # ESP32 scanner nodes by id -> the zone each covers (unlisted nodes count as this box's zone).
    receivers: dict[str, str] = Field(default_factory=dict)
    # Beacon health: a configured beacon unheard this long raises a staff alert.
    beacon_missing_s: float = Field(900.0, gt=0)

    def presence_profile(self) -> PresenceProfile:
        """The profile this section names, with the keys it sets itself taking precedence."""
        from edge_agent.sensing.ble.profiles import PROFILES

        own = self.model_fields_set
        profile = PROFILES[self.profile].with_overrides(
            filter=self.filter if "filter" in own else None,
            min_dwell_s=self.min_dwell_s if "min_dwell_s" in own else None,
            leave_hold_s=self.leave_hold_s if "leave_hold_s" in own else None,
            method=self.zone_method if "zone_method" in own else None,
        )
        spec = dataclasses.replace(profile.filter, ema_alpha=self.ema_alpha)
        return dataclasses.replace(profile, filter=spec)

    @model_validator(mode="after")
    def _check(self) -> BleConfig:
        if self.leave_rssi >= self.enter_rssi:
            raise ValueError("leave_rssi must be below enter_rssi (hysteresis)")
        if self.source == "replay" and self.replay_file is None:
            raise ValueError("replay_file is required when source = 'replay'")
        if self.source == "serial" and not self.serial_port:
            raise ValueError("serial_port is required when source = 'serial'")
        return self


class CameraConfig(StrictModel):
    enabled: bool = True
    # A V4L2 index ("0"), an RTSP/HTTP URL, a video file, or "demo:<scenario>" for the embedded scene.
    source: str = "0"
    screen: str
    sample_interval_s: float = Field(1.0, gt=0)
    width: int = Field(640, ge=64)
    height: int = Field(480, ge=48)
    # Frames analysed per second (agent time); the camera thread drops the rest.
    fps: float = Field(10.0, gt=0, le=60)
    # Region of the frame in front of the screen: [x, y, w, h] as fractions; whole frame if absent.
    roi: list[float] | None = None
    # Faces are searched at least every N frames even without motion (someone standing still).
    detect_every: int = Field(10, ge=1, le=100)
    # A YuNet face model (.onnx) for cv2.FaceDetectorYN instead of the Haar cascades.
    face_model: Path | None = None
    # A person unseen this long has left: their track ends and its dwell is reported.
    track_gap_s: float = Field(1.0, gt=0)
    # Longest wait between attempts to reopen a lost camera (backoff doubles up to this).
    reconnect_max_s: float = Field(30.0, ge=0.5)
    # Where capture and analysis run (issue 20). "process": a camera worker process the agent
    # starts and restarts, so OpenCV and the frames never take the agent's memory (agent about
    # 80 MB instead of 135; the two together cost a little more than one process). "thread":
    # inside the agent, the pre-issue-20 way (one process, no worker to supervise).
    run_in: Literal["process", "thread"] = "process"
    # The camera's horizontal field of view in degrees, from its datasheet (Raspberry Pi
    # Camera Module 3: 66; wide: 102). Set, the camera tells the fused presence where each
    # person stands (metres from the screen, by the size of their face or body) and whether
    # they are at the side of its view: the motion association that tells a shopper who
    # walked up from one who stood there (BENCHMARKS.md, "motion association"). Unset: off.
    hfov_deg: float | None = Field(None, ge=20, lt=180)
    # Face width the ranging assumes; a store for children may want less.
    face_width_m: float = Field(0.16, gt=0.05, lt=0.4)

    @field_validator("roi")
    @classmethod
    def _roi(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if len(v) != 4:
            raise ValueError("roi must be [x, y, w, h] (fractions of the frame)")
        x, y, w, h = v
        inside = x + w <= 1 + 1e-9 and y + h <= 1 + 1e-9
        if not (0 <= x < 1 and 0 <= y < 1 and w > 0 and h > 0 and inside):
            raise ValueError("roi must lie inside the frame (fractions: x, y < 1; x+w, y+h <= 1)")
        return v

    @field_validator("face_model")
    @classmethod
    def _model_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such model file {str(v)!r}")
        return v


class UplinkConfig(StrictModel):
    max_batch: int = Field(200, ge=1, le=5000)
    max_batch_bytes: int = Field(128_000, ge=1024)
    linger_s: float = Field(0.2, ge=0)
    heartbeat_s: float = Field(30.0, gt=0)
    outbox_cap_mb: float = Field(256.0, gt=0)
    # "cdp": rows leave the outbox only when the CDP sink says it stored them (a broker can
    # PUBACK and then die before delivering). "broker": the PUBACK is enough.
    confirm: Literal["cdp", "broker"] = "cdp"
    # A PUBACKed batch the CDP has not confirmed by then is sent again (the sink dedups): at
    # least confirm_timeout_s, longer as the confirmations' measured round trip grows, doubling
    # while batches go unconfirmed, up to confirm_timeout_max_s (contracts/backoff.ConfirmTimer).
    confirm_timeout_s: float = Field(15.0, ge=0.5)
    confirm_timeout_max_s: float = Field(600.0, ge=0.5)
    # QoS of the box's subscription to its confirmations. 1: a confirmation sent while the box is
    # offline waits in its session (mosquitto). 0: on nats, where a QoS 1 subscription costs a
    # JetStream consumer per box (replicated like nats' MQTT streams since 2.10: 2,000 boxes
    # are 2,000 raft groups) and the JetStream sink's confirmations arrive as QoS 0 anyway; a
    # confirmation the box misses only means a re-send, which the sink dedups and confirms.
    confirm_qos: Literal[0, 1] = 1
    # Bounds memory and the duplicates a re-send can cause.
    max_unconfirmed_batches: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _timeouts_in_order(self) -> UplinkConfig:
        if self.confirm_timeout_max_s < self.confirm_timeout_s:
            raise ValueError("confirm_timeout_max_s must be >= confirm_timeout_s")
        return self


class DownlinkConfig(StrictModel):
    # Ed25519 public key of central ops: base64 of the 32 raw bytes, or a path to a PEM file.
    ops_public_key: str
    max_message_bytes: int = Field(1_048_576, ge=1024)
    # A pushed config that cannot reach central within this long is rolled back.
    config_probation_s: float = Field(300.0, ge=10)
    # The screens' content cache: a manifest whose assets add up to more is refused at once.
    content_cache_mb: int = Field(4096, ge=16)


class ReleaseConfig(StrictModel):
    """Over-the-air releases (issue 20; edge_agent/box/releases.py, README "OTA")."""

    # Where releases/<name>/ and the `current` symlink the units run live; absent: this box
    # takes no release pushes (they are refused in the ack).
    root: Path | None = None
    # A new release confirms itself once READY, connected to central and up this long.
    probation_s: float = Field(120.0, ge=1)
    # Not confirmed this long after the switch (a hang, central unreachable): rolled back.
    timeout_s: float = Field(900.0, ge=10)
    # Starts on probation (crashes, watchdog kills) before the previous release comes back.
    max_starts: int = Field(3, ge=1, le=20)


class PathsConfig(StrictModel):
    state_dir: Path = Path("var")
    profiles_db: Path | None = None
    outbox_db: Path | None = None
    content_dir: Path | None = None

    def resolved(self) -> ResolvedPaths:
        s = self.state_dir
        return ResolvedPaths(
            state_dir=s,
            profiles_db=self.profiles_db or s / "profiles.db",
            outbox_db=self.outbox_db or s / "outbox.db",
            content_dir=self.content_dir or s / "content",
            alerts_db=s / "alerts.db",
        )


class ResolvedPaths(BaseModel):
    state_dir: Path
    profiles_db: Path
    outbox_db: Path
    content_dir: Path
    alerts_db: Path


class PosConfig(StrictModel):
    """Receipts from the tills (line protocol in edge_agent/sensing/pos.py), for closed-loop attribution."""

    # A UART the till bridge writes receipts to; absent when tills use the in-store bus only.
    serial_port: str | None = None
    serial_baud: int = Field(9600, ge=300)
    # Also take receipts published on instore/<store>/pos.
    bus: bool = True
    # Offers shown this long before a purchase can be credited with it.
    attribution_window_s: float = Field(3600.0, gt=0)
    # Which screens an anonymous purchase at a till is attributed to (all screens if absent).
    tills: dict[str, list[str]] = Field(default_factory=dict)


class ProfilesConfig(StrictModel):
    """The profile slice (edge_agent/slice/store.py)."""

    # The device key that seals identity keys at rest (default <state_dir>/profiles.key). Keep
    # it where backups of the database do not go: the two together open the keys.
    key_file: Path | None = None
    # Profiles kept in memory for lookups; a store's slice is a few thousand.
    cache_size: int = Field(50_000, ge=0)
    # How often the retention purge runs (expired profiles, old apply-journal entries).
    retention_interval_s: float = Field(3600.0, gt=0)
    journal_retention_days: float = Field(30.0, gt=0)


class AlertsConfig(StrictModel):
    """Staff alerts (edge_agent/app/alerts.py): open until a kiosk acknowledges them, kept on the
    box's disk and retained on the in-store bus."""

    # More open alerts than this: the oldest is closed (and logged) so the kiosks stay usable
    # and the retained set on the bus stays small.
    max_open: int = Field(200, ge=1, le=10_000)
    # An alert nobody acknowledged for this long closes by itself: a shopper waiting at the
    # counter is gone by then, and a dead beacon or screen is raised again when still dead.
    max_age_s: float = Field(12 * 3600.0, ge=60)


class SystemdConfig(StrictModel):
    """Watchdog health (edge_agent/box/liveness.py): what stops the pings so systemd restarts us.
    Only faults a restart can cure; 0 turns a check off."""

    tick_stale_s: float = Field(15.0, gt=0)
    ble_silent_s: float = Field(600.0, ge=0)
    camera_stall_s: float = Field(120.0, ge=0)
    uplink_stall_s: float = Field(600.0, ge=0)


class MetricsConfig(StrictModel):
    """The Prometheus endpoint (edge_agent/box/metrics.py). Loopback unless ops open it on purpose."""

    enabled: bool = True
    host: str = "127.0.0.1"
    # 0 = any free port (logged at start; tests use it).
    port: int = Field(9410, ge=0, le=65535)


class LogRelayConfig(StrictModel):
    """WARN+ log records relayed to central as ``device.log.v1`` events (edge_agent/box/
    log_relay.py), bounded so a warning loop cannot flood the outbox: ``burst`` records at once,
    then ``per_minute``; ``capacity`` distinct records wait between flushes."""

    enabled: bool = True
    burst: int = Field(50, ge=1, le=10_000)
    per_minute: float = Field(30.0, gt=0, le=6000)
    capacity: int = Field(200, ge=1, le=10_000)
    # How often the waiting records go to the journal (coalescing window), s.
    flush_s: float = Field(2.0, gt=0, le=3600)


class MapConfig(StrictModel):
    """The store map the screens draw routes on (edge_agent/journey/wayfinding_stage.py): a
    plan in TOML (demo/store-map.toml) or an IMDF archive or folder. Absent: no routes on
    screens, the content goes out without its map."""

    path: Path
    # Where phones open a kiosk's route (the deep link in its QR code, README "Kiosk product
    # finder"): the store API's page of issue 16 on this box.
    link_base: str = Field(
        "https://store.local/w", pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9_.~-]+)*$"
    )


class FusionConfig(StrictModel):
    """Fused presence (edge_agent/sensing/fusion.py) at screens with a camera or an mmWave radar:
    they say someone is at the screen, BLE says who; personal content only for the one person
    the camera sees whom one shopper explains with confidence (BENCHMARKS.md, "Fused presence").
    A value left out is the engine's own default (``FusionParams``), tuned on the bench's trace.
    Off: those screens judge by BLE presence and the camera's count alone, as before."""

    enabled: bool = True
    identity_p: float | None = Field(None, gt=0, lt=1)
    identity_keep_p: float | None = Field(None, gt=0, lt=1)
    identity_hold_s: float | None = Field(None, ge=0)
    stranger_odds: float | None = Field(None, ge=0)
    leave_hold_s: float | None = Field(None, ge=0)
    confirm_s: float | None = Field(None, ge=0)
    camera_stall_s: float | None = Field(None, gt=0)
    contradict_s: float | None = Field(None, ge=0)
    turnover_hold_s: float | None = Field(None, ge=0)
    contradict_release_s: float | None = Field(None, ge=0)
    late_claim_s: float | None = Field(None, ge=0)

    def params(self) -> FusionParams:
        from edge_agent.sensing.fusion import FusionParams

        given = self.model_dump(exclude={"enabled"}, exclude_none=True)
        return FusionParams(**given)

    @model_validator(mode="after")
    def _consistent(self) -> FusionConfig:
        self.params()  # e.g. identity_keep_p above identity_p: the engine's own one-line error
        return self


class AgentConfig(StrictModel):
    store: StoreConfig
    zones: list[ZoneConfig] = Field(min_length=1)
    screens: list[ScreenConfig] = Field(min_length=1)
    ble: BleConfig
    camera: CameraConfig | None = None
    central: BrokerConfig = Field(default_factory=BrokerConfig)
    # The in-store bus (local mosquitto) between agent, signage players and kiosks.
    bus: BrokerConfig = Field(default_factory=BrokerConfig)
    uplink: UplinkConfig = Field(default_factory=UplinkConfig)
    downlink: DownlinkConfig
    pos: PosConfig = Field(default_factory=PosConfig)
    profiles: ProfilesConfig = Field(default_factory=ProfilesConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    systemd: SystemdConfig = Field(default_factory=SystemdConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    log_relay: LogRelayConfig = Field(default_factory=LogRelayConfig)
    map: MapConfig | None = None
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    release: ReleaseConfig = Field(default_factory=ReleaseConfig)

    @model_validator(mode="after")
    def _references(self) -> AgentConfig:
        zones = {z.id for z in self.zones}
        if len(zones) != len(self.zones):
            raise ValueError("zones: duplicate zone id")
        for i, s in enumerate(self.screens):
            if s.zone not in zones:
                raise ValueError(f"screens[{i}].zone: unknown zone {s.zone!r}")
        if self.ble.zone not in zones:
            raise ValueError(f"ble.zone: unknown zone {self.ble.zone!r}")
        seen: dict[str, str] = {}
        for i, b in enumerate(self.ble.beacons):
            if b.zone not in zones:
                raise ValueError(f"ble.beacons[{i}].zone: unknown zone {b.zone!r}")
            # Two beacons with one name, address or key could not be told apart.
            for what, v in (("name", b.name), ("address", b.address), ("eik", b.eik)):
                if v is None:
                    continue
                key = f"{what}:{v.upper()}"
                if key in seen:
                    raise ValueError(f"ble.beacons[{i}].{what}: same as {seen[key]!r}")
                seen[key] = b.name
        for node, z in self.ble.receivers.items():
            if z not in zones:
                raise ValueError(f"ble.receivers.{node}: unknown zone {z!r}")
        screens = {s.id for s in self.screens}
        if self.camera and self.camera.screen not in screens:
            raise ValueError(f"camera.screen: unknown screen {self.camera.screen!r}")
        for till, linked in self.pos.tills.items():
            for screen in linked:
                if screen not in screens:
                    raise ValueError(f"pos.tills.{till}: unknown screen {screen!r}")
        return self

    @property
    def paths_resolved(self) -> ResolvedPaths:
        return self.paths.resolved()

    def screen(self, screen_id: str) -> ScreenConfig:
        return next(s for s in self.screens if s.id == screen_id)


class ConfigError(Exception):
    """Invalid configuration; ``errors`` holds one line per problem, each naming its key path."""

    def __init__(self, path: Path | str, errors: list[str]) -> None:
        self.path = str(path)
        self.errors = errors
        super().__init__(f"{path}: " + "; ".join(errors))


def format_validation_error(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = key_path(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        # Cross-field checks put their own key path at the start of the message.
        if (
            ": " in msg
            and msg.split(": ", 1)[0].replace("[", ".").split(".")[0] in AgentConfig.model_fields
        ):
            lines.append(msg)
        else:
            lines.append(f"{loc}: {msg}")
    return lines


_PATH_FIELDS = {
    ("ble", "replay_file"),
    ("ble", "calibration_file"),
    ("camera", "face_model"),
    ("central", "ca_file"),
    ("central", "cert_file"),
    ("central", "key_file"),
    ("bus", "ca_file"),
    ("bus", "cert_file"),
    ("bus", "key_file"),
    ("paths", "state_dir"),
    ("paths", "profiles_db"),
    ("paths", "outbox_db"),
    ("paths", "content_dir"),
    ("profiles", "key_file"),
    ("map", "path"),
    ("release", "root"),
}


def _resolve_relative(data: dict, base: Path) -> None:
    for section, key in _PATH_FIELDS:
        sec = data.get(section)
        if isinstance(sec, dict) and isinstance(sec.get(key), str):
            p = Path(sec[key]).expanduser()
            sec[key] = str(p if p.is_absolute() else base / p)
    if "paths" not in data:
        data["paths"] = {"state_dir": str(base / "var")}


def parse_config(
    data: dict, *, base_dir: Path | None = None, origin: str = "<config>"
) -> AgentConfig:
    if base_dir is not None:
        _resolve_relative(data, base_dir)
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(origin, format_validation_error(exc)) from None


def load_config(path: Path | str) -> AgentConfig:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    return parse_config(data, base_dir=path.resolve().parent, origin=str(path))


def missing_files(cfg: AgentConfig) -> list[str]:
    """Files the agent needs to start that are not there, one line each naming the key (the
    player shares this config but not these files, so the model itself does not check them)."""
    ble = cfg.ble
    if ble.source == "replay" and ble.replay_file is not None and not ble.replay_file.is_file():
        return [f"ble.replay_file: no such file: {ble.replay_file}"]
    return []


def load_for_agent(path: Path | str, stream: TextIO | None = None) -> AgentConfig | None:
    """``load_or_report``, and the files ``edge-agent run`` needs must exist."""
    cfg = load_or_report(path, stream)
    if cfg is None:
        return None
    problems = missing_files(cfg)
    for line in problems:
        print(f"{path}: {line}", file=stream or sys.stderr)
    if not problems and any(b.eik for b in cfg.ble.beacons):
        mode = Path(path).stat().st_mode & 0o777
        if mode & 0o007:
            # The beacons' identity keys let anyone forge their EIDs and telemetry.
            print(
                f"{path}: holds beacon keys (ble.beacons.eik) and is readable by everyone "
                f"(mode {mode:04o}); chmod 0640 and chgrp edge-agent",
                file=stream or sys.stderr,
            )
    return None if problems else cfg


def load_or_report(path: Path | str, stream: TextIO | None = None) -> AgentConfig | None:
    """Load ``path``, or print every error (one line each, ``FILE: key.path: message``) and
    return None. The CLI commands that take a config all refuse a bad one this same way."""
    try:
        return load_config(path)
    except ConfigError as exc:
        out = stream or sys.stderr
        for line in exc.errors:
            print(f"{exc.path}: {line}", file=out)
        return None
