"""The kiosk's product finder on the in-store bus, and the deep link its QR code carries.

  kiosk -> agent  instore/<store>/kiosks/<kiosk>/find   FindRequest
  agent -> kiosk  instore/<store>/kiosks/<kiosk>/found  FoundReply (QoS 1, never retained)

Both sides read the other's message through ``parse_find`` / ``parse_found``: size first, then a
strict model (unknown keys refused, every string and list bounded), and a refusal is one line
naming the field. The reply carries no shopper data: what was asked, what the catalogue says, the
way from the kiosk, and a link any phone may open.

The deep link (the phone side is issue 16)::

  https://<host>/w?v=1&s=<store>&m=<map-version>&f=<from-ref>&t=<to-ref>&l=<lang>&x=<expiry>

``v`` the link format (1), ``s`` the store id, ``m`` the map version the route was drawn on (the
phone refuses to draw it on another), ``f`` where the shopper stands (``kiosk:<id>`` or
``screen:<id>``), ``t`` where to (``sku:<sku>`` or a map feature id), ``l`` the language, ``x``
the expiry in Unix seconds (a photo of the code taken today is no route next month). Every value
is drawn from a charset that needs no percent-encoding, so the link is built and read without a
URL library and is the same bytes on both sides. No profile id, token or session: a scanned code
says nothing about who stood at the kiosk.

Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from contracts.payload import PayloadError, loads
from contracts.screen_protocol import MAX_STEPS, Wayfinding
from contracts.validation import ID_PATTERN, first_error

MAX_QUERY = 80
MAX_LIMIT = 12
DEFAULT_LIMIT = 6
# A request is a few dozen bytes; a reply is the results plus one Wayfinding payload (24 KB
# budget in screen_map.py) and its steps.
MAX_FIND_BYTES = 2048
MAX_FOUND_BYTES = 64 * 1024
LANGUAGES = ("en", "de")
LINK_VERSION = 1
LINK_TTL_S = 30 * 60

SKU = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$"  # products.py's SKU rule, repeated on the wire
REQUEST_ID = r"^[A-Za-z0-9_-]{1,64}$"
# Where a route starts or ends, as the link carries it: kiosk:/screen:/sku: plus an id, or a
# feature id (IMDF ids are UUIDs).
REF = r"^(?:kiosk:|screen:|sku:)?[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"
MAP_VERSION = r"^[A-Za-z0-9_.-]{1,64}$"
HOST_PATH = r"^https?://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?(?:/[A-Za-z0-9_.~-]{1,64}){0,4}$"
# Printable text without control characters (a query is shown back on the screen and logged).
_TEXT = r"^[^\x00-\x1f\x7f]*$"

Text = Annotated[str, StringConstraints(pattern=_TEXT)]


class FinderInputError(ValueError):
    """A finder message that cannot be used; the text names what is wrong, in one line."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FindRequest(_Wire):
    request_id: str = Field(pattern=REQUEST_ID)
    query: Text = Field(min_length=1, max_length=MAX_QUERY)
    lang: Literal["en", "de"] = "en"
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    # Route to this SKU rather than the first routable hit (the shopper tapped a result).
    route_to: str | None = Field(None, pattern=SKU)

    @model_validator(mode="after")
    def _has_words(self) -> FindRequest:
        if not any(c.isalnum() for c in self.query):
            raise ValueError("query: has no letters or digits")
        return self


class FoundStock(_Wire):
    available: bool
    quantity: int | None = Field(None, ge=0, le=1_000_000)


class FoundResult(_Wire):
    sku: str = Field(pattern=SKU)
    name: Text = Field(min_length=1, max_length=120)
    brand: Text = Field("", max_length=64)
    stock: FoundStock | None = None
    routable: bool
    reason: Text | None = Field(None, max_length=160)

    @model_validator(mode="after")
    def _reason_iff_not_routable(self) -> FoundResult:
        if not self.routable and not self.reason:
            raise ValueError("reason: required when routable is false")
        if self.routable and self.reason:
            raise ValueError("reason: only for a result that is not routable")
        return self


class DeepLink(_Wire):
    """What a phone needs to draw the same route again; ``url()`` is the QR code's text."""

    base: str = Field(pattern=HOST_PATH, max_length=300)
    store: str = Field(pattern=ID_PATTERN)
    map_version: str = Field(pattern=MAP_VERSION)
    from_ref: str = Field(pattern=REF)
    to_ref: str = Field(pattern=REF)
    lang: Literal["en", "de"] = "en"
    expires: int = Field(ge=0, lt=2**40)

    def url(self) -> str:
        return (
            f"{self.base}?v={LINK_VERSION}&s={self.store}&m={self.map_version}"
            f"&f={self.from_ref}&t={self.to_ref}&l={self.lang}&x={self.expires}"
        )


_LINK_KEYS = {"v": "version", "s": "store", "m": "map_version", "f": "from_ref", "t": "to_ref"}
_LINK_KEYS |= {"l": "lang", "x": "expires"}


def parse_deep_link(url: str) -> DeepLink:
    """The link's fields, or FinderInputError naming the first problem. Strict: every key once,
    none unknown, the version this code speaks, no percent-encoding (none is ever needed)."""
    if len(url) > 600:
        raise FinderInputError(f"deep_link: {len(url)} characters, over 600")
    base, sep, query = url.partition("?")
    if not sep or "#" in url or "%" in url:
        raise FinderInputError("deep_link: expected <base>?v=1&s=..&m=..&f=..&t=..&l=..&x=..")
    fields: dict[str, Any] = {"base": base}
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        name = _LINK_KEYS.get(key)
        if not eq or name is None:
            raise FinderInputError(f"deep_link: unknown parameter {key[:16]!r}")
        if name in fields:
            raise FinderInputError(f"deep_link: {key} given twice")
        fields[name] = value
    if fields.pop("version", None) != str(LINK_VERSION):
        raise FinderInputError(f"deep_link: v: expected {LINK_VERSION}")
    if not re.fullmatch(r"[0-9]{1,13}", str(fields.get("expires", ""))):
        raise FinderInputError("deep_link: x: expected Unix seconds")
    try:
        return DeepLink.model_validate(fields)
    except ValidationError as exc:
        raise FinderInputError(f"deep_link.{first_error(exc, 'deep_link')}") from None


class FoundRoute(_Wire):
    """The way from the kiosk to one result: the player's own map payload, all the steps (the
    payload keeps the first few), and the link for the phone."""

    sku: str = Field(pattern=SKU)
    wayfinding: Wayfinding
    distance_m: float = Field(ge=0, le=10_000)
    steps: tuple[Annotated[Text, Field(max_length=160)], ...] = Field(max_length=MAX_STEPS)
    deep_link: str = Field(max_length=600)

    @model_validator(mode="after")
    def _link_reads(self) -> FoundRoute:
        link = parse_deep_link(self.deep_link)  # FinderInputError is a ValueError: one line
        if link.to_ref != f"sku:{self.sku}":
            raise ValueError(f"deep_link: leads to {link.to_ref}, not sku:{self.sku}")
        return self


class FoundReply(_Wire):
    request_id: str = Field(pattern=REQUEST_ID)
    results: tuple[FoundResult, ...] = Field(max_length=MAX_LIMIT)
    route: FoundRoute | None = None
    # Why there are no results or no route at all (no catalogue on the box yet, no map).
    note: Text | None = Field(None, max_length=160)
    planogram_version: int | None = Field(None, ge=0)
    map_version: str | None = Field(None, pattern=MAP_VERSION)

    @model_validator(mode="after")
    def _route_is_a_result(self) -> FoundReply:
        if self.route is not None:
            hit = next((r for r in self.results if r.sku == self.route.sku), None)
            if hit is None or not hit.routable:
                raise ValueError(f"route: {self.route.sku} is not a routable result")
        return self

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def _parse(model: type[_Wire], raw: bytes, what: str, max_bytes: int) -> Any:
    try:
        obj = loads(raw, max_bytes=max_bytes, what=what, parse_constant=_no_constant)
    except PayloadError as exc:
        raise FinderInputError(str(exc)) from None
    if not isinstance(obj, dict):
        raise FinderInputError(f"{what}: expected a JSON object")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise FinderInputError(f"{what}.{first_error(exc, what)}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number here")


def parse_find(raw: bytes) -> FindRequest:
    req: FindRequest = _parse(FindRequest, raw, "find", MAX_FIND_BYTES)
    return req


def parse_found(raw: bytes) -> FoundReply:
    reply: FoundReply = _parse(FoundReply, raw, "found", MAX_FOUND_BYTES)
    return reply


@dataclass(frozen=True)
class KioskTopic:
    store: str
    kiosk: str


def kiosk_of(topic: str, kind: str) -> KioskTopic:
    """``instore/<store>/kiosks/<kiosk>/<kind>`` split, or FinderInputError (a topic with a
    wildcard-matched kiosk id we would not publish back to)."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "instore" or parts[2] != "kiosks" or parts[4] != kind:
        raise FinderInputError(f"topic {topic[:120]!r}: not a kiosk {kind} topic")
    if not re.fullmatch(ID_PATTERN.strip("^$"), parts[3]):
        raise FinderInputError(f"topic: kiosk id {parts[3][:64]!r} is not an id")
    return KioskTopic(parts[1], parts[3])
