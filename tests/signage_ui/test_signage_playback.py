"""The player's rules, without a window: minimum hold, override, stale commands, proof of play,
and legible text on any background."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.screen_protocol import Content, ScreenCommand
from signage_ui.playback import BUILTIN_DEFAULT, Playback
from signage_ui.style import DARK_TEXT, LIGHT_TEXT, contrast_ratio, text_colour_for

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def content(cid: str) -> Content:
    return Content(content_id=cid, title=cid.title())


def cmd(kind: str, cid: str | None, at: datetime, hold: float = 0.0) -> ScreenCommand:
    return ScreenCommand(
        kind=kind, content=content(cid) if cid else None, min_duration_s=hold, issued_at=at
    )


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_show_replaces_the_default_and_reports_its_impression() -> None:
    p = Playback()
    p.start(T0)
    change = p.apply(cmd("show", "a", s(2)), s(2))
    assert change is not None and change.showing.content.content_id == "a"
    assert change.ended is not None
    assert change.ended.content == BUILTIN_DEFAULT and change.ended.duration_s == 2.0


def test_a_command_during_the_hold_waits_and_only_the_latest_runs() -> None:
    p = Playback()
    p.start(T0)
    p.apply(cmd("show", "a", s(0), hold=10), s(0))
    assert p.apply(cmd("show", "b", s(3)), s(3)) is None
    assert p.apply(cmd("show", "c", s(4)), s(4)) is None
    assert p.tick(s(9.9)) is None
    change = p.tick(s(10))
    assert change is not None and change.showing.content.content_id == "c"
    assert change.ended is not None and change.ended.duration_s == 10.0


def test_a_preempting_command_cuts_through_the_hold_but_not_an_override() -> None:
    p = Playback()
    p.start(T0)
    p.apply(cmd("show", "greeting", s(0), hold=10), s(0))
    assert p.apply(cmd("show", "waiting", s(1)), s(1)) is None  # an ordinary one waits
    withdrawn = cmd("show", "anonymous", s(2)).model_copy(update={"preempt": True})
    change = p.apply(withdrawn, s(2))
    assert change is not None and change.showing.content.content_id == "anonymous"
    assert p.pending is None  # what waited behind the greeting is not shown after it
    assert change.ended is not None and change.ended.duration_s == 2.0
    # During an emergency a preempting command waits like any other.
    p.apply(cmd("override", "evacuate", s(3)), s(3))
    assert p.apply(cmd("show", "x", s(4)).model_copy(update={"preempt": True}), s(4)) is None
    assert p.current.content.content_id == "evacuate"
    # On the wire it is absent unless set, so a player of the previous release still reads
    # every ordinary command.
    assert b"preempt" not in cmd("show", "a", s(0)).to_bytes()
    assert ScreenCommand.from_bytes(withdrawn.to_bytes()).preempt is True


def test_default_during_the_hold_waits_too() -> None:
    p = Playback()
    p.start(T0)
    p.apply(cmd("show", "a", s(0), hold=5), s(0))
    assert p.apply(cmd("default", None, s(1)), s(1)) is None
    back = p.tick(s(5))
    assert back is not None and back.showing.content == BUILTIN_DEFAULT
    assert back.ended is not None and back.ended.content.content_id == "a"


def test_a_command_waiting_when_an_override_starts_plays_after_it() -> None:
    p = Playback()
    p.start(T0)
    p.apply(cmd("show", "a", s(0), hold=10), s(0))
    p.apply(cmd("show", "b", s(1)), s(1))  # waits for a's hold
    p.apply(cmd("override", "evacuate", s(2)), s(2))
    assert p.pending is None and p.tick(s(12)) is None  # the override holds past a's hold
    back = p.apply(cmd("clear_override", None, s(15)), s(15))
    assert back is not None and back.showing.content.content_id == "b"


def test_override_wins_at_once_and_the_loop_resumes_after_clear() -> None:
    p = Playback()
    p.start(T0)
    p.apply(cmd("show", "a", s(0), hold=30), s(0))
    change = p.apply(cmd("override", "evacuate", s(1)), s(1))
    assert change is not None and change.showing.content.content_id == "evacuate"
    # Targeted content cannot replace an override, but is remembered.
    assert p.apply(cmd("show", "b", s(2)), s(2)) is None
    assert p.tick(s(20)) is None
    back = p.apply(cmd("clear_override", None, s(25)), s(25))
    assert back is not None and back.showing.content.content_id == "b"


def test_a_targeted_item_remembered_through_a_long_override_goes_stale() -> None:
    """The shopper it was for has long gone: after the override, the default plays."""
    p = Playback()
    p.start(T0)
    p.apply(cmd("override", "evacuate", s(1)), s(1))
    p.apply(cmd("show", "b", s(2)), s(2))
    back = p.apply(cmd("clear_override", None, s(600)), s(600))
    assert back is not None and back.showing.content == BUILTIN_DEFAULT


def test_clear_override_without_a_waiting_item_goes_to_the_default() -> None:
    p = Playback()
    p.start(T0)
    p.apply(cmd("override", "evacuate", s(1)), s(1))
    back = p.apply(cmd("clear_override", None, s(5)), s(5))
    assert back is not None and back.showing.content == BUILTIN_DEFAULT


def test_stale_commands_change_nothing() -> None:
    p = Playback()
    p.start(T0)
    old = cmd("show", "a", s(0))
    assert p.apply(old, s(0) + timedelta(seconds=old.ttl_s + 1)) is None
    assert p.current.content == BUILTIN_DEFAULT


def test_the_same_content_again_is_not_a_new_impression() -> None:
    p = Playback()
    p.start(T0)
    p.apply(cmd("show", "a", s(0)), s(0))
    assert p.apply(cmd("show", "a", s(5)), s(5)) is None
    assert p.current.start == s(0)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["show", "default", "override", "clear_override"]),
            st.sampled_from(["a", "b", "c"]),
            st.floats(0, 5),
            st.floats(0, 3),
        ),
        max_size=40,
    )
)
def test_impressions_tile_the_timeline(steps) -> None:
    """Every moment is covered by exactly one impression: no gaps, no overlaps, no negatives."""
    p = Playback()
    p.start(T0)
    now = T0
    ended = []
    for kind, cid, gap, hold in steps:
        now += timedelta(seconds=gap)
        for change in (p.tick(now), p.apply(cmd(kind, cid, now, hold), now)):
            if change is not None and change.ended is not None:
                ended.append(change.ended)
    ended.append(p.close(now + timedelta(seconds=1)))
    assert ended[0].start == T0
    for a, b in zip(ended, ended[1:], strict=False):
        assert a.end == b.start
        assert a.duration_s >= 0


@pytest.mark.parametrize(
    ("background", "ink"),
    [
        ("#00ff00", DARK_TEXT),
        ("#f1faee", DARK_TEXT),
        ("#ffffff", DARK_TEXT),
        ("#1d3557", LIGHT_TEXT),
        ("#0000ff", LIGHT_TEXT),
        ("#000000", LIGHT_TEXT),
    ],
)
def test_text_colour_follows_the_background(background: str, ink: str) -> None:
    assert text_colour_for(background) == ink


@given(st.integers(0, 0xFFFFFF).map(lambda v: f"#{v:06x}"))
def test_card_text_is_always_legible(background: str) -> None:
    """Whatever background a campaign picks, the copy meets WCAG AA contrast (4.5:1)."""
    assert contrast_ratio(text_colour_for(background), background) >= 4.5
