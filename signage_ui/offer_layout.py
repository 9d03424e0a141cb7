"""The offer card's layout without Kivy: where the photo, the title, the body, the price tag, the
call to action, the fine print and the QR code go, at which font sizes, and which part of the
photo fills its box. ``widgets.OfferCard`` only applies it.

Two shapes, chosen by the card's own aspect: landscape puts the photo on the left and the words
in a column on the right; portrait puts the photo on top and the words below. Without a photo
(a text-led card) an accent rule runs down the left of the words. In the words' column the title
and body read from the top, the price block sits at the bottom (old price, price tag, call to
action, validity), and the QR code takes the bottom right corner with its caption.

Every text is fitted (``fit.fit``) into its box; when the words would not fit at a legible size,
the photo gives up room first. All boxes lie inside ``inner``: the card's share of the screen's
safe area (``layout.inner``). Coordinates are Kivy's (y up), relative to the card.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from signage_ui.fit import NOTHING, Fitted, Measure, fit
from signage_ui.layout import Box
from signage_ui.template import CardText

# Shares of the card the photo tries, largest first; the first with which every text fits
# without shortening wins (the words come first, the photo second).
IMAGE_SHARES = {"landscape": (0.5, 0.42, 0.34, 0.26), "portrait": (0.46, 0.38, 0.3, 0.22)}
TITLE_SHARES = (0.62, 0.5, 0.4, 0.3)
MAX_IMAGE_SHARE = 0.62
# The price block, badge and QR code at full size first, then smaller.
SCALES = (1.0, 0.85, 0.72, 0.6)


def legible_min(screen_w: float, screen_h: float) -> int:
    """The smallest font size the card uses, px: about 3 % of the screen's short side (14 px on
    a 450 px tall window, 35 px on a 1080p screen)."""
    return max(14, round(0.032 * min(screen_w, screen_h)))


def cover_crop(
    img_w: float, img_h: float, box_w: float, box_h: float, focus: tuple[float, float]
) -> Box:
    """The part of an image that fills a box of ``box_w`` x ``box_h`` without stretching
    ("cover"): the largest rectangle of the box's aspect inside the image, centred on the
    focus point (0..1 from the left and from the top) as far as the image allows. Returns
    ``(x, y, w, h)`` in image pixels, y from the top."""
    aspect = box_w / box_h if box_h > 0 else 1.0
    if img_w / img_h > aspect:
        ch, cw = float(img_h), img_h * aspect
    else:
        cw, ch = float(img_w), img_w / aspect
    fx, fy = focus[0] * img_w, focus[1] * img_h
    x = min(max(fx - cw / 2, 0.0), img_w - cw)
    y = min(max(fy - ch / 2, 0.0), img_h - ch)
    return (x, y, cw, ch)


@dataclass(frozen=True)
class Placed:
    """A fitted text and the box its label takes (the lines drawn from its top left)."""

    fitted: Fitted
    box: Box


class CardLayout:
    """What every card's layout answers, whatever its fields (dataclasses of ``Placed`` texts
    and ``Box`` fills): its texts, every box it draws, and whether a text had to be shortened
    (the fit code's own report, which the player logs and the tests read)."""

    def texts(self) -> list[Placed]:
        out = [getattr(self, f.name) for f in fields(self)]  # type: ignore[arg-type]
        return [p for p in out if isinstance(p, Placed)]

    def boxes(self) -> list[Box]:
        """Every drawn box: fills, pills, the QR code and the texts' boxes."""
        out = [getattr(self, f.name) for f in fields(self)]  # type: ignore[arg-type]
        return [b for b in out if isinstance(b, tuple)] + [p.box for p in self.texts()]

    @property
    def shortened(self) -> bool:
        return any(p.fitted.shortened for p in self.texts())


@dataclass(frozen=True)
class QrBlock:
    """A QR code over its caption, both centred on the wider of the two; boxes relative to the
    block's bottom left."""

    qr: Box
    scan: Placed
    width: float
    height: float


def qr_block(
    caption: str,
    q: float,
    gap: float,
    small: int,
    min_px: int,
    measure: Measure,
    *,
    caption_w: float | None = None,
    max_lines: int = 2,
) -> QrBlock:
    """The code, ``q`` px square, with ``caption`` fitted under it (balanced, at most
    ``max_lines``, at most ``small`` px) in ``caption_w`` (default: the code's width and a gap)."""
    scan = fit(
        caption,
        caption_w if caption_w is not None else q + gap,
        (max_lines + 1) * small,
        measure,
        max_size=small,
        min_size=min_px,
        max_lines=max_lines,
        balance=True,
    )
    qr_w = max(q, scan.width)  # a caption wider than the code: both centred on it
    return QrBlock(
        qr=((qr_w - q) / 2, scan.height + gap / 3, q, q),
        scan=Placed(scan, (0.0, 0.0, qr_w, scan.height)),
        width=qr_w,
        height=scan.height + gap / 3 + q,
    )


def pill(
    text: str, width: float, measure: Measure, size: int, min_px: int
) -> tuple[Box, Placed] | None:
    """A bold one-line label on a rounded pill (a badge, a kicker), the pill's bottom left at
    (0, 0): its ends are padding, so the text gets ``width`` less them."""
    if not text:
        return None
    f = _line(text, width - 1.2 * size, measure, size, min_px, bold=True)
    pad = round(0.5 * f.line_h)
    bw, bh = f.width + 2 * pad, f.height + pad * 0.6
    return (0.0, 0.0, bw, bh), Placed(f, (pad, pad * 0.3, f.width, f.height))


@dataclass(frozen=True)
class OfferLayout(CardLayout):
    image: Box | None = None
    bar: Box | None = None  # the accent rule of a text-led card
    badge: Box | None = None  # the badge's pill (accent)
    badge_text: Placed | None = None
    title: Placed | None = None
    body: Placed | None = None
    was: Placed | None = None  # "statt 119,00 €"
    tag: Box | None = None  # the price tag (accent)
    price: Placed | None = None
    cta_pill: Box | None = None
    cta: Placed | None = None
    valid: Placed | None = None
    qr: Box | None = None
    scan: Placed | None = None
    slack: float = 0.0  # column height left empty (a photo card with little to say)


def _line(
    text: str, width: float, measure: Measure, size: int, min_size: int, bold: bool = False
) -> Fitted:
    """One line of text at ``size`` or smaller, never below ``min_size``."""
    if not text:
        return NOTHING
    return fit(
        text, width, 10_000, measure, max_size=size, min_size=min_size, bold=bold, max_lines=1
    )


def layout_offer(
    inner: Box,
    text: CardText,
    measure: Measure,
    *,
    min_px: int,
    has_image: bool,
    has_qr: bool,
) -> OfferLayout:
    """The card's layout in ``inner``: the first layout, from the grandest down, in which no
    text is shortened and the title stands out from the body. The price block and the QR code
    scale down first, then the photo gives up room."""
    x, y, w, h = inner
    shape = "portrait" if h > w * 1.1 else "landscape"
    shares: tuple[float | None, ...] = IMAGE_SHARES[shape] if has_image else (None,)
    fallback: OfferLayout | None = None
    for share in shares:
        for scale in SCALES:
            lay = _layout(inner, text, measure, min_px, share, has_qr, shape, scale)
            if lay.body is not None and _fine(lay) > lay.body.fitted.size:
                # Fine print no larger than the body: again with the fine print at its size.
                cap = lay.body.fitted.size
                lay = _layout(inner, text, measure, min_px, share, has_qr, shape, scale, cap)
            if fallback is None or (fallback.shortened and not lay.shortened):
                fallback = lay
            if _good(lay):
                return _grow_photo(lay, inner, text, measure, min_px, share, has_qr, shape, scale)
    assert fallback is not None
    return fallback


def _grow_photo(
    lay: OfferLayout,
    inner: Box,
    text: CardText,
    measure: Measure,
    min_px: int,
    share: float | None,
    has_qr: bool,
    shape: str,
    scale: float,
) -> OfferLayout:
    """A photo card with little to say: the photo takes most of the empty column, rather than
    leaving a hole between the photo and the words."""
    if share is None or lay.slack <= 0:
        return lay
    length = inner[2] if shape == "landscape" else inner[3]
    grown = min(MAX_IMAGE_SHARE, share + 0.8 * lay.slack / length)
    if grown <= share:
        return lay
    bigger = _layout(inner, text, measure, min_px, grown, has_qr, shape, scale)
    return bigger if _good(bigger) else lay


def _fine(lay: OfferLayout) -> int:
    return max((p.fitted.size for p in (lay.valid, lay.scan) if p is not None), default=0)


def _good(lay: OfferLayout) -> bool:
    """No text shortened, and the hierarchy holds: the title stands out from the body, and
    the fine print (validity, QR caption) is no larger than the body."""
    if lay.shortened:
        return False
    if lay.title is None or lay.body is None:
        return True
    body = lay.body.fitted.size
    return lay.title.fitted.size >= 1.2 * body and _fine(lay) <= 1.1 * body


def _layout(
    inner: Box,
    text: CardText,
    measure: Measure,
    min_px: int,
    share: float | None,
    has_qr: bool,
    shape: str,
    scale: float,
    fine_cap: int | None = None,
) -> OfferLayout:
    x, y, w, h = inner
    gap = float(max(6, round(0.035 * min(w, h))))
    out: dict[str, object] = {}
    image: Box | None = None
    if share is not None and shape == "landscape":
        iw = round(w * share)
        out["image"] = image = (x, y, float(iw), h)
        col = (x + iw + gap, y, w - iw - gap, h)
    elif share is not None:
        ih = round(h * share)
        out["image"] = image = (x, y + h - ih, w, float(ih))
        col = (x, y, w, h - ih - gap)
    else:
        bar_w = float(max(5, round(0.012 * max(w, h))))
        out["bar"] = (x, y, bar_w, h)
        col = (x + bar_w + gap, y, w - bar_w - gap, h)
    cx, cy, cw, ch = col
    # Sizes scale with the column: its height, but no more than its width allows.
    unit = min(ch, cw * 1.2)
    small = max(min_px, round(0.045 * unit * scale))
    if fine_cap is not None:
        small = max(min_px, min(small, fine_cap))

    def sized(share_of_unit: float) -> int:
        return max(min_px, round(share_of_unit * unit * scale))

    # ---- bottom right: the QR code over its caption ----
    qr_w = 0.0
    bottom_h = 0.0
    if has_qr:
        q = float(round(max(min(0.42 * ch, 0.36 * cw) * scale, min(0.3 * ch, 0.3 * cw))))
        code = qr_block(text.scan, q, gap, small, min_px, measure)
        at_x = cx + cw - code.width
        out["qr"] = shifted(code.qr, at_x, cy)
        out["scan"] = shifted(code.scan, at_x, cy)
        bottom_h = code.height
        qr_w = code.width + gap
    left_w = cw - qr_w

    # ---- bottom left, from the bottom up: validity, call to action, price tag, old price ----
    at = cy
    if text.valid:
        valid = fit(
            text.valid, left_w, 3 * small, measure, max_size=small, min_size=min_px, max_lines=2
        )
        out["valid"] = Placed(valid, (cx, at, left_w, valid.height))
        at += valid.height + gap / 2
    if text.cta:
        pad = round(0.6 * small)
        cta = _line(text.cta, left_w - 2 * pad, measure, sized(0.065), min_px, bold=True)
        if cta.shortened:  # a long call to action wraps instead of being cut
            cta = fit(
                text.cta,
                left_w - 2 * pad,
                2 * cta.line_h,
                measure,
                max_size=cta.size,
                min_size=min_px,
                bold=True,
                max_lines=2,
            )
        pill_h = cta.height + pad
        out["cta_pill"] = (cx, at, cta.width + 2 * pad, pill_h)
        out["cta"] = Placed(cta, (cx + pad, at + pad / 2, cta.width, cta.height))
        at += pill_h + gap / 2
    if text.amount:
        pad = round(0.25 * small)
        price = _line(text.amount, left_w - 2 * pad, measure, sized(0.19), min_px, bold=True)
        out["tag"] = (cx, at, price.width + 2 * pad, price.height + pad)
        out["price"] = Placed(price, (cx + pad, at + pad / 2, price.width, price.height))
        at += price.height + pad + gap / 4
        if text.was:
            was = _line(text.was, left_w, measure, max(min_px, round(price.size * 0.4)), min_px)
            out["was"] = Placed(was, (cx, at, left_w, was.height))
            at += was.height
    bottom_h = max(bottom_h, at - cy)

    # ---- top: badge (a text-led card's; a photo carries its own), title, body ----
    top = cy + ch
    room_top = ch - bottom_h - (gap if bottom_h else 0)
    if text.badge:
        size = max(min_px, round(0.07 * min(w, h) * scale))
        made = pill(text.badge, (image[2] if image else cw) * 0.7, measure, size, min_px)
        assert made is not None
        pill_box, badge_text = made
        bh = pill_box[3]
        if image is not None:
            bx, by = image[0] + gap / 2, image[1] + image[3] - gap / 2 - bh
        else:
            bx, by = cx, top - bh
            room_top -= bh + gap / 2
            top = by - gap / 2
        out["badge"] = shifted(pill_box, bx, by)
        out["badge_text"] = shifted(badge_text, bx, by)
    title_max = sized(0.16)
    title, body = NOTHING, NOTHING
    for share_t in TITLE_SHARES:
        title = fit(
            text.title,
            cw,
            room_top * share_t,
            measure,
            max_size=title_max,
            min_size=min_px,
            bold=True,
            balance=True,
        )
        rest = room_top - title.height - (gap / 2 if title.lines else 0)
        body_cap = max(min_px, min(sized(0.09), round(title.size * 0.6)))
        body = fit(text.body, cw, rest, measure, max_size=body_cap, min_size=min_px, balance=True)
        if not body.shortened:
            break
    block = title.height + (gap / 2 + body.height if body.lines else 0)
    title_y = top - title.height
    out["title"] = Placed(title, (cx, title_y, cw, title.height))
    if body.lines:
        out["body"] = Placed(body, (cx, title_y - gap / 2 - body.height, cw, body.height))
    free = room_top - block
    if free > 0:
        # Little to say: the words and the price block close up in the middle of the column
        # (a poster, not a form with a hole in it).
        if not bottom_h:
            out["slack"] = free
        for key in ("badge", "badge_text", "title", "body"):
            if key != "badge" and key != "badge_text" or image is None:
                out[key] = _moved(out.get(key), -free / 2)
        for key in ("qr", "scan", "valid", "cta_pill", "cta", "tag", "price", "was"):
            out[key] = _moved(out.get(key), free / 2)
        if "bar" in out:  # the accent rule spans the words, not the empty ends
            out["bar"] = (x, y + free / 2, float(out["bar"][2]), h - free)  # type: ignore[index]
    return OfferLayout(**out)  # type: ignore[arg-type]


def shifted(item: Any, dx: float, dy: float) -> Any:
    """A box or a placed text moved by (dx, dy); anything else as it is."""
    if isinstance(item, Placed):
        x, y, w, h = item.box
        return Placed(item.fitted, (x + dx, y + dy, w, h))
    if isinstance(item, tuple):
        return (item[0] + dx, item[1] + dy, item[2], item[3])
    return item


def _moved(item: object, dy: float) -> object:
    return shifted(item, 0.0, dy)
