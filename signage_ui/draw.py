"""What every card's widgets share: text measured as Kivy draws it, in the brand's typeface when
a theme brings one; labels that show exactly the lines the fit code chose; boxes as canvas
rectangles. The offer card, the message cards, the wayfinding card, the ticker and the side
panel all draw through these, so a pushed font reaches every word on the screen and every
measure matches what is drawn.
"""

from __future__ import annotations

import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from kivy.core.text import Label as CoreLabel
from kivy.core.text import LabelBase
from kivy.graphics import Rectangle, RoundedRectangle
from kivy.uix.label import Label

from signage_ui.layout import Box
from signage_ui.offer_layout import Placed

DEFAULT_FONT = "Roboto"  # Kivy's bundled font
_font = [DEFAULT_FONT]


def font_name() -> str:
    """The typeface cards draw in now (Kivy's registered name)."""
    return _font[0]


def use_font(name: str | None) -> None:
    """Draw every card in ``name`` from now on (None: Kivy's default)."""
    _font[0] = name or DEFAULT_FONT


def register_font(regular: Path, bold: Path | None, key: str) -> str:
    """A brand font file registered with Kivy under a name of its own (``key``: its sha256,
    so a new file is a new name and no label keeps drawing with a stale cached face)."""
    name = f"brand-{key[:16]}"
    LabelBase.register(
        name=name,
        fn_regular=str(_as_font_file(regular)),
        fn_bold=str(_as_font_file(bold or regular)),
    )
    return name


_FONT_DIR: list[tempfile.TemporaryDirectory[str]] = []


def _as_font_file(path: Path) -> Path:
    """A copy of a cache file named ``<sha256>.ttf``: Kivy's SDL2 text provider opens only font
    files with a font's extension, and the cache names files by hash alone. A directory of the
    player's own (it may not write the agent's content cache), removed when it exits."""
    if not _FONT_DIR:
        _FONT_DIR.append(tempfile.TemporaryDirectory(prefix="signage-fonts-"))
    target = Path(_FONT_DIR[0].name) / f"{path.name}.ttf"
    if not target.exists():
        shutil.copyfile(path, target)
    return target


def kivy_measure(text: str, size: int, bold: bool) -> tuple[float, float]:
    """Width and line height of one line, px, as Kivy's text provider draws it in the current
    typeface (``fit.Measure``)."""
    return _measure(_font[0], text, size, bold)


@lru_cache(maxsize=8192)
def _measure(font: str, text: str, size: int, bold: bool) -> tuple[float, float]:
    return _measurer(font, size, bold).get_extents(text)  # type: ignore[no-any-return]


@lru_cache(maxsize=256)
def _measurer(font: str, size: int, bold: bool) -> CoreLabel:
    return CoreLabel(font_name=font, font_size=size, bold=bold)


def label(**kwargs: object) -> Label:
    # size_hint None: we place labels ourselves, at the size of the lines fitted for them.
    return Label(size_hint=(None, None), halign="left", **kwargs)


def put(
    lab: Label, placed: Placed | None, origin: tuple[float, float], centre: bool = False
) -> None:
    """A label showing exactly the fitted lines, its top left at the placed box's top left
    (``centre``: each line centred in the box's width)."""
    if placed is None or placed.fitted.empty:
        lab.text = ""
        lab.opacity = 0
        return
    f = placed.fitted
    lab.opacity = 1
    lab.font_name = font_name()
    lab.font_size = f.size
    lab.text = f.text
    x, y, w, h = placed.box
    lab.halign = "center" if centre else "left"
    lab.text_size = (w, None) if centre else (None, None)
    lab.texture_update()
    lab.size = lab.texture_size
    lab.pos = (origin[0] + x, origin[1] + y + h - lab.height)


def rect(instr: Rectangle | RoundedRectangle, box: Box | None, origin: tuple[float, float]) -> None:
    if box is None:
        instr.size = (0, 0)
        return
    instr.pos = (origin[0] + box[0], origin[1] + box[1])
    instr.size = (box[2], box[3])
