"""The store's brand on every screen (a pushed ``theme``): the logo drawn in its corner inside
the safe area over every item, a campaign's card included, and the theme's colours on the
screens' own default card. Real player, real pixels."""

from __future__ import annotations

import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from contracts import topics
from contracts.screen_protocol import Content, ScreenCommand, Theme
from signage_ui.assets import AssetCache
from signage_ui.layout import safe_area
from tests.signage_ui.test_signage_player import load, share_of
from tests.signage_ui.test_signage_screen import STORE, Recorder, config, logs, player, pngs
from tests.watching import wait_for

MAGENTA = (255, 0, 255)  # BGR as OpenCV writes it
THEME_BG = "#0b3d2e"


def logo_png() -> bytes:
    img = np.zeros((100, 300, 3), np.uint8)
    img[:] = MAGENTA
    return cv2.imencode(".png", img)[1].tobytes()


def magenta_box(img: np.ndarray) -> tuple[int, int, int, int] | None:
    """The bounding box (x0, y0, x1, y1, image rows down) of the logo's magenta pixels."""
    mask = np.all(np.abs(img.astype(int) - MAGENTA) < 40, axis=2)
    ys, xs = np.nonzero(mask)
    if len(xs) < 50:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


@pytest.mark.ui
@pytest.mark.timeout(90)
def test_the_logo_sits_in_its_corner_over_every_item(
    tmp_path: Path, kivy_env: dict[str, str], broker
) -> None:
    cache = AssetCache(tmp_path / "content")
    sha = cache.put(logo_png())
    theme = Theme(version=1, background=THEME_BG, accent="#f4a261", logo_sha256=sha)
    (tmp_path / "content" / "theme.json").write_text(theme.model_dump_json())
    width, height = 960, 540
    # Its own screen id: a state another test left retained must not pass for this player.
    screen = f"theme-{uuid.uuid4().hex[:6]}"
    cfg = config(
        tmp_path,
        broker.port,
        [{"id": screen, "zone": "entrance", "width": width, "height": height}],
    )
    bus = Recorder(broker.host, broker.port)
    try:
        with player(tmp_path, kivy_env, cfg, screen) as shots:
            assert wait_for(lambda: pngs(shots) and bus.states(screen), 30), logs(tmp_path)
            first = load(pngs(shots)[0])
            # The screens' own default card wears the theme's colour.
            assert share_of(first, (0x2E, 0x3D, 0x0B)) > 0.5, logs(tmp_path)
            x0, y0, sw, sh = safe_area(width, height)
            for img in (first,):
                box = magenta_box(img)
                assert box is not None, "no logo drawn"
                left, top, right, bottom = box
                # Top right, inside the safe area (image rows run down from the top).
                assert right <= x0 + sw + 1 and top >= y0 - 1
                assert left > width / 2 and bottom < height / 2
            # A campaign's card (its own colours) still carries the logo, on top of it.
            card = Content(content_id="offer:red", title="Sale", background="#c1121f")
            bus.publish(
                topics.screen_cmd(STORE, screen),
                ScreenCommand(kind="show", content=card).to_bytes(),
            )
            assert wait_for(lambda: "offer_red" in pngs(shots)[-1].name, 10), logs(tmp_path)
            red = load(pngs(shots)[-1])
            assert share_of(red, (0x1F, 0x12, 0xC1)) > 0.3
            assert magenta_box(red) == magenta_box(first)
            # A long title starts below the logo's band: no text under or beside the logo.
            long = Content(
                content_id="offer:long", title="Waterproof winter boots with a warm lining " * 2,
                body="All sizes in stock", background="#1d3557", price=89.0, was_price=119.0,
            )  # fmt: skip
            bus.publish(
                topics.screen_cmd(STORE, screen),
                ScreenCommand(kind="show", content=long).to_bytes(),
            )
            assert wait_for(lambda: "offer_long" in pngs(shots)[-1].name, 10), logs(tmp_path)
            img = load(pngs(shots)[-1])
            box = magenta_box(img)
            assert box is not None
            band = img[: box[3] + 1, :, :]
            white = np.all(band > 235, axis=2)
            assert white.sum() == 0, "text drawn in the logo's band"
            assert np.all(img[box[3] + 10 :, :, :] > 235, axis=2).sum() > 500  # the text is there
    finally:
        bus.close()


FONTS = Path("/usr/share/fonts/truetype/dejavu")


def ink(img: np.ndarray) -> np.ndarray:
    """Where white text is drawn on the dark card."""
    return np.all(img > 200, axis=2)


@pytest.mark.ui
@pytest.mark.timeout(90)
def test_a_brand_font_draws_every_word_of_the_cards(
    tmp_path: Path, kivy_env: dict[str, str], broker
) -> None:
    """A theme's font (a TTF of the content cache, by sha256 like the logo) is registered by the
    player and used for titles and words: the same card drawn before and after the theme has
    its words in other shapes."""
    regular, bold = FONTS / "DejaVuSerif.ttf", FONTS / "DejaVuSerif-Bold.ttf"
    if not (regular.exists() and bold.exists()):
        pytest.skip(f"no DejaVu Serif under {FONTS} (Debian: apt-get install fonts-dejavu-core)")
    cache = AssetCache(tmp_path / "content")
    font_sha = cache.put(regular.read_bytes())
    bold_sha = cache.put(bold.read_bytes())
    screen = f"font-{uuid.uuid4().hex[:6]}"
    cfg = config(
        tmp_path, broker.port, [{"id": screen, "zone": "entrance", "width": 960, "height": 540}]
    )
    words = {"title": "Hamburgefonstiv Qualität", "body": "Handgefertigt, wasserdicht und warm"}
    bus = Recorder(broker.host, broker.port)
    try:
        with player(tmp_path, kivy_env, cfg, screen) as shots:
            assert wait_for(lambda: bus.states(screen), 30), logs(tmp_path)

            def shot_of(cid: str) -> np.ndarray:
                card = Content(content_id=cid, background="#1d3557", **words)
                bus.publish(
                    topics.screen_cmd(STORE, screen),
                    ScreenCommand(kind="show", content=card).to_bytes(),
                )
                name = cid.replace(":", "_")
                assert wait_for(lambda: pngs(shots) and name in pngs(shots)[-1].name, 10), logs(
                    tmp_path
                )
                return load(pngs(shots)[-1])

            before = shot_of("font:default")
            theme = Theme(version=2, font_sha256=font_sha, font_bold_sha256=bold_sha)
            partial = tmp_path / "content" / "theme.json.partial"
            partial.write_text(theme.model_dump_json())
            partial.rename(tmp_path / "content" / "theme.json")  # as the agent writes it
            assert wait_for(lambda: f"font brand-{font_sha[:16]}" in logs(tmp_path), 15), logs(
                tmp_path
            )
            after = shot_of("font:brand")
    finally:
        bus.close()
    a, b = ink(before), ink(after)
    assert a.sum() > 2000 and b.sum() > 2000, "no words drawn"
    # The same words in another typeface: most of the ink is somewhere else.
    differ = (a ^ b).sum() / (a | b).sum()
    assert differ > 0.4, f"only {differ:.0%} of the words' pixels changed with the font"
    assert "theme_font" not in logs(tmp_path) and "shortened" not in logs(tmp_path)
