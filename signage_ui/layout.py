"""Where each region of the screen goes (main, ticker, side panel), for any size and either
orientation, and the safe area inside which every text and code is drawn. Pure geometry in
Kivy's convention (origin bottom left)."""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[float, float, float, float]  # x, y, width, height

# Overscan: a TV in "signage mode" may still crop a few percent of each edge. Colour fills
# (backgrounds, bands) run to the edge; text, photos and QR codes stay this far inside.
SAFE_INSET = 0.04


@dataclass(frozen=True)
class Regions:
    main: Box
    ticker: Box | None
    side: Box | None


def safe_area(width: float, height: float, inset: float = SAFE_INSET) -> Box:
    """The screen less ``inset`` of its width on the left and right and of its height at the
    top and bottom, in whole pixels."""
    dx, dy = round(width * inset), round(height * inset)
    return (float(dx), float(dy), float(width - 2 * dx), float(height - 2 * dy))


def intersect(a: Box, b: Box) -> Box:
    """The overlap of two boxes (zero width or height when they do not overlap)."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    return (x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0))


def shrink(box: Box, pad: float) -> Box:
    return (box[0] + pad, box[1] + pad, max(0.0, box[2] - 2 * pad), max(0.0, box[3] - 2 * pad))


def inner(region: Box, width: float, height: float) -> Box:
    """Where a region may draw text and pictures: inside the safe area and a little clear of
    the neighbouring regions, in whole pixels."""
    pad = round(0.02 * min(width, height))
    x, y, w, h = intersect(shrink(region, pad), safe_area(width, height))
    return (float(round(x)), float(round(y)), float(int(w)), float(int(h)))


def ticker_height(width: float, height: float, inset: float = SAFE_INSET) -> float:
    """The ticker band: a line of text plus the bottom overscan margin it sits above."""
    return float(max(28, round(min(width, height) * 0.08)) + round(height * inset))


def regions(width: float, height: float, *, ticker: bool, side: bool) -> Regions:
    """Landscape: the side panel is a column on the right; portrait: a band under the main
    region. The ticker is a band along the bottom, full width, in both."""
    tick_h = ticker_height(width, height) if ticker else 0.0
    top_h = height - tick_h
    ticker_box = (0.0, 0.0, float(width), tick_h) if ticker else None
    if not side:
        return Regions((0.0, tick_h, float(width), top_h), ticker_box, None)
    if width >= height:
        side_w = round(width * 0.28)
        return Regions(
            (0.0, tick_h, float(width - side_w), top_h),
            ticker_box,
            (float(width - side_w), tick_h, float(side_w), top_h),
        )
    side_h = round(top_h * 0.25)
    return Regions(
        (0.0, tick_h + side_h, float(width), top_h - side_h),
        ticker_box,
        (0.0, tick_h, float(width), float(side_h)),
    )
