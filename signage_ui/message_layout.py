"""The message cards' layout without Kivy: a personal welcome, an order ready for pickup, a
survey's call to action, an emergency. ``widgets.CardView`` draws it as it draws an offer card.

One shape for all four, as a poster: a kicker on an accent pill ("Abholbereit", "Achtung"), the
headline, a tag in the accent (an order's pickup number, with its label above it), the body and
a call-to-action pill, stacked and centred in their column. A photo (a welcome's) takes the left
of a landscape card or the top of a portrait one; a QR code (a survey's, an order's way on the
phone) the right or the bottom, its caption under it. An emergency centres every line between
two accent rules. Every text is fitted (``fit.fit``) with the offer card's pieces (its QR block,
its pills, its sizes); when the words need the room, the tag, pills and code scale down first,
then the photo gives up room. Coordinates are Kivy's (y up), relative to the card, inside
``inner`` (the card's share of the screen's safe area).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from signage_ui.fit import NOTHING, Fitted, Measure, fit
from signage_ui.layout import Box
from signage_ui.offer_layout import (
    SCALES,
    TITLE_SHARES,
    CardLayout,
    Placed,
    _line,
    pill,
    qr_block,
    shifted,
)
from signage_ui.template import MessageText

IMAGE_SHARES = {"landscape": (0.44, 0.36, 0.28), "portrait": (0.4, 0.32, 0.24)}


@dataclass(frozen=True)
class MessageLayout(CardLayout):
    image: Box | None = None
    rule_top: Box | None = None  # an emergency's accent rules, above and below the words
    rule_bottom: Box | None = None
    kicker_pill: Box | None = None
    kicker: Placed | None = None
    title: Placed | None = None
    tag_label: Placed | None = None
    tag: Box | None = None
    tag_text: Placed | None = None
    body: Placed | None = None
    cta_pill: Box | None = None
    cta: Placed | None = None
    qr: Box | None = None
    scan: Placed | None = None
    centred: bool = False


def layout_message(
    inner: Box,
    text: MessageText,
    measure: Measure,
    *,
    min_px: int,
    has_image: bool,
    has_qr: bool,
) -> MessageLayout:
    """The first layout, from the grandest down, in which no text is shortened and the
    headline stands out from the body; else the least shortened one."""
    x, y, w, h = inner
    shape = "portrait" if h > w * 1.1 else "landscape"
    shares: tuple[float | None, ...] = IMAGE_SHARES[shape] if has_image else (None,)
    fallback: MessageLayout | None = None
    for share in shares:
        for scale in SCALES:
            lay = _layout(inner, text, measure, min_px, share, has_qr, shape, scale)
            if fallback is None or (fallback.shortened and not lay.shortened):
                fallback = lay
            if _good(lay):
                return lay
    assert fallback is not None
    return fallback


def _good(lay: MessageLayout) -> bool:
    if lay.shortened:
        return False
    if lay.title is None or lay.body is None:
        return True
    return lay.title.fitted.size >= 1.2 * lay.body.fitted.size


def _layout(
    inner: Box,
    text: MessageText,
    measure: Measure,
    min_px: int,
    share: float | None,
    has_qr: bool,
    shape: str,
    scale: float,
) -> MessageLayout:
    x, y, w, h = inner
    gap = float(max(6, round(0.035 * min(w, h))))
    out: dict[str, object] = {"centred": text.centred}
    # ---- the photo: left in landscape, on top in portrait ----
    col: Box = inner
    if share is not None and shape == "landscape":
        iw = float(round(w * share))
        out["image"] = (x, y, iw, h)
        col = (x + iw + gap, y, w - iw - gap, h)
    elif share is not None:
        ih = float(round(h * share))
        out["image"] = (x, y + h - ih, w, ih)
        col = (x, y, w, h - ih - gap)
    if text.centred:
        # An emergency: accent rules frame the words, so the card reads as a warning at a glance.
        t = float(max(4, round(0.018 * min(w, h))))
        cx, cy, cw, ch = col
        out["rule_top"] = (cx, cy + ch - t, cw, t)
        out["rule_bottom"] = (cx, cy, cw, t)
        col = (cx, cy + t + gap, cw, ch - 2 * (t + gap))
    cx, cy, cw, ch = col
    unit = min(ch, cw * 1.2)
    small = max(min_px, round(0.045 * unit * scale))

    def sized(share_of_unit: float) -> int:
        return max(min_px, round(share_of_unit * unit * scale))

    # ---- the QR code: right of the words in landscape, under them in portrait ----
    words: Box = col
    if has_qr:
        if shape == "landscape":
            q = float(round(min(0.34 * cw, 0.55 * ch) * max(scale, 0.72)))
            # A caption as wide as its longest line needs at the smallest size (a survey's link
            # is one long word), up to 0.6 of the column; the photo gives way otherwise.
            need = max(
                (measure(line, min_px, False)[0] for line in text.scan.split("\n")), default=0
            )
            block = qr_block(
                text.scan, q, gap, small, min_px, measure,
                caption_w=min(0.6 * cw, max(1.4 * q, need + 2)), max_lines=3,
            )  # fmt: skip
            bx, by = cx + cw - block.width, cy + (ch - block.height) / 2
            words = (cx, cy, cw - block.width - 1.5 * gap, ch)
        else:
            q = float(round(min(0.5 * cw, 0.3 * ch) * max(scale, 0.72)))
            block = qr_block(text.scan, q, gap, small, min_px, measure, caption_w=cw, max_lines=3)
            bx, by = cx + (cw - block.width) / 2, cy
            words = (cx, cy + block.height + gap, cw, ch - block.height - gap)
        out["qr"] = shifted(block.qr, bx, by)
        out["scan"] = shifted(block.scan, bx, by)
    _words(out, words, text, measure, min_px, sized, small, gap, scale)
    return MessageLayout(**out)  # type: ignore[arg-type]


def _words(
    out: dict[str, object],
    box: Box,
    text: MessageText,
    measure: Measure,
    min_px: int,
    sized: Callable[[float], int],
    small: int,
    gap: float,
    scale: float,
) -> None:
    """Kicker, headline, tag, body and call to action, top down, centred in ``box``."""
    wx, wy, ww, wh = box
    unit = min(wh, ww * 1.2)
    # Fixed-height pieces first (one line each, shrunk to the width): what is left is the
    # headline's and the body's.
    kicker = pill(text.kicker, ww * 0.9, measure, max(min_px, round(0.06 * unit * scale)), min_px)
    tag_label = (
        _line(text.tag_label, ww, measure, small, min_px)
        if text.tag_label and text.tag
        else NOTHING
    )
    tag: tuple[Box, Placed] | None = None
    if text.tag:
        pad = round(0.25 * small)
        f = _line(text.tag, ww - 2 * pad, measure, sized(0.17), min_px, bold=True)
        tag = (
            (0.0, 0.0, f.width + 2 * pad, f.height + pad),
            Placed(f, (pad, pad / 2, f.width, f.height)),
        )
    cta: tuple[Box, Placed] | None = None
    if text.cta:
        pad = round(0.6 * small)
        f = _line(text.cta, ww - 2 * pad, measure, sized(0.065), min_px, bold=True)
        if f.shortened:  # a long call to action wraps instead of being cut
            f = fit(
                text.cta, ww - 2 * pad, 2 * f.line_h, measure,
                max_size=f.size, min_size=min_px, bold=True, max_lines=2,
            )  # fmt: skip
        cta = (
            (0.0, 0.0, f.width + 2 * pad, f.height + pad),
            Placed(f, (pad, pad / 2, f.width, f.height)),
        )
    fixed = 0.0
    if kicker is not None:
        fixed += kicker[0][3] + gap
    if tag is not None:
        fixed += tag_label.height + tag[0][3] + gap
    if cta is not None:
        fixed += cta[0][3] + gap
    room = wh - fixed
    title_max = sized(0.2 if text.centred else 0.16)
    title: Fitted = NOTHING
    body: Fitted = NOTHING
    for share_t in TITLE_SHARES:
        title = fit(
            text.title, ww, room * share_t, measure,
            max_size=title_max, min_size=min_px, bold=True, balance=True,
        )  # fmt: skip
        rest = room - title.height - (gap / 2 if title.lines and text.body else 0)
        body_cap = max(min_px, min(sized(0.09), round(title.size * 0.6)))
        body = fit(text.body, ww, rest, measure, max_size=body_cap, min_size=min_px, balance=True)
        if not body.shortened:
            break
    used = fixed + title.height + (gap / 2 + body.height if body.lines else 0)
    top = wy + wh - max(0.0, wh - used) / 2  # the block centred in its box: a poster

    def across(width: float) -> float:
        return wx + (ww - width) / 2 if text.centred else wx

    if kicker is not None:
        box_k, placed_k = kicker
        top -= box_k[3]
        out["kicker_pill"] = shifted(box_k, across(box_k[2]), top)
        out["kicker"] = shifted(placed_k, across(box_k[2]), top)
        top -= gap
    top -= title.height
    out["title"] = Placed(title, (wx, top, ww, title.height))
    if tag is not None:
        top -= gap
        if tag_label.lines:
            top -= tag_label.height
            out["tag_label"] = Placed(tag_label, (wx, top, ww, tag_label.height))
        box_t, placed_t = tag
        top -= box_t[3]
        out["tag"] = shifted(box_t, across(box_t[2]), top)
        out["tag_text"] = shifted(placed_t, across(box_t[2]), top)
    if body.lines:
        top -= gap / 2 + body.height
        out["body"] = Placed(body, (wx, top, ww, body.height))
    if cta is not None:
        box_c, placed_c = cta
        top -= gap + box_c[3]
        out["cta_pill"] = shifted(box_c, across(box_c[2]), top)
        out["cta"] = shifted(placed_c, across(box_c[2]), top)
