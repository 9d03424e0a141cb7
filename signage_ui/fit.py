"""Text that fits its box, without Kivy: words wrapped into lines and the largest font size at
which every line fits the width and all lines fit the height.

The player measures with Kivy's text provider (``widgets.kivy_measure``); tests measure with a
fake of fixed proportions. The lines come back explicit (joined with newlines), so the label
draws exactly the lines that were measured: no second wrap by the label, no surprise.

Never cut: a text is shrunk down to the minimum legible size before anything else; only a text
that does not fit even then (longer than any campaign allows) loses its last words, visibly,
with an ellipsis, and says so (``shortened``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# Width and line height in pixels of one line of text at a font size, bold or not.
Measure = Callable[[str, int, bool], tuple[float, float]]

ELLIPSIS = "\u2026"
NBSP = "\u00a0"
# Where a line must not break: inside French guillemets and before its high punctuation, and
# between a number and its unit or percent sign ("−25 %", "36 bis 47" may break, "20 h" not).
_NO_BREAK = [
    (re.compile(r"([«‹]) "), "\\1" + NBSP),
    (re.compile(r" ([»›:;!?%€])"), NBSP + "\\1"),
    (re.compile(r"(\d) (h|cm|mm|kg|g|l|ml|m)\b"), "\\1" + NBSP + "\\2"),
]


def words_of(text: str) -> list[str]:
    """The words of a line, split at ordinary spaces only (a no-break space joins)."""
    for pattern, repl in _NO_BREAK:
        text = pattern.sub(repl, text)
    return [w for w in re.split(r"[ \t\r\f\v]+", text) if w]


@dataclass(frozen=True)
class Fitted:
    lines: tuple[str, ...]
    size: int  # font size in px
    line_h: float  # px per line
    width: float  # the widest line, px
    shortened: bool = False

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def height(self) -> float:
        return len(self.lines) * self.line_h

    @property
    def empty(self) -> bool:
        return not self.lines


NOTHING = Fitted((), 0, 0.0, 0.0)


def wrap(text: str, width: float, size: int, bold: bool, measure: Measure) -> list[str] | None:
    """Greedy word wrap at ``width``; paragraphs (newlines) kept. None when a single word is
    wider than the box (shrink instead of breaking a word)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        words = words_of(paragraph)
        line = ""
        for word in words:
            candidate = f"{line} {word}" if line else word
            if measure(candidate, size, bold)[0] <= width:
                line = candidate
                continue
            if not line or measure(word, size, bold)[0] > width:
                return None
            lines.append(line)
            line = word
        if line:
            lines.append(line)
    return lines


def _fits(
    text: str, width: float, height: float, size: int, bold: bool, measure: Measure, max_lines: int
) -> Fitted | None:
    lines = wrap(text, width, size, bold, measure)
    if lines is None or len(lines) > max_lines:
        return None
    line_h = measure("Ág", size, bold)[1]
    if len(lines) * line_h > height:
        return None
    widest = max((measure(x, size, bold)[0] for x in lines), default=0.0)
    return Fitted(tuple(lines), size, line_h, widest)


def fit(
    text: str,
    width: float,
    height: float,
    measure: Measure,
    *,
    max_size: int,
    min_size: int,
    bold: bool = False,
    max_lines: int = 1000,
    balance: bool = False,
) -> Fitted:
    """The largest size in ``min_size..max_size`` at which ``text`` fits ``width`` x ``height``
    (binary search: fewer and fewer lines fit as the size grows). At ``min_size`` and still too
    long: as many whole lines as fit, the last ending in an ellipsis (``shortened``).
    ``balance``: two or three lines of even length (the narrowest width that needs no more
    lines), so a heading or a caption does not leave one word alone on its last line."""
    if not text.strip():
        return NOTHING
    max_size = max(min_size, max_size)
    best = _fits(text, width, height, min_size, bold, measure, max_lines)
    if best is None:
        return _shorten(text, width, height, min_size, bold, measure, max_lines)
    lo, hi = min_size, max_size
    while lo < hi:
        mid = (lo + hi + 1) // 2
        got = _fits(text, width, height, mid, bold, measure, max_lines)
        if got is not None:
            best, lo = got, mid
        else:
            hi = mid - 1
    return _balanced(text, best, bold, measure) if balance else best


def _balanced(text: str, f: Fitted, bold: bool, measure: Measure) -> Fitted:
    n = len(f.lines)
    if not 2 <= n <= 3:  # a paragraph reads better ragged at full width
        return f
    lo, hi = 1.0, f.width
    best = f
    for _ in range(12):
        mid = (lo + hi) / 2
        lines = wrap(text, mid, f.size, bold, measure)
        if lines is not None and len(lines) <= n:
            widest = max(measure(x, f.size, bold)[0] for x in lines)
            best, hi = Fitted(tuple(lines), f.size, f.line_h, widest), mid
        else:
            lo = mid
    return best


def _break_word(word: str, width: float, size: int, bold: bool, measure: Measure) -> list[str]:
    """A word wider than the box, in pieces that fit (only for texts already beyond rescue)."""
    pieces: list[str] = []
    piece = ""
    for ch in word:
        if piece and measure(piece + ch, size, bold)[0] > width:
            pieces.append(piece)
            piece = ch
        else:
            piece += ch
    if piece:
        pieces.append(piece)
    return pieces


def _shorten(
    text: str, width: float, height: float, size: int, bold: bool, measure: Measure, max_lines: int
) -> Fitted:
    line_h = measure("Ág", size, bold)[1]
    room = min(max_lines, int(height // line_h)) if line_h > 0 else 0
    if room < 1:
        return Fitted((), size, line_h, 0.0, shortened=True)
    words: list[str] = []
    for word in words_of(text):
        if measure(word, size, bold)[0] > width:
            words += _break_word(word, width, size, bold, measure)
        else:
            words.append(word)
    lines = wrap(" ".join(words), width, size, bold, measure) or []
    kept = lines[:room]
    last = kept[-1] if kept else ""
    # The ellipsis replaces the last words until the line fits again.
    while last and measure(last + ELLIPSIS, size, bold)[0] > width:
        last = last.rsplit(" ", 1)[0] if " " in last else last[:-1]
    kept[-1:] = [last + ELLIPSIS] if kept else []
    widest = max((measure(x, size, bold)[0] for x in kept), default=0.0)
    return Fitted(tuple(kept), size, line_h, widest, shortened=True)


SEPARATORS = ("·", "•", "|", "+++")


def pages(text: str, width: float, size: int, bold: bool, measure: Measure) -> list[str]:
    """A ticker's text as one-line pages of whole words, each fitting ``width`` at ``size``.
    Phrases between separators (" · ") stay together when they fit a page, and no page starts
    or ends with a separator. A word too wide alone is broken (only for texts beyond any
    campaign's bounds)."""
    phrases: list[str] = []
    current: list[str] = []
    for token in text.split() + [SEPARATORS[0]]:
        if token in SEPARATORS:
            if current:
                phrases.append(" ".join(current))
            current = []
        else:
            current.append(token)
    out: list[str] = []
    for phrase in phrases:
        if out and measure(f"{out[-1]} · {phrase}", size, bold)[0] <= width:
            out[-1] = f"{out[-1]} · {phrase}"
            continue
        words: list[str] = []
        for word in words_of(phrase):
            if measure(word, size, bold)[0] > width:
                words += _break_word(word, width, size, bold, measure)
            else:
                words.append(word)
        out += wrap(" ".join(words), width, size, bold, measure) or []
    return out


def proportional(char_w: float = 0.55, line: float = 1.2) -> Measure:
    """A stand-in measure for tests and tools: every character ``char_w`` of the size wide (bold
    10 % wider), lines ``line`` times the size apart."""

    def measure(text: str, size: int, bold: bool) -> tuple[float, float]:
        return len(text) * size * char_w * (1.1 if bold else 1.0), size * line

    return measure
