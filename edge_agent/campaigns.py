"""Campaign bundles as central ops pushes them (signed, versioned), validated with pydantic."""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agent.profiles import Profile

_DAYPART = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
# Fields a template may use; anything else in braces is refused at load, not at show time.
TEMPLATE_FIELDS = {"first_name", "order_id", "pickup_point"}
_PLACEHOLDER = re.compile(r"{([a-z_]*)}")


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=1, max_length=120)
    body: str = Field("", max_length=400)
    background: str = Field("#1d3557", pattern=r"^#[0-9a-fA-F]{6}$")
    accent: str = Field("#e63946", pattern=r"^#[0-9a-fA-F]{6}$")
    language: str = "en"

    @field_validator("title", "body")
    @classmethod
    def _known_placeholders(cls, v: str) -> str:
        unknown = set(_PLACEHOLDER.findall(v)) - TEMPLATE_FIELDS
        if unknown:
            raise ValueError(f"unknown template field(s): {', '.join(sorted(unknown))}")
        return v


def is_in_daypart(daypart: str, t: time) -> bool:
    """``"HH:MM-HH:MM"``, start inclusive, end exclusive; wraps past midnight when end < start."""
    m = _DAYPART.match(daypart)
    if not m:
        raise ValueError(f"daypart {daypart!r} is not HH:MM-HH:MM")
    start = int(m[1]) * 60 + int(m[2])
    end = int(m[3]) * 60 + int(m[4])
    now = t.hour * 60 + t.minute
    if start == end:
        return True
    if start < end:
        return start <= now < end
    return now >= start or now < end


class Campaign(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    priority: int = Field(0, ge=0, le=1000)
    segments_any: list[str] = Field(default_factory=list)
    zones: list[str] = Field(default_factory=list)
    dayparts: list[str] = Field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None
    requires_order_status: Literal["ready"] | None = None
    min_people: int = Field(1, ge=0)
    max_people: int | None = Field(None, ge=0)
    personalised: Variant | None = None
    anonymous: Variant | None = None
    min_on_screen_s: float = Field(8.0, ge=0)

    @field_validator("dayparts")
    @classmethod
    def _dayparts(cls, v: list[str]) -> list[str]:
        for d in v:
            if not _DAYPART.match(d):
                raise ValueError(f"daypart {d!r} is not HH:MM-HH:MM")
        return v

    @model_validator(mode="after")
    def _can_match(self) -> Campaign:
        if self.personalised is None and self.anonymous is None:
            raise ValueError("campaign has neither a personalised nor an anonymous variant")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end is not after start: the campaign can never run")
        if self.max_people is not None and self.max_people < self.min_people:
            raise ValueError("max_people < min_people: the campaign can never match")
        return self

    def is_active(self, now: datetime) -> bool:
        """``now`` is aware and in the store's time zone (dayparts are local wall time)."""
        if self.start and now < self.start:
            return False
        if self.end and now >= self.end:
            return False
        return not self.dayparts or any(is_in_daypart(d, now.time()) for d in self.dayparts)

    def targets(self, p: Profile) -> bool:
        if self.segments_any and not set(self.segments_any) & set(p.segments):
            return False
        if self.requires_order_status:
            return bool(p.open_order and p.open_order.get("status") == self.requires_order_status)
        return True


class DefaultItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    content_id: str
    variant: Variant


class CampaignBundle(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=0)
    default: list[DefaultItem] = Field(min_length=1)
    campaigns: list[Campaign] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> CampaignBundle:
        ids = [c.id for c in self.campaigns]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"duplicate campaign id(s): {', '.join(sorted(dupes))}")
        return self
