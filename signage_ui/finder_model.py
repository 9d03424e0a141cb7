"""The kiosk's product finder without Kivy: the words in English and German, stock lines, which
reply belongs to which search, and the QR code as rectangles. ``finder_view.py`` draws it.

The QR code's matrix comes from segno (pure Python, no dependencies); the kiosk draws it as
Kivy rectangles, so no image file is written and nothing is cached on the kiosk's disk.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from contracts.kiosk_finder import (
    DEFAULT_LIMIT,
    FindRequest,
    FoundReply,
    FoundResult,
    FoundStock,
    parse_deep_link,
)
from signage_ui.qr import Rect, qr_rects
from signage_ui.qr import matrix as _qr_matrix

__all__ = ["Rect", "qr_rects"]  # the kiosk's view and tests read them from here, as before

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "tab": "Find a product",
        "hint": "Product, brand or SKU",
        "search": "Search",
        "lang": "Deutsch",
        "searching": "Searching…",
        "no_answer": "The store system does not answer. Please try again.",
        "nothing": "Nothing found for “{q}”. Try another word.",
        "in_stock_n": "{n} in stock",
        "in_stock": "In stock",
        "out": "Out of stock",
        "scan": "Scan for the way\non your phone",
        "back": "Back to results",
        "no_route": "We cannot show the way to this product:\n{why}\nPlease ask a member of staff.",
        "start": "Type what you are looking for, or tap a suggestion.",
    },
    "de": {
        "tab": "Produkt finden",
        "hint": "Produkt, Marke oder Artikelnummer",
        "search": "Suchen",
        "lang": "English",
        "searching": "Suche läuft…",
        "no_answer": "Das Filialsystem antwortet nicht. Bitte noch einmal versuchen.",
        "nothing": "Nichts gefunden für „{q}“. Versuchen Sie ein anderes Wort.",
        "in_stock_n": "{n} auf Lager",
        "in_stock": "Auf Lager",
        "out": "Nicht auf Lager",
        "scan": "Weg aufs Handy:\nQR-Code scannen",
        "back": "Zurück zur Liste",
        "no_route": "Den Weg zu diesem Produkt können wir nicht zeigen:\n{why}\n"
        "Bitte fragen Sie unser Personal.",
        "start": "Tippen Sie ein, was Sie suchen, oder wählen Sie einen Vorschlag.",
    },
}
# What shoppers ask for most in an outdoor store: one tap instead of typing.
SUGGESTIONS: dict[str, tuple[str, ...]] = {
    "en": ("Trail shoes", "Rain jacket", "Backpack", "Tent"),
    "de": ("Trailschuh", "Regenjacke", "Rucksack", "Zelt"),
}
ANSWER_TIMEOUT_S = 5.0


def words(lang: str) -> dict[str, str]:
    return LABELS.get(lang, LABELS["en"])


def stock_text(stock: FoundStock | None, lang: str) -> str:
    """ "7 in stock", "Out of stock"; nothing when the store does not know."""
    w = words(lang)
    if stock is None:
        return ""
    if not stock.available or stock.quantity == 0:
        return w["out"]
    return w["in_stock_n"].format(n=stock.quantity) if stock.quantity else w["in_stock"]


def result_line(r: FoundResult) -> str:
    return f"{r.name}  ·  {r.brand}" if r.brand else r.name


@dataclass
class FinderState:
    """One search at a time: a reply to an older search (the shopper typed on) is dropped."""

    kiosk_id: str
    lang: str = "en"
    query: str = ""
    pending: str | None = None
    reply: FoundReply | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def request(self, query: str, route_to: str | None = None) -> FindRequest:
        """The next request; ValidationError for a query the wire refuses (too long, no
        letters), which the view shows as nothing found."""
        self.query = query
        self.pending = f"{self.kiosk_id}-{next(self._ids)}"[-64:]
        return FindRequest(
            request_id=self.pending,
            query=query.strip(),
            lang=self.lang,  # type: ignore[arg-type]
            limit=DEFAULT_LIMIT,
            route_to=route_to,
        )

    def accept(self, reply: FoundReply) -> bool:
        if reply.request_id != self.pending:
            return False
        self.pending = None
        self.reply = reply
        return True

    def route_for(self, sku: str) -> bool:
        r = self.reply
        return r is not None and r.route is not None and r.route.sku == sku


def qr_matrix(link: str) -> list[list[bool]]:
    """The QR code of ``link`` (checked first: the kiosk shows only links of the documented
    format), modules as rows, top row first, without the quiet zone."""
    parse_deep_link(link)
    return _qr_matrix(link)
