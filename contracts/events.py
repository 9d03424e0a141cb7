"""One event model: CloudEvents 1.0 JSON envelopes with typed payloads.

Every journey event the box produces (agent or signage player) is built here, so the CDP sees one
shape. Payloads never carry raw BLE addresses, rotating tokens or pixels: shoppers appear as a
pseudonymous profile id (from the slice) or a salted, rotating presence key.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import uuid6
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts import payload

SPEC_VERSION: Literal["1.0"] = "1.0"
TYPE_PREFIX = "retail.instore."


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ZoneEntered(Payload):
    zone_id: str
    presence_key: str
    profile_id: str | None = None
    rssi: float | None = None


class ZoneLeft(Payload):
    zone_id: str
    presence_key: str
    profile_id: str | None = None
    dwell_s: float = Field(ge=0)


class Dwell(Payload):
    zone_id: str
    presence_key: str
    profile_id: str | None = None
    dwell_s: float = Field(ge=0)


class AudienceSample(Payload):
    screen_id: str
    people: int = Field(ge=0)
    watchers: int = Field(ge=0)
    new_tracks: int = Field(ge=0, default=0)


class AudienceTrack(Payload):
    """One anonymous person's visit in front of a screen (camera), reported when it ends."""

    screen_id: str
    dwell_s: float = Field(ge=0)
    attention_s: float = Field(ge=0)


class ShopperIdentified(Payload):
    profile_id: str
    zone_id: str
    method: Literal["ble_token"] = "ble_token"
    consent_personalisation: bool


class ContentImpression(Payload):
    impression_id: str
    screen_id: str
    content_id: str
    campaign_id: str | None = None
    variant: str
    start: datetime
    end: datetime
    duration_s: float = Field(ge=0)
    cmd_id: str | None = None
    rule: str = ""
    reasons: list[str] = Field(default_factory=list)


class ContentInteraction(Payload):
    """A shopper touched a screen (a touch screen, ``touch = true``): a tap opened an item's
    details, or the details closed after a quiet time. What was touched and for how long, never
    who: no profile, no position on the glass."""

    interaction_id: str
    screen_id: str
    content_id: str
    campaign_id: str | None = None
    variant: str
    action: Literal["tap", "detail_closed"]
    # detail_closed: how long the details were open, s.
    detail_s: float | None = Field(None, ge=0)
    rule: str = ""


class OfferShown(Payload):
    screen_id: str
    campaign_id: str
    content_id: str
    variant: Literal["personalised", "anonymous"]
    profile_id: str | None = None
    reasons: list[str] = Field(default_factory=list)
    # The targeting rule that matched ("order_ready", "segment+tier", "everyone").
    rule: str = ""


class HoldoutAssigned(Payload):
    """An eligible shopper was held out of a campaign (the control group for uplift)."""

    campaign_id: str
    screen_id: str
    # Only with analytics consent; without it the CDP still gets the count.
    profile_id: str | None = None


class SurveyAnswer(Payload):
    """A shopper's answer on a kiosk in survey mode: NPS (0-10) or customer effort (1-7)."""

    kiosk_id: str
    survey: Literal["nps", "effort"]
    score: int = Field(ge=0, le=10)
    zone_id: str | None = None

    @model_validator(mode="after")
    def _scale(self) -> SurveyAnswer:
        if self.survey == "effort" and not 1 <= self.score <= 7:
            raise ValueError("score: customer effort is 1..7")
        return self


class Conversion(Payload):
    receipt_id: str
    profile_id: str | None = None
    skus: list[str] = Field(default_factory=list)
    amount: float = Field(ge=0)
    currency: str = "EUR"
    till: str | None = None
    # Last touch (kept under its original name) and first touch within the window.
    attributed_campaign_id: str | None = None
    first_touch_campaign_id: str | None = None
    touches: int = Field(0, ge=0)
    # "exposed" or "holdout" (the last touch's group); None when no offer preceded it.
    group: Literal["exposed", "holdout"] | None = None


class BoxMetrics(Payload):
    """A compact summary of the box's Prometheus metrics (edge_agent/box/metrics.py), in every
    heartbeat: central collects them from the CDP without reaching into a store's network, where
    the /metrics endpoint stays on loopback. Numbers only, a fixed set: the event stays small
    (well under 1 kB) and typed; the full series stay on the box."""

    adverts_per_s: float = Field(0.0, ge=0)
    decide_p99_ms: float | None = Field(None, ge=0)  # None: no decision since the last beat
    decisions: int = Field(0, ge=0)
    events_accepted: int = Field(0, ge=0)
    outbox_depth: int = Field(0, ge=0)
    uplink_published: int = Field(0, ge=0)
    central_connected: bool = False
    bus_connected: bool = False
    rss_mb: float = Field(0.0, ge=0)
    cpu_percent: float = Field(0.0, ge=0)  # of one core, since the last beat
    disk_free_mb: float = Field(0.0, ge=0)
    camera_fps: float | None = Field(None, ge=0)
    log_relayed: int = Field(0, ge=0)  # WARN+ records relayed to central since start
    log_suppressed: int = Field(0, ge=0)  # ... and held back by the relay's bound


class DeviceHeartbeat(Payload):
    version: str
    uptime_s: float = Field(ge=0)
    outbox_depth: int = Field(ge=0)
    oldest_pending_s: float = Field(ge=0)
    disk_free_mb: float = Field(ge=0)
    sensors: dict[str, str] = Field(default_factory=dict)
    # Journey KPIs of the current store day (edge_agent/journey/kpis.py): counts and rates, no ids.
    kpis: dict[str, Any] = Field(default_factory=dict)
    # Events dropped to keep the outbox under its disk cap or on a full disk, by reason:type.
    dropped: dict[str, int] = Field(default_factory=dict)
    # This box's clock against the CDP's (positive: the box is behind), measured from the CDP's
    # delivery confirmations like NTP; the uncertainty is half the best round trip.
    clock_offset_s: float | None = None
    clock_uncertainty_s: float | None = Field(None, ge=0)
    metrics: BoxMetrics | None = None
    # Days until the box's TLS client certificate expires (negative: expired; None: no client
    # certificate). Typed, not a sensor string: ops sorts and alerts on it.
    cert_days_left: float | None = None


class DeviceLog(Payload):
    """A WARN-or-above log record of the box, relayed to central (edge_agent/box/log_relay.py):
    already redacted (addresses, tokens, keys masked), identical records of one flush coalesced
    into one with ``count``, and a flood cut by the relay's rate limit into a summary record
    (``suppressed`` > 0, saying how many records were held back)."""

    level: Literal["warning", "error", "critical"]
    logger: str = Field(max_length=128)
    message: str = Field(max_length=2048)
    count: int = Field(1, ge=1)  # identical records coalesced into this one
    suppressed: int = Field(0, ge=0)  # a summary: this many records were not relayed
    last: datetime | None = None  # the last of ``count`` occurrences (the event time: the first)


class BeaconTelemetry(Payload):
    beacon: str
    zone_id: str | None = None
    battery_mv: int | None = None
    temperature_c: float | None = None
    low_battery: bool = False


class DownlinkApplied(Payload):
    kind: str
    version: int
    accepted: bool
    reason: str


class RoutesAsked(Payload):
    """How many routes the store API answered to one destination in one hour: the only thing
    the shopper's phone leaves behind (aggregate, no phone, no origin). One event per closed
    hour and destination, from one API process (``partial``: the process stopped mid-hour; the
    CDP sums the rows of an hour)."""

    hour: datetime  # the hour's start, UTC
    destination: str = Field(max_length=128)  # a place or "sku:<sku>" as the phone asked
    count: int = Field(ge=1)
    accessible: int = Field(0, ge=0)  # of which asked for the step-free way
    partial: bool = False


# type suffix -> payload model; the full type is TYPE_PREFIX + suffix.
PAYLOADS: dict[str, type[Payload]] = {
    "zone.entered.v1": ZoneEntered,
    "zone.left.v1": ZoneLeft,
    "dwell.v1": Dwell,
    "audience.sample.v1": AudienceSample,
    "audience.track.v1": AudienceTrack,
    "shopper.identified.v1": ShopperIdentified,
    "content.impression.v1": ContentImpression,
    "content.interaction.v1": ContentInteraction,
    "offer.shown.v1": OfferShown,
    "holdout.assigned.v1": HoldoutAssigned,
    "conversion.v1": Conversion,
    "survey.answer.v1": SurveyAnswer,
    "device.heartbeat.v1": DeviceHeartbeat,
    "device.log.v1": DeviceLog,
    "beacon.telemetry.v1": BeaconTelemetry,
    "downlink.applied.v1": DownlinkApplied,
    "store_api.routes_asked.v1": RoutesAsked,
}
TYPE_OF: dict[type[Payload], str] = {model: TYPE_PREFIX + s for s, model in PAYLOADS.items()}


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 structured-mode envelope (JSON format)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = SPEC_VERSION
    id: str
    source: str
    type: str
    time: datetime
    subject: str | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]

    def payload(self) -> Payload:
        """The typed payload; raises EventError when the type is unknown or data does not fit."""
        return parse_payload(self.type, self.data)

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


class EventError(ValueError):
    """An event that does not fit the model; the message says what is wrong in one line."""


def source_for(store_id: str, device_id: str) -> str:
    return f"store/{store_id}/device/{device_id}"


def new_event_id() -> str:
    """A UUIDv7: time-ordered, so ids sort by creation and index well at the CDP."""
    return str(uuid6.uuid7())


# Fixed forever: ids derived from it must come out the same on every box and every release.
_RECEIPT_NAMESPACE = uuid.UUID("5b0f4a52-8f0c-4c61-9a8e-2f1f0c7c2d11")


def receipt_event_id(store_id: str, till: str, receipt: str) -> str:
    """The one conversion id of a receipt (a UUIDv5 of store, till and receipt number): every box
    that hears the till derives the same id, so the CDP's dedup keeps one conversion per receipt."""
    return str(uuid.uuid5(_RECEIPT_NAMESPACE, f"{store_id}\x1f{till}\x1f{receipt}"))


def make_event(
    payload: Payload,
    *,
    store_id: str,
    device_id: str,
    subject: str | None = None,
    time: datetime | None = None,
    event_id: str | None = None,
) -> CloudEvent:
    return CloudEvent(
        id=event_id or new_event_id(),
        source=source_for(store_id, device_id),
        type=TYPE_OF[type(payload)],
        time=time or datetime.now(UTC),
        subject=subject,
        data=payload.model_dump(mode="json", exclude_none=True),
    )


def parse_payload(event_type: str, data: dict[str, Any]) -> Payload:
    if not event_type.startswith(TYPE_PREFIX) or event_type[len(TYPE_PREFIX) :] not in PAYLOADS:
        raise EventError(f"unknown event type {event_type!r}")
    model = PAYLOADS[event_type[len(TYPE_PREFIX) :]]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "data"
        raise EventError(f"{event_type}: data.{loc}: {first['msg']}") from None


def parse_event(raw: str | bytes | dict[str, Any]) -> CloudEvent:
    """Parse and fully validate an event (envelope and payload)."""
    try:
        obj = payload.loads(raw, what="event") if isinstance(raw, str | bytes) else raw
        event = CloudEvent.model_validate(obj)
    except (ValueError, ValidationError) as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "event"
            raise EventError(f"event.{loc}: {first['msg']}") from None
        raise EventError(f"not JSON: {exc}") from None
    event.payload()
    return event
