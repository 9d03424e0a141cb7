"""What the staff kiosk knows and says, without Kivy: alerts and their acknowledgements, live
occupancy per screen, the emergency override, survey answers. Pure, so every rule is tested
alone; the Kivy screens in ``kiosk.py`` only draw this and forward taps.

Wire formats (in-store bus, JSON):
  alerts      {"alert_id", "kind", "text", "ts", "device_id", ...}   (agent, retained, one topic
              per alert: ``alerts/<alert_id>``; an empty payload there: closed)
  alert acks  {"alert_id", "kiosk_id", "ts"}                  (kiosk -> agent and other kiosks)
  occupancy   {"zone_id", "people", "ts"}                      (agent, retained, per zone)
  emergency   a ScreenCommand override / clear_override         (kiosk, retained, every screen)
  survey      a ``survey.answer.v1`` CloudEvent                 (kiosk -> agent -> CDP)
  find/found  the product finder (contracts/kiosk_finder.py; words and QR in finder_model.py)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.events import CloudEvent, SurveyAnswer, make_event
from contracts.payload import PayloadError, loads
from contracts.screen_protocol import Content, ScreenCommand
from contracts.validation import first_error

# What staff read for each alert kind; an unknown kind still shows, under its own name.
KIND_LABELS = {
    "order_ready": "Order pickup",
    "vip": "VIP shopper",
    "vip_arrived": "VIP shopper",
    "assistance": "Assistance wanted",
    "assistance_wanted": "Assistance wanted",
    "beacon_battery_low": "Beacon battery low",
    "screen_offline": "Screen down",
    "camera_lost": "Camera down",
}
# Shoppers waiting come before equipment.
URGENT = {"assistance", "assistance_wanted", "order_ready", "vip", "vip_arrived"}
OCCUPANCY_STALE_S = 120.0
EMERGENCY_TTL_S = 24 * 3600.0


class KioskInputError(ValueError):
    """A bus message the kiosk cannot use; the message names what was wrong, in one line."""


def _first_error(exc: ValidationError, what: str) -> str:
    return f"{what}.{first_error(exc, what)}"


class Alert(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    alert_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=64)
    text: str = Field(max_length=500)
    ts: datetime


class Occupancy(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    zone_id: str = Field(min_length=1)
    people: int = Field(ge=0, le=100_000)
    ts: datetime


def _parse(model: type[BaseModel], raw: bytes, what: str) -> Any:
    try:
        obj = loads(raw, what=what)
    except PayloadError as exc:
        raise KioskInputError(str(exc)) from None
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise KioskInputError(_first_error(exc, what)) from None


def parse_alert(raw: bytes, alert_id: str | None = None) -> Alert:
    """An alert; with ``alert_id`` (its topic's), one that names another alert is refused: a
    stray copy must not open, or later fail to close, the wrong alert."""
    alert: Alert = _parse(Alert, raw, "alert")
    if alert_id is not None and alert.alert_id != alert_id:
        raise KioskInputError("alert.alert_id: not the id in its topic")
    return alert


def parse_occupancy(raw: bytes) -> Occupancy:
    return _parse(Occupancy, raw, "occupancy")


def label_for(kind: str) -> str:
    return KIND_LABELS.get(kind, kind.replace("_", " ").capitalize())


@dataclass
class AlertBoard:
    """Open alerts, newest and most urgent first; an acknowledged or closed alert leaves the
    list. ``max_age_s``: the agent closes older ones; a copy the agent can no longer clear (its
    box gone) must not stay on the kiosks forever either."""

    alerts: dict[str, Alert] = field(default_factory=dict)
    acked: dict[str, str] = field(default_factory=dict)  # alert_id -> kiosk that acknowledged
    max_open: int = 200
    max_age_s: float | None = None

    def add(self, alert: Alert, now: datetime | None = None) -> bool:
        """True when the alert is new (the agent publishes it again at every reconnect);
        KioskInputError when it is too old to show."""
        if alert.alert_id in self.alerts or alert.alert_id in self.acked:
            return False
        if self.max_age_s is not None and self._age(alert, now) > self.max_age_s:
            raise KioskInputError(f"alert.ts: older than {self.max_age_s / 3600:g} h, not shown")
        self.alerts[alert.alert_id] = alert
        while len(self.alerts) > self.max_open:  # the oldest go first
            oldest = min(self.alerts.values(), key=lambda a: a.ts)
            del self.alerts[oldest.alert_id]
        return True

    @staticmethod
    def _age(alert: Alert, now: datetime | None) -> float:
        ts = alert.ts if alert.ts.tzinfo is not None else alert.ts.replace(tzinfo=UTC)
        return ((now or datetime.now(UTC)) - ts).total_seconds()

    def ack(self, alert_id: str, kiosk_id: str) -> bool:
        """Acknowledge (here or on another kiosk); True when it was open."""
        self.acked[alert_id] = kiosk_id
        # Remembered so a late copy does not reopen it; bounded, the oldest acks go first.
        for old in list(self.acked)[: max(0, len(self.acked) - 4 * self.max_open)]:
            del self.acked[old]
        return self.alerts.pop(alert_id, None) is not None

    def close(self, alert_id: str) -> bool:
        """The agent cleared the alert (acknowledged somewhere, expired); True when it was open."""
        return self.alerts.pop(alert_id, None) is not None

    def expire(self, now: datetime | None = None) -> list[str]:
        """Drop alerts older than ``max_age_s``; their ids."""
        if self.max_age_s is None:
            return []
        max_age = self.max_age_s
        old = [a for a, alert in self.alerts.items() if self._age(alert, now) > max_age]
        for alert_id in old:
            del self.alerts[alert_id]
        return old

    def open(self) -> list[Alert]:
        return sorted(
            self.alerts.values(),
            key=lambda a: (a.kind not in URGENT, -a.ts.timestamp()),
        )


def ack_message(alert_id: str, kiosk_id: str, now: datetime | None = None) -> bytes:
    body = {
        "alert_id": alert_id,
        "kiosk_id": kiosk_id,
        "ts": (now or datetime.now(UTC)).isoformat(),
    }
    return json.dumps(body).encode()


def parse_ack(raw: bytes) -> tuple[str, str]:
    try:
        obj = loads(raw, what="ack")
    except PayloadError as exc:
        raise KioskInputError(str(exc)) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("alert_id"), str):
        raise KioskInputError("ack.alert_id: missing or not a string")
    return obj["alert_id"], str(obj.get("kiosk_id", "?"))


@dataclass
class OccupancyBoard:
    zones: dict[str, Occupancy] = field(default_factory=dict)

    def update(self, occ: Occupancy) -> None:
        old = self.zones.get(occ.zone_id)
        if old is None or occ.ts >= old.ts:  # a late retained copy must not win
            self.zones[occ.zone_id] = occ

    def people(self, zone_id: str, now: datetime) -> int | None:
        """People in the zone, or None when unknown or too old to trust."""
        occ = self.zones.get(zone_id)
        if occ is None or (now - occ.ts).total_seconds() > OCCUPANCY_STALE_S:
            return None
        return occ.people


def emergency_override(text: str, body: str = "", now: datetime | None = None) -> ScreenCommand:
    content = Content(
        content_id="emergency:kiosk",
        variant="override",
        # Drawn as an emergency: centred, between rules, "Achtung" over it (not an offer).
        template="emergency",
        title=text,
        body=body,
        background="#b00020",
        accent="#ffffff",
    )
    return ScreenCommand(
        kind="override",
        content=content,
        issued_at=now or datetime.now(UTC),
        # Retained until cleared: a screen that starts mid-emergency must show it too.
        ttl_s=EMERGENCY_TTL_S,
    )


def emergency_clear(now: datetime | None = None) -> ScreenCommand:
    return ScreenCommand(
        kind="clear_override", issued_at=now or datetime.now(UTC), ttl_s=EMERGENCY_TTL_S
    )


def survey_event(
    survey: str, score: int, *, kiosk_id: str, store_id: str, device_id: str, zone_id: str | None
) -> CloudEvent:
    """A survey answer as the agent accepts it (ValidationError for an out-of-scale score)."""
    answer = SurveyAnswer(kiosk_id=kiosk_id, survey=survey, score=score, zone_id=zone_id)  # type: ignore[arg-type]
    return make_event(answer, store_id=store_id, device_id=device_id)


SURVEY_SCALES = {"nps": range(0, 11), "effort": range(1, 8)}
SURVEY_QUESTIONS = {
    "nps": "How likely are you to recommend us to a friend?",
    "effort": "How easy was it to find what you needed today?",
}
SURVEY_ENDS = {"nps": ("Not likely", "Very likely"), "effort": ("Very hard", "Very easy")}
