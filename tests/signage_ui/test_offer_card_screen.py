"""Offer cards as a retailer judges them: by looking. The real player in a real Kivy window on
Xvfb plays a default loop of offer cards (a product photo from its content cache, the longest
German and French copy, prices, badges, QR codes, ticker and side panel) in landscape and in
portrait; the screenshots are checked by pixels: nothing outside the safe area, the photo in its
region around its subject, the QR code decodes to its link, the price is on its tag.

``OFFER_SHOTS=DIR`` keeps every screenshot; ``EDGE_DOCS_SHOTS=1`` refreshes the README's."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import pytest

from contracts.screen_protocol import Content, PlaylistItem
from signage_ui.assets import AssetCache
from signage_ui.layout import SAFE_INSET, regions
from signage_ui.style import side_tint, text_colour_for
from tests.signage_ui.test_signage_player import load
from tests.signage_ui.test_signage_screen import config, logs, player, pngs, write_playlist
from tests.watching import wait_for

DOCS = Path(__file__).resolve().parents[2] / "docs"
pytestmark = [pytest.mark.ui, pytest.mark.timeout(120)]

BOOT_BGR = (30, 110, 210)  # the product: a tan boot on a pale studio gradient
SOLE_BGR = (30, 30, 30)
FOCUS = (0.62, 0.55)  # where the boot stands in the photo (from the left, from the top)


def product_photo(w: int = 1200, h: int = 800) -> bytes:
    """A studio shot, synthetic: a vertical pale gradient, a tan boot right of centre filling
    much of the frame, with a dark sole, laces and a soft shadow, so a centred crop into a
    narrow box would cut it and a focus crop keeps it."""
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    top, bottom = np.array([236, 240, 244], np.float32), np.array([196, 206, 214], np.float32)
    img = (top * (1 - ramp) + bottom * ramp).repeat(w, axis=1).astype(np.uint8)
    cx, cy = int(FOCUS[0] * w), int(FOCUS[1] * h)

    def pts(*xy: tuple[int, int]) -> np.ndarray:
        return np.array([(cx + x, cy + y) for x, y in xy], np.int32)

    cv2.ellipse(img, (cx + 20, cy + 250), (380, 40), 0, 0, 360, (170, 178, 186), -1)  # shadow
    boot = pts((-190, -300), (20, -300), (40, 60), (250, 120), (300, 190), (300, 215), (-210, 215))
    cv2.fillPoly(img, [boot], BOOT_BGR, cv2.LINE_AA)
    cv2.fillPoly(img, [pts((-215, 190), (310, 190), (310, 240), (-215, 240))], SOLE_BGR)
    cv2.rectangle(img, (cx - 200, cy - 320), (cx + 30, cy - 280), (20, 80, 160), -1)  # collar
    for i in range(6):  # laces
        y = cy - 250 + 50 * i
        cv2.line(img, (cx - 60, y), (cx + 30, y + 20), (235, 235, 235), 10, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


QR_DE = "https://northwind.example/de/angebote/winterstiefel-alpenglut?utm_source=screen"
QR_FR = "https://northwind.example/fr/offres/veste-impermeable"

DE_TITLE = "Wasserdichte Winterstiefel „Alpenglut“ mit warmem Lammfellfutter und Profilsohle"
DE_BODY = (
    "Handgefertigt aus geöltem Nubukleder, mit atmungsaktiver Klimamembran, rutschfester "
    "Vibram-Laufsohle und herausnehmbarer Fußbettung. Bis minus dreißig Grad getestet. "
    "Alle Größen von 36 bis 47 vorrätig – unser Team berät Sie gerne persönlich."
)
FR_TITLE = "Veste imperméable et respirante « Tempête » pour la randonnée en montagne"
FR_BODY = (
    "Membrane trois couches entièrement étanche, coutures thermosoudées, capuche réglable "
    "compatible avec un casque et poches ventilées. Légère, elle se range dans sa propre poche. "
    "Essayez-la en cabine : nos conseillers vous attendent au rayon randonnée."
)


def cards(photo: str) -> list[Content]:
    return [
        Content(
            content_id="offer:de-photo",
            title=DE_TITLE,
            body=DE_BODY,
            language="de",
            background="#fbf7f0",
            accent="#c8102e",
            image_sha256=photo,
            image_focus=FOCUS,
            price=89.0,
            was_price=119.0,
            valid_until=date(2026, 12, 24),
            cta="Jetzt im Laden anprobieren",
            badge="Neu",
            qr_url=QR_DE,
            ticker="Heute bis 20 Uhr geöffnet · Kostenloser Kaffee an der Kasse · "
            "Click & Collect an Theke 2",
        ),
        Content(
            content_id="offer:fr-text",
            title=FR_TITLE,
            body=FR_BODY,
            language="fr",
            background="#0b3954",
            accent="#ffd166",
            price=149.9,
            was_price=189.0,
            valid_until=date(2026, 12, 31),
            cta="Essayez-la en cabine",
            qr_url=QR_FR,
            side="Retouches gratuites et conseils d'experts au rayon randonnée",
            ticker="Ouvert aujourd'hui jusqu'à 20 h · Café offert à la caisse",
        ),
        Content(
            content_id="offer:en-photo-plain",
            title="Alpenglow winter boots",
            body="Waterproof nubuck, warm lining, made to last.",
            language="en",
            background="#1d3557",
            accent="#e63946",
            image_sha256=photo,
            image_focus=FOCUS,
            badge="New in",
        ),
        # Its photo never reached the cache: the card still plays, text-led, and says why once.
        Content(
            content_id="offer:no-photo",
            title="Merino base layer",
            body="Soft, warm, odour-resistant.",
            background="#ffffff",
            accent="#2a9d8f",
            image_sha256="ab" * 32,
            price=39.0,
        ),
    ]


def bgr(hex_colour: str) -> np.ndarray:
    h = hex_colour.lstrip("#")
    return np.array([int(h[4:6], 16), int(h[2:4], 16), int(h[0:2], 16)])


def near(img: np.ndarray, colour: np.ndarray | tuple[int, int, int], tol: int = 12) -> np.ndarray:
    return np.all(np.abs(img.astype(int) - np.array(colour)) <= tol, axis=2)


def region_fills(c: Content) -> list[np.ndarray]:
    """The colours a region may show in the overscan margin: its plain fill, nothing drawn."""
    fills = [bgr(c.background)]
    if c.ticker:
        fills.append(bgr(c.accent))
    if c.side:
        fills.append(bgr(side_tint(c.background, c.accent)))
    return fills


def outside_safe(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    dx, dy = round(w * SAFE_INSET), round(h * SAFE_INSET)
    mask = np.ones((h, w), bool)
    mask[dy : h - dy, dx : w - dx] = False
    return mask


def check_card(img: np.ndarray, c: Content, cached: set[str]) -> None:
    h, w = img.shape[:2]
    # Nothing drawn in the overscan margin: every pixel there is a region's plain fill.
    plain = np.zeros((h, w), bool)
    for fill in region_fills(c):
        plain |= near(img, fill, 2)
    stray = outside_safe(img) & ~plain
    assert stray.sum() == 0, f"{stray.sum()} drawn pixels outside the safe area"
    r = regions(w, h, ticker=bool(c.ticker), side=bool(c.side))
    mx, my, mw, mh = (round(v) for v in r.main)
    main = img[h - (my + mh) : h - my, mx : mx + mw]  # Kivy's y-up box as image rows
    if c.qr_url:
        got, _pts, _ = cv2.QRCodeDetector().detectAndDecode(img)
        assert got == c.qr_url
    if c.price is not None:
        # The price tag in the accent, with the price on it in the accent's text colour.
        tag = near(main, bgr(c.accent), 4).astype(np.uint8)
        n, _labels, stats, _ = cv2.connectedComponentsWithStats(tag)
        assert n > 1
        x, y, tw, th, area = max(stats[1:], key=lambda s: s[4])  # the biggest accent shape
        assert area > 0.01 * tag.size
        price = main[y : y + th, x : x + tw]
        assert near(price, bgr(text_colour_for(c.accent)), 40).mean() > 0.1
    if c.image_sha256 in cached:
        boot = near(main, BOOT_BGR, 24)
        assert boot.mean() > 0.015, "the product is not on the card"
        ys, xs = np.nonzero(boot)
        # Landscape: the photo is on the left; portrait: on top. The sole is in the crop too.
        if w > h:
            assert xs.max() < 0.6 * mw
        else:
            assert ys.max() < 0.6 * mh
        assert near(main, SOLE_BGR, 12).mean() > 0.003
    else:
        assert near(main, BOOT_BGR, 24).mean() == 0


@pytest.mark.parametrize("orientation", ["landscape", "portrait"])
def test_offer_cards_in_german_and_french_fit_the_safe_area(
    tmp_path: Path, kivy_env: dict[str, str], broker, orientation: str
) -> None:
    cache = AssetCache(tmp_path / "content")
    photo = cache.put(product_photo())
    items = cards(photo)
    write_playlist(cache.root, [PlaylistItem(content=c, duration_s=2.0) for c in items])
    screens = [
        {"id": "s", "zone": "entrance", "width": 960, "height": 540, "orientation": orientation}
    ]
    cfg = config(tmp_path, broker.port, screens)
    with player(tmp_path, kivy_env, cfg, "s") as shots:
        wanted = {c.content_id.replace(":", "_") for c in items}

        def seen() -> dict[str, Path]:
            return {p.stem.split("-", 1)[1]: p for p in pngs(shots)}

        assert wait_for(lambda: wanted <= set(seen()), 40), logs(tmp_path)
        got = seen()
    keep = os.environ.get("OFFER_SHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for c in items:
            name = f"{c.content_id.split(':')[1]}-{orientation}.png"
            shutil.copy(got[c.content_id.replace(":", "_")], Path(keep) / name)
    if os.environ.get("EDGE_DOCS_SHOTS"):  # README pictures, refreshed on demand
        shutil.copy(got["offer_de-photo"], DOCS / f"player-offer-{orientation}.png")
        if orientation == "landscape":
            shutil.copy(got["offer_fr-text"], DOCS / "player-offer-text-fr.png")
    for c in items:
        img = load(got[c.content_id.replace(":", "_")])
        assert (img.shape[0] > img.shape[1]) == (orientation == "portrait")
        check_card(img, c, {photo})
    # Even the longest copy fitted at a legible size: nothing was shortened.
    assert "shortened" not in logs(tmp_path)
    assert "missing: offer:no-photo: asset abababababab: not in the content cache" in logs(tmp_path)
