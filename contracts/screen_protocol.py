"""What the agent tells a signage player to show, over the in-store bus.

The player renders a ``ScreenCommand`` as soon as it arrives and reports what it actually showed
as ``content.impression.v1`` CloudEvents on its screen's events topic.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts import payload
from contracts.events import new_event_id

# --- wayfinding: a route on a level plan, self-contained (the player has no map database) ---

# Bounds a hostile or broken message cannot exceed; the builder (edge_agent/wayfinding/
# screen_map.py) stays well inside them. A store plan is a few hundred metres at most.
MAX_COORD_M = 5_000.0
MAX_RING_VERTICES = 256
MAX_SHAPES_PER_LEVEL = 400
MAX_ROUTE_POINTS = 200
MAX_LEVELS = 4
MAX_VERTICES = 6_000  # every ring and route point of the payload together
MAX_STEPS = 12

Point2 = tuple[float, float]  # metres on the store's plan: x east/right, y north/into the store


def _check_point(p: Point2) -> Point2:
    if not all(math.isfinite(v) and abs(v) <= MAX_COORD_M for v in p):
        raise ValueError(f"coordinate {p!r} is not a finite number within {MAX_COORD_M:.0f} m")
    return p


class MapShape(BaseModel):
    """One simplified polygon of a level plan (outer ring only; the player fills it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # floor: walkable room; room: a room shoppers do not walk (stock room, toilets' walls drawn
    # as outline); shelf: an obstacle; counter: a counter or kiosk; connector: stairs and lifts.
    kind: Literal["floor", "room", "shelf", "counter", "connector"]
    ring: tuple[Point2, ...] = Field(min_length=3, max_length=MAX_RING_VERTICES)

    @field_validator("ring")
    @classmethod
    def _finite(cls, v: tuple[Point2, ...]) -> tuple[Point2, ...]:
        for p in v:
            _check_point(p)
        return v


class WayLevel(BaseModel):
    """A level the route crosses: its plan and the part of the route walked on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=40)
    name: str = Field("", max_length=60)
    shapes: tuple[MapShape, ...] = Field(max_length=MAX_SHAPES_PER_LEVEL)
    route: tuple[Point2, ...] = Field(min_length=1, max_length=MAX_ROUTE_POINTS)

    @field_validator("route")
    @classmethod
    def _finite(cls, v: tuple[Point2, ...]) -> tuple[Point2, ...]:
        for p in v:
            _check_point(p)
        return v


class Wayfinding(BaseModel):
    """The way from this screen to a place: what a you-are-here map needs and nothing more.

    ``facing_deg`` is the shopper's heading standing at the screen (a compass bearing on the
    plan, 0 = +y, clockwise): the player turns the plan so that it points up on the screen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    levels: tuple[WayLevel, ...] = Field(min_length=1, max_length=MAX_LEVELS)
    here: Point2
    here_level: str = Field(min_length=1, max_length=40)
    facing_deg: float = Field(ge=0, lt=360)
    destination: Point2
    destination_level: str = Field(min_length=1, max_length=40)
    destination_label: str = Field(min_length=1, max_length=60)
    distance_m: float = Field(ge=0, le=10_000)
    walking_time_s: int = Field(ge=0, le=36_000)
    # Turn by turn, already in the shopper's language.
    steps: tuple[Annotated[str, Field(max_length=160)], ...] = Field(max_length=MAX_STEPS)

    @field_validator("here", "destination")
    @classmethod
    def _finite(cls, v: Point2) -> Point2:
        return _check_point(v)

    @model_validator(mode="after")
    def _consistent(self) -> Wayfinding:
        ids = [lv.id for lv in self.levels]
        if len(set(ids)) != len(ids):
            raise ValueError("wayfinding: a level appears twice")
        for what, lid in (
            ("here_level", self.here_level),
            ("destination_level", self.destination_level),
        ):
            if lid not in ids:
                raise ValueError(f"wayfinding: {what} {lid!r} is not one of its levels")
        total = sum(len(s.ring) for lv in self.levels for s in lv.shapes)
        total += sum(len(lv.route) for lv in self.levels)
        if total > MAX_VERTICES:
            raise ValueError(f"wayfinding: {total} vertices, more than {MAX_VERTICES}")
        return self

    def level(self, level_id: str) -> WayLevel:
        return next(lv for lv in self.levels if lv.id == level_id)


# What a card is drawn as. Cards: an offer (photo, price block, QR code), a personal welcome,
# an order ready for pickup (with the way to the counter when the item carries one), a survey's
# call to action (the question beside a QR code to the survey), an emergency message (the
# emergency command's). Media: an image or a video alone. A card with ``wayfinding`` is drawn
# beside its map whatever its template (the wayfinding card).
Template = Literal["offer_card", "image", "video", "welcome", "order_ready", "survey", "emergency"]
CARD_TEMPLATES = ("offer_card", "welcome", "order_ready", "survey", "emergency")


class Content(BaseModel):
    """One renderable item: a card drawn from a template with its fields (``Template``), an
    image or a video from the player's content cache, with an optional ticker and side panel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content_id: str
    campaign_id: str | None = None
    variant: Literal["personalised", "anonymous", "default", "override"] = "default"
    template: Template = "offer_card"
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
    # A short flag on the card ("New", "-25 %", "Members"), drawn in the accent.
    badge: str = Field("", max_length=24)
    # A short token drawn large on an accent tag: an order's pickup number ("4711"). An order
    # number alone tells a passer-by nothing about the shopper (no name beside it unless the
    # campaign is personalised and the shopper alone at the screen).
    highlight: str = Field("", max_length=24)
    # A link the card draws as a QR code (the offer or the way on the shopper's phone; a way is
    # the store API's own page, which a store may serve over plain http on its Wi-Fi).
    qr_url: str | None = Field(None, max_length=512, pattern=r"^https?://[^\s]+$")
    # Where the image's subject is (0..1 from the left and from the top): a crop keeps it.
    image_focus: tuple[float, float] = (0.5, 0.5)
    # Regions beside the main one: a scrolling ticker line and a side panel; empty = no region.
    ticker: str = ""
    side: str = ""
    # Why it is shown (the decision's rule and reason codes, never an id): the player copies
    # them into its impression events, so proof of play explains itself.
    rule: str = ""
    reasons: tuple[str, ...] = ()
    # The way from this screen to the offer's place, drawn beside the card (None: no map).
    wayfinding: Wayfinding | None = None

    @field_validator("image_focus")
    @classmethod
    def _focus(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= c <= 1.0 for c in v):
            raise ValueError("image_focus: each coordinate is between 0 and 1")
        return v


class Theme(BaseModel):
    """The store brand on every screen, pushed by central (downlink kind ``theme``): the logo
    in a corner of every item, and the colours of the screens' own default card. Campaigns keep
    their colours. The logo is a file of the content cache (a content push brings it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=0)
    background: str | None = Field(None, pattern=r"^#[0-9a-fA-F]{6}$")
    accent: str | None = Field(None, pattern=r"^#[0-9a-fA-F]{6}$")
    logo_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    logo_corner: Literal["top_right", "top_left", "bottom_right", "bottom_left"] = "top_right"
    # The logo's height as a share of the screen's shorter side.
    logo_size: float = Field(0.09, ge=0.03, le=0.25)
    # The brand's typeface for every card's titles and words: a TrueType/OpenType file of the
    # content cache, like the logo (refused while it is not there). None: the player's default.
    font_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    # Its bold cut, when the brand has one (else the regular file is drawn for bold too).
    font_bold_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


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


# Screens one box drives: the ways of a "find us" item are bounded by it.
MAX_WAY_SCREENS = 32


class PlaylistItem(BaseModel):
    """One item of a screen's default loop, shown for ``duration_s`` within its dayparts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content: Content
    duration_s: float = Field(10.0, gt=0, le=3600)
    # "HH:MM-HH:MM" in the store's time zone (wraps past midnight); empty = all day.
    dayparts: tuple[str, ...] = ()
    # A "find us" item: ops name a place on the store map (a feature id, plan id, name, or
    # sku:<sku>) and the box draws the way from each of its screens, which ops cannot know.
    way_to: str | None = Field(None, min_length=1, max_length=200)
    # Filled in by the box, per screen id, from its own map; a screen without one shows the
    # card alone. Ops leave it empty (the box overwrites it).
    ways: dict[str, Wayfinding] = Field(default_factory=dict, max_length=MAX_WAY_SCREENS)

    @field_validator("dayparts")
    @classmethod
    def _dayparts(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for d in v:
            in_daypart(d, time(0, 0))  # raises ValueError naming the daypart
        return v

    def content_for(self, screen_id: str) -> Content:
        """What ``screen_id`` shows: the content, with the way from that screen if the box drew
        one for it."""
        way = self.ways.get(screen_id)
        return self.content if way is None else self.content.model_copy(update={"wayfinding": way})


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


# What of a player's state the agent relays to central for ops (``.../screens/<screen>``): what
# the glass shows, not the player's counters (fps, latencies change every beat and are the
# box's business). The ops console reads the same fields back.
# The box adds the screen's zone and personal limit from its own config (the console's dry run
# of a campaign bundle asks the box's decision code about each screen with them).
SCREEN_REPORT_FIELDS = (
    "status", "mode", "content_id", "since", "playlist_version", "zone",
    "max_people_for_personal",
)  # fmt: skip


def screen_report(raw: bytes) -> dict[str, str | int | None] | None:
    """The relayed part of a player's state message, each field a short string or int (a bus
    client's odd value is dropped, not passed on); None when it says no status.
    PayloadError when it cannot be read."""
    doc = payload.loads(raw, what="screen state")
    if not isinstance(doc, dict) or doc.get("status") not in ("online", "offline"):
        return None
    out: dict[str, str | int | None] = {}
    for k in SCREEN_REPORT_FIELDS:
        v = doc.get(k)
        if isinstance(v, str) and len(v) <= 128 or isinstance(v, int) and not isinstance(v, bool):
            out[k] = v
    return out
