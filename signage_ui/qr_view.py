"""The QR code widget (Kivy): ``qr.qr_rects`` drawn on a white square. The kiosk's finder and
the player's offer cards use the same one."""

from __future__ import annotations

from kivy.graphics import Color, Rectangle
from kivy.uix.widget import Widget

from signage_ui.qr import Rect, qr_rects


class QrCode(Widget):
    """A QR code drawn as rectangles on a white square, redrawn when it moves or resizes."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)
        self.matrix: list[list[bool]] = []
        self.square: Rect | None = None
        self.bind(pos=lambda *_: self.draw(), size=lambda *_: self.draw())

    def show(self, matrix: list[list[bool]]) -> None:
        self.matrix = matrix
        self.draw()

    def draw(self) -> None:
        self.canvas.clear()
        if not self.matrix:
            self.square = None
            return
        square, dark = qr_rects(self.matrix, (*self.pos, *self.size))
        self.square = square
        with self.canvas:
            Color(1, 1, 1, 1)
            Rectangle(pos=square[:2], size=square[2:])
            Color(0, 0, 0, 1)
            for x, y, w, h in dark:
                Rectangle(pos=(x, y), size=(w, h))
