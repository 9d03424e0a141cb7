"""The kiosk's "Find a product" screen (Kivy): a search field with suggestion chips, results
with their stock, and for a tapped result the way from the kiosk (the player's wayfinding card,
signage_ui/wayfinding_view.py), every step, the distance and a QR code for the phone.

It talks to the agent only through ``publish`` (a ``find`` request) and ``on_found`` (its
reply); the rules live in ``finder_model.py``. Large type, finger-sized targets, the kiosk's
calm blues; the route takes one warm colour so it is the first thing the eye finds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kivy.clock import Clock
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.scrollview import ScrollView
from kivy.uix.textinput import TextInput
from kivy.uix.widget import Widget
from kivy.utils import get_color_from_hex
from pydantic import ValidationError

from contracts.kiosk_finder import FoundResult, parse_found
from contracts.screen_protocol import Content
from signage_ui import finder_model as fm
from signage_ui.map_frame import walk_line
from signage_ui.qr_view import QrCode
from signage_ui.touch_widgets import button as _button
from signage_ui.touch_widgets import label as _label
from signage_ui.wayfinding_view import WayfindingCard

log = logging.getLogger("signage_ui.kiosk")

BG = "#1d3557"
ROW = "#264653"
CALM = "#457b9d"
CHIP = "#2b4a6f"
MUTED = "#a8b3c2"
GOOD = "#2a9d8f"
OUT = "#e9c46a"
# The route on the map and the destination mark: warm on the kiosk's blues and the light plan.
ROUTE = "#e76f51"
ROW_H = 88


class FinderPanel:
    """Owns the finder screen's widgets; ``root`` goes into the kiosk's screen manager."""

    def __init__(
        self,
        kiosk_id: str,
        publish: Callable[[bytes], None],
        names: dict[str, Widget],
        snapshot: Callable[[str], None],
        shown: Callable[[dict[str, object]], None] | None = None,
    ) -> None:
        self.state = fm.FinderState(kiosk_id)
        self.publish = publish
        # Told once the first frame showing a reply has been drawn: request id and timings.
        self.shown = shown
        self._sent: tuple[str, float] | None = None
        self._placed = False
        self.w = names  # the kiosk's named widgets: what tests tap
        self.snapshot = snapshot
        self._timeout: object | None = None
        self.shown_sku: str | None = None
        self.root = BoxLayout(orientation="vertical", padding=(16, 12), spacing=10)
        top = BoxLayout(size_hint_y=None, height=72, spacing=10)
        self.input = TextInput(
            multiline=False,
            font_size=30,
            padding=(16, 16),
            background_color=get_color_from_hex("#f1faee"),
            foreground_color=get_color_from_hex(BG),
            cursor_color=get_color_from_hex(BG),
        )
        self.input.bind(on_text_validate=lambda *_: self.search(self.input.text))
        from kivy.core.window import Window

        narrow = Window.width < 800  # a kiosk mounted portrait
        self.search_btn = _button(
            "", GOOD, size_hint_x=None, width=140 if narrow else 170, bold=True
        )
        self.search_btn.bind(on_release=lambda *_: self.search(self.input.text))
        self.lang_btn = _button(
            "", CALM, size_hint_x=None, width=124 if narrow else 150, font_size=22
        )
        self.lang_btn.bind(on_release=lambda *_: self.toggle_language())
        for widget in (self.input, self.search_btn, self.lang_btn):
            top.add_widget(widget)
        self.w["find:input"], self.w["find:search"] = self.input, self.search_btn
        self.w["find:lang"] = self.lang_btn
        self.chips = BoxLayout(size_hint_y=None, height=58, spacing=10)
        self.body = BoxLayout(spacing=16)
        for widget in (top, self.chips, self.body):
            self.root.add_widget(widget)
        self.message = _label(font_size=26, halign="center")
        self.card: WayfindingCard | None = None
        self.qr = QrCode(size_hint_y=None, height=250)
        self._words()
        self.show_message(fm.words(self.state.lang)["start"])

    # ---- words and language ------------------------------------------------------------------
    def _words(self) -> None:
        w = fm.words(self.state.lang)
        self.input.hint_text = w["hint"]
        self.search_btn.text = w["search"]
        self.lang_btn.text = w["lang"]
        self.chips.clear_widgets()
        for i, text in enumerate(fm.SUGGESTIONS[self.state.lang]):
            chip = _button(text, CHIP, font_size=22)
            chip.bind(on_release=lambda _b, q=text: self.pick(q))
            self.w[f"find:chip:{i}"] = chip
            self.chips.add_widget(chip)

    def toggle_language(self) -> None:
        self.state.lang = "de" if self.state.lang == "en" else "en"
        self._words()
        if self.state.query:
            self.search(self.state.query)
        else:
            self.show_message(fm.words(self.state.lang)["start"])

    # ---- asking --------------------------------------------------------------------------------
    def pick(self, query: str) -> None:
        self.input.text = query
        self.search(query)

    def search(self, query: str, route_to: str | None = None) -> None:
        w = fm.words(self.state.lang)
        try:
            req = self.state.request(query, route_to)
        except ValidationError:
            # Too long, or no letters: the wire would refuse it, so it is not sent.
            self.show_message(w["nothing"].format(q=query[:40]))
            return
        raw = req.model_dump_json(exclude_none=True).encode()
        self._sent = (req.request_id, time.perf_counter())
        self.publish(raw)
        if route_to is None:
            self.show_message(w["searching"])
        if self._timeout is not None:
            self._timeout.cancel()  # type: ignore[attr-defined]
        pending = self.state.pending
        self._timeout = Clock.schedule_once(
            lambda _dt: self._no_answer(pending), fm.ANSWER_TIMEOUT_S
        )

    def _no_answer(self, pending: str | None) -> None:
        if pending is not None and self.state.pending == pending:
            self.state.pending = None
            self.show_message(fm.words(self.state.lang)["no_answer"])

    def on_found(self, raw: bytes) -> None:
        """A reply on this kiosk's ``found`` topic; FinderInputError (one line) when bad."""
        arrived = time.perf_counter()
        reply = parse_found(raw)
        if not self.state.accept(reply):
            return  # an answer to a search the shopper has already replaced
        route_sku = reply.route.sku if reply.route is not None else None
        if self.shown_sku is not None and self.shown_sku == route_sku:
            self.show_route(self.shown_sku)
            self._after_frame(reply.request_id, "route", arrived)
        else:
            self.show_results()
            self._after_frame(reply.request_id, "results", arrived)

    def _after_frame(self, request_id: str, what: str, arrived: float) -> None:
        """Tell ``shown`` after the first frame drawn with this reply on it (the window's
        flip after the layout has placed the map), with the times from the request's publish."""
        sent = self._sent
        if self.shown is None or sent is None or sent[0] != request_id:
            return
        from kivy.core.window import Window

        def flipped(*_a: object) -> None:
            card = self.card
            if what == "route" and (card is None or card.frame is None or not self._placed):
                return  # the map is placed by the layout on a later frame
            Window.unbind(on_flip=flipped)
            done = time.perf_counter()
            assert self.shown is not None
            self.shown(
                {
                    "request_id": request_id,
                    "shown": what,
                    "reply_ms": round((arrived - sent[1]) * 1000, 2),
                    "frame_ms": round((done - sent[1]) * 1000, 2),
                }
            )

        Window.bind(on_flip=flipped)

    # ---- results -----------------------------------------------------------------------------
    def _clear(self) -> None:
        if self.qr.parent is not None:
            self.qr.parent.remove_widget(self.qr)  # one QR widget, moved between layouts
        self.body.clear_widgets()
        for key in [k for k in self.w if k.startswith(("find:result:", "find:back", "find:way"))]:
            del self.w[key]

    def _chips(self, shown: bool) -> None:
        c = self.chips
        c.height, c.opacity, c.disabled = (58, 1, False) if shown else (0, 0, True)

    def show_message(self, text: str) -> None:
        self._clear()
        self._chips(True)
        self.message.text = text
        self.body.add_widget(self.message)

    def show_results(self) -> None:
        reply = self.state.reply
        w = fm.words(self.state.lang)
        self.shown_sku = None
        if reply is None or not reply.results:
            note = reply.note if reply is not None and reply.note else ""
            text = w["nothing"].format(q=self.state.query[:40])
            self.show_message(f"{text}\n{note}" if note else text)
            return
        self._clear()
        self._chips(True)
        scroll = ScrollView()
        rows = BoxLayout(orientation="vertical", size_hint_y=None, spacing=8)
        rows.bind(minimum_height=rows.setter("height"))
        for r in reply.results:
            rows.add_widget(self._row(r))
        scroll.add_widget(rows)
        self.body.add_widget(scroll)
        self.snapshot("find-results")

    def _row(self, r: FoundResult) -> Widget:
        lang = self.state.lang
        stock = fm.stock_text(r.stock, lang)
        detail = stock if r.routable else f"{stock}  ·  {r.reason}" if stock else str(r.reason)
        b = _button("", ROW if r.routable else "#34495e", size_hint_y=None, height=ROW_H)
        b.halign, b.valign = "left", "middle"
        b.padding = (20, 8)
        b.markup = True
        colour = GOOD if r.stock is not None and r.stock.available else OUT
        if not r.routable:
            colour = MUTED
        b.text = (
            f"[size=26][b]{_esc(fm.result_line(r))}[/b][/size]\n"
            f"[size=21][color={colour}]{_esc(detail)}[/color][/size]"
        )
        b.bind(size=lambda w, v: setattr(w, "text_size", (v[0] - 40, v[1])))
        b.bind(on_release=lambda _b, sku=r.sku: self.tap(sku))
        self.w[f"find:result:{r.sku}"] = b
        return b

    def tap(self, sku: str) -> None:
        reply = self.state.reply
        hit = next((r for r in reply.results if r.sku == sku), None) if reply else None
        if hit is None:
            return
        self.shown_sku = sku
        if not hit.routable or self.state.route_for(sku):
            self.show_route(sku)
        else:
            # The reply routed another result: ask for the way to this one.
            self.search(self.state.query, route_to=sku)

    # ---- the way -----------------------------------------------------------------------------
    def portrait(self) -> bool:
        from kivy.core.window import Window

        return bool(Window.height > Window.width)

    def show_route(self, sku: str) -> None:
        """The way: the map as large as the screen allows (left in landscape, on top in
        portrait), the product, its stock, distance and every step in words beside it, and the
        QR code. A product without a place: why, and neither a map nor a code."""
        reply = self.state.reply
        assert reply is not None
        hit = next(r for r in reply.results if r.sku == sku)
        w = fm.words(self.state.lang)
        portrait = self.portrait()
        self._clear()
        self._chips(False)  # the map gets their room
        self.body.orientation = "vertical" if portrait else "horizontal"
        route = reply.route if reply.route is not None and reply.route.sku == sku else None
        back = _button(w["back"], CALM, size_hint_y=None, height=72)
        back.bind(on_release=lambda *_: self.show_results())
        self.w["find:back"] = back
        if route is None:
            self.card = None
            self.qr.show([])
            why = hit.reason or reply.note or ""
            text = f"[b]{_esc(hit.name)}[/b]\n\n{_esc(w['no_route'].format(why=why))}"
            self.body.add_widget(_label(text, markup=True, font_size=26))
            side = BoxLayout(orientation="vertical", spacing=10)
            if not portrait:
                side.size_hint_x, side.width = None, 300
            side.add_widget(Widget())
            side.add_widget(back)
            self.body.add_widget(side)
            self.snapshot("find-no-route")
            return
        panel = Widget(size_hint=(1, 0.56) if portrait else (0.46, 1))
        self.body.add_widget(panel)
        self.card = WayfindingCard(panel, map_only=True)
        content = Content(
            content_id=f"finder:{sku}",
            title=hit.name[:80],
            body=fm.stock_text(hit.stock, self.state.lang),
            language=self.state.lang,
            background=BG,
            accent=ROUTE,
            wayfinding=route.wayfinding.model_copy(update={"steps": route.steps[:4]}),
        )
        card = self.card
        card.show(content)
        self._placed = False  # until the layout gives the panel its size

        def placed(*_a: object) -> None:
            self._placed = True
            card.relayout()

        panel.bind(pos=lambda *_: card.relayout(), size=placed)
        way = _label(self._way_text(hit, route.steps, content), markup=True, valign="top")
        self.w["find:way"] = way
        qr_box = BoxLayout(orientation="vertical", spacing=6)
        qr_box.add_widget(self.qr)
        self.qr.show(fm.qr_matrix(route.deep_link))
        scan = _label(w["scan"], font_size=21, halign="center", size_hint_y=None, height=56)
        qr_box.add_widget(scan)
        if portrait:
            # Below the map: the words on the left, the code on the right, then "back".
            self.qr.size_hint_y, self.qr.height = None, 226
            qr_box.add_widget(Widget())
            qr_box.size_hint_x, qr_box.width = None, 230
            row = BoxLayout(spacing=14, size_hint_y=0.44)
            row.add_widget(way)
            row.add_widget(qr_box)
            self.body.add_widget(row)
            self.body.add_widget(back)
        else:
            self.qr.size_hint_y, self.qr.height = None, 250
            way.size_hint_x = 0.5
            side = BoxLayout(orientation="vertical", size_hint_x=None, width=270, spacing=10)
            side.add_widget(qr_box)
            side.add_widget(back)
            self.body.add_widget(way)
            self.body.add_widget(side)
        Clock.schedule_once(lambda _dt: self.snapshot("find-route"), 0.1)

    def _way_text(self, hit: FoundResult, steps: tuple[str, ...], content: Content) -> str:
        """The product, its stock, distance and walking time, then every step, numbered."""
        assert content.wayfinding is not None
        colour = GOOD if hit.stock is not None and hit.stock.available else OUT
        stock = fm.stock_text(hit.stock, self.state.lang)
        lines = [f"[size=29][b]{_esc(hit.name)}[/b][/size]"]
        if stock:
            lines.append(f"[size=22][color={colour}]{_esc(stock)}[/color][/size]")
        walk = walk_line(content.wayfinding, self.state.lang)
        lines.append(f"\n[size=25][b]{_esc(walk)}[/b][/size]")
        lines += [f"[size=21]{i}.  {_esc(s)}[/size]" for i, s in enumerate(steps, 1)]
        return "\n".join(lines)


def _esc(text: str) -> str:
    """Kivy markup escaped: a product name with [b] in it is text, not formatting."""
    return text.replace("&", "&amp;").replace("[", "&bl;").replace("]", "&br;")
