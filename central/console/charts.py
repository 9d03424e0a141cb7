"""Server-rendered charts as inline SVG: no JavaScript, no plotting library, nothing vendored.
Pure (strings in, a string out); every text is escaped, since campaign ids come from boxes."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0ea5e9", "#84cc16")


@dataclass(frozen=True)
class Series:
    name: str
    values: list[float]


def bar_chart(
    title: str,
    labels: list[str],
    series: list[Series],
    *,
    width: int = 580,
    height: int = 250,
    unit: str = "",
) -> str:
    """Grouped bars: one group per label (a day), one bar per series (a campaign); an axis with
    round ticks, a legend, and a <title> per bar so a hover says the exact figure."""
    left, right, top, bottom = 48, 12, 34, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((v for s in series for v in s.values), default=0.0)
    step = _nice_step(peak / 4 if peak > 0 else 1.0)
    top_value = step * max(1, -(-peak // step))
    out = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text class="chart-title" x="{left}" y="18">{escape(title)}</text>',
    ]
    ticks = int(round(top_value / step))
    for i in range(ticks + 1):
        v = step * i
        y = top + plot_h - plot_h * v / top_value
        out.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>'
        )
    groups = max(1, len(labels))
    group_w = plot_w / groups
    bar_w = max(2.0, min(28.0, group_w * 0.8 / max(1, len(series))))
    for gi, label in enumerate(labels):
        x0 = left + gi * group_w + (group_w - bar_w * len(series)) / 2
        for si, s in enumerate(series):
            v = s.values[gi] if gi < len(s.values) else 0.0
            h = plot_h * v / top_value
            x, y = x0 + si * bar_w, top + plot_h - h
            colour = PALETTE[si % len(PALETTE)]
            out.append(
                f'<rect class="bar" data-series="{escape(s.name)}" data-label="{escape(label)}"'
                f' data-value="{_fmt(v)}" x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}"'
                f' height="{h:.1f}" fill="{colour}"><title>{escape(s.name)}, {escape(label)}:'
                f" {_fmt(v)}{escape(unit)}</title></rect>"
            )
        out.append(
            f'<text class="label" x="{left + gi * group_w + group_w / 2:.1f}"'
            f' y="{top + plot_h + 16}" text-anchor="middle">{escape(label)}</text>'
        )
    lx = left
    for si, s in enumerate(series):
        colour = PALETTE[si % len(PALETTE)]
        out.append(
            f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{colour}"/>'
            f'<text class="legend" x="{lx + 14}" y="{height - 5}">{escape(s.name)}</text>'
        )
        lx += 28 + 7 * len(s.name)
    out.append("</svg>")
    return "".join(out)


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw``: axis ticks people read at a glance."""
    power = 1.0
    while power * 10 <= raw:
        power *= 10
    while power > raw and power > 1e-9:
        power /= 10
    for m in (1, 2, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"
