"""The signage player: a Kivy window that shows what the agent says, and proves what it showed.

It talks to the agent only over the in-store bus. Without a bus it plays its default card, so the
screen is never black; paho keeps reconnecting in its own thread and every message is handed to
Kivy's main thread with ``Clock.schedule_once`` (widgets are not thread-safe).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.graphics import Color, Rectangle
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.label import Label
from kivy.utils import get_color_from_hex
from pydantic import ValidationError

from edge_agent import topics
from edge_agent.config import AgentConfig, BrokerConfig
from edge_agent.events import ContentImpression, make_event, new_event_id
from edge_agent.mqtt import connect, make_client
from edge_agent.screen_protocol import Content, ScreenCommand
from signage_ui.playback import Change, Impression, Playback
from signage_ui.style import text_colour_for

log = logging.getLogger("signage_ui")


class OfferCard(FloatLayout):
    """An offer card: full-bleed background, an accent bar, a big title and a body."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        with self.canvas.before:
            self._bg_color = Color(0, 0, 0, 1)
            self._bg = Rectangle()
            self._accent_color = Color(1, 1, 1, 1)
            self._accent = Rectangle()
        # size_hint None: we place the labels ourselves; FloatLayout would stretch them.
        self.title = Label(bold=True, halign="left", valign="bottom", size_hint=(None, None))
        self.body = Label(halign="left", valign="top", size_hint=(None, None))
        self.add_widget(self.title)
        self.add_widget(self.body)
        self.bind(size=self._layout, pos=self._layout)

    def _layout(self, *_: object) -> None:
        w, h = self.size
        x, y = self.pos
        self._bg.pos, self._bg.size = (x, y), (w, h)
        self._accent.pos, self._accent.size = (x + 0.06 * w, y + 0.18 * h), (0.012 * w, 0.64 * h)
        left, width = x + 0.1 * w, 0.82 * w
        self.title.font_size = max(18, min(h * 0.13, w * 0.07))
        self.body.font_size = max(12, self.title.font_size * 0.45)
        self.title.pos, self.title.size = (left, y + 0.5 * h), (width, 0.32 * h)
        self.body.pos, self.body.size = (left, y + 0.18 * h), (width, 0.3 * h)
        # text_size = the label's box: copy wraps at its width and is clipped at its height, so
        # over-long campaign copy cannot run over the other label or off the card.
        for label in (self.title, self.body):
            label.text_size = label.size

    def show(self, content: Content) -> None:
        self._bg_color.rgba = get_color_from_hex(content.background)
        self._accent_color.rgba = get_color_from_hex(content.accent)
        # The agent chooses any background; the text colour follows it so the copy stays legible.
        ink = get_color_from_hex(text_colour_for(content.background))
        self.title.color = self.body.color = ink
        self.title.text = content.title
        self.body.text = content.body
        self._layout()


class PlayerApp(App):
    def __init__(
        self,
        cfg: AgentConfig,
        screen_id: str,
        *,
        bus: BrokerConfig,
        screenshot_dir: Path | None = None,
        exit_after: float | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.screen_id = screen_id
        self.store = cfg.store.store_id
        self.bus_cfg = bus
        self.screenshot_dir = screenshot_dir
        self.exit_after = exit_after
        self.playback = Playback()
        self.card: OfferCard | None = None
        self._shots = 0
        self._change_seq = 0
        self._stopping = False
        self._client: mqtt.Client | None = None
        # Last bus state logged ("up"/"down"), so retries every few seconds log one line, not many.
        self._bus_state: str | None = None
        self.title = f"signage {screen_id}"

    # ---- Kivy ------------------------------------------------------------------------------
    def build(self) -> OfferCard:
        self.card = OfferCard()
        showing = self.playback.start(datetime.now(UTC))
        self.card.show(showing.content)
        log.info("showing %s (%s)", showing.content.content_id, showing.content.variant)
        self._after_change(showing.content.content_id)
        self._start_bus()
        Clock.schedule_interval(self._tick, 0.1)
        Clock.schedule_interval(lambda _dt: self._publish_state(), 10.0)
        if self.exit_after is not None:
            Clock.schedule_once(lambda _dt: self.shutdown(), self.exit_after)
        signal.signal(
            signal.SIGTERM, lambda *_: Clock.schedule_once(lambda _dt: self.shutdown(), 0)
        )
        return self.card

    def _tick(self, _dt: float) -> None:
        change = self.playback.tick(datetime.now(UTC))
        if change is not None:
            self._render(change)

    def _render(self, change: Change) -> None:
        assert self.card is not None
        self.card.show(change.showing.content)
        log.info(
            "showing %s (%s)", change.showing.content.content_id, change.showing.content.variant
        )
        if change.ended is not None:
            self._publish_impression(change.ended)
        self._after_change(change.showing.content.content_id)

    def _after_change(self, content_id: str) -> None:
        self._change_seq += 1
        seq = self._change_seq
        self._publish_state()
        if self.screenshot_dir is not None:
            # Once two more frames have been drawn the new card is on screen (the very first
            # frame comes ~0.3 s after start); skip if something newer replaced it by then.
            drawn_by = Clock.frames_displayed + 2
            Clock.schedule_once(lambda _dt: self._screenshot(seq, content_id, drawn_by), 0.05)

    def _screenshot(self, seq: int, content_id: str, drawn_by: int) -> None:
        if seq != self._change_seq or self.screenshot_dir is None:
            return
        if Clock.frames_displayed < drawn_by:
            Clock.schedule_once(lambda _dt: self._screenshot(seq, content_id, drawn_by), 0.05)
            return
        # Written aside, then renamed: whoever watches the directory never sees half a PNG.
        scratch = self.screenshot_dir / ".partial"
        scratch.mkdir(parents=True, exist_ok=True)
        self._shots += 1
        written = Window.screenshot(name=str(scratch / "shot.png"))
        if written:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in content_id)
            target = self.screenshot_dir / f"{self._shots:04d}-{safe}.png"
            os.replace(written, target)
            log.info("screenshot %s", target.name)

    # ---- bus ---------------------------------------------------------------------------------
    def _start_bus(self) -> None:
        client = make_client(f"signage-{self.store}-{self.screen_id}", self.bus_cfg)
        state_topic = topics.screen_state(self.store, self.screen_id)
        client.will_set(state_topic, json.dumps({"status": "offline"}), qos=1, retain=True)
        cmd_topic = topics.screen_cmd(self.store, self.screen_id)
        where = f"{self.bus_cfg.host}:{self.bus_cfg.port}"

        # These run on paho's thread: they only log and hand work to Kivy's main thread.
        def on_connect(c: mqtt.Client, _u: object, _f: object, reason_code, _p: object) -> None:
            if reason_code.is_failure:
                self._bus_changed("down", f"bus: {where} refused the connection: {reason_code}")
                return
            c.subscribe(cmd_topic, qos=1)
            self._bus_changed("up", f"bus: connected to {where}")
            Clock.schedule_once(lambda _dt: self._publish_state(), 0)

        def on_connect_fail(_c: mqtt.Client, _u: object) -> None:
            self._bus_changed("down", f"bus: {where} unreachable; playing on, retrying")

        def on_disconnect(_c: mqtt.Client, _u: object, _f: object, reason_code, _p: object) -> None:
            if not self._stopping:
                self._bus_changed("down", f"bus: lost {where} ({reason_code}); retrying")

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            raw = bytes(msg.payload)
            Clock.schedule_once(lambda _dt: self._on_command(raw), 0)

        client.on_connect = on_connect
        client.on_connect_fail = on_connect_fail
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        connect(client, self.bus_cfg)
        client.loop_start()
        self._client = client

    def _bus_changed(self, state: str, line: str) -> None:
        if state != self._bus_state:
            self._bus_state = state
            (log.info if state == "up" else log.warning)(line)

    def _on_command(self, raw: bytes) -> None:
        try:
            cmd = ScreenCommand.from_bytes(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "command"
            log.warning("bus: ignored a malformed command: %s: %s", where, first["msg"])
            return
        except ValueError as exc:  # not JSON (json.JSONDecodeError, UnicodeDecodeError)
            log.warning("bus: ignored a malformed command: not JSON: %s", exc)
            return
        now = datetime.now(UTC)
        if cmd.expired(now):
            log.info("bus: ignored stale command %s (issued %s)", cmd.cmd_id, cmd.issued_at)
            return
        change = self.playback.apply(cmd, now)
        if change is not None:
            self._render(change)
        elif self.playback.pending is cmd:
            log.info("holding %s; %s waits", self.playback.current.content.content_id, cmd.kind)

    def _publish_impression(self, imp: Impression) -> mqtt.MQTTMessageInfo | None:
        """Proof of play for an item that left the screen. While the bus is down paho keeps it
        queued in memory and sends it on reconnect."""
        if self._client is None:
            return None
        event = make_event(
            ContentImpression(
                impression_id=new_event_id(),
                screen_id=self.screen_id,
                content_id=imp.content.content_id,
                campaign_id=imp.content.campaign_id,
                variant=imp.content.variant,
                start=imp.start,
                end=imp.end,
                duration_s=round(imp.duration_s, 3),
                cmd_id=imp.cmd_id,
                rule=imp.content.rule,
                reasons=list(imp.content.reasons),
            ),
            store_id=self.store,
            device_id=self.cfg.store.device_id,
            time=imp.end,
        )
        return self._client.publish(
            topics.screen_events(self.store, self.screen_id), event.to_json(), qos=1
        )

    def _publish_state(self) -> None:
        if self._client is None:
            return
        current = self.playback.current
        state = {
            "status": "online",
            "content_id": current.content.content_id,
            "since": current.start.isoformat(),
            "fps": round(Clock.get_fps(), 1),
        }
        self._client.publish(
            topics.screen_state(self.store, self.screen_id), json.dumps(state), qos=1, retain=True
        )

    def _delivered(self, info: mqtt.MQTTMessageInfo | None, timeout: float) -> bool:
        """Wait (bounded) for the PUBACK of ``info``. Gives up at once when the bus is down: an
        unsent message was only queued in memory and nothing will send it before we exit."""
        if info is None or self._client is None or info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._client.is_connected():
            if info.is_published():
                return True
            time.sleep(0.01)
        return info.is_published()

    def shutdown(self) -> None:
        """Report the last impression, say goodbye on the bus, and close the window."""
        if self._stopping:
            return
        self._stopping = True
        final = self.playback.close(datetime.now(UTC))
        info = self._publish_impression(final)
        if self._client is not None:
            if not self._delivered(info, 3.0):
                log.warning(
                    "bus: final impression of %s not delivered (bus down)", final.content.content_id
                )
            offline = self._client.publish(
                topics.screen_state(self.store, self.screen_id),
                json.dumps({"status": "offline"}),
                qos=1,
                retain=True,
            )
            self._delivered(offline, 2.0)
            self._client.disconnect()
            self._client.loop_stop()
        log.info("stopped")
        self.stop()
