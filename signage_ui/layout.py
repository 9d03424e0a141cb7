"""Where each region of the screen goes (main, ticker, side panel), for any size and either
orientation. Pure geometry in Kivy's convention (origin bottom left)."""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[float, float, float, float]  # x, y, width, height


@dataclass(frozen=True)
class Regions:
    main: Box
    ticker: Box | None
    side: Box | None


def regions(width: float, height: float, *, ticker: bool, side: bool) -> Regions:
    """Landscape: the side panel is a column on the right; portrait: a band under the main
    region. The ticker is a band along the bottom, full width, in both."""
    tick_h = max(28.0, round(height * 0.08)) if ticker else 0.0
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
