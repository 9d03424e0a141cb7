"""The offer card's pure parts, without Kivy: text fitting, ticker pages, the "cover" crop of a
product photo around its subject, the card's layout inside the safe area for any screen, and
the card's words in the shopper's language. Property tests where a rule holds for every input."""

from __future__ import annotations

from datetime import date
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.screen_protocol import Content
from signage_ui.fit import ELLIPSIS, fit, pages, proportional, words_of
from signage_ui.layout import Box, inner, regions, safe_area
from signage_ui.offer_layout import cover_crop, layout_offer, legible_min
from signage_ui.template import render_card

MEASURE = proportional()

# Campaign bounds (edge_agent/journey/campaigns.py): a title up to 120 characters, a body up to
# 400. The longest real copy we expect, in the languages with the longest words.
DE_TITLE = "Wasserdichte Winterstiefel „Alpenglut“ mit Lammfellfutter, Profilsohle und Klimamembran"
DE_BODY = (
    "Handgefertigt aus geöltem Nubukleder, mit atmungsaktiver Klimamembran, rutschfester "
    "Vibram-Laufsohle und herausnehmbarer Fußbettung. Bis minus dreißig Grad getestet. "
    "Alle Größen von 36 bis 47 vorrätig – unser Team berät Sie gerne persönlich, auch zu "
    "Imprägnierung, Schnürung und Pflege."
)
FR_TITLE = "Veste imperméable et respirante « Tempête » pour la randonnée en montagne"
FR_BODY = (
    "Membrane trois couches entièrement étanche, coutures thermosoudées, capuche réglable "
    "compatible avec un casque et poches ventilées. Légère, elle se range dans sa propre poche. "
    "Essayez-la en cabine : nos conseillers vous attendent au rayon randonnée."
)


def within(a: Box, b: Box, eps: float = 1e-6) -> bool:
    return (
        a[0] >= b[0] - eps
        and a[1] >= b[1] - eps
        and a[0] + a[2] <= b[0] + b[2] + eps
        and a[1] + a[3] <= b[1] + b[3] + eps
    )


def overlap(a: Box, b: Box) -> bool:
    return (
        min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]) > 1e-6
        and min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]) > 1e-6
    )


# ---- fitting ---------------------------------------------------------------------------------

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöüßéè-", min_size=1, max_size=28)


@given(
    st.lists(WORD, min_size=1, max_size=80),
    st.integers(40, 1200),
    st.integers(10, 800),
    st.integers(8, 30),
    st.integers(0, 120),
    st.booleans(),
)
def test_fitted_text_stays_in_its_box_and_loses_nothing_unless_it_says_so(
    words: list[str], w: int, h: int, min_size: int, extra: int, bold: bool
) -> None:
    text = " ".join(words)
    f = fit(text, w, h, MEASURE, max_size=min_size + extra, min_size=min_size, bold=bold)
    assert f.size >= min_size and f.size <= min_size + extra  # never below the legible size
    for line in f.lines:
        assert MEASURE(line, f.size, bold)[0] <= w
    assert f.height <= h or (f.shortened and not f.lines)
    if not f.shortened:
        assert " ".join(f.lines).split() == text.split()  # every word, in order
    else:
        assert f.lines == () or f.lines[-1].endswith(ELLIPSIS)


def test_a_short_title_grows_and_a_long_one_shrinks_to_the_minimum_only() -> None:
    short = fit("Boots", 600, 200, MEASURE, max_size=80, min_size=14, bold=True)
    long = fit(DE_TITLE, 600, 200, MEASURE, max_size=80, min_size=14, bold=True)
    assert short.size == 80 and len(short.lines) == 1
    assert 14 < long.size < 80 and not long.shortened
    # Beyond rescue (far longer than any campaign allows): visibly shortened, never cut mid-box.
    huge = fit(DE_BODY * 10, 300, 100, MEASURE, max_size=30, min_size=14)
    assert huge.shortened and huge.size == 14 and huge.height <= 100


def test_words_that_belong_together_stay_on_one_line() -> None:
    assert words_of("Veste « Tempête » : 20 h, −25 %") == [
        "Veste",
        "«\u00a0Tempête\u00a0»\u00a0:",
        "20\u00a0h,",
        "−25\u00a0%",
    ]


@given(
    st.lists(st.one_of(WORD, st.just("·")), min_size=1, max_size=60),
    st.integers(60, 1600),
    st.integers(10, 40),
)
def test_ticker_pages_are_whole_words_that_fit(words: list[str], width: int, size: int) -> None:
    text = " ".join(words)
    got = pages(text, width, size, False, MEASURE)
    for page in got:
        assert MEASURE(page, size, False)[0] <= width
        assert not page.startswith("·") and not page.endswith("·")
    if all(MEASURE(w, size, False)[0] <= width for w in words):
        joined = [w for p in got for w in p.split() if w != "·"]
        assert joined == [w for w in words if w != "·"]


def test_ticker_pages_keep_phrases_together() -> None:
    text = "Open until 8 pm · Free coffee at the till · Click & collect at counter 2"
    got = pages(text, 30 * 0.55 * 20, 20, False, MEASURE)  # 30 characters a page
    assert got == ["Open until 8 pm", "Free coffee at the till", "Click & collect at counter 2"]


# ---- the product photo's crop ------------------------------------------------------------------


@given(
    st.integers(1, 6000),
    st.integers(1, 6000),
    st.floats(1, 4000),
    st.floats(1, 4000),
    st.floats(0, 1),
    st.floats(0, 1),
)
def test_cover_crop_fills_the_box_inside_the_image_around_the_subject(
    iw: int, ih: int, bw: float, bh: float, fx: float, fy: float
) -> None:
    x, y, w, h = cover_crop(iw, ih, bw, bh, (fx, fy))
    eps = 1e-6 * max(iw, ih)
    assert x >= -eps and y >= -eps and x + w <= iw + eps and y + h <= ih + eps
    assert w / h == pytest.approx(bw / bh, rel=1e-6)  # never stretched
    assert x - eps <= fx * iw <= x + w + eps and y - eps <= fy * ih <= y + h + eps
    # As much of the image as the box's shape allows: one side is the image's whole side.
    assert w == pytest.approx(iw) or h == pytest.approx(ih)


def test_cover_crop_centres_the_subject_when_it_can() -> None:
    # A 3:2 photo into a square: the square is as tall as the photo, around the subject.
    assert cover_crop(1200, 800, 400, 400, (0.6, 0.62)) == (320.0, 0.0, 800.0, 800.0)
    assert cover_crop(1200, 800, 400, 400, (0.9, 0.62)) == (400.0, 0.0, 800.0, 800.0)
    assert cover_crop(1200, 800, 400, 400, (0.5, 0.5)) == (200.0, 0.0, 800.0, 800.0)
    assert cover_crop(1200, 800, 400, 400, (0.0, 0.0)) == (0.0, 0.0, 800.0, 800.0)


# ---- the card's layout -----------------------------------------------------------------------


def offer(**kw: object) -> Content:
    base: dict[str, object] = {
        "content_id": "o",
        "title": DE_TITLE,
        "body": DE_BODY,
        "language": "de",
        "price": 89.0,
        "was_price": 119.0,
        "valid_until": date(2026, 12, 24),
        "cta": "Jetzt im Laden anprobieren",
        "badge": "Neu",
        "qr_url": "https://northwind.example/de/angebote/winterstiefel",
    }
    base.update(kw)
    return Content.model_validate(base)


def card_layout(
    c: Content, sw: int, sh: int, *, image: bool, ticker: bool = False, side: bool = False
):
    main = regions(sw, sh, ticker=ticker, side=side).main
    box = inner(main, sw, sh)
    lay = layout_offer(
        box,
        render_card(c),
        MEASURE,
        min_px=legible_min(sw, sh),
        has_image=image,
        has_qr=c.qr_url is not None,
    )
    return box, lay


def check_layout(box: Box, lay, sw: int, sh: int) -> None:
    # Everything inside the card's inner box, hence inside the screen's safe area.
    for b in lay.boxes():
        assert within(b, box), (b, box)
        assert within(b, safe_area(sw, sh))
    # Texts do not run into each other, into the photo or the QR code (a badge's text is on
    # its pill, the price on its tag, the call to action on its pill; the badge on the photo).
    texts = [p.box for p in lay.texts()]
    for a, b in combinations(texts, 2):
        assert not overlap(a, b), (a, b)
    for solid in (lay.qr, lay.image):
        if solid is not None:
            for p in lay.texts():
                if p is not lay.badge_text:
                    assert not overlap(p.box, solid), (p.box, solid)
    for p in lay.texts():
        assert p.fitted.size >= legible_min(sw, sh)
        assert p.fitted.width <= p.box[2] + 1e-6 and p.fitted.height <= p.box[3] + 1e-6


@pytest.mark.parametrize("size", [(960, 540), (540, 960), (1920, 1080), (1080, 1920), (800, 450)])
@pytest.mark.parametrize("lang", ["de", "fr"])
@pytest.mark.parametrize("image", [True, False])
def test_the_longest_german_and_french_copy_fits_without_shortening(
    size: tuple[int, int], lang: str, image: bool
) -> None:
    sw, sh = size
    c = offer() if lang == "de" else offer(title=FR_TITLE, body=FR_BODY, language="fr")
    box, lay = card_layout(c, sw, sh, image=image, ticker=True)
    assert not lay.shortened
    check_layout(box, lay, sw, sh)
    assert (lay.image is not None) == image and (lay.bar is None) == image
    assert lay.price is not None
    assert lay.price.fitted.text.replace("\u00a0", " ") == render_card(c).amount
    # The price is the biggest thing on the card after the title's first impression.
    assert lay.body is not None and lay.price.fitted.size > lay.body.fitted.size
    assert lay.title is not None and lay.title.fitted.size >= 1.2 * lay.body.fitted.size


TEXT = st.lists(WORD, min_size=1, max_size=25).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(
    sw=st.integers(320, 3840),
    sh=st.integers(320, 3840),
    title=TEXT,
    body=st.one_of(st.just(""), TEXT),
    price=st.one_of(st.none(), st.floats(0, 99999)),
    cta=st.one_of(st.just(""), st.sampled_from(["Ask in store", "Jetzt im Laden anprobieren"])),
    badge=st.sampled_from(["", "Neu", "−25 %"]),
    qr=st.booleans(),
    image=st.booleans(),
    ticker=st.booleans(),
    side=st.booleans(),
    lang=st.sampled_from(["en", "de", "fr"]),
)
def test_any_card_on_any_screen_stays_in_the_safe_area_without_collisions(
    sw: int,
    sh: int,
    title: str,
    body: str,
    price: float | None,
    cta: str,
    badge: str,
    qr: bool,
    image: bool,
    ticker: bool,
    side: bool,
    lang: str,
) -> None:
    c = offer(
        title=title,
        body=body,
        price=price,
        was_price=None if price is None else price * 1.3,
        cta=cta,
        badge=badge,
        qr_url="https://example.com/o" if qr else None,
        language=lang,
    )
    box, lay = card_layout(c, sw, sh, image=image, ticker=ticker, side=side)
    check_layout(box, lay, sw, sh)


def test_a_photo_card_with_little_to_say_gives_the_photo_the_room() -> None:
    c = Content(content_id="o", title="Alpenglow boots", body="Warm, dry, made to last.")
    _box, lay = card_layout(c, 540, 960, image=True)
    assert lay.image is not None and lay.image[3] > 0.5 * 960 * 0.92 * 0.9


# ---- the card's words ------------------------------------------------------------------------


def test_the_card_speaks_the_shoppers_language_piece_by_piece() -> None:
    de = render_card(offer())
    assert (de.amount, de.was, de.saving, de.badge) == ("89,00 €", "statt 119,00 €", "−25 %", "Neu")
    assert de.valid == "Gültig bis 24.12.2026" and de.scan == "Scannen für Details"
    fr = render_card(offer(language="fr", badge="", price=149.9, was_price=189.0))
    assert (fr.amount, fr.was, fr.badge) == ("149,90 €", "au lieu de 189,00 €", "−20 %")
    assert fr.scan == "Scannez pour en savoir plus"
    plain = render_card(Content(content_id="o", title="t", price=5.0))
    assert (plain.amount, plain.was, plain.saving, plain.badge, plain.scan) == (
        "€5.00",
        "",
        "",
        "",
        "",
    )
