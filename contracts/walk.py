"""A walk survey on the in-store bus (issue 18): the kiosk starts it for a staff tag, taps the
zone the walker steps into (or out of every zone), and stops it; the agent records what its
receivers hear of the tag beside those taps (edge_agent/sensing/ble/walk.py) and says, retained,
what it is recording."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from contracts.validation import ID_PATTERN, StrictModel


class WalkCommand(StrictModel):
    action: Literal["start", "tap", "stop"]
    # start: the configured store beacon the walker carries ([ble] beacons, by name).
    tag: str | None = Field(None, max_length=64)
    # tap: the zone stepped into; None = out of every zone.
    zone: str | None = Field(None, pattern=ID_PATTERN)


class WalkState(StrictModel):
    recording: bool
    tag: str | None = None
    file: str | None = None  # the recording's name under the agent's state_dir/walks
    zone: str | None = None  # the last tap
    taps: int = 0
    adverts: int = 0  # readings of the tag so far
    seconds: float = 0.0
    error: str | None = None  # why the last command was refused, in one line
