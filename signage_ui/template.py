"""The cards' templates: an item's fields as the lines a card shows, in the shopper's language
(labels, prices and dates in that language's conventions). ``render_card`` for the offer card,
``render_message`` for the message cards (welcome, order ready, survey, emergency). Pure, so it
is tested alone.
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
# The message cards' own words: the line over the headline and the tag's label.
MESSAGE_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "order_ready": "Ready for pickup",
        "pickup_no": "Pickup number",
        "survey": "Tell us what you think",
        "answer": "Scan to answer",
        "emergency": "Attention",
    },
    "de": {
        "order_ready": "Abholbereit",
        "pickup_no": "Abholnummer",
        "survey": "Ihre Meinung zählt",
        "answer": "Scannen und antworten",
        "emergency": "Achtung",
    },
    "fr": {
        "order_ready": "Prête à être retirée",
        "pickup_no": "Numéro de retrait",
        "survey": "Votre avis compte",
        "answer": "Scannez pour répondre",
        "emergency": "Attention",
    },
    "es": {
        "order_ready": "Listo para recoger",
        "pickup_no": "Número de recogida",
        "survey": "Su opinión cuenta",
        "answer": "Escanee para responder",
        "emergency": "Atención",
    },
    "it": {
        "order_ready": "Pronto per il ritiro",
        "pickup_no": "Numero di ritiro",
        "survey": "La sua opinione conta",
        "answer": "Inquadra per rispondere",
        "emergency": "Attenzione",
    },
    "nl": {
        "order_ready": "Klaar om op te halen",
        "pickup_no": "Ophaalnummer",
        "survey": "Uw mening telt",
        "answer": "Scan om te antwoorden",
        "emergency": "Let op",
    },
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


@dataclass(frozen=True)
class MessageText:
    """What a message card says, in the pieces it lays out ("" when absent)."""

    kicker: str  # a short line over the headline, on an accent pill: "Abholbereit"
    title: str
    body: str
    tag_label: str = ""  # small, over the tag: "Abholnummer"
    tag: str = ""  # large, on an accent tag: the order's number
    cta: str = ""
    scan: str = ""  # the caption under the QR code; a survey's names its short link
    centred: bool = False  # an emergency: every line centred, read from across the store


def short_link(url: str) -> str:
    """A link as a shopper would type it: no scheme, no "www.", no trailing slash or query."""
    rest = url.split("://", 1)[-1].split("?", 1)[0].split("#", 1)[0].rstrip("/")
    return rest[4:] if rest.startswith("www.") else rest


def render_message(c: Content) -> MessageText:
    lang = base_language(c.language)
    labels = MESSAGE_LABELS.get(lang, MESSAGE_LABELS["en"])
    scan = ""
    if c.qr_url:
        scan = LABELS.get(lang, LABELS["en"])["scan"]
    if c.template == "order_ready":
        return MessageText(
            kicker=c.badge or labels["order_ready"],
            title=c.title,
            body=c.body,
            tag_label=labels["pickup_no"] if c.highlight else "",
            tag=c.highlight,
            cta=c.cta,
            scan=scan,
        )
    if c.template == "survey":
        answer = labels["answer"]
        return MessageText(
            kicker=c.badge or labels["survey"],
            title=c.title,
            body=c.body,
            cta=c.cta,
            # Under the code, the link too: a phone without a camera app can still type it.
            scan=f"{answer}\n{short_link(c.qr_url)}" if c.qr_url else "",
        )
    if c.template == "emergency":
        return MessageText(
            kicker=c.badge or labels["emergency"], title=c.title, body=c.body, centred=True
        )
    # welcome (and any other card drawn as a message)
    return MessageText(
        kicker=c.badge, title=c.title, body=c.body, tag=c.highlight, cta=c.cta, scan=scan
    )
