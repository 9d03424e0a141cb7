"""What the agent tells a signage player to show, over the in-store bus.

The player renders a ``ScreenCommand`` as soon as it arrives and reports what it actually showed
as ``content.impression.v1`` CloudEvents on its screen's events topic.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.events import new_event_id


class Content(BaseModel):
    """One renderable item: an offer card drawn from a template with the offer's fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content_id: str
    campaign_id: str | None = None
    variant: Literal["personalised", "anonymous", "default", "override"] = "default"
    template: Literal["offer_card"] = "offer_card"
    title: str
    body: str = ""
    language: str = "en"
    # Card background, "#RRGGBB".
    background: str = Field("#1d3557", pattern=r"^#[0-9a-fA-F]{6}$")
    accent: str = Field("#e63946", pattern=r"^#[0-9a-fA-F]{6}$")
    # Optional image in the player's content cache, by sha256 (hex) of its bytes.
    image_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
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

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ScreenCommand:
        return cls.model_validate(json.loads(raw))

    def expired(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return (now - self.issued_at).total_seconds() > self.ttl_s
