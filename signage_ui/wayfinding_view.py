"""The wayfinding card: the offer's words beside a you-are-here map drawn from geometry.

The level plan is filled polygons (Kivy's GLU tesselator turns each ring into convex pieces,
so L-shaped rooms fill correctly), outlined, turned so that the shopper's ahead is up
(signage_ui/map_frame.py). The route is the campaign's accent colour on a darker casing, so it
reads on the light floor whatever the accent. Colours are calm and fixed (a paper-like plan
on the campaign's background): the campaign chooses its card, not the map's palette.
"""

from __future__ import annotations

from kivy.graphics import Color, Ellipse, Line, Mesh, Rectangle, RoundedRectangle, Triangle
from kivy.graphics.instructions import InstructionGroup
from kivy.graphics.tesselator import TYPE_POLYGONS, WINDING_ODD, Tesselator
from kivy.uix.label import Label
from kivy.utils import get_color_from_hex

from contracts.screen_protocol import Content, Wayfinding
from signage_ui.draw import font_name, kivy_measure, put
from signage_ui.fit import Fitted, fit
from signage_ui.layout import Box
from signage_ui.map_frame import (
    MapFrame,
    here_label,
    inset_title_height,
    label_spot,
    level_boxes,
    level_frame,
    qr_split,
    scan_label,
    walk_line,
    way_regions,
)
from signage_ui.offer_layout import TITLE_SHARES, Placed, _line, legible_min
from signage_ui.qr import matrix as qr_matrix
from signage_ui.qr_view import QrCode
from signage_ui.style import MAP_PALETTE, mix, route_casing, text_colour_for
from signage_ui.template import render_message

# Marker radius as a share of the map's shorter side: big enough to find from a few metres.
MARK_SHARE = 0.028


def _label(**kwargs: object) -> Label:
    return Label(size_hint=(None, None), halign="left", **kwargs)


class WayfindingCard:
    """Draws into a panel's canvas and owns its labels (the panel is ``OfferCard``'s sibling
    in ``ItemView``: created once, refilled per item). ``map_only``: the whole panel is the map
    and the words are the caller's (the kiosk's finder lays them out itself)."""

    def __init__(self, panel: object, *, map_only: bool = False) -> None:
        from kivy.uix.widget import Widget

        assert isinstance(panel, Widget)
        self.panel = panel
        self.map_only = map_only
        self.group = InstructionGroup()
        panel.canvas.add(self.group)
        # An order's pickup number on an accent tag under the headline (drawn under its words).
        self.tag_group = InstructionGroup()
        panel.canvas.add(self.tag_group)
        self.title = _label(bold=True, valign="bottom")
        self.body = _label(valign="top")
        self.info = _label(bold=True, valign="middle")
        self.steps = _label(valign="top")
        self.tag_label = _label(valign="middle")
        self.tag_text = _label(bold=True, valign="middle")
        # On the map beside the mark: dark on the light floor, whatever the card's colour.
        self.here_text = _label(valign="middle", bold=True)
        # The destination level's name over its inset (a route to another floor).
        self.level_text = _label(valign="middle", bold=True)
        # The way on the shopper's phone (content.qr_url): a code and a few words under it.
        self.qr = QrCode(size_hint=(None, None))
        self.qr_text = _label(valign="top")
        self.qr_text.halign = "center"
        self.labels = (
            self.title, self.body, self.info, self.steps, self.qr_text, self.tag_label,
            self.tag_text,
        )  # fmt: skip
        for w in (*(() if map_only else self.labels), self.here_text, self.level_text):
            panel.add_widget(w)
        if not map_only:
            panel.add_widget(self.qr)
        self.content: Content | None = None
        self.frame: MapFrame | None = None
        self.inset_frame: MapFrame | None = None
        self.mark_r = 0.0
        self.body_text = self.info_text = self.steps_text = self.caption_text = ""
        self.tag_words: tuple[str, str] = ("", "")  # (label, the order's number)
        # Whether a text had to be shortened to fit (the fit code's report; never expected).
        self.shortened = False

    def show(self, content: Content, layout: bool = True) -> None:
        """Fill the card with ``content``; ``layout=False`` when the caller lays it out next."""
        self.content = content
        ink = get_color_from_hex(text_colour_for(content.background))
        w = content.wayfinding
        assert w is not None
        self.body_text = content.body
        self.tag_words = ("", "")
        if content.template == "order_ready" and content.highlight:
            # The pickup number on the accent tag, as on the order card without a way: the
            # one thing the shopper must read from across the store.
            tag = render_message(content)
            self.tag_words = (tag.tag_label, tag.tag)
        self.info_text = f"{w.destination_label}\n{walk_line(w, content.language)}"
        self.steps_text = "\n".join(f"{i}.  {s}" for i, s in enumerate(w.steps[:3], 1))
        for label in self.labels:
            label.color = ink
        self.tag_text.color = get_color_from_hex(text_colour_for(content.accent))
        has_qr = bool(content.qr_url) and not self.map_only
        self.qr.show(qr_matrix(content.qr_url) if has_qr and content.qr_url else [])
        self.caption_text = scan_label(content.language) if has_qr else ""
        self.here_text.text = here_label(content.language)
        self.here_text.color = get_color_from_hex(MAP_PALETTE["text"])
        if layout:
            self.relayout()

    def relayout(self) -> None:
        c = self.content
        if c is None or c.wayfinding is None:
            return
        x, y = self.panel.pos
        width, height = self.panel.size
        if self.map_only:
            self._draw(c, c.wayfinding, (x, y, width, height))
            return
        # Inside the screen's safe area (the panel's frame, set by the item view), in the
        # panel's own coordinates: words and map stay clear of overscan like every card's.
        frame = getattr(self.panel, "frame", None)
        if frame is not None:
            (fx, fy, fw, fh), (sw, sh) = frame
            r = way_regions(width, height, (fx - x, fy - y, fw, fh), c.wayfinding)
        else:
            sw, sh = width, height
            r = way_regions(width, height, way=c.wayfinding)
        portrait = height > width
        base = min(width, height)
        small = legible_min(sw, sh)
        # Each text fitted to its box from its designed size down to the legible minimum:
        # a long German step or a French headline shrinks, never runs out of its box.
        hx, hy, hw, hh = r.header
        tag = self._tag(hw, base, small, portrait)
        tag_h = tag[2] + 6 if tag is not None else 0.0
        for share in TITLE_SHARES:  # the headline gives way until the body fits
            title = fit(
                c.title, hw, (hh - tag_h) * share, kivy_measure,
                max_size=max(small, round(base * (0.062 if portrait else 0.07))),
                min_size=small, bold=True, balance=True,
            )  # fmt: skip
            body = fit(
                self.body_text, hw, hh - title.height - tag_h - 4, kivy_measure,
                max_size=max(
                    small, min(round(base * (0.04 if portrait else 0.036)), round(title.size * 0.7))
                ),
                min_size=small, balance=True,
            )  # fmt: skip
            if not body.shortened:
                break
        block = title.height + tag_h + (4 + body.height if body.lines else 0)
        top = hy + hh - max(0.0, hh - block)  # the header's words sit at its bottom
        placed = [
            (self.title, Placed(title, (hx, top - title.height, hw, title.height))),
            (self.body, Placed(body, (hx, top - block, hw, body.height))),
        ]
        self.tag_group.clear()
        if tag is not None:
            label_f, number_f, row_h, pad = tag
            row_y = top - title.height - tag_h + 2
            label_y = row_y + (row_h - label_f.height) / 2
            placed.append(
                (self.tag_label, Placed(label_f, (hx, label_y, label_f.width, label_f.height)))
            )
            pill_x = hx + (label_f.width + pad if label_f.lines else 0.0)
            placed.append(
                (
                    self.tag_text,
                    Placed(
                        number_f, (pill_x + pad, row_y + pad / 2, number_f.width, number_f.height)
                    ),
                )
            )
            self.tag_group.add(Color(*get_color_from_hex(c.accent)))
            self.tag_group.add(
                RoundedRectangle(
                    pos=(x + pill_x, y + row_y), size=(number_f.width + 2 * pad, row_h),
                    radius=[row_h * 0.18],
                )
            )  # fmt: skip
        else:
            for lab in (self.tag_label, self.tag_text):
                put(lab, None, (x, y))
        ix, iy, iw, ih = r.info
        info = fit(
            self.info_text, iw, ih, kivy_measure,
            max_size=max(small, round(base * (0.05 if portrait else 0.045))), min_size=small,
            bold=True,
        )  # fmt: skip
        placed.append((self.info, Placed(info, (ix, iy + (ih - info.height) / 2, iw, info.height))))
        words = self._steps_and_code(r.steps, base, small)
        wx, wy, ww, wh = words
        steps = fit(
            self.steps_text, ww, wh, kivy_measure,
            max_size=max(small, round(base * (0.036 if portrait else 0.034))), min_size=small,
        )  # fmt: skip
        placed.append((self.steps, Placed(steps, (wx, wy + wh - steps.height, ww, steps.height))))
        self.shortened = any(p.fitted.shortened for _lab, p in placed) or self._caption_short
        for lab, p in placed:
            put(lab, p, (x, y))
        put(self.qr_text, self._caption, (x, y), centre=True)
        if self.qr.matrix:
            qx, qy, qw, qh = self._qr_box
            self.qr.pos, self.qr.size = (x + qx, y + qy), (qw, qh)
        mx, my, mw, mh = r.map
        self._draw(c, c.wayfinding, (x + mx, y + my, mw, mh))

    def _tag(
        self, width: float, base: float, small: int, portrait: bool
    ) -> tuple[Fitted, Fitted, float, float] | None:
        """The pickup number's row: its label, then the number on the accent tag, each one line
        shrunk to the width; with the row's height and the tag's padding. None: no number."""
        words, number = self.tag_words
        if not number:
            return None
        size = max(small, round(base * (0.06 if portrait else 0.055)))
        pad = round(size * 0.3)
        label_f = _line(words, width * 0.5, kivy_measure, max(small, round(size * 0.55)), small)
        room = width - (label_f.width + pad if label_f.lines else 0.0) - 2 * pad
        number_f = _line(number, room, kivy_measure, size, small, bold=True)
        return label_f, number_f, number_f.height + pad, pad

    def _steps_and_code(self, steps: Box, base: float, small: int) -> Box:
        """The steps' words' box; the code and its caption placed beside them when there is
        one."""
        self._caption: Placed | None = None
        self._caption_short = False
        if not self.qr.matrix:
            self._qr_box: Box = (0.0, 0.0, 0.0, 0.0)
            return steps
        words, code, caption = qr_split(steps)
        self._qr_box = code
        cx, cy, cw, ch = caption
        f = fit(
            self.caption_text, cw, ch, kivy_measure,
            max_size=max(small, round(base * 0.026)), min_size=min(small, 12), balance=True,
        )  # fmt: skip
        self._caption = Placed(f, (cx, cy + ch - f.height, cw, f.height))
        self._caption_short = f.shortened
        return words

    # ---- drawing -------------------------------------------------------------------------
    def _draw(self, c: Content, w: Wayfinding, box: tuple[float, float, float, float]) -> None:
        g = self.group
        g.clear()
        bx, by, bw, bh = box
        # The map's own panel: a quiet tint of the card, so the plan sits on something.
        g.add(Color(*get_color_from_hex(mix(c.background, "#ffffff", 0.12))))
        g.add(Rectangle(pos=(bx, by), size=(bw, bh)))
        main, inset = level_boxes(w, box)
        frame = level_frame(w, main)
        self.frame = frame
        lv = w.level(w.here_level)
        line_w = max(1.0, min(bw, bh) * 0.002)
        r = max(6.0, min(bw, bh) * MARK_SHARE)
        self.mark_r = r
        self._plan(lv.shapes, frame, line_w)
        self._route([frame.to_px(q) for q in lv.route], r, c.accent)
        self.inset_frame = None
        self.level_text.text = ""
        if inset is None:
            self._destination(frame.to_px(w.destination), r, c.accent)
        else:
            # The way leaves this level: mark where (the stairs or lift), and beside it the
            # level it ends on, turned the same way, from the arrival to the destination.
            self._destination(frame.to_px(lv.route[-1]), r * 0.8, c.accent)
            dest = w.level(w.destination_level)
            ix, iy, iw, ih = inset
            t = self.level_text
            t.text = dest.name or w.destination_level
            t.font_name = font_name()
            t.font_size = max(12, r * 1.1)
            t.color = get_color_from_hex(text_colour_for(c.background))
            t.halign = "center"
            t.size = (iw, inset_title_height(r))
            t.text_size = t.size
            t.pos = (ix, iy + ih - t.height)
            plan_box = (ix, iy, iw, ih - t.height - 4)
            g.add(Color(*get_color_from_hex(mix(c.background, "#ffffff", 0.22))))
            g.add(Rectangle(pos=(ix, iy), size=(iw, plan_box[3])))
            dframe = level_frame(w, plan_box, w.destination_level)
            self.inset_frame = dframe
            self._plan(dest.shapes, dframe, line_w)
            self._route([dframe.to_px(q) for q in dest.route], r * 0.8, c.accent)
            self._destination(dframe.to_px(w.destination), r, c.accent)
        hx, hy = frame.to_px(w.here)
        self._here((hx, hy), r)
        # The words beside the mark, inside the map's box and off the route when a side is
        # free, on a floor-coloured tag so they read on the plan and on the panel alike.
        t = self.here_text
        t.font_name = font_name()
        t.font_size = max(12, r * 1.1)
        t.text_size = (None, None)
        t.texture_update()
        t.size = (t.texture_size[0] + 8, t.texture_size[1] + 2)
        t.pos = label_spot((hx, hy), r, t.size, main, [frame.to_px(q) for q in lv.route])
        g.add(Color(*get_color_from_hex(MAP_PALETTE["floor"])[:3], 0.92))
        g.add(RoundedRectangle(pos=t.pos, size=t.size, radius=[t.height * 0.3]))

    def _plan(self, shapes: tuple, frame: MapFrame, line_w: float) -> None:
        g = self.group
        outline = get_color_from_hex(MAP_PALETTE["outline"])
        for shape in shapes:
            pts = [frame.to_px(p) for p in shape.ring]
            g.add(Color(*get_color_from_hex(MAP_PALETTE[shape.kind])))
            for mesh in _fill(pts):
                g.add(mesh)
        for shape in shapes:
            flat = [v for p in (frame.to_px(q) for q in shape.ring) for v in p]
            g.add(Color(*outline))
            g.add(Line(points=flat, close=True, width=line_w))

    def _route(self, pts: list[tuple[float, float]], r: float, accent: str) -> None:
        """A dark casing, then the accent on top: it reads on the light floor whatever the accent."""
        route = [v for p in pts for v in p]
        if len(route) < 4:
            return
        g = self.group
        g.add(Color(*get_color_from_hex(route_casing(accent))))
        g.add(Line(points=route, width=r * 0.42, joint="round", cap="round"))
        g.add(Color(*get_color_from_hex(accent)))
        g.add(Line(points=route, width=r * 0.26, joint="round", cap="round"))

    def _destination(self, p: tuple[float, float], r: float, accent: str) -> None:
        g = self.group
        g.add(Color(*get_color_from_hex(route_casing(accent))))
        g.add(Ellipse(pos=(p[0] - r * 1.25, p[1] - r * 1.25), size=(r * 2.5, r * 2.5)))
        g.add(Color(*get_color_from_hex(accent)))
        g.add(Ellipse(pos=(p[0] - r, p[1] - r), size=(r * 2, r * 2)))
        g.add(Color(*get_color_from_hex(MAP_PALETTE["mark_dot"])))
        g.add(Ellipse(pos=(p[0] - r * 0.4, p[1] - r * 0.4), size=(r * 0.8, r * 0.8)))

    def _here(self, p: tuple[float, float], r: float) -> None:
        """A disc with an arrowhead ahead of it: on a forward-up map, ahead is always up."""
        g = self.group
        x, y = p
        ring = get_color_from_hex(MAP_PALETTE["mark_dot"])
        here = get_color_from_hex(MAP_PALETTE["here"])
        tip, half = r * 2.4, r * 0.9
        g.add(Color(*ring))
        g.add(
            Triangle(points=[x - half - 3, y + r * 0.6, x + half + 3, y + r * 0.6, x, y + tip + 4])
        )
        g.add(Ellipse(pos=(x - r - 3, y - r - 3), size=(2 * r + 6, 2 * r + 6)))
        g.add(Color(*here))
        g.add(Triangle(points=[x - half, y + r * 0.6, x + half, y + r * 0.6, x, y + tip]))
        g.add(Ellipse(pos=(x - r, y - r), size=(2 * r, 2 * r)))


def _fill(pts: list[tuple[float, float]]) -> list[Mesh]:
    """A ring as filled convex pieces (a fan is wrong for concave rooms; GLU is not)."""
    tess = Tesselator()
    tess.add_contour([v for p in pts for v in p])
    if not tess.tesselate(WINDING_ODD, TYPE_POLYGONS):
        return []
    return [Mesh(vertices=v, indices=i, mode="triangle_fan") for v, i in tess.meshes]
