"""The player's pure parts: the asset cache (sha256, atomic, corrupt and missing), the playlist
file and the default loop (dayparts, skipping broken items, never running dry), the offer-card
template in the shopper's language, the region layout for any size, and the protocol extensions
staying compatible with commands the agent already sends."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.screen_protocol import (
    Content,
    Playlist,
    PlaylistItem,
    ScreenCommand,
    in_daypart,
)
from signage_ui.assets import AssetCache, AssetError
from signage_ui.layout import regions
from signage_ui.loop import BUILTIN_DEFAULT, Loop, PlaylistError, load_playlist
from signage_ui.playback import Playback
from signage_ui.template import format_price, render_card

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def item(cid: str, duration: float = 5, dayparts: tuple[str, ...] = ()) -> PlaylistItem:
    return PlaylistItem(
        content=Content(content_id=cid, title=cid), duration_s=duration, dayparts=dayparts
    )


# ---- asset cache -------------------------------------------------------------------------


def test_assets_are_stored_by_hash_and_verified(tmp_path: Path) -> None:
    cache = AssetCache(tmp_path)
    sha = cache.put(b"picture bytes")
    assert sha == hashlib.sha256(b"picture bytes").hexdigest()
    assert cache.verified(sha).read_bytes() == b"picture bytes"
    assert cache.size_bytes() == len(b"picture bytes")
    # A partial download (not yet renamed) neither counts nor shows.
    (cache.assets_dir / ".partial-xyz").write_bytes(b"half")
    assert cache.size_bytes() == len(b"picture bytes")
    # Bit rot after the first check is caught: the file changed, so it is hashed again.
    (cache.assets_dir / sha).write_bytes(b"picture bytez")
    with pytest.raises(AssetError) as err:
        cache.verified(sha)
    assert err.value.kind == "corrupt" and "checksum mismatch" in str(err.value)
    with pytest.raises(AssetError) as err:
        cache.verified("0" * 64)
    assert err.value.kind == "missing"
    with pytest.raises(AssetError):
        cache.verified("../../etc/passwd")


# ---- playlist and loop -----------------------------------------------------------------------


def test_playlist_file_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "playlist.json"
    assert load_playlist(path) is None
    path.write_text("{not json")
    with pytest.raises(PlaylistError, match="not JSON"):
        load_playlist(path)
    path.write_text(json.dumps({"items": [{"content": {"content_id": "a"}}]}))
    with pytest.raises(PlaylistError, match=r"items\.0\.content\.title: Field required"):
        load_playlist(path)
    path.write_text(
        json.dumps({"items": [{"content": {"content_id": "a", "title": "A"}, "dayparts": ["9-5"]}]})
    )
    with pytest.raises(
        PlaylistError, match=r"items\.0\.dayparts: daypart '9-5' is not HH:MM-HH:MM"
    ):
        load_playlist(path)


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
@settings(max_examples=300, deadline=None)
def test_any_playlist_bytes_load_or_fail_with_one_line(tmp_path_factory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("pl") / "playlist.json"
    path.write_bytes(raw)
    try:
        load_playlist(path)
    except PlaylistError as exc:
        assert "\n" not in str(exc)


def test_loop_follows_dayparts_and_skips_unusable_items() -> None:
    broken = {"b"}
    loop = Loop(
        items=(item("a"), item("b"), item("night", dayparts=("22:00-06:00",)), item("c", 7)),
        usable=lambda c: c.content_id not in broken,
    )
    day = T0  # 09:00 UTC
    assert [loop.next(day)[0].content_id for _ in range(4)] == ["a", "c", "a", "c"]
    assert loop.next(day)[1] == 5 and loop.next(day)[1] == 7
    night = T0.replace(hour=23)
    assert [loop.next(night)[0].content_id for _ in range(3)] == ["a", "night", "c"]


def test_loop_never_runs_dry() -> None:
    assert Loop().next(T0)[0] == BUILTIN_DEFAULT
    agent_card = Content(content_id="agent-default", title="Hello")
    loop = Loop(items=(item("x"),), usable=lambda _c: False)
    assert loop.next(T0, agent_card)[0] == agent_card
    assert loop.next(T0)[0] == BUILTIN_DEFAULT


@given(st.integers(0, 23), st.integers(0, 59), st.integers(0, 23), st.integers(0, 59))
def test_dayparts_wrap_midnight(h1: int, m1: int, h2: int, m2: int) -> None:
    d = f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}"
    start, end = h1 * 60 + m1, h2 * 60 + m2
    inside = sum(in_daypart(d, time(m // 60, m % 60)) for m in range(0, 1440))
    expected = 1440 if start == end else (end - start) % 1440
    assert inside == expected


def test_playback_runs_the_loop_and_returns_to_it() -> None:
    p = Playback(loop=Loop(items=(item("a", 5), item("b", 5))))
    assert p.start(T0).content.content_id == "a"
    change = p.tick(T0 + timedelta(seconds=5))
    assert change is not None and change.showing.content.content_id == "b"
    assert change.ended is not None and change.ended.cmd_id is None  # proof of play of the loop
    offer = Content(content_id="offer", title="Offer")
    cmd = ScreenCommand(kind="show", content=offer, min_duration_s=8, issued_at=T0)
    takeover = p.apply(cmd, T0 + timedelta(seconds=6))
    assert takeover is not None and takeover.showing.mode == "targeted"
    assert p.tick(T0 + timedelta(seconds=30)) is None  # targeted stays while the agent is there
    # The bus goes away: after its hold the targeted item gives way to the loop.
    p.bus_up = False
    back = p.tick(T0 + timedelta(seconds=31))
    assert back is not None and back.showing.mode == "loop"


def test_bus_down_during_the_hold_waits_for_the_hold() -> None:
    p = Playback()
    p.start(T0)
    offer = Content(content_id="offer", title="Offer")
    p.apply(ScreenCommand(kind="show", content=offer, min_duration_s=10, issued_at=T0), T0)
    p.bus_up = False
    assert p.tick(T0 + timedelta(seconds=9)) is None
    assert p.tick(T0 + timedelta(seconds=10)) is not None


# ---- template -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "price", "footer"),
    [
        ("en", "€12.99  (was €15.00)", "Valid until 24 Dec 2026  ·  Ask in store"),
        ("fr", "12,99 €  (au lieu de 15,00 €)", "Valable jusqu'au 24/12/2026  ·  Ask in store"),
        ("de-DE", "12,99 €  (statt 15,00 €)", "Gültig bis 24.12.2026  ·  Ask in store"),
        ("xx", "€12.99  (was €15.00)", "Valid until 24/12/2026  ·  Ask in store"),
    ],
)
def test_offer_card_speaks_the_shoppers_language(language: str, price: str, footer: str) -> None:
    c = Content(
        content_id="o",
        title="Boots",
        price=12.99,
        was_price=15,
        valid_until=date(2026, 12, 24),
        cta="Ask in store",
        language=language,
    )
    text = render_card(c)
    assert (text.price, text.footer) == (price, footer)


def test_prices_without_a_discount_and_other_currencies() -> None:
    assert render_card(Content(content_id="o", title="t", price=5, was_price=5)).price == "€5.00"
    assert format_price(1234.5, "GBP", "en") == "£1,234.50"
    assert format_price(1234.5, "EUR", "de") == "1 234,50 €"
    assert render_card(Content(content_id="o", title="t")).price == ""


# ---- layout -----------------------------------------------------------------------------------


@given(st.integers(160, 7680), st.integers(120, 4320), st.booleans(), st.booleans())
def test_regions_tile_the_screen(w: int, h: int, ticker: bool, side: bool) -> None:
    r = regions(w, h, ticker=ticker, side=side)
    boxes = [b for b in (r.main, r.ticker, r.side) if b is not None]
    assert (r.ticker is not None) == ticker and (r.side is not None) == side
    assert sum(b[2] * b[3] for b in boxes) == pytest.approx(w * h)
    for x, y, bw, bh in boxes:
        assert x >= 0 and y >= 0 and x + bw <= w + 1e-6 and y + bh <= h + 1e-6 and bw > 0 and bh > 0
    # The main region stays the biggest: content first, extras second.
    assert r.main[2] * r.main[3] >= 0.5 * w * h


# ---- protocol compatibility --------------------------------------------------------------------


def test_commands_of_the_agent_before_the_extensions_still_parse() -> None:
    old = b'{"kind":"show","content":{"content_id":"c","title":"Hi","background":"#102030"},"min_duration_s":8}'
    cmd = ScreenCommand.from_bytes(old)
    assert cmd.content is not None and cmd.content.template == "offer_card"
    assert cmd.content.ticker == "" and cmd.content.price is None
    # And a new command round-trips.
    new = ScreenCommand(kind="screenshot")
    assert ScreenCommand.from_bytes(new.to_bytes()) == new
    assert (
        Playlist.model_validate_json(Playlist(items=(item("a"),)).model_dump_json())
        .items[0]
        .content.content_id
        == "a"
    )
