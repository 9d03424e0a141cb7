"""The kiosk's "Walk" screen (Kivy): the walk survey of issue 18, for staff.

A staff member carrying a tag (a store beacon) starts a walk for it, then taps each zone as they
step into it and "Out of every zone" as they step out; the agent records what its receivers hear
of the tag beside those taps (edge_agent/sensing/walk_stage.py), which `edge-agent bench ble
--walk` scores. The kiosk is carried (a tablet on the store network), so the zones are big
targets and the one the walker is in stands out. Everything goes through ``publish``
(contracts/walk.py WalkCommand); what the agent records comes back as its retained WalkState.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.gridlayout import GridLayout
from kivy.uix.widget import Widget
from kivy.utils import get_color_from_hex
from pydantic import ValidationError

from contracts.walk import WalkCommand, WalkState
from signage_ui.touch_widgets import INK, button
from signage_ui.touch_widgets import label as _label

log = logging.getLogger("signage_ui.kiosk")

ZONE = "#264653"
HERE = "#e9c46a"  # the zone the walker said they are in: warm on the kiosk's blues
HERE_INK = "#1d3557"
OUT = "#6c757d"
START = "#2a9d8f"
STOP = "#9d0208"
ERROR = "#e63946"


def _button(text: str, colour: str, ink: str = INK, **kw: object) -> Button:
    kw.setdefault("font_size", 26)  # carried while walking: a size larger than the finder's
    return button(text, colour, ink, halign="center", **kw)


def _n(count: int, what: str) -> str:
    return f"{count} {what}" if count == 1 else f"{count} {what}s"


def status_line(state: WalkState, names: dict[str, str] | None = None) -> str:
    """What the agent says it records, in the walker's words (zones by their names)."""
    counts = f"{_n(state.adverts, 'reading')}, {_n(state.taps, 'tap')}"
    if state.recording:
        where = (names or {}).get(state.zone or "", state.zone) or "out of every zone"
        return (
            f"Recording [b]{state.tag}[/b]: {counts}, {state.seconds:.0f} s. "
            f"You are: [b]{where}[/b]"
        )
    if state.file:
        return f"Saved [b]{state.file}[/b]: {counts}"
    return "Carry a store beacon, start, and tap each zone as you step into it."


class WalkPanel:
    def __init__(
        self,
        zones: dict[str, str],
        tags: list[str],
        publish: Callable[[bytes], None],
        widgets: dict[str, Widget],
    ) -> None:
        self.zones, self.tags = zones, tags  # zones: id -> the name staff know it by
        self._publish, self.w = publish, widgets
        self.state = WalkState(recording=False)
        self.root = BoxLayout(orientation="vertical", padding=16, spacing=12)
        self.refresh()

    def on_state(self, raw: bytes) -> None:
        """The agent's retained state; one that does not parse is logged and changes nothing."""
        try:
            self.state = WalkState.model_validate_json(raw)
        except ValidationError as exc:
            log.warning("walk: state ignored: %s", exc.errors()[0]["msg"])
            return
        self.refresh()

    def send(self, cmd: WalkCommand) -> None:
        self._publish(cmd.model_dump_json(exclude_none=True).encode())

    def refresh(self) -> None:
        box = self.root
        box.clear_widgets()
        for key in [k for k in self.w if k.startswith("walk:")]:
            del self.w[key]
        head = _label(status_line(self.state, self.zones), markup=True, font_size=24)
        head.size_hint_y, head.height = None, 72
        self.w["walk:status"] = head
        box.add_widget(head)
        if self.state.error:
            err = _label(self.state.error, font_size=20, color=get_color_from_hex(ERROR))
            err.size_hint_y, err.height = None, 40
            box.add_widget(err)
        if not self.state.recording:
            self._start_buttons(box)
            return
        grid = GridLayout(cols=2 if len(self.zones) > 3 else 1, spacing=10)
        for zone, name in self.zones.items():
            here = zone == self.state.zone
            b = _button(name, HERE if here else ZONE, HERE_INK if here else INK, bold=here)
            b.bind(on_release=lambda _b, z=zone: self.send(WalkCommand(action="tap", zone=z)))
            self.w[f"walk:zone:{zone}"] = b
            grid.add_widget(b)
        box.add_widget(grid)
        row = BoxLayout(size_hint_y=None, height=96, spacing=12)
        outside = self.state.zone is None
        out = _button("Out of every zone", HERE if outside else OUT, HERE_INK if outside else INK)
        out.bind(on_release=lambda _b: self.send(WalkCommand(action="tap")))
        stop = _button("Stop and save", STOP, size_hint_x=0.4)
        stop.bind(on_release=lambda _b: self.send(WalkCommand(action="stop")))
        self.w["walk:out"], self.w["walk:stop"] = out, stop
        row.add_widget(out)
        row.add_widget(stop)
        box.add_widget(row)

    def _start_buttons(self, box: BoxLayout) -> None:
        if not self.tags:
            box.add_widget(
                _label("No store beacon is configured ([ble] beacons): nothing to walk with.")
            )
            return
        for tag in self.tags:
            b = _button(f"Start a walk with {tag}", START, size_hint_y=None, height=96)
            b.bind(on_release=lambda _b, t=tag: self.send(WalkCommand(action="start", tag=t)))
            self.w[f"walk:start:{tag}"] = b
            box.add_widget(b)
        box.add_widget(Widget())
