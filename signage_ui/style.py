"""Colour rules for offer cards, without Kivy, so they can be tested alone.

The agent picks a card's background freely (campaign colours), so the player picks the text
colour: whichever of light or dark text reads better on that background (WCAG contrast ratio).
"""

from __future__ import annotations

# Pure white and pure black: with both available, one of them always reaches 4.5:1 (the WCAG AA
# bar for body text), whatever the background; any softer pair misses it on mid greys.
LIGHT_TEXT = "#ffffff"
DARK_TEXT = "#000000"


def rgb(hex_colour: str) -> tuple[float, float, float]:
    """``"#RRGGBB"`` as three floats in 0..1."""
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255


def relative_luminance(hex_colour: str) -> float:
    """WCAG 2.x relative luminance of an sRGB colour (0 = black, 1 = white)."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb(hex_colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: str, b: str) -> float:
    """WCAG contrast ratio between two colours, 1..21 (4.5 is the bar for body text)."""
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_colour_for(background: str) -> str:
    """Light or dark text, whichever contrasts more with ``background``."""
    light = contrast_ratio(LIGHT_TEXT, background)
    dark = contrast_ratio(DARK_TEXT, background)
    return LIGHT_TEXT if light >= dark else DARK_TEXT


def mix(a: str, b: str, share_b: float) -> str:
    """``a`` with ``share_b`` of ``b`` blended in, as ``"#rrggbb"`` (side panels: a tint of the
    accent on the card's background, so panel and ticker read as separate regions)."""
    ca, cb = rgb(a), rgb(b)
    return "#" + "".join(
        f"{round((x + (y - x) * share_b) * 255):02x}" for x, y in zip(ca, cb, strict=True)
    )


def side_tint(background: str, accent: str) -> str:
    """The side panel's colour: on a light card a tint of the accent (30 %), which reads as the
    campaign's; on a dark card a lighter shade of the card itself, since a light accent mixed
    into a dark colour turns muddy (yellow into navy: olive)."""
    if relative_luminance(background) >= 0.4:
        return mix(background, accent, 0.3)
    return mix(background, "#ffffff", 0.12)


# The wayfinding map's calm, fixed palette: a paper-like plan (light floor, warm grey fixtures)
# that reads on any campaign background; only the route takes the campaign's accent.
MAP_PALETTE: dict[str, str] = {
    "floor": "#f4f1ea",
    "room": "#d9d5cc",
    "connector": "#d3dde4",
    "shelf": "#bdb6a8",
    "counter": "#a9b7c3",
    "outline": "#7d776c",
    "here": "#1d3557",
    "mark_dot": "#ffffff",
    "text": "#1d3557",
}


def route_casing(accent: str) -> str:
    """The dark edge under the route line: the accent darkened, so a pale accent (a yellow) still
    stands out on the light floor."""
    return mix(accent, "#000000", 0.6)
