"""`python -m signage_ui.preview --size WxH --out DIR`: draw content items with the player's own
widgets (``signage_ui.widgets.Stage``, the templates a screen plays) and write one PNG each,
then exit. The ops console runs it in a subprocess to preview a campaign's variants, so the
preview is what a screen of that size will show.

Reads ``{"items": [{"name": "...", "content": {...Content...}}]}`` on stdin; writes
``DIR/<name>.png`` for each (names are checked: letters, digits, ``-_.`` only). A product photo
is drawn when ``--content-dir`` holds it (verified by its sha256), else the card is text-led, as
a screen without the file would show it. Exit 0 when every PNG was written, 2 on bad input.

Kivy needs a window: with no DISPLAY its SDL picks an offscreen EGL surface (no X server at
all); with one it opens a window there (a private Xvfb)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
# Frames drawn with an item before its picture is taken (a frame or two after the layout).
SETTLE_FRAMES = 3


def _items(raw: bytes) -> list[tuple[str, dict[str, object]]]:
    doc = json.loads(raw)
    out: list[tuple[str, dict[str, object]]] = []
    for i, item in enumerate(doc["items"]):
        name = item["name"]
        if not isinstance(name, str) or not _NAME.match(name) or name.startswith("."):
            raise ValueError(f"items[{i}].name: {name!r} is not a file name")
        out.append((name, item["content"]))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="signage_ui.preview", description=__doc__)
    p.add_argument("--size", required=True, help="the screen's window, WxH (e.g. 960x540)")
    p.add_argument("--out", type=Path, required=True, help="directory for the PNGs")
    p.add_argument("--content-dir", type=Path, help="a content cache with the variants' photos")
    args = p.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        items = _items(sys.stdin.buffer.read())
    except (ValueError, KeyError, TypeError) as exc:
        print(f"signage_ui.preview: {exc}", file=sys.stderr)
        return 2

    from signage_ui.cli import _kivy_window

    _kivy_window(width, height)

    from kivy.app import App
    from kivy.clock import Clock
    from kivy.core.image import Image as CoreImage
    from kivy.core.window import Window
    from kivy.utils import get_color_from_hex
    from pydantic import ValidationError

    from contracts.screen_protocol import Content
    from signage_ui.assets import AssetCache, AssetError
    from signage_ui.player import grab_window
    from signage_ui.widgets import Stage

    try:
        contents = [(n, Content.model_validate(c)) for n, c in items]
    except ValidationError as exc:
        print(f"signage_ui.preview: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    cache = AssetCache(args.content_dir) if args.content_dir else None
    written: list[str] = []

    def photo(c: Content) -> CoreImage | None:
        if cache is None or not c.image_sha256:
            return None
        try:
            return CoreImage(str(cache.verified(c.image_sha256)))
        except (AssetError, Exception):  # missing, corrupt or undecodable: text-led card
            return None

    class Preview(App):  # type: ignore[misc]
        def build(self) -> Stage:
            self.stage = Stage()
            self.index = 0
            self.due = 0
            Clock.schedule_once(lambda _dt: self.next_item(), 0)
            return self.stage

        def next_item(self) -> None:
            if self.index >= len(contents):
                self.stop()
                return
            _name, content = contents[self.index]
            Window.clearcolor = get_color_from_hex(content.background)
            self.stage.show(content, photo(content))
            self.due = Clock.frames_displayed + SETTLE_FRAMES
            Clock.schedule_once(lambda _dt: self.shoot(), 0)

        def shoot(self) -> None:
            if Clock.frames_displayed < self.due:
                Clock.schedule_once(lambda _dt: self.shoot(), 0.02)
                return
            import cv2

            name = contents[self.index][0]
            partial = args.out / f".{name}.partial.png"
            if not cv2.imwrite(str(partial), grab_window()):
                raise RuntimeError(f"{name}: PNG not written")
            partial.replace(args.out / f"{name}.png")
            written.append(name)
            self.index += 1
            self.next_item()

    Preview().run()
    return 0 if len(written) == len(contents) else 1


if __name__ == "__main__":
    sys.exit(main())
