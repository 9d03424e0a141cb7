"""The Kivy widgets of the player: an item (main region + ticker + side panel) and a stage
that switches items with a crossfade or a cut.

Widgets are created once and refilled on every switch (no widget tree per item): 10,000 switches
must not grow memory, and a refill draws in the very next frame.
"""

from __future__ import annotations

from pathlib import Path

from kivy.animation import Animation
from kivy.clock import Clock
from kivy.core.image import Image as CoreImage
from kivy.graphics import Color, Rectangle
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.image import Image
from kivy.uix.label import Label
from kivy.uix.video import Video
from kivy.uix.widget import Widget
from kivy.utils import get_color_from_hex

from contracts.screen_protocol import Content
from signage_ui.layout import regions
from signage_ui.style import mix, text_colour_for
from signage_ui.template import render_card
from signage_ui.wayfinding_view import WayfindingCard


class Panel(FloatLayout):
    """A rectangle of one colour with its own children; the base of every region."""

    def __init__(self, **kwargs) -> None:
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

    def relayout(self) -> None:
        pass


def _label(**kwargs) -> Label:
    # size_hint None: we place labels ourselves; text_size = the label's box, so long copy
    # wraps at its width and is clipped at its height instead of running over the next label.
    return Label(size_hint=(None, None), halign="left", **kwargs)


class OfferCard(Panel):
    """Full-bleed background, an accent bar, title, body, price line and footer."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        with self.canvas.before:
            self._accent_color = Color(1, 1, 1, 1)
            self._accent = Rectangle()
        self.title = _label(bold=True, valign="bottom")
        self.body = _label(valign="top")
        self.price = _label(bold=True, valign="middle")
        self.footer = _label(valign="middle")
        for w in (self.title, self.body, self.price, self.footer):
            self.add_widget(w)

    def relayout(self) -> None:
        w, h = self.size
        x, y = self.pos
        self._accent.pos, self._accent.size = (x + 0.06 * w, y + 0.18 * h), (0.012 * w, 0.64 * h)
        left, width = x + 0.1 * w, 0.82 * w
        self.title.font_size = max(18, min(h * 0.13, w * 0.07))
        self.body.font_size = max(12, self.title.font_size * 0.45)
        self.price.font_size = max(14, self.title.font_size * 0.6)
        self.footer.font_size = max(10, self.title.font_size * 0.3)
        self.title.pos, self.title.size = (left, y + 0.5 * h), (width, 0.32 * h)
        self.body.pos, self.body.size = (left, y + 0.3 * h), (width, 0.2 * h)
        self.price.pos, self.price.size = (left, y + 0.18 * h), (width, 0.12 * h)
        self.footer.pos, self.footer.size = (left, y + 0.04 * h), (width, 0.1 * h)
        for label in (self.title, self.body, self.price, self.footer):
            label.text_size = label.size

    def show(self, content: Content) -> None:
        self.set_background(content.background)
        self._accent_color.rgba = get_color_from_hex(content.accent)
        # The agent chooses any background; the text colour follows it so the copy stays legible.
        ink = get_color_from_hex(text_colour_for(content.background))
        text = render_card(content)
        for label, value in (
            (self.title, text.title),
            (self.body, text.body),
            (self.price, text.price),
            (self.footer, text.footer),
        ):
            label.color = ink
            label.text = value
        self.relayout()


class WayCard(Panel):
    """An offer card that carries the way to its place: words beside a you-are-here map."""

    def __init__(self, **kwargs) -> None:
        self.view: WayfindingCard | None = None
        super().__init__(**kwargs)
        self.view = WayfindingCard(self)

    def relayout(self) -> None:
        if self.view is not None:
            self.view.relayout()

    def show(self, content: Content) -> None:
        self.set_background(content.background)
        assert self.view is not None
        self.view.show(content)


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
        self.video.opacity = 1
        self.video.source = str(path)
        self.video.state = "play"
        self.relayout()

    def stop_video(self) -> None:
        if self.video is not None:
            # unload: the decoder thread and its frames go, not only the picture.
            self.video.unload()
            self.video.opacity = 0


class Ticker(Panel):
    """One line of text scrolling right to left along the bottom band."""

    SPEED = 0.12  # screen widths per second: readable from a few metres

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.label = Label(size_hint=(None, None), valign="middle")
        self.add_widget(self.label)
        self._offset = 0.0
        self._ev = Clock.schedule_interval(self._scroll, 1 / 30)

    def show(self, content: Content) -> None:
        self.set_background(content.accent)
        self.label.color = get_color_from_hex(text_colour_for(content.accent))
        if self.label.text != content.ticker:
            self.label.text = content.ticker
            self._offset = 0.0
        self.relayout()

    def relayout(self) -> None:
        self.label.font_size = max(12, self.height * 0.5)
        self.label.texture_update()
        self.label.size = (self.label.texture_size[0], self.height)
        self._place()

    def _place(self) -> None:
        travel = self.width + self.label.width
        x = self.right - (self._offset % max(travel, 1))
        self.label.pos = (x, self.y)

    def _scroll(self, dt: float) -> None:
        if self.label.text and self.parent is not None and self.parent.parent is not None:
            self._offset += dt * self.SPEED * max(self.width, 1)
            self._place()


class SidePanel(Panel):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.label = _label(valign="middle")
        self.add_widget(self.label)

    def show(self, content: Content) -> None:
        # A tint of the accent on the card's colour, with text that contrasts with it.
        tint = mix(content.background, content.accent, 0.3)
        self.set_background(tint)
        self.label.color = get_color_from_hex(text_colour_for(tint))
        self.label.text = content.side
        self.relayout()

    def relayout(self) -> None:
        pad = 0.08 * min(self.width, self.height)
        self.label.pos = (self.x + pad, self.y + pad)
        self.label.size = (max(1, self.width - 2 * pad), max(1, self.height - 2 * pad))
        self.label.text_size = self.label.size
        self.label.font_size = max(12, min(self.height * 0.08, self.width * 0.09))


class ItemView(Widget):
    """One item as a whole: main region (card or media) plus optional ticker and side panel."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.card = OfferCard()
        self.way = WayCard()
        self.media = MediaView()
        self.ticker = Ticker()
        self.side = SidePanel()
        self.content: Content | None = None
        self.bind(size=self._layout, pos=self._layout)

    def _layout(self, *_: object) -> None:
        c = self.content
        r = regions(self.width, self.height, ticker=bool(c and c.ticker), side=bool(c and c.side))
        self.card.pos, self.card.size = (self.x + r.main[0], self.y + r.main[1]), r.main[2:]
        self.media.pos, self.media.size = self.card.pos, self.card.size
        self.way.pos, self.way.size = self.card.pos, self.card.size
        for w, box in ((self.ticker, r.ticker), (self.side, r.side)):
            if box:
                w.pos, w.size = (self.x + box[0], self.y + box[1]), box[2:]

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
        else:
            self.media.stop_video()
            self.card.show(content)
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

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.front = ItemView(size_hint=(1, 1))
        self.back = ItemView(size_hint=(1, 1))
        self.add_widget(self.front)
        self._anim: Animation | None = None
        self.bind(size=self._fit, pos=self._fit)

    def _fit(self, *_: object) -> None:
        for v in (self.front, self.back):
            v.pos, v.size = self.pos, self.size

    def show(
        self, content: Content, asset: CoreImage | Path | None = None, *, fade: bool = False
    ) -> None:
        if self._anim is not None:
            self._anim.cancel(self.front)
            self._anim = None
        incoming, outgoing = self.back, self.front
        incoming.show(content, asset)
        # The incoming view goes on top of the drawing order.
        if incoming.parent is not None:
            self.remove_widget(incoming)
        self.add_widget(incoming)
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
