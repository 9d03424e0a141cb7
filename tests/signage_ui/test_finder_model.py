"""The kiosk finder's rules without Kivy (signage_ui/finder_model.py): stock lines, stale replies,
the QR code's rectangles (decoded back with OpenCV from a rendering of exactly those rectangles)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from contracts.kiosk_finder import FinderInputError, FoundReply, FoundStock
from signage_ui import finder_model as fm
from tests.contracts.test_kiosk_finder import LINK


def test_stock_lines() -> None:
    assert fm.stock_text(FoundStock(available=True, quantity=7), "en") == "7 in stock"
    assert fm.stock_text(FoundStock(available=True, quantity=7), "de") == "7 auf Lager"
    assert fm.stock_text(FoundStock(available=True), "en") == "In stock"
    assert fm.stock_text(FoundStock(available=False, quantity=0), "de") == "Nicht auf Lager"
    assert fm.stock_text(FoundStock(available=True, quantity=0), "en") == "Out of stock"
    assert fm.stock_text(None, "en") == ""


def test_only_the_latest_search_is_answered() -> None:
    st = fm.FinderState("kiosk-1")
    first = st.request("ridge")
    second = st.request("ridge gtx")
    assert not st.accept(FoundReply(request_id=first.request_id, results=()))
    assert st.accept(FoundReply(request_id=second.request_id, results=()))
    assert st.pending is None
    with pytest.raises(ValueError):
        st.request("x" * 200)


def test_the_qr_rectangles_decode_to_the_link() -> None:
    url = LINK.url()
    matrix = fm.qr_matrix(url)
    square, dark = fm.qr_rects(matrix, (10, 20, 300, 260))
    x0, y0, side, _ = square
    assert side <= 260 and side % (len(matrix) + 8) == 0  # whole pixels per module
    img = np.full((300, 340), 128, np.uint8)
    h = img.shape[0]
    img[h - (y0 + side) : h - y0, x0 : x0 + side] = 255
    for x, y, w, hh in dark:  # y-up rectangles into image rows
        img[h - int(y + hh) : h - int(y), int(x) : int(x + w)] = 0
    assert cv2.QRCodeDetector().detectAndDecode(img)[0] == url


def test_no_qr_for_a_link_of_another_format() -> None:
    with pytest.raises(FinderInputError):
        fm.qr_matrix("https://evil.example/phish")
