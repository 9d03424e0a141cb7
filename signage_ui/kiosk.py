"""`signage-ui --kiosk`: the staff kiosk, a touch screen on the store network.

Six screens behind big tabs: live occupancy per screen, alerts with acknowledge, the emergency
override (with a confirmation step), a survey mode for shoppers (NPS, then effort), the
product finder (results, stock, the way from this kiosk and a QR code: ``finder_view.py``), and
the walk survey that records a store trace with ground truth (``walk_view.py``). It only
talks MQTT on the in-store bus; the rules live in ``kiosk_model.py``. Touch targets are at least
64 px high (a finger, not a mouse).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import paho.mqtt.client as mqtt
from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.graphics import Color, Rectangle
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.screenmanager import NoTransition, Screen, ScreenManager
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget
from kivy.utils import get_color_from_hex
from pydantic import ValidationError

from contracts import topics
from contracts.kiosk_finder import FinderInputError
from contracts.mqtt import BrokerConfig, connect, make_client, no_delay
from contracts.screen_protocol import ScreenCommand, screen_status
from edge_agent.config import AgentConfig
from signage_ui import kiosk_model as km
from signage_ui.finder_view import FinderPanel
from signage_ui.player import grab_window
from signage_ui.walk_view import WalkPanel

log = logging.getLogger("signage_ui.kiosk")

TAB_H = 80
ROW_H = 84
INK = get_color_from_hex("#f1faee")
BG = "#1d3557"
URGENT_C = "#e63946"
CALM_C = "#457b9d"
EMERGENCY_MESSAGES = (
    ("Please leave the store by the nearest exit", "Follow the staff's instructions"),
    ("The store is closing in 15 minutes", "Please make your way to the tills"),
)


def filled(widget: Widget, hex_colour: str) -> Widget:
    """Give ``widget`` a solid background that follows its size (again: recolour it)."""
    if hasattr(widget, "_fill_color"):
        widget._fill_color.rgba = get_color_from_hex(hex_colour)
        return widget
    with widget.canvas.before:
        widget._fill_color = Color(*get_color_from_hex(hex_colour))
        rect = Rectangle(pos=widget.pos, size=widget.size)
    widget.bind(
        pos=lambda w, v: setattr(rect, "pos", v), size=lambda w, v: setattr(rect, "size", v)
    )
    return widget


def big_button(text: str, colour: str = CALM_C, **kwargs) -> Button:
    kwargs.setdefault("font_size", 24)
    return Button(
        text=text,
        background_normal="",
        background_color=get_color_from_hex(colour),
        color=INK,
        halign="center",
        **kwargs,
    )


def wrap_label(text: str, **kwargs) -> Label:
    kwargs.setdefault("halign", "left")
    kwargs.setdefault("valign", "middle")
    kwargs.setdefault("color", INK)
    label = Label(text=text, **kwargs)
    label.bind(size=lambda w, v: setattr(w, "text_size", v))
    return label


class KioskApp(App):
    def __init__(
        self,
        cfg: AgentConfig,
        kiosk_id: str,
        *,
        bus: BrokerConfig,
        screenshot_dir: Path | None = None,
        exit_after: float | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.kiosk_id = kiosk_id
        self.store = cfg.store.store_id
        self.bus_cfg = bus
        self.tz = ZoneInfo(cfg.store.timezone)
        self.screenshot_dir = screenshot_dir
        self.exit_after = exit_after
        self.alerts = km.AlertBoard(max_open=cfg.alerts.max_open, max_age_s=cfg.alerts.max_age_s)
        self.occupancy = km.OccupancyBoard()
        self.screen_status: dict[str, str] = {}
        self.emergency: ScreenCommand | None = None
        self.bus_up = False
        self._client: mqtt.Client | None = None
        # Named widgets: what tests tap, and what a screen reader of the logs can follow.
        self.w: dict[str, Widget] = {}
        self.title = f"kiosk {kiosk_id}"
        self._pending_emergency: tuple[str, str] | None = None
        self._survey_step = "nps"
        self._shots = 0
        self._unacked: list[mqtt.MQTTMessageInfo] = []

    # ---- layout ----------------------------------------------------------------------------
    def build(self) -> Widget:
        Window.clearcolor = get_color_from_hex(BG)
        root = filled(BoxLayout(orientation="vertical"), BG)
        self.tabs = BoxLayout(size_hint_y=None, height=TAB_H, spacing=4, padding=4)
        narrow = Window.width < 800
        self.sm = ScreenManager(transition=NoTransition())
        for name, label in (
            ("occupancy", "Occupancy"),
            ("alerts", "Alerts"),
            ("emergency", "Emergency"),
            ("survey", "Survey"),
            ("find", "Find a product"),
            ("walk", "Walk"),
        ):
            b = big_button(label, "#264653", font_size=16 if narrow else 22)
            if narrow:  # a kiosk mounted portrait: labels wrap inside their tab
                b.halign, b.valign = "center", "middle"
                b.bind(size=lambda w, v: setattr(w, "text_size", (v[0] - 8, v[1])))
            b.bind(on_release=lambda _b, n=name: self.go(n))
            self.tabs.add_widget(b)
            self.w[f"tab:{name}"] = b
        self.status = Label(
            text="bus: connecting", color=INK, size_hint=(None, 1), width=96 if narrow else 180
        )
        self.tabs.add_widget(self.status)
        root.add_widget(self.tabs)
        root.add_widget(self.sm)
        for builder in (self._occupancy_screen, self._alerts_screen, self._emergency_screen):
            self.sm.add_widget(builder())
        self.sm.add_widget(self._survey_screen())
        self.sm.add_widget(self._finder_screen())
        self.sm.add_widget(self._walk_screen())
        self.root_box = root
        self._refresh_tabs()
        self._start_bus()
        Clock.schedule_interval(lambda _dt: self.refresh_occupancy(), 1.0)
        Clock.schedule_interval(lambda _dt: self._expire_alerts(), 60.0)
        if self.exit_after is not None:
            Clock.schedule_once(lambda _dt: self.shutdown(), self.exit_after)
        signal.signal(
            signal.SIGTERM, lambda *_: Clock.schedule_once(lambda _dt: self.shutdown(), 0)
        )
        return root

    def go(self, name: str) -> None:
        self.sm.current = name
        # Survey mode is the shopper's: no staff tabs in sight.
        survey = name == "survey"
        self.tabs.height, self.tabs.opacity, self.tabs.disabled = (
            (0, 0, True) if survey else (TAB_H, 1, False)
        )
        if survey:
            self._survey_show("nps")
        self._refresh_tabs()
        self.snapshot(name)

    def _refresh_tabs(self) -> None:
        n = len(self.alerts.alerts)
        self.w["tab:alerts"].text = f"Alerts ({n})" if n else "Alerts"
        for name in ("occupancy", "alerts", "emergency", "survey", "find", "walk"):
            b = self.w[f"tab:{name}"]
            active = self.sm.current == name
            colour = "#2a9d8f" if active else "#264653"
            if name == "alerts" and n and not active:
                colour = URGENT_C
            if name == "emergency" and self.emergency is not None:
                colour = "#b00020"
            b.background_color = get_color_from_hex(colour)

    # ---- occupancy ---------------------------------------------------------------------------
    def _occupancy_screen(self) -> Screen:
        s = Screen(name="occupancy")
        self.occ_grid = GridLayout(cols=4, padding=16, spacing=8, row_default_height=ROW_H)
        s.add_widget(self.occ_grid)
        self.refresh_occupancy()
        return s

    def refresh_occupancy(self) -> None:
        g = self.occ_grid
        g.clear_widgets()
        for head in ("Screen", "Zone", "People now", "Screen status"):
            g.add_widget(wrap_label(f"[b]{head}[/b]", markup=True, font_size=22))
        now = datetime.now(UTC)
        for sc in self.cfg.screens:
            people = self.occupancy.people(sc.zone, now)
            status = self.screen_status.get(sc.id, "unknown")
            g.add_widget(wrap_label(sc.id, font_size=24))
            g.add_widget(wrap_label(sc.zone, font_size=24))
            count = wrap_label("–" if people is None else str(people), font_size=40, bold=True)
            self.w[f"occ:{sc.id}"] = count
            g.add_widget(count)
            colour = {"online": "#2a9d8f", "offline": URGENT_C}.get(status, "#6c757d")
            g.add_widget(filled(wrap_label(f"  {status}", font_size=22), colour))

    # ---- alerts ----------------------------------------------------------------------------------
    def _alerts_screen(self) -> Screen:
        s = Screen(name="alerts")
        scroll = ScrollView()
        self.alert_list = BoxLayout(orientation="vertical", size_hint_y=None, spacing=8, padding=16)
        self.alert_list.bind(minimum_height=self.alert_list.setter("height"))
        scroll.add_widget(self.alert_list)
        s.add_widget(scroll)
        self.refresh_alerts()
        return s

    def refresh_alerts(self) -> None:
        box = self.alert_list
        box.clear_widgets()
        for key in [k for k in self.w if k.startswith("ack:")]:
            del self.w[key]
        open_alerts = self.alerts.open()
        if not open_alerts:
            box.add_widget(
                wrap_label("No open alerts", size_hint_y=None, height=ROW_H, font_size=24)
            )
        for a in open_alerts:
            row = BoxLayout(size_hint_y=None, height=ROW_H + 16, spacing=12)
            colour = URGENT_C if a.kind in km.URGENT else CALM_C
            at = a.ts.astimezone(self.tz).strftime("%H:%M")
            row.add_widget(filled(Widget(size_hint_x=None, width=16), colour))
            row.add_widget(
                wrap_label(
                    f"[b]{km.label_for(a.kind)}[/b]  {at}\n{a.text}", markup=True, font_size=22
                )
            )
            ack = big_button("Acknowledge", "#2a9d8f", size_hint_x=None, width=240)
            ack.bind(on_release=lambda _b, aid=a.alert_id: self.acknowledge(aid))
            self.w[f"ack:{a.alert_id}"] = ack
            row.add_widget(ack)
            box.add_widget(row)
        self._refresh_tabs()

    def _expire_alerts(self) -> None:
        old = self.alerts.expire()
        if old:
            log.info("alerts %s: too old, no longer shown", ", ".join(old))
            self.refresh_alerts()

    def acknowledge(self, alert_id: str) -> None:
        if self.alerts.ack(alert_id, self.kiosk_id):
            self._publish(topics.alert_acks(self.store), km.ack_message(alert_id, self.kiosk_id))
            log.info("alert %s acknowledged", alert_id)
        self.refresh_alerts()

    # ---- emergency ------------------------------------------------------------------------------
    def _emergency_screen(self) -> Screen:
        s = Screen(name="emergency")
        self.em_box = BoxLayout(orientation="vertical", padding=24, spacing=16)
        s.add_widget(self.em_box)
        self.refresh_emergency()
        return s

    def refresh_emergency(self) -> None:
        box = self.em_box
        box.clear_widgets()
        for key in [k for k in self.w if k.startswith("emergency:")]:
            del self.w[key]

        def add(name: str, widget: Widget) -> None:
            self.w[f"emergency:{name}"] = widget
            box.add_widget(widget)

        if self._pending_emergency is not None:
            title, _body = self._pending_emergency
            clearing = title == ""
            question = (
                "Remove the emergency message from every screen?"
                if clearing
                else f"Show on EVERY screen of the store:\n[b]{title}[/b]"
            )
            filled(box, "#6a040f")
            box.add_widget(wrap_label(question, markup=True, font_size=30, halign="center"))
            row = BoxLayout(spacing=24, size_hint_y=None, height=120)
            cancel = big_button("Cancel", "#6c757d")
            cancel.bind(on_release=lambda _b: self._emergency_answer(False))
            yes = big_button(
                "Yes, clear all screens" if clearing else "Yes, show on all screens", "#d00000"
            )
            yes.bind(on_release=lambda _b: self._emergency_answer(True))
            self.w["emergency:cancel"], self.w["emergency:confirm"] = cancel, yes
            row.add_widget(cancel)
            row.add_widget(yes)
            box.add_widget(row)
            return
        filled(box, BG)
        if self.emergency is not None and self.emergency.content is not None:
            box.add_widget(
                filled(
                    wrap_label(
                        f"[b]ACTIVE on every screen:[/b]\n{self.emergency.content.title}",
                        markup=True,
                        font_size=30,
                    ),
                    "#b00020",
                )
            )
            clear = big_button(
                "Clear the emergency message", "#2a9d8f", size_hint_y=None, height=120
            )
            clear.bind(on_release=lambda _b: self._emergency_ask(("", "")))
            add("clear", clear)
            return
        box.add_widget(wrap_label("Emergency message on all screens: choose one", font_size=26))
        for i, (title, body) in enumerate(EMERGENCY_MESSAGES):
            b = big_button(title, "#9d0208", size_hint_y=None, height=110)
            b.bind(on_release=lambda _b, m=(title, body): self._emergency_ask(m))
            add(f"start:{i}", b)

    def _emergency_ask(self, message: tuple[str, str]) -> None:
        self._pending_emergency = message
        self.refresh_emergency()
        self.snapshot("emergency-confirm")

    def _emergency_answer(self, yes: bool) -> None:
        message, self._pending_emergency = self._pending_emergency, None
        if yes and message is not None:
            cmd = km.emergency_clear() if message[0] == "" else km.emergency_override(*message)
            # Retained: every screen, including one that starts later, obeys the last word.
            self._publish(topics.emergency(self.store), cmd.to_bytes(), retain=True)
            self.emergency = cmd if cmd.kind == "override" else None
            log.warning("emergency %s by kiosk %s", cmd.kind, self.kiosk_id)
        self.refresh_emergency()
        self._refresh_tabs()

    # ---- survey ------------------------------------------------------------------------------
    def _survey_screen(self) -> Screen:
        s = Screen(name="survey")
        self.survey_box = filled(
            BoxLayout(orientation="vertical", padding=32, spacing=24), "#f1faee"
        )
        s.add_widget(self.survey_box)
        return s

    def _survey_show(self, step: str) -> None:
        self._survey_step = step
        box = self.survey_box
        box.clear_widgets()
        for key in [k for k in self.w if k.startswith("survey:")]:
            del self.w[key]
        dark = get_color_from_hex("#1d3557")
        top = BoxLayout(size_hint_y=None, height=64)
        top.add_widget(Widget())
        staff = LongPressButton(
            text="Staff (hold)", size_hint_x=None, width=160, font_size=16, hold_s=1.5
        )
        staff.on_long_press = lambda: self.go("occupancy")
        self.w["survey:exit"] = staff
        top.add_widget(staff)
        box.add_widget(top)
        if step == "thanks":
            box.add_widget(Label(text="Thank you!", font_size=64, color=dark, bold=True))
            Clock.schedule_once(lambda _dt: self._survey_restart(), 3.0)
            return
        box.add_widget(
            Label(text=km.SURVEY_QUESTIONS[step], font_size=34, color=dark, halign="center")
        )
        row = BoxLayout(spacing=8, size_hint_y=None, height=110)
        scale = km.SURVEY_SCALES[step]
        for score in scale:
            # Red to green along the scale, so the meaning shows before the numbers are read.
            share = (score - scale.start) / (scale.stop - 1 - scale.start)
            colour = f"#{int(220 - 170 * share):02x}{int(60 + 140 * share):02x}40"
            b = big_button(str(score), colour, font_size=34)
            b.bind(on_release=lambda _b, sc=score: self.answer(step, sc))
            self.w[f"survey:{step}:{score}"] = b
            row.add_widget(b)
        box.add_widget(row)
        low, high = km.SURVEY_ENDS[step]
        ends = BoxLayout(size_hint_y=None, height=40)
        ends.add_widget(Label(text=low, color=dark, font_size=20))
        ends.add_widget(Widget())
        ends.add_widget(Label(text=high, color=dark, font_size=20))
        box.add_widget(ends)

    def _survey_restart(self) -> None:
        if self.sm.current == "survey" and self._survey_step == "thanks":
            self._survey_show("nps")

    def answer(self, survey: str, score: int) -> None:
        zone = next((s.zone for s in self.cfg.screens), None)
        try:
            event = km.survey_event(
                survey,
                score,
                kiosk_id=self.kiosk_id,
                store_id=self.store,
                device_id=self.cfg.store.device_id,
                zone_id=zone,
            )
        except ValidationError as exc:  # a scale bug must never crash a shopper's kiosk
            log.warning("survey: %s", exc.errors()[0]["msg"])
            return
        self._publish(topics.kiosk_events(self.store, self.kiosk_id), event.to_json().encode())
        self._survey_show("effort" if survey == "nps" else "thanks")
        self.snapshot(f"survey-{self._survey_step}")

    # ---- product finder ------------------------------------------------------------------------
    def _walk_screen(self) -> Screen:
        s = Screen(name="walk")
        self.walk = WalkPanel(
            {z.id: z.name or z.id for z in self.cfg.zones},
            [b.name for b in self.cfg.ble.beacons],
            lambda raw: self._publish(topics.walk_cmd(self.store), raw),
            self.w,
        )
        s.add_widget(filled(self.walk.root, BG))
        return s

    def _finder_screen(self) -> Screen:
        s = Screen(name="find")
        self.finder = FinderPanel(
            self.kiosk_id,
            lambda raw: self._publish(topics.kiosk_find(self.store, self.kiosk_id), raw),
            self.w,
            self.snapshot,
            shown=lambda state: self._publish(
                topics.kiosk_state(self.store, self.kiosk_id), json.dumps(state).encode()
            ),
        )
        s.add_widget(filled(self.finder.root, BG))
        return s

    # ---- bus ------------------------------------------------------------------------------------
    def _start_bus(self) -> None:
        # A search is a request and a reply: no Nagle delay on either (contracts/mqtt.py).
        client = no_delay(make_client(f"kiosk-{self.store}-{self.kiosk_id}", self.bus_cfg))
        subs = [
            (topics.alerts(self.store), 1),
            (topics.alert_acks(self.store), 1),
            (topics.zone_occupancy(self.store), 1),
            (topics.screen_state(self.store), 1),
            (topics.emergency(self.store), 1),
            (topics.kiosk_found(self.store, self.kiosk_id), 1),
            (topics.walk_state(self.store), 1),
        ]

        def on_connect(c: mqtt.Client, _u: object, _f: object, rc, _p: object) -> None:
            if rc.is_failure:
                self._later(lambda: self._bus(False))
                return
            c.subscribe(subs)

        def on_subscribe(_c: mqtt.Client, _u: object, _m: int, codes: list, _p: object) -> None:
            # "bus: ok" once the subscriptions hold: a reply or alert sent before would be lost.
            refused = [s[0] for s, rc in zip(subs, codes, strict=False) if rc.is_failure]
            if refused:
                log.warning("bus: subscriptions refused: %s", ", ".join(refused))
            self._later(lambda: self._bus(True))

        def on_disconnect(*_a: object) -> None:
            self._later(lambda: self._bus(False))

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            topic, raw = msg.topic, bytes(msg.payload)
            self._later(lambda: self._guarded(topic, raw))

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_connect_fail = lambda *_a: self._later(lambda: self._bus(False))
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        connect(client, self.bus_cfg)
        client.loop_start()
        self._client = client

    @staticmethod
    def _later(fn: Callable[[], None]) -> None:
        Clock.schedule_once(lambda _dt: fn(), 0)

    def _bus(self, up: bool) -> None:
        if up != self.bus_up:
            (log.info if up else log.warning)("bus: %s", "connected" if up else "down, retrying")
        self.bus_up = up
        self.status.text = "bus: ok" if up else "bus: OFFLINE"
        self.status.color = INK if up else get_color_from_hex(URGENT_C)

    def _guarded(self, topic: str, raw: bytes) -> None:
        """No message may stop the kiosk: what the handler did not expect is logged in one line."""
        try:
            self._on_message(topic, raw)
        except Exception as exc:
            log.error("bus: dropped a message on %s: %s", topic, type(exc).__name__)

    def _on_message(self, topic: str, raw: bytes) -> None:
        """One message from the bus; a bad one is logged in one line and changes nothing."""
        try:
            if topic.startswith(self._alert_prefix):
                self._on_alert(topic[len(self._alert_prefix) :], raw)
            elif topic == topics.alert_acks(self.store):
                alert_id, by = km.parse_ack(raw)
                if self.alerts.ack(alert_id, by):
                    log.info("alert %s acknowledged by %s", alert_id, by)
                    self.refresh_alerts()
            elif topic == topics.kiosk_found(self.store, self.kiosk_id):
                self.finder.on_found(raw)
            elif topic == topics.emergency(self.store):
                self._on_emergency(raw)
            elif topic == topics.walk_state(self.store):
                self.walk.on_state(raw)
            elif topic.endswith("/occupancy"):
                self.occupancy.update(km.parse_occupancy(raw))
                self.refresh_occupancy()
            elif topic.endswith("/state"):
                status = screen_status(raw)  # PayloadError: logged below
                if status is not None:
                    self.screen_status[topic.split("/")[3]] = status
                    self.refresh_occupancy()
        except (km.KioskInputError, FinderInputError) as exc:
            log.warning("bus: ignored on %s: %s", topic, exc)
        except (ValueError, AttributeError) as exc:
            log.warning("bus: ignored on %s: not a JSON object (%s)", topic, exc)

    @property
    def _alert_prefix(self) -> str:
        return topics.alerts(self.store, "")

    def _on_alert(self, alert_id: str, raw: bytes) -> None:
        """One alert's retained topic: the alert while it is open, empty once the agent has
        closed it (acknowledged on any kiosk, or expired)."""
        if not raw:
            if self.alerts.close(alert_id):
                log.info("alert %s closed", alert_id)
                self.refresh_alerts()
            return
        alert = km.parse_alert(raw, alert_id)
        if self.alerts.add(alert):
            log.info("alert %s open: %s", alert_id, alert.kind)
            self.refresh_alerts()

    def _on_emergency(self, raw: bytes) -> None:
        if not raw:
            self.emergency = None
        else:
            try:
                cmd = ScreenCommand.from_bytes(raw)
            except ValidationError as exc:
                raise km.KioskInputError(km._first_error(exc, "emergency")) from None
            self.emergency = cmd if cmd.kind == "override" and not cmd.expired() else None
        self.refresh_emergency()
        self._refresh_tabs()

    def _publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        if self._client is None:
            return
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        self._unacked = [i for i in self._unacked if not i.is_published()] + [info]
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            # Queued in memory by paho and sent when the bus is back.
            log.warning("bus: down; %s queued until it is back", topic)

    # ---- screenshots, shutdown ---------------------------------------------------------------
    def snapshot(self, name: str) -> None:
        shots = self.screenshot_dir
        if shots is None:
            return

        def shoot(_dt: float) -> None:
            shots.mkdir(parents=True, exist_ok=True)
            self._shots += 1
            scratch = shots / ".partial.png"
            if cv2.imwrite(str(scratch), grab_window()):
                os.replace(scratch, shots / f"{self._shots:04d}-kiosk-{name}.png")

        # After the next frame, so the new screen is what gets captured.
        Clock.schedule_once(shoot, 0.15)

    def shutdown(self) -> None:
        if self._client is not None:
            # Let the last answers and acks reach the broker (bounded; paho only queued them).
            deadline = time.monotonic() + 2
            while self._unacked and time.monotonic() < deadline and self._client.is_connected():
                self._unacked = [i for i in self._unacked if not i.is_published()]
                time.sleep(0.02)
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self.stop()


class LongPressButton(Button):
    """A button that acts only when held: the shopper cannot leave survey mode by accident."""

    def __init__(self, hold_s: float = 1.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hold_s = hold_s
        self._down_at: float | None = None
        self.on_long_press: Callable[[], None] = lambda: None

    def on_touch_down(self, touch) -> bool:
        if self.collide_point(*touch.pos):
            self._down_at = time.monotonic()
        return super().on_touch_down(touch)

    def on_touch_up(self, touch) -> bool:
        held = self._down_at is not None and time.monotonic() - self._down_at >= self.hold_s
        if self.collide_point(*touch.pos) and held:
            self._down_at = None
            self.on_long_press()
        elif self.collide_point(*touch.pos):
            self._down_at = None
        return super().on_touch_up(touch)
