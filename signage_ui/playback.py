"""What the screen shows and for how long: the player's state machine, without Kivy.

Three modes: the default ``loop`` (playlist by dayparts), a ``targeted`` item from the agent, and
an ``override`` (emergency). Rules: ``show``/``default`` replace the current item once its
minimum time is over (a command arriving earlier waits, and only the latest waiting one counts);
``default`` goes back to the loop; a ``preempt`` command (consent withdrawn) replaces the item at
once, hold or not; ``override`` replaces anything at once and holds until
``clear_override``; stale commands change nothing. With the bus down, a targeted item goes back
to the loop once its minimum time is over (nobody is left to say when the shopper has gone).
Every item that leaves the screen becomes an ``Impression`` (proof of play), loop items too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from contracts.screen_protocol import Content, ScreenCommand
from signage_ui.loop import BUILTIN_DEFAULT, Loop, now_utc

__all__ = ["BUILTIN_DEFAULT", "Change", "Impression", "Playback", "Showing"]

Mode = Literal["loop", "targeted", "override"]


@dataclass(frozen=True)
class Showing:
    content: Content
    start: datetime
    cmd_id: str | None
    min_until: datetime
    mode: Mode = "loop"


@dataclass(frozen=True)
class Impression:
    content: Content
    cmd_id: str | None
    start: datetime
    end: datetime

    @property
    def duration_s(self) -> float:
        return max(0.0, (self.end - self.start).total_seconds())


@dataclass(frozen=True)
class Change:
    """The screen must now show ``showing``; ``ended`` is what it showed until now."""

    showing: Showing
    ended: Impression | None


@dataclass
class Playback:
    loop: Loop = field(default_factory=Loop)
    current: Showing = field(init=False)
    pending: ScreenCommand | None = None
    override_active: bool = False
    bus_up: bool = True
    # When the current loop item's time is over.
    loop_until: datetime | None = None
    # The card the agent sent with its last ``default``: the loop's fallback.
    agent_default: Content | None = None
    # The item an override interrupted comes back when the override is cleared.
    _resume: ScreenCommand | None = None

    def __post_init__(self) -> None:
        now = now_utc()
        self.current = Showing(self.loop.fallback, now, None, now)

    @property
    def default(self) -> Content:
        return self.agent_default or self.loop.fallback

    def start(self, now: datetime) -> Showing:
        content, duration = self.loop.next(now, self.agent_default)
        self.current = Showing(content, now, None, now)
        self.loop_until = now + timedelta(seconds=duration)
        return self.current

    def _switch(
        self, content: Content, cmd: ScreenCommand | None, now: datetime, mode: Mode
    ) -> Change:
        ended = Impression(self.current.content, self.current.cmd_id, self.current.start, now)
        hold = timedelta(seconds=cmd.min_duration_s if cmd else 0.0)
        self.current = Showing(content, now, cmd.cmd_id if cmd else None, now + hold, mode)
        return Change(self.current, ended)

    def _to_loop(self, now: datetime, cmd: ScreenCommand | None = None) -> Change | None:
        content, duration = self.loop.next(now, self.agent_default)
        self.loop_until = now + timedelta(seconds=duration)
        if content == self.current.content:
            # Same card (a one-item loop): no new impression, it simply plays on.
            self.current = replace(self.current, mode="loop")
            return None
        return self._switch(content, cmd, now, "loop")

    def _run(self, cmd: ScreenCommand, now: datetime) -> Change | None:
        if cmd.kind == "default":
            self.agent_default = cmd.content
            return self._to_loop(now, cmd)
        if cmd.content is None:
            return self._to_loop(now, cmd)
        if cmd.content == self.current.content:
            return None
        return self._switch(cmd.content, cmd, now, "targeted")

    def apply(self, cmd: ScreenCommand, now: datetime) -> Change | None:
        """Take a command; returns the change to render now, or None (deferred or ignored)."""
        if cmd.expired(now) or cmd.kind == "screenshot":
            return None
        if cmd.kind == "override":
            if cmd.content is None:
                return None
            if not self.override_active:
                self._resume = self.pending
            self.override_active = True
            self.pending = None
            if cmd.content == self.current.content:
                self.current = replace(self.current, mode="override")
                return None
            return self._switch(cmd.content, cmd, now, "override")
        if cmd.kind == "clear_override":
            if not self.override_active:
                return None
            self.override_active = False
            resume, self._resume = self._resume, None
            if resume is not None and not resume.expired(now):
                return self._run(resume, now)
            return self._to_loop(now)
        if self.override_active:
            self._resume = cmd
            return None
        if now < self.current.min_until and not cmd.preempt:
            self.pending = cmd
            return None
        self.pending = None
        return self._run(cmd, now)

    def tick(self, now: datetime) -> Change | None:
        """Time passing: a waiting command after the hold, a targeted item orphaned by a lost
        bus, the loop's next item."""
        if self.override_active or now < self.current.min_until:
            return None
        if self.pending is not None:
            cmd, self.pending = self.pending, None
            return self._run(cmd, now)
        if self.current.mode == "targeted" and not self.bus_up:
            return self._to_loop(now)
        if self.current.mode == "loop" and self.loop_until is not None and now >= self.loop_until:
            return self._to_loop(now)
        return None

    def close(self, now: datetime) -> Impression:
        return Impression(self.current.content, self.current.cmd_id, self.current.start, now)
