"""The offer-card template: the offer's fields as the lines a card shows, in the shopper's
language (labels, prices and dates in that language's conventions). Pure, so it is tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from contracts.screen_protocol import Content

# Labels per language; an unknown language falls back to English rather than showing a key.
LABELS: dict[str, dict[str, str]] = {
    "en": {"was": "was", "valid_until": "Valid until", "scan": "Scan for details"},
    "fr": {
        "was": "au lieu de",
        "valid_until": "Valable jusqu'au",
        "scan": "Scannez pour en savoir plus",
    },
    "de": {"was": "statt", "valid_until": "Gültig bis", "scan": "Scannen für Details"},
    "es": {"was": "antes", "valid_until": "Válido hasta", "scan": "Escanea para más información"},
    "it": {"was": "invece di", "valid_until": "Valido fino al", "scan": "Inquadra per i dettagli"},
    "nl": {"was": "was", "valid_until": "Geldig tot", "scan": "Scan voor details"},
}
SYMBOLS = {"EUR": "€", "GBP": "£", "USD": "$", "CHF": "CHF "}
# Languages writing 12,99 (decimal comma) and the date order each uses.
DECIMAL_COMMA = {"fr", "de", "es", "it", "nl"}
DATE_FORMAT = {"en": "{d} {mon} {y}", "de": "{d}.{m:02d}.{y}", "nl": "{d}-{m:02d}-{y}"}
MONTHS_EN = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@dataclass(frozen=True)
class CardText:
    title: str
    body: str
    price: str  # the price line as one string, "12,99 €  (statt 15,00 €)"; "" without a price
    footer: str  # validity and call to action on one line, "" when neither
    # The same, in the pieces the card lays out separately ("" when absent):
    amount: str = ""  # "12,99 €"
    was: str = ""  # "statt 15,00 €" (only when the old price is higher)
    saving: str = ""  # "−13 %"
    valid: str = ""  # "Gültig bis 24.12.2026"
    cta: str = ""
    badge: str = ""  # the offer's own flag, else the saving
    scan: str = ""  # the caption under the QR code, "" without one


def base_language(language: str) -> str:
    return language.split("-")[0].split("_")[0].lower()


def format_price(amount: float, currency: str, language: str) -> str:
    lang = base_language(language)
    text = f"{amount:,.2f}"
    if lang in DECIMAL_COMMA:
        # 1,234.50 -> 1 234,50 (thin space for thousands reads well at signage distance)
        text = text.replace(",", " ").replace(".", ",")
    symbol = SYMBOLS.get(currency, currency + " ")
    if lang in DECIMAL_COMMA and currency == "EUR":
        return f"{text} €"
    return f"{symbol}{text}"


def format_date(d: date, language: str) -> str:
    lang = base_language(language)
    fmt = DATE_FORMAT.get(lang, "{d:02d}/{m:02d}/{y}")
    return fmt.format(d=d.day, m=d.month, y=d.year, mon=MONTHS_EN[d.month - 1])


def format_saving(price: float, was_price: float) -> str:
    """The saving as a whole percentage with a real minus sign, "−25 %" ("" under 1 %)."""
    pct = int((was_price - price) / was_price * 100 + 1e-9) if was_price > 0 else 0
    return f"\u2212{pct} %" if pct >= 1 else ""


def render_card(c: Content) -> CardText:
    lang = base_language(c.language)
    labels = LABELS.get(lang, LABELS["en"])
    price = amount = was = saving = valid = ""
    if c.price is not None:
        price = amount = format_price(c.price, c.currency, lang)
        if c.was_price is not None and c.was_price > c.price:
            was = f"{labels['was']} {format_price(c.was_price, c.currency, lang)}"
            price += f"  ({was})"
            saving = format_saving(c.price, c.was_price)
    parts = []
    if c.valid_until is not None:
        valid = f"{labels['valid_until']} {format_date(c.valid_until, lang)}"
        parts.append(valid)
    if c.cta:
        parts.append(c.cta)
    return CardText(
        title=c.title,
        body=c.body,
        price=price,
        footer="  ·  ".join(parts),
        amount=amount,
        was=was,
        saving=saving,
        valid=valid,
        cta=c.cta,
        badge=c.badge or saving,
        scan=labels["scan"] if c.qr_url else "",
    )
