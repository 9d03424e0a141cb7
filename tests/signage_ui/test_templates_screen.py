"""Every template a retailer would recognise, as a shopper sees it: an offer, a personal welcome,
an order ready for pickup (with the way to the counter), the way to a product, a survey's call
to action and an emergency, each in German and in French with long copy, played by the real
player in a Kivy window on Xvfb in landscape and in portrait. The screenshots are checked by
pixels: nothing drawn in the overscan margin, the photo and the QR code where the template has
one (the code decodes to its link), and no text shortened (the fit code's own report, which the
player logs).

``EDGE_DOCS_SHOTS=1`` refreshes the README's gallery (docs/templates/<template>-<orientation>.png);
``TEMPLATE_SHOTS=DIR`` keeps every screenshot.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from contracts.screen_protocol import Content, PlaylistItem
from signage_ui.assets import AssetCache
from signage_ui.layout import inner
from signage_ui.map_frame import way_regions
from tests.signage_ui.test_offer_card_screen import (
    BOOT_BGR,
    FOCUS,
    bgr,
    cards,
    near,
    outside_safe,
    product_photo,
    region_fills,
)
from tests.signage_ui.test_signage_player import load
from tests.signage_ui.test_signage_screen import config, logs, player, pngs, write_playlist
from tests.signage_ui.test_wayfinding_screen import demo_map, payload
from tests.watching import wait_for

DOCS = Path(__file__).resolve().parents[2] / "docs" / "templates"
pytestmark = [pytest.mark.ui, pytest.mark.timeout(180)]

# The picture of each template in the README's gallery: (template, content id).
GALLERY = {
    "offer_card": "offer:de-photo",
    "welcome": "welcome:de",
    "order_ready": "order:de-way",
    "wayfinding": "way:de",
    "survey": "survey:de",
    "emergency": "emergency:fr",
}


def templates(photo: str) -> list[Content]:
    """Two of each template, German and French, with the longest copy the demo would use."""
    venue = demo_map()
    to_pickup = payload(venue, "screen-entrance", "Pickup", "de")
    upstairs = payload(venue, "screen-entrance", "sku:SKU-PACK-30L", "fr")
    offer_de, offer_fr = cards(photo)[:2]
    return [
        offer_de,
        offer_fr,
        Content(
            content_id="welcome:de",
            template="welcome",
            title="Willkommen zurück, Maximilian-Alexander! Schön, dass Sie wieder da sind",
            body="Als Gold-Mitglied sammeln Sie heute doppelte Treuepunkte auf alle Wanderschuhe "
            "und bekommen eine kostenlose Schuhpflege – sprechen Sie uns einfach an.",
            language="de",
            badge="Gold-Mitglied",
            highlight="2 × Punkte",
            background="#fbf7f0",
            accent="#c8102e",
            image_sha256=photo,
            image_focus=FOCUS,
        ),
        Content(
            content_id="welcome:fr",
            template="welcome",
            title="Bon retour parmi nous, Marie-Hélène ! Ravis de vous revoir",
            body="En tant que membre Or, profitez aujourd'hui du double de points fidélité sur "
            "toute la randonnée et d'un café offert au comptoir.",
            language="fr",
            badge="Membre Or",
            cta="Demandez votre café à l'accueil",
            background="#1d3557",
            accent="#f4a261",
        ),
        Content(
            content_id="order:de-way",
            template="order_ready",
            title="Maximilian, Ihre Bestellung ist abholbereit",
            body="Holen Sie sie an der Theke 2 – Click & Collect ab, gleich neben den "
            "Umkleidekabinen. Ohne Anstehen.",
            language="de",
            highlight="CC-4711",
            background="#2a9d8f",
            accent="#e9c46a",
            qr_url="http://northwind.example/way/pickup?from=screen-entrance",
            wayfinding=to_pickup,
        ),
        Content(
            content_id="order:fr",
            template="order_ready",
            title="Marie-Hélène, votre commande est prête",
            body="Rendez-vous au comptoir 2 « Click & Collect », à côté des cabines d'essayage : "
            "sans attente.",
            language="fr",
            highlight="CC-4712",
            cta="Présentez ce numéro au comptoir",
            background="#264653",
            accent="#e9c46a",
        ),
        Content(
            content_id="way:de",
            title="Trailschuh Ridge GTX – wasserdicht, leicht und bereit für Winterwege",
            body="Probieren Sie ein Paar an: alle Größen von 36 bis 47 im Regal.",
            language="de",
            background="#6a0dad",
            accent="#ffd166",
            qr_url="http://northwind.example/way/sku-ridge-gtx-42",
            wayfinding=payload(venue, "screen-entrance", "sku:SKU-RIDGE-GTX-42", "de"),
        ),
        Content(
            content_id="way:fr",
            title="Sac à dos de randonnée « Crête » 30 litres, à l'étage",
            body="Léger, imperméable, dos ventilé : essayez-le chargé au rayon randonnée.",
            language="fr",
            background="#3d405b",
            accent="#ffd166",
            qr_url="http://northwind.example/way/sku-pack-30l",
            wayfinding=upstairs,
        ),
        Content(
            content_id="survey:de",
            template="survey",
            title="Wie zufrieden waren Sie heute mit der Beratung in unserer Wanderschuhabteilung?",
            body="Drei kurze Fragen, eine Minute – Ihre Antworten helfen unserem Team, noch "
            "besser zu werden.",
            language="de",
            cta="Als Dankeschön: 5 € Gutschein",
            qr_url="https://northwind.example/umfrage/beratung",
            background="#f1faee",
            accent="#457b9d",
        ),
        Content(
            content_id="survey:fr",
            template="survey",
            title="Comment évaluez-vous les conseils reçus aujourd'hui au rayon randonnée ?",
            body="Trois questions rapides, une minute : vos réponses aident notre équipe à "
            "s'améliorer.",
            language="fr",
            cta="Un bon de 5 € en remerciement",
            qr_url="https://northwind.example/fr/enquete/conseil",
            background="#0b3954",
            accent="#ffd166",
        ),
        Content(
            content_id="emergency:de",
            variant="override",
            template="emergency",
            title="Bitte verlassen Sie das Geschäft über den nächstgelegenen Notausgang",
            body="Folgen Sie den grünen Schildern und den Anweisungen unserer Mitarbeiterinnen "
            "und Mitarbeiter. Benutzen Sie keine Aufzüge.",
            language="de",
            background="#b00020",
        ),
        Content(
            content_id="emergency:fr",
            variant="override",
            template="emergency",
            title="Veuillez quitter le magasin par la sortie de secours la plus proche",
            body="Suivez les panneaux verts et les consignes de notre personnel. N'utilisez pas "
            "les ascenseurs.",
            language="fr",
            background="#b00020",
        ),
    ]


def decoded(img: np.ndarray) -> str:
    """The QR code's link, read as a phone would (from the whole screen, then larger)."""
    detector = cv2.QRCodeDetector()
    got, _pts, _ = detector.detectAndDecode(img)
    if not got:
        big = cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        got, _pts, _ = detector.detectAndDecode(big)
    return str(got)


def check(img: np.ndarray, c: Content, photo: str) -> None:
    h, w = img.shape[:2]
    plain = np.zeros((h, w), bool)
    for fill in region_fills(c):
        plain |= near(img, fill, 2)
    stray = outside_safe(img) & ~plain
    assert stray.sum() == 0, f"{c.content_id}: {stray.sum()} drawn pixels outside the safe area"
    if c.qr_url:
        assert decoded(img) == c.qr_url, f"{c.content_id}: the QR code does not read"
    if c.image_sha256 == photo:
        assert near(img, BOOT_BGR, 24).mean() > 0.01, f"{c.content_id}: no photo"
    if c.template == "order_ready" and c.highlight and c.wayfinding is not None:
        # The pickup number's accent tag beside the way: the accent outside the map's box
        # (inside it, the accent is the route).
        mx, my, mw, mh = way_regions(w, h, inner((0.0, 0.0, w, h), w, h), c.wayfinding).map
        words = near(img, bgr(c.accent), 6)
        top = h - (my + mh)
        words[int(top) : int(top + mh), int(mx) : int(mx + mw)] = False
        assert words.mean() > 0.004, f"{c.content_id}: no pickup number tag ({words.mean():.4f})"
    # Words on the card: a good share of pixels in the text's colour family is drawn.
    assert not np.all(plain | outside_safe(img)), f"{c.content_id}: nothing drawn"


@pytest.mark.parametrize("orientation", ["landscape", "portrait"])
def test_every_template_in_german_and_french_fits_the_safe_area(
    tmp_path: Path, kivy_env: dict[str, str], broker, orientation: str
) -> None:
    cache = AssetCache(tmp_path / "content")
    photo = cache.put(product_photo())
    items = templates(photo)
    write_playlist(cache.root, [PlaylistItem(content=c, duration_s=1.5) for c in items])
    sid = f"tpl-{uuid.uuid4().hex[:6]}"
    screens = [
        {"id": sid, "zone": "entrance", "width": 960, "height": 540, "orientation": orientation}
    ]
    cfg = config(tmp_path, broker.port, screens)
    with player(tmp_path, kivy_env, cfg, sid) as shots:
        wanted = {c.content_id.replace(":", "_") for c in items}

        def seen() -> dict[str, Path]:
            return {p.stem.split("-", 1)[1]: p for p in pngs(shots)}

        assert wait_for(lambda: wanted <= set(seen()), 90), (wanted - set(seen()), logs(tmp_path))
        got = seen()
    keep = os.environ.get("TEMPLATE_SHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for c in items:
            name = f"{c.content_id.replace(':', '-')}-{orientation}.png"
            shutil.copy(got[c.content_id.replace(":", "_")], Path(keep) / name)
    if os.environ.get("EDGE_DOCS_SHOTS"):  # README gallery, refreshed on demand
        DOCS.mkdir(parents=True, exist_ok=True)
        for template, cid in GALLERY.items():
            shutil.copy(got[cid.replace(":", "_")], DOCS / f"{template}-{orientation}.png")
    for c in items:
        img = load(got[c.content_id.replace(":", "_")])
        assert (img.shape[0] > img.shape[1]) == (orientation == "portrait")
        check(img, c, photo)
    # The longest copy fitted at a legible size on every card: nothing was shortened.
    assert "shortened" not in logs(tmp_path), logs(tmp_path)
