"""What the agent tells a signage player to show, over the in-store bus.

The player renders a ``ScreenCommand`` as soon as it arrives and reports what it actually showed
as ``content.impression.v1`` CloudEvents on its screen's events topic.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts import payload
from contracts.events import new_event_id


class Content(BaseModel):
    """One renderable item: an offer card drawn from a template with the offer's fields, an
    image or a video from the player's content cache, with an optional ticker and side panel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content_id: str
    campaign_id: str | None = None
    variant: Literal["personalised", "anonymous", "default", "override"] = "default"
    template: Literal["offer_card", "image", "video"] = "offer_card"
    title: str
    body: str = ""
    language: str = "en"
    # Card background, "#RRGGBB".
    background: str = Field("#1d3557", pattern=r"^#[0-9a-fA-F]{6}$")
    accent: str = Field("#e63946", pattern=r"^#[0-9a-fA-F]{6}$")
    # Optional image in the player's content cache, by sha256 (hex) of its bytes.
    image_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    # The clip of a "video" item, in the cache by sha256 like images.
    video_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    # Offer fields the card template lays out in the shopper's language (labels, number and
    # date formats follow ``language``).
    price: float | None = Field(None, ge=0)
    was_price: float | None = Field(None, ge=0)
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    valid_until: date | None = None
    cta: str = ""
    # Regions beside the main one: a scrolling ticker line and a side panel; empty = no region.
    ticker: str = ""
    side: str = ""
    # Why it is shown (the decision's rule and reason codes, never an id): the player copies
    # them into its impression events, so proof of play explains itself.
    rule: str = ""
    reasons: tuple[str, ...] = ()


class ScreenCommand(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cmd_id: str = Field(default_factory=new_event_id)
    # "screenshot": ops asks for a downscaled picture of what the screen shows (no content).
    kind: Literal["show", "default", "override", "clear_override", "screenshot"]
    content: Content | None = None
    # Hold the item at least this long before anything but an override replaces it.
    min_duration_s: float = Field(0.0, ge=0)
    issued_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    # A command older than this when it arrives is stale and ignored (the bus may have queued it).
    ttl_s: float = Field(30.0, gt=0)
    # Replace what is on screen at once, whatever its hold (only an override outranks it): the
    # shopper on screen withdrew consent. Absent (None) on every other command.
    preempt: bool | None = None

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ScreenCommand:
        return cls.model_validate(payload.loads(raw, what="screen command"))

    def expired(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return (now - self.issued_at).total_seconds() > self.ttl_s


_DAYPART = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def in_daypart(daypart: str, t: time) -> bool:
    """``"HH:MM-HH:MM"``, start inclusive, end exclusive, wrapping past midnight when end <
    start (the same rule as campaign dayparts); ValueError names a malformed one. Kept here so
    the player needs nothing of the agent's decision code."""
    m = _DAYPART.match(daypart)
    if not m:
        raise ValueError(f"daypart {daypart!r} is not HH:MM-HH:MM")
    start, end = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
    now = t.hour * 60 + t.minute
    if start == end:
        return True
    return start <= now < end if start < end else (now >= start or now < end)


class PlaylistItem(BaseModel):
    """One item of a screen's default loop, shown for ``duration_s`` within its dayparts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content: Content
    duration_s: float = Field(10.0, gt=0, le=3600)
    # "HH:MM-HH:MM" in the store's time zone (wraps past midnight); empty = all day.
    dayparts: tuple[str, ...] = ()

    @field_validator("dayparts")
    @classmethod
    def _dayparts(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for d in v:
            in_daypart(d, time(0, 0))  # raises ValueError naming the daypart
        return v


class Playlist(BaseModel):
    """The default loop a player keeps in its local cache (``<content_dir>/playlist.json``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(0, ge=0)
    items: tuple[PlaylistItem, ...] = ()


def screen_status(raw: bytes) -> str | None:
    """ "online" or "offline" from a player's retained state message (its last will says
    "offline"), None when the message says neither; PayloadError when it cannot be read."""
    doc = payload.loads(raw, what="screen state")
    status = doc.get("status") if isinstance(doc, dict) else None
    return status if status in ("online", "offline") else None
