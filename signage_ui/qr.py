"""QR codes without Kivy: a link's module matrix (segno, pure Python) and that matrix as
rectangles in a y-up box, which ``qr_view.QrCode`` draws. Shared by the kiosk's finder (the way
on the shopper's phone) and the player's offer cards (``Content.qr_url``).

Drawn as rectangles, not as an image: no file is written and nothing is cached on disk.
"""

from __future__ import annotations

from functools import lru_cache

import segno

Rect = tuple[float, float, float, float]


@lru_cache(maxsize=64)
def matrix(link: str) -> list[list[bool]]:
    """The QR code of ``link`` (error correction M), modules as rows, top row first, without
    the quiet zone. The caller checks that the link is one it may show. Remembered per link
    (segno spends ~6 ms choosing the best mask): the player works it out on the bus thread as
    a command arrives, so drawing the card finds it ready. Callers must not change it."""
    qr = segno.make(link, error="m", micro=False)
    return [[bool(v) for v in row] for row in qr.matrix]


def qr_rects(matrix: list[list[bool]], box: Rect, quiet: int = 4) -> tuple[Rect, list[Rect]]:
    """The light square (quiet zone included) and the dark runs, in a y-up box (Kivy): whole
    pixels per module, or scanners see blurred edges; runs of a row merged into one rectangle."""
    bx, by, bw, bh = box
    n = len(matrix)
    module = max(1, int(min(bw, bh) // (n + 2 * quiet)))
    side = module * (n + 2 * quiet)
    x0 = round(bx + (bw - side) / 2)
    y0 = round(by + (bh - side) / 2)
    dark: list[Rect] = []
    for r, row in enumerate(matrix):
        y = y0 + side - (quiet + r + 1) * module
        c = 0
        while c < n:
            if row[c]:
                start = c
                while c < n and row[c]:
                    c += 1
                dark.append((x0 + (quiet + start) * module, y, (c - start) * module, module))
            else:
                c += 1
    return (x0, y0, side, side), dark
