"""The message cards' layout (welcome, order ready, survey, emergency), pure: every box inside
the card's safe box, no two texts overlapping, the longest copy fitted without shortening, the
headline above the body in size, in both shapes, with and without a photo or a QR code."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.screen_protocol import Content
from signage_ui.fit import proportional
from signage_ui.layout import Box
from signage_ui.message_layout import layout_message
from signage_ui.offer_layout import legible_min
from signage_ui.template import render_message, short_link

MEASURE = proportional()
LONG = {
    "welcome": ("Willkommen zurück, Maximilian-Alexander! Schön, dass Sie wieder da sind",
                "Als Gold-Mitglied sammeln Sie heute doppelte Treuepunkte auf alle Wanderschuhe."),
    "order_ready": ("Marie-Hélène, votre commande est prête",
                    "Rendez-vous au comptoir 2 « Click & Collect », à côté des cabines : sans attente."),
    "survey": ("Wie zufrieden waren Sie heute mit der Beratung in unserer Wanderschuhabteilung?",
               "Drei kurze Fragen, eine Minute – Ihre Antworten helfen unserem Team."),
    "emergency": ("Veuillez quitter le magasin par la sortie de secours la plus proche",
                  "Suivez les panneaux verts et les consignes de notre personnel."),
}  # fmt: skip


def content(template: str, language: str = "de") -> Content:
    title, body = LONG[template]
    return Content(
        content_id=f"t:{template}",
        template=template,  # type: ignore[arg-type]
        title=title,
        body=body,
        language=language,
        highlight="CC-4711" if template in ("order_ready", "welcome") else "",
        cta="Als Dankeschön: 5 € Gutschein" if template != "emergency" else "",
        qr_url="https://northwind.example/umfrage/beratung" if template == "survey" else None,
    )


def inside(b: Box, outer: Box) -> bool:
    return (
        b[0] >= outer[0] - 0.5
        and b[1] >= outer[1] - 0.5
        and b[0] + b[2] <= outer[0] + outer[2] + 0.5
        and b[1] + b[3] <= outer[1] + outer[3] + 0.5
    )


def overlap(a: Box, b: Box) -> bool:
    return (
        a[0] < b[0] + b[2] - 1
        and b[0] < a[0] + a[2] - 1
        and (a[1] < b[1] + b[3] - 1 and b[1] < a[1] + a[3] - 1)
    )


@pytest.mark.parametrize(
    ("template", "size", "image"),
    list(itertools.product(LONG, [(880, 470), (470, 880)], [False, True])),
)
def test_long_copy_fits_inside_without_shortening(
    template: str, size: tuple[int, int], image: bool
) -> None:
    c = content(template)
    inner: Box = (0.0, 0.0, float(size[0]), float(size[1]))
    lay = layout_message(
        inner, render_message(c), MEASURE, min_px=legible_min(960, 540),
        has_image=image, has_qr=c.qr_url is not None,
    )  # fmt: skip
    assert not lay.shortened
    assert all(inside(b, inner) for b in lay.boxes())
    texts = [p.box for p in lay.texts()]
    assert not any(overlap(a, b) for a, b in itertools.combinations(texts, 2))
    assert lay.title is not None and lay.body is not None
    assert lay.title.fitted.size >= 1.2 * lay.body.fitted.size
    assert (lay.qr is not None) == (template == "survey")


@settings(max_examples=60, deadline=None)
@given(st.integers(320, 2000), st.integers(320, 2000), st.sampled_from(sorted(LONG)))
def test_any_screen_keeps_every_box_inside(w: int, h: int, template: str) -> None:
    c = content(template)
    inner: Box = (0.0, 0.0, float(w), float(h))
    lay = layout_message(
        inner, render_message(c), MEASURE, min_px=legible_min(w, h),
        has_image=False, has_qr=c.qr_url is not None,
    )  # fmt: skip
    assert all(inside(b, inner) for b in lay.boxes())


def test_a_survey_shows_its_short_link_and_an_order_its_number() -> None:
    assert short_link("https://www.northwind.example/umfrage/?utm=x") == "northwind.example/umfrage"
    survey = render_message(content("survey"))
    assert survey.scan == "Scannen und antworten\nnorthwind.example/umfrage/beratung"
    order = render_message(content("order_ready", "fr"))
    assert (order.kicker, order.tag_label, order.tag) == (
        "Prête à être retirée", "Numéro de retrait", "CC-4711",
    )  # fmt: skip
    assert render_message(content("emergency", "fr")).centred
