"""The Kivy widgets of the player: an item (main region + ticker + side panel) and a stage
that switches items with a crossfade or a cut.

Widgets are created once and refilled on every switch (no widget tree per item): 10,000 switches
must not grow memory, and a refill draws in the very next frame.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kivy.animation import Animation
from kivy.clock import Clock
from kivy.core.image import Image as CoreImage
from kivy.core.window import Window
from kivy.graphics import Color, Rectangle, RoundedRectangle, ScissorPop, ScissorPush
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.image import Image
from kivy.uix.label import Label
from kivy.uix.video import Video
from kivy.uix.widget import Widget
from kivy.utils import get_color_from_hex

from contracts.screen_protocol import CARD_TEMPLATES, Content
from signage_ui import qr
from signage_ui.draw import font_name, kivy_measure, put, rect, use_font
from signage_ui.draw import label as make_label
from signage_ui.fit import fit, pages
from signage_ui.layout import Box, inner, regions, safe_area
from signage_ui.message_layout import layout_message
from signage_ui.offer_layout import CardLayout, Placed, cover_crop, layout_offer, legible_min
from signage_ui.qr_view import QrCode
from signage_ui.style import side_tint, text_colour_for
from signage_ui.template import render_card, render_message
from signage_ui.wayfinding_view import WayfindingCard

log = logging.getLogger("signage_ui")


class Panel(FloatLayout):
    """A rectangle of one colour with its own children; the base of every region.

    ``frame`` is where the region may draw words and pictures (the screen's safe area, clear
    of its neighbours) and the screen's size, set by ``ItemView``; alone (a bench, a test) a
    panel computes it from its own box."""

    def __init__(self, **kwargs) -> None:
        self.frame: tuple[Box, tuple[float, float]] | None = None
        super().__init__(**kwargs)
        with self.canvas.before:
            self._bg_color = Color(0, 0, 0, 1)
            self._bg = Rectangle()
        self.bind(size=self._fit, pos=self._fit)

    def set_background(self, hex_colour: str) -> None:
        self._bg_color.rgba = get_color_from_hex(hex_colour)

    def _fit(self, *_: object) -> None:
        self._bg.pos, self._bg.size = self.pos, self.size
        self.relayout()

    def safe(self) -> tuple[Box, tuple[float, float]]:
        """(inner box in window coordinates, screen size)."""
        if self.frame is not None:
            return self.frame
        box = inner((0.0, 0.0, float(self.width), float(self.height)), self.width, self.height)
        return (self.x + box[0], self.y + box[1], box[2], box[3]), (self.width, self.height)

    def relayout(self) -> None:
        pass


# Colours by role, per item: a card's layout names the role of each fill and text, not colours.
#   accent / on_accent: the campaign's accent fill and the text drawn on it;
#   emph / on_emph: a pill or rule that must stand out (the accent; the ink on an emergency,
#     whose accent is not chosen for it); ink / on_ink: the text colour for the background and
#     text drawn on an ink pill (the background's colour); muted: ink, a little quieter.
Role = str


class CardView(Panel):
    """A card drawn from a pure layout (``offer_layout.CardLayout``): fills as rounded
    rectangles, texts as labels showing exactly their fitted lines, a photo cropped around its
    subject, a QR code. Subclasses name their fills and texts with colour roles and compute the
    layout; the drawing is this class's alone. Created once, refilled per item: the labels,
    rectangles and the QR widget are reused."""

    # (layout field, colour role, corner radius as a share of the box's height)
    FILLS: tuple[tuple[str, Role, float], ...] = ()
    # (layout field, colour role, bold)
    TEXTS: tuple[tuple[str, Role, bool], ...] = ()
    # Texts centred in their box always, and those centred when the layout says ``centred``.
    CENTRED: frozenset[str] = frozenset({"scan"})
    CENTRABLE: frozenset[str] = frozenset()

    def __init__(self, **kwargs: object) -> None:
        self.content: Content | None = None
        self.image: CoreImage | None = None
        self.layout: CardLayout | None = None
        self._layout_key: tuple[object, ...] = ()
        super().__init__(**kwargs)
        self.fills: dict[str, tuple[Color, RoundedRectangle]] = {}
        with self.canvas.before:
            self._photo_color = Color(1, 1, 1, 1)
            self._photo = Rectangle()
            # One colour each: a shape the item does not use is hidden by its alpha.
            for name, _role, _radius in self.FILLS:
                self.fills[name] = (Color(1, 1, 1, 1), RoundedRectangle())
        self.labels: dict[str, Label] = {}
        for name, _role, bold in self.TEXTS:
            self.labels[name] = make_label(bold=bold)
            self.add_widget(self.labels[name])
        self.qr = QrCode(size_hint=(None, None))
        self._qr_url: str | None = None
        self.add_widget(self.qr)

    def compute(self, c: Content, inner_box: Box, min_px: int) -> CardLayout:
        raise NotImplementedError

    def relayout(self) -> None:
        c = self.content
        if c is None:
            return
        (ix, iy, iw, ih), (sw, sh) = self.safe()
        # Size and position changes arrive one by one: the layout is computed once per item,
        # box and typeface (the content is frozen, so the same object is the same card).
        key = (c, self.image, iw, ih, sw, sh, font_name())
        old = self._layout_key
        if self.layout is None or not (
            old and old[0] is c and old[1] is self.image and old[2:] == key[2:]
        ):
            self._layout_key = key
            self.layout = self.compute(c, (0.0, 0.0, iw, ih), legible_min(sw, sh))
            # (Sizes on the way to the window's, at start, do not count.)
            if self.layout.shortened and (sw, sh) == tuple(Window.size):
                log.warning("%s %s: text shortened to fit the card", c.template, c.content_id)
        lay = self.layout
        o = (ix, iy)
        for name, _role, radius in self.FILLS:
            colour, instr = self.fills[name]
            box = getattr(lay, name)
            colour.a = 1 if box is not None else 0
            rect(instr, box, o)
            if box is not None:
                instr.radius = [radius * box[3]]
        self._place_photo(getattr(lay, "image", None), o)
        centred = bool(getattr(lay, "centred", False))
        for name, lab in self.labels.items():
            centre = name in self.CENTRED or (centred and name in self.CENTRABLE)
            put(lab, getattr(lay, name), o, centre=centre)
        qr_box = getattr(lay, "qr", None)
        if qr_box is not None:
            self.qr.opacity = 1
            self.qr.pos = (o[0] + qr_box[0], o[1] + qr_box[1])
            self.qr.size = qr_box[2:]
        else:
            self.qr.opacity = 0
            self.qr.size = (0, 0)

    def _place_photo(self, box: Box | None, o: tuple[float, float]) -> None:
        if box is None or self.image is None or self.content is None:
            self._photo.texture = None
            self._photo.size = (0, 0)
            return
        tex = self.image.texture
        x, y_top, w, h = cover_crop(tex.width, tex.height, box[2], box[3], self.content.image_focus)
        # Texture regions count y from the bottom of the picture.
        self._photo.texture = tex.get_region(x, tex.height - y_top - h, w, h)
        rect(self._photo, box, o)

    def show(self, content: Content, image: CoreImage | None = None) -> None:
        self.content = content
        self.image = image
        self.set_background(content.background)
        # The agent chooses any background; the text colour follows it so the copy stays legible.
        ink = get_color_from_hex(text_colour_for(content.background))
        accent = get_color_from_hex(content.accent)
        emph_hex = (
            text_colour_for(content.background)
            if content.template == "emergency"
            else content.accent
        )
        colours = {
            "accent": accent,
            "on_accent": get_color_from_hex(text_colour_for(content.accent)),
            "emph": get_color_from_hex(emph_hex),
            "on_emph": get_color_from_hex(text_colour_for(emph_hex)),
            "ink": ink,
            "on_ink": get_color_from_hex(content.background),
            "muted": (*ink[:3], 0.85),
        }
        for name, role, _radius in self.FILLS:
            self.fills[name][0].rgba = colours[role]
        for name, role, _bold in self.TEXTS:
            self.labels[name].color = colours[role]
        if content.qr_url != self._qr_url:
            self._qr_url = content.qr_url
            self.qr.show(qr.matrix(content.qr_url) if content.qr_url else [])
        self._layout_key = ()  # new colours are drawn, the layout is computed again
        self.relayout()


class OfferCard(CardView):
    """An offer as a store would print it: the product photo (cropped to fill its box around its
    subject), the title and body fitted to their boxes, the price on an accent tag with the old
    price above it, a call-to-action pill, the validity as fine print, a badge and a QR code.
    Layout and sizes come from ``offer_layout`` (pure)."""

    FILLS = (
        ("bar", "accent", 0.0),
        ("badge", "accent", 0.3),
        ("tag", "accent", 0.18),
        ("cta_pill", "ink", 0.5),
    )
    TEXTS = (
        ("title", "ink", True),
        ("body", "ink", False),
        ("was", "muted", False),
        ("price", "on_accent", True),
        ("cta", "on_ink", True),
        ("valid", "ink", False),
        ("scan", "ink", False),
        ("badge_text", "on_accent", True),
    )

    def compute(self, c: Content, inner_box: Box, min_px: int) -> CardLayout:
        return layout_offer(
            inner_box,
            render_card(c),
            kivy_measure,
            min_px=min_px,
            has_image=self.image is not None,
            has_qr=c.qr_url is not None,
        )

    # Kept for callers that look for the old footer line (validity and call to action).
    @property
    def footer(self) -> Label:
        return self.labels["valid"]


class MessageCard(CardView):
    """A personal welcome, an order ready for pickup, a survey's call to action or an
    emergency: ``message_layout`` (pure) says where, this draws it the offer card's way."""

    FILLS = (
        ("rule_top", "emph", 0.0),
        ("rule_bottom", "emph", 0.0),
        ("kicker_pill", "emph", 0.3),
        ("tag", "accent", 0.18),
        ("cta_pill", "ink", 0.5),
    )
    TEXTS = (
        ("kicker", "on_emph", True),
        ("title", "ink", True),
        ("tag_label", "muted", False),
        ("tag_text", "on_accent", True),
        ("body", "ink", False),
        ("cta", "on_ink", True),
        ("scan", "ink", False),
    )
    CENTRABLE = frozenset({"title", "tag_label", "body"})

    def compute(self, c: Content, inner_box: Box, min_px: int) -> CardLayout:
        return layout_message(
            inner_box,
            render_message(c),
            kivy_measure,
            min_px=min_px,
            has_image=self.image is not None,
            has_qr=c.qr_url is not None,
        )


class WayCard(Panel):
    """An offer card that carries the way to its place: words beside a you-are-here map."""

    def __init__(self, **kwargs) -> None:
        self.view: WayfindingCard | None = None
        self._said: str | None = None
        super().__init__(**kwargs)
        self.view = WayfindingCard(self)

    def relayout(self) -> None:
        if self.view is None:
            return
        self.view.relayout()
        c = self.view.content
        # Said as the other cards say it (and as the tests read it); not for the sizes on the
        # way to the window's at start.
        shortened = c is not None and self.view.shortened
        if (
            shortened
            and c is not None
            and self.safe()[1] == tuple(Window.size)
            and self._said != c.content_id
        ):
            self._said = c.content_id
            log.warning("wayfinding %s: text shortened to fit the card", c.content_id)

    def show(self, content: Content) -> None:
        self.set_background(content.background)
        assert self.view is not None
        # Laid out once, by the item view that shows it (``ItemView._layout``), not twice.
        self.view.show(content, layout=False)


class Clip(Video):
    """A clip from the cache. Kivy's Video is an Image: when its source changes (and at every
    loop) it asks the image loader for the file as a picture, which fails on a clip and logs
    "Image: Error loading" each time. The decoder's frames are its texture; nothing to load."""

    def texture_update(self, *largs: object) -> None:
        if self.preview:
            super().texture_update(*largs)


class MediaView(Panel):
    """An image or a video, letterboxed on the item's background colour (never black bars)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.image = Image(fit_mode="contain", size_hint=(None, None))
        self.video: Clip | None = None
        self.add_widget(self.image)

    def relayout(self) -> None:
        for w in (self.image, self.video):
            if w is not None:
                w.pos, w.size = self.pos, self.size

    def show_image(self, content: Content, image: CoreImage) -> None:
        self.stop_video()
        self.set_background(content.background)
        self.image.texture = image.texture
        self.image.opacity = 1
        self.relayout()

    def show_video(self, content: Content, path: Path) -> None:
        self.set_background(content.background)
        self.image.opacity = 0
        if self.video is None:
            self.video = Clip(fit_mode="contain", size_hint=(None, None), options={"eos": "loop"})
            self.add_widget(self.video)
        # No frame yet: the stage waits for this clip's first (``Stage.show``), never showing
        # the last clip's frame or a flat background in its place.
        self.video.texture = None
        self.video.opacity = 1
        if self.video.source == str(path):
            # The same clip again (it was unloaded when it left the screen): Kivy loads a clip
            # only when its source changes, and would leave the clip stopped.
            self.video.source = ""
        self.video.source = str(path)
        self.video.state = "play"
        self.relayout()

    def stop_video(self) -> None:
        if self.video is not None:
            # unload: the decoder thread and its frames go, not only the picture.
            self.video.unload()
            self.video.opacity = 0


class Ticker(Panel):
    """A band along the bottom: its text in pages of whole words that fit the safe width, each
    held long enough to read, then scrolled up out of the band as the next comes in. A page is
    never cut: words do not slide past the screen's edge as in a crawl."""

    SLIDE_S = 0.5

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        with self.canvas.before:
            # Clips the sliding pages to the band's safe box (popped in canvas.after).
            self._clip = ScissorPush(x=0, y=0, width=1, height=1)
        with self.canvas.after:
            ScissorPop()
        self.label = Label(size_hint=(None, None))
        self.next_label = Label(size_hint=(None, None))
        self.add_widget(self.label)
        self.add_widget(self.next_label)
        self.text = ""
        self.pages: list[str] = []
        self._page = 0
        self._t = 0.0
        self._ev = Clock.schedule_interval(self._scroll, 1 / 30)

    def show(self, content: Content) -> None:
        self.set_background(content.accent)
        ink = get_color_from_hex(text_colour_for(content.accent))
        self.label.color = self.next_label.color = ink
        if self.text != content.ticker:
            self.text = content.ticker
            self._page, self._t = 0, 0.0
        self.relayout()

    def hold_s(self, page: str) -> float:
        """Reading time of a page: 2 s plus a third of a second a word."""
        return 2.0 + len(page.split()) / 3

    def _box(self) -> Box:
        (ix, _iy, iw, _ih), (_sw, sh) = self.safe()
        # The line sits above the bottom overscan margin; the band's colour runs to the edge.
        bottom = self.y + round(sh * 0.04)
        return (ix, bottom, iw, max(1.0, self.top - bottom))

    def relayout(self) -> None:
        x, y, w, h = self._box()
        _inner, (sw, sh) = self.safe()
        size = max(12, min(int(h * 0.6), round(0.05 * min(sw, sh))))
        self.pages = pages(self.text, w, size, False, kivy_measure)
        self._page %= max(1, len(self.pages))
        for lab in (self.label, self.next_label):
            lab.font_size = size
            lab.font_name = font_name()
        self._clip.x, self._clip.y = int(x), int(y)
        self._clip.width, self._clip.height = int(w), int(h)
        self._set(self.label, self._page)
        self._set(self.next_label, self._page + 1)
        self._place()

    def _set(self, label: Label, page: int) -> None:
        label.text = self.pages[page % len(self.pages)] if self.pages else ""
        label.texture_update()
        label.size = label.texture_size

    def _place(self) -> None:
        x, y, _w, h = self._box()
        progress = 0.0
        if len(self.pages) > 1 and self.pages:
            hold = self.hold_s(self.pages[self._page])
            progress = min(1.0, max(0.0, (self._t - hold) / self.SLIDE_S))
        for label, shift in ((self.label, progress), (self.next_label, progress - 1)):
            label.pos = (x, y + (h - label.height) / 2 + shift * h)
        self.next_label.opacity = 1 if progress > 0 else 0

    def _scroll(self, dt: float) -> None:
        if len(self.pages) < 2 or self.parent is None or self.parent.parent is None:
            return
        self._t += dt
        if self._t >= self.hold_s(self.pages[self._page]) + self.SLIDE_S:
            self._page = (self._page + 1) % len(self.pages)
            self._t = 0.0
            self._set(self.label, self._page)
            self._set(self.next_label, self._page + 1)
        self._place()


class SidePanel(Panel):
    """A tint of the accent beside the card (a column in landscape, a band in portrait): an
    accent rule and its text, fitted as large as the panel allows, centred in the panel."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        with self.canvas.before:
            self._rule_color = Color(1, 1, 1, 1)
            self._rule = Rectangle()
        self.label = make_label()
        self.add_widget(self.label)
        self.text = ""

    def show(self, content: Content) -> None:
        # A tint that belongs to the card, with text that contrasts with it.
        tint = side_tint(content.background, content.accent)
        self.set_background(tint)
        self._rule_color.rgba = get_color_from_hex(content.accent)
        self.label.color = get_color_from_hex(text_colour_for(tint))
        self.text = content.side
        self.relayout()

    def relayout(self) -> None:
        (x, y, w, h), (sw, sh) = self.safe()
        if w < 2 or h < 2:
            return
        small = legible_min(sw, sh)
        rule = max(4, round(0.01 * max(sw, sh)))
        wide = w > h * 1.5
        # A band (portrait): the rule stands left of the text; a column: it lies above it.
        tw = w - (3 * rule if wide else 0)
        th = h - (0 if wide else 3 * rule)
        f = fit(
            self.text,
            tw,
            th,
            kivy_measure,
            max_size=max(small, round(0.06 * min(sw, sh))),
            min_size=small,
            balance=True,
        )
        put(self.label, Placed(f, (0, 0, tw, f.height)), (0, 0))
        if wide:
            top = y + (h + f.height) / 2
            self._rule.pos, self._rule.size = (x, top - f.height), (rule, f.height)
            self.label.pos = (x + 3 * rule, top - self.label.height)
        else:
            block = f.height + 3 * rule
            top = y + (h + block) / 2
            self._rule.pos, self._rule.size = (x, top - rule), (min(w, 4 * small), rule)
            self.label.pos = (x, top - 3 * rule - self.label.height)


class ItemView(Widget):
    """One item as a whole: main region (card or media) plus optional ticker and side panel."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.card = OfferCard()
        self.message = MessageCard()
        self.way = WayCard()
        self.media = MediaView()
        self.ticker = Ticker()
        self.side = SidePanel()
        self.content: Content | None = None
        # A band the store's logo takes ("top" or "bottom", px): the main region keeps clear.
        self.reserve: tuple[str, float] | None = None
        self.bind(size=self._layout, pos=self._layout)

    def _layout(self, *_: object) -> None:
        c = self.content
        W, H = self.width, self.height
        r = regions(W, H, ticker=bool(c and c.ticker), side=bool(c and c.side))
        main = r.main
        if self.reserve is not None:
            where, band = self.reserve
            mx, my, mw, mh = main
            # Only what overlaps the band moves: a main region above a ticker keeps its bottom.
            if where == "top":
                cut = max(0.0, (my + mh) - (H - band))
                main = (mx, my, mw, mh - cut)
            else:
                cut = max(0.0, band - my)
                main = (mx, my + cut, mw, mh - cut)
        for w, box in (
            (self.card, main),
            (self.message, main),
            (self.media, main),
            (self.way, main),
            (self.ticker, r.ticker),
            (self.side, r.side),
        ):
            # Only the regions in the tree: the others are laid out when they next show.
            if box and w.parent is self:
                ix, iy, iw, ih = inner(box, W, H)
                w.frame = ((self.x + ix, self.y + iy, iw, ih), (W, H))
                w.pos, w.size = (self.x + box[0], self.y + box[1]), box[2:]
                w.relayout()

    def show(self, content: Content, asset: CoreImage | Path | None = None) -> None:
        self.content = content
        # Only the regions in use are in the tree: a hidden widget would still be drawn
        # (at opacity 0) every frame, and on a Pi's GPU every full-screen layer counts.
        self.clear_widgets()
        if content.template == "image" and isinstance(asset, CoreImage):
            self.media.show_image(content, asset)
            main: Widget = self.media
        elif content.template == "video" and isinstance(asset, Path):
            self.media.show_video(content, asset)
            main = self.media
        elif content.wayfinding is not None:
            self.media.stop_video()
            self.way.show(content)
            main = self.way
        elif content.template in CARD_TEMPLATES and content.template != "offer_card":
            self.media.stop_video()
            self.message.show(content, asset if isinstance(asset, CoreImage) else None)
            main = self.message
        else:
            self.media.stop_video()
            self.card.show(content, asset if isinstance(asset, CoreImage) else None)
            main = self.card
        self.add_widget(main)
        if content.side:
            self.side.show(content)
            self.add_widget(self.side)
        if content.ticker:
            self.ticker.show(content)
            self.add_widget(self.ticker)
        self._layout()

    def release(self) -> None:
        self.media.stop_video()


class Stage(FloatLayout):
    """Two item views: the one on screen and the one coming in. ``cut`` switches in the next
    frame; ``fade`` crossfades (the old item stays under the new one, so no black gap)."""

    FADE_S = 0.4
    # A clip that has decoded no frame by then comes on anyway (on its background colour).
    # Generous: the item before it stays on the glass meanwhile, and a box's first clip waits
    # for the video provider to load (CI saw 1.5 s run out under load: a bare background).
    PREROLL_S = 4.0

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.front = ItemView(size_hint=(1, 1))
        self.back = ItemView(size_hint=(1, 1))
        self.add_widget(self.front)
        self._anim: Animation | None = None
        # A video coming in, held off screen until its decoder's first frame: (view, fade).
        self._pending: tuple[ItemView, bool] | None = None
        self._preroll_ev: Any = None
        # The store's logo over every item (a pushed theme), kept on top of the drawing order.
        self.logo = Image(fit_mode="contain", size_hint=(None, None), opacity=0)
        self.logo_corner = "top_right"
        self.logo_size = 0.09
        self.bind(size=self._fit, pos=self._fit)

    def _fit(self, *_: object) -> None:
        for v in (self.front, self.back):
            v.pos, v.size = self.pos, self.size
        self._place_logo()

    def set_logo(
        self, texture: object | None, corner: str = "top_right", size: float = 0.09
    ) -> None:
        """Show ``texture`` (None: no logo) in ``corner``, ``size`` of the shorter side high;
        the items' main region keeps clear of its band, so it never covers a title."""
        self.logo_corner, self.logo_size = corner, size
        if texture is None:
            self.logo.texture = None
            self.logo.opacity = 0
            if self.logo.parent is not None:
                self.remove_widget(self.logo)
            self._reserve(None)
            return
        self.logo.texture = texture
        self.logo.opacity = 1
        self._logo_on_top()
        self._place_logo()

    def _logo_on_top(self) -> None:
        if self.logo.opacity and self.logo.texture is not None:
            if self.logo.parent is not None:
                self.remove_widget(self.logo)
            self.add_widget(self.logo)

    def _place_logo(self) -> None:
        tex = self.logo.texture
        if tex is None:
            return
        w, h = self.size
        x0, y0, sw, sh = safe_area(w, h)
        lh = min(w, h) * self.logo_size
        lw = min(sw * 0.3, lh * tex.width / max(1, tex.height))
        right, top = "right" in self.logo_corner, "top" in self.logo_corner
        x = x0 + sw - lw if right else x0
        y = y0 + sh - lh if top else y0
        self.logo.pos, self.logo.size = (self.x + x, self.y + y), (lw, lh)
        # The band from the screen's edge to just past the logo, with a little air.
        self._reserve(("top" if top else "bottom", y0 + lh + min(w, h) * 0.02))

    def set_font(self, name: str) -> None:
        """Draw every card in ``name`` (a registered typeface) from now on: the item on screen
        is laid out again at once, since sizes are fitted with the font's own measures."""
        use_font(name)
        for v in (self.front, self.back):
            v._layout()

    def _reserve(self, band: tuple[str, float] | None) -> None:
        for v in (self.front, self.back):
            if v.reserve != band:
                v.reserve = band
                v._layout()

    def show(
        self, content: Content, asset: CoreImage | Path | None = None, *, fade: bool = False
    ) -> None:
        self._cancel_preroll()
        if self._anim is not None:
            # A fade cut short: the item that was coming in stands whole and the one it was
            # covering leaves the tree, since its view is about to take the next item (and
            # under a half-faded item, a clip's bare background would show through).
            self._anim.cancel(self.front)
            self._anim = None
            self.front.opacity = 1
            self._done(self.back)
        incoming = self.back
        incoming.show(content, asset)
        clip = incoming.media.video if content.template == "video" else None
        if clip is not None and clip.texture is None:
            # Until the clip has a frame, the item on screen stays: a video would otherwise
            # come in as its bare background for the decoder's start (a blank frame).
            self._pending = (incoming, fade)
            clip.bind(texture=self._first_frame)
            self._preroll_ev = Clock.schedule_once(lambda _dt: self._reveal(), self.PREROLL_S)
            return
        self._swap(incoming, fade)

    @property
    def prerolling(self) -> bool:
        """A clip is coming in and not on screen yet: what is drawn is still the old item."""
        return self._pending is not None

    def _first_frame(self, _clip: object, texture: object) -> None:
        if texture is not None and self._pending is not None:
            self._reveal()

    def _reveal(self) -> None:
        pending = self._pending
        self._cancel_preroll()
        if pending is not None:
            self._swap(*pending)

    def _cancel_preroll(self) -> None:
        if self._pending is not None:
            clip = self._pending[0].media.video
            if clip is not None:
                clip.unbind(texture=self._first_frame)
            self._pending = None
        if self._preroll_ev is not None:
            self._preroll_ev.cancel()
            self._preroll_ev = None

    def _swap(self, incoming: ItemView, fade: bool) -> None:
        outgoing = self.front
        # The incoming view goes on top of the drawing order.
        if incoming.parent is not None:
            self.remove_widget(incoming)
        self.add_widget(incoming)
        self._logo_on_top()
        self.front, self.back = incoming, outgoing
        if fade:
            incoming.opacity = 0
            self._anim = Animation(opacity=1, duration=self.FADE_S)
            self._anim.bind(on_complete=lambda *_: self._done(outgoing))
            self._anim.start(incoming)
        else:
            incoming.opacity = 1
            self._done(outgoing)

    @property
    def fading(self) -> bool:
        return self._anim is not None

    def _done(self, outgoing: ItemView) -> None:
        self._anim = None
        # Out of the tree once covered: nothing unseen is drawn.
        if outgoing.parent is not None:
            self.remove_widget(outgoing)
        outgoing.release()
