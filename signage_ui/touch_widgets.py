"""The kiosk panels' flat touch widgets: a solid button and a label that wraps in its box, in
the kiosk's light ink on its blues (finder_view.py, walk_view.py)."""

from __future__ import annotations

from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.utils import get_color_from_hex

INK = "#f1faee"


def button(text: str, colour: str, ink: str = INK, **kw: object) -> Button:
    kw.setdefault("font_size", 24)
    return Button(
        text=text,
        background_normal="",
        background_color=get_color_from_hex(colour),
        color=get_color_from_hex(ink),
        **kw,
    )


def label(text: str = "", **kw: object) -> Label:
    kw.setdefault("halign", "left")
    kw.setdefault("valign", "middle")
    kw.setdefault("color", get_color_from_hex(INK))
    widget = Label(text=text, **kw)
    widget.bind(size=lambda w, v: setattr(w, "text_size", v))
    return widget
