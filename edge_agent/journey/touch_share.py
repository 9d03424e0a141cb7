"""The store's boxes share their touches, so a receipt is attributed once, to every screen.

Every box hears every till and reports each receipt under the same event id (derived from the
receipt), so the CDP keeps one conversion per receipt whichever box's copy arrives first. For
that copy to carry the right attribution, each box must know the offers every other box's
screens showed: this stage publishes this box's touches on the in-store bus and adds its peers'.

- ``instore/<store>/touches/<device>`` (QoS 1): the touches of one tick, as they happen.
- ``instore/<store>/touches/<device>/window`` (retained): this box's touches still inside the
  attribution window, republished every ``snapshot_s`` when they changed. A box that starts, or
  was cut from the bus, reads it on subscribe and misses nothing older than that.

A peer's touch is keyed like its own (event id, campaign, screen, shopper, group), so the same
touch heard live and again in a snapshot counts once. A box that is down simply stops sharing;
the others still attribute with what they heard. Touches carry CDP profile ids (never a raw
identifier) and stay on the in-store bus.
"""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts import topics
from contracts.payload import PayloadError, loads
from contracts.validation import ID_PATTERN, first_error
from edge_agent.app.bus import Publisher
from edge_agent.journey.attribution import Touch
from edge_agent.journey.engine import Change, Forgot, JourneyEngine, TouchAdded

log = logging.getLogger("edge_agent")

MAX_SNAPSHOT = 5000  # touches in one retained snapshot (the newest); ~600 KB at most
MAX_MESSAGE_BYTES = 1_000_000


class TouchModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ts: float = Field(allow_inf_nan=False, ge=0)
    campaign_id: str = Field(min_length=1, max_length=64)
    screen_id: str = Field(pattern=ID_PATTERN)
    profile_id: str | None = Field(None, min_length=1, max_length=64)
    group: Literal["exposed", "holdout"] = "exposed"
    event_id: str = Field(min_length=1, max_length=64)


class TouchMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    touches: list[TouchModel] = Field(max_length=MAX_SNAPSHOT)


def encode(touches: list[Touch]) -> str:
    return json.dumps(
        {
            "touches": [
                {
                    "ts": t.ts,
                    "campaign_id": t.campaign_id,
                    "screen_id": t.screen_id,
                    "profile_id": t.profile_id,
                    "group": t.group,
                    "event_id": t.event_id,
                }
                for t in touches
            ]
        },
        separators=(",", ":"),
    )


class TouchMessageError(ValueError):
    pass


def decode(payload: bytes, origin: str) -> list[Touch]:
    """A peer's message as touches from ``origin`` (the device its topic names)."""
    try:
        doc = loads(payload, max_bytes=MAX_MESSAGE_BYTES, what="touches")
        msg = TouchMessage.model_validate(doc)
    except PayloadError as exc:
        raise TouchMessageError(str(exc)) from None
    except ValidationError as exc:
        raise TouchMessageError(first_error(exc, "touches")) from None
    return [
        Touch(t.ts, t.campaign_id, t.screen_id, t.profile_id, t.group, t.event_id, origin)
        for t in msg.touches
    ]


@dataclass
class ShareCounts:
    published: int = 0
    received: int = 0  # peer touches new to this box
    refused: int = 0  # peer messages that were not touches


class TouchShare:
    def __init__(
        self,
        bus: Publisher,
        store_id: str,
        device_id: str,
        engine: JourneyEngine,
        now: Callable[[], float],
        snapshot_s: float = 30.0,
    ) -> None:
        self.bus = bus
        self.store_id = store_id
        self.device_id = device_id
        self.engine = engine
        self._now = now
        self.snapshot_s = snapshot_s
        self.counts = ShareCounts()
        self._inbox: queue.SimpleQueue[list[Touch]] = queue.SimpleQueue()
        self._snapshot_due = True  # at start: peers that restarted meanwhile need it
        self._last_snapshot = float("-inf")
        self._last_error = ""

    # ---- bus thread ----------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        origin = parts[3] if len(parts) >= 4 else ""
        if origin == self.device_id or not origin:
            return  # our own, echoed by the broker
        try:
            touches = decode(payload, origin)
        except TouchMessageError as exc:
            self.counts.refused += 1
            why = f"touches from {origin[:64]}: {exc}"
            if why != self._last_error:
                self._last_error = why
                log.warning("journey: refused %s", why[:200])
            return
        self._inbox.put(touches)

    # ---- the loop ------------------------------------------------------------------------
    def drain(self) -> None:
        """Peers' touches into the engine (before deciding and attributing this tick)."""
        while True:
            try:
                batch = self._inbox.get_nowait()
            except queue.Empty:
                return
            self.counts.received += self.engine.add_peer_touches(batch)

    def publish(self, changes: list[Change]) -> None:
        """This tick's own touches to the peers, and the retained window when it is due."""
        own = [c.touch for c in changes if isinstance(c, TouchAdded) and not c.touch.origin]
        if own:
            if self.bus.publish(topics.touches(self.store_id, self.device_id), encode(own), qos=1):
                self.counts.published += len(own)
            self._snapshot_due = True
        if any(isinstance(c, Forgot) for c in changes):
            self._snapshot_due = True  # the retained window must lose the shopper too
        now = self._now()
        if self._snapshot_due and now - self._last_snapshot >= self.snapshot_s:
            window = [t for t in self.engine.book.touches() if not t.origin][-MAX_SNAPSHOT:]
            if self.bus.publish(
                topics.touches_window(self.store_id, self.device_id),
                encode(window),
                qos=1,
                retain=True,
            ):
                self._snapshot_due = False
                self._last_snapshot = now
