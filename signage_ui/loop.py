"""The default loop: which playlist item plays next, by dayparts, without Kivy or I/O.

The loop never runs dry: with no playlist, or no item in its daypart, or every item unusable
(asset missing or corrupt), it plays the fallback (the agent's default card, else the built-in
one), so the screen is never black.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from pydantic import ValidationError

from contracts.screen_protocol import Content, Playlist, PlaylistItem, in_daypart
from contracts.validation import first_error

BUILTIN_DEFAULT = Content(
    content_id="builtin-welcome",
    variant="default",
    title="Welcome",
    body="Come in and look around",
    background="#1d3557",
    accent="#a8dadc",
)

# A lone fallback is re-checked this often, so an item whose daypart opens comes on in time.
RECHECK_S = 60.0


class PlaylistError(ValueError):
    pass


def load_playlist(path: Path) -> Playlist | None:
    """The cached playlist, None when there is none; PlaylistError (one line, naming the key)
    when the file is unreadable or invalid."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PlaylistError(f"{path}: {exc.strerror}") from None
    try:
        return Playlist.model_validate(json.loads(raw))
    except ValidationError as exc:
        raise PlaylistError(f"{path}: {first_error(exc, 'playlist')}") from None
    except ValueError as exc:
        raise PlaylistError(f"{path}: not JSON: {exc}") from None


def in_dayparts(item: PlaylistItem, now_local: datetime) -> bool:
    return not item.dayparts or any(in_daypart(d, now_local.time()) for d in item.dayparts)


@dataclass
class Loop:
    items: tuple[PlaylistItem, ...] = ()
    tz: tzinfo = UTC
    fallback: Content = BUILTIN_DEFAULT
    # Set by the player: False for an item whose asset is missing or corrupt (it is skipped).
    usable: Callable[[Content], bool] = field(default=lambda _c: True)
    # Whose loop this is: a "find us" item carries the way from this screen (PlaylistItem.ways).
    screen_id: str = ""
    _pos: int = -1

    def next(self, now: datetime, fallback: Content | None = None) -> tuple[Content, float]:
        """The next item after the current one that is in its daypart and usable, and how long
        to show it; the fallback when there is none."""
        n = len(self.items)
        local = now.astimezone(self.tz)
        for step in range(1, n + 1):
            i = (self._pos + step) % n
            item = self.items[i]
            if in_dayparts(item, local) and self.usable(item.content):
                self._pos = i
                return item.content_for(self.screen_id), item.duration_s
        return fallback or self.fallback, RECHECK_S


def now_utc() -> datetime:
    return datetime.now(UTC)
