"""What the screen shows and for how long: the player's state machine, without Kivy.

Rules: ``show``/``default`` replace the current item once its minimum time is over (a command
arriving earlier waits, and only the latest waiting one counts); ``override`` replaces anything
at once and holds until ``clear_override``; stale commands change nothing. Every item that
leaves the screen becomes an ``Impression`` (proof of play).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from edge_agent.screen_protocol import Content, ScreenCommand

BUILTIN_DEFAULT = Content(
    content_id="builtin-welcome",
    variant="default",
    title="Welcome",
    body="Come in and look around",
    background="#1d3557",
    accent="#a8dadc",
)


@dataclass(frozen=True)
class Showing:
    content: Content
    start: datetime
    cmd_id: str | None
    min_until: datetime


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
    default: Content = BUILTIN_DEFAULT
    current: Showing = field(init=False)
    pending: ScreenCommand | None = None
    override_active: bool = False
    # The item an override interrupted comes back when the override is cleared.
    _resume: ScreenCommand | None = None

    def __post_init__(self) -> None:
        now = datetime.now(UTC)
        self.current = Showing(self.default, now, None, now)

    def start(self, now: datetime) -> Showing:
        self.current = Showing(self.default, now, None, now)
        return self.current

    def _switch(self, content: Content, cmd: ScreenCommand | None, now: datetime) -> Change:
        ended = Impression(self.current.content, self.current.cmd_id, self.current.start, now)
        hold = timedelta(seconds=cmd.min_duration_s if cmd else 0.0)
        self.current = Showing(content, now, cmd.cmd_id if cmd else None, now + hold)
        return Change(self.current, ended)

    def apply(self, cmd: ScreenCommand, now: datetime) -> Change | None:
        """Take a command; returns the change to render now, or None (deferred or ignored)."""
        if cmd.expired(now):
            return None
        if cmd.kind == "override":
            if cmd.content is None:
                return None
            if not self.override_active:
                self._resume = self.pending
            self.override_active = True
            self.pending = None
            return self._switch(cmd.content, cmd, now)
        if cmd.kind == "clear_override":
            if not self.override_active:
                return None
            self.override_active = False
            resume, self._resume = self._resume, None
            if resume is not None and not resume.expired(now) and resume.content is not None:
                return self._switch(resume.content, resume, now)
            return self._switch(self.default, None, now)
        content = cmd.content or self.default
        if self.override_active:
            self._resume = cmd
            return None
        if now < self.current.min_until:
            self.pending = cmd
            return None
        self.pending = None
        if content == self.current.content:
            return None
        return self._switch(content, cmd, now)

    def tick(self, now: datetime) -> Change | None:
        """Run a waiting command once the current item's minimum time is over."""
        if self.pending is None or self.override_active or now < self.current.min_until:
            return None
        cmd, self.pending = self.pending, None
        content = cmd.content or self.default
        if content == self.current.content:
            return None
        return self._switch(content, cmd, now)

    def close(self, now: datetime) -> Impression:
        return Impression(self.current.content, self.current.cmd_id, self.current.start, now)
