"""The signage player: a Kivy window that shows what the agent says, and proves what it showed.

It talks to the agent only over the in-store bus. Without a bus it plays its default loop from
the local cache, so the screen is never black; paho keeps reconnecting in its own thread and
every message is handed to Kivy's main thread with ``Clock.schedule_once`` (widgets are not
thread-safe). A command is applied before the next frame, so a takeover is on screen in the
frame after it arrives; the time from arrival to that frame is measured and reported in health.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import statistics
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from kivy.app import App
from kivy.clock import Clock
from kivy.core.image import Image as CoreImage
from kivy.core.text import Label as CoreLabel
from kivy.core.window import Window
from kivy.utils import get_color_from_hex
from pydantic import ValidationError

from contracts import topics
from contracts.events import (
    CloudEvent,
    ContentImpression,
    ContentInteraction,
    make_event,
    new_event_id,
)
from contracts.mqtt import BrokerConfig, connect, make_client
from contracts.screen_protocol import CARD_TEMPLATES, Content, ScreenCommand, Theme
from contracts.validation import first_error
from edge_agent.config import AgentConfig
from signage_ui import qr
from signage_ui.assets import AssetCache, AssetError
from signage_ui.draw import DEFAULT_FONT, font_name, register_font, use_font
from signage_ui.loop import BUILTIN_DEFAULT, Loop, PlaylistError, load_playlist
from signage_ui.playback import Change, Impression, Playback
from signage_ui.widgets import Stage
from sync.outbox import Outbox

log = logging.getLogger("signage_ui")

HEALTH_EVERY_S = 5.0
# Impressions waiting for the bus, on disk: days of a busy screen's proof of play.
IMPRESSIONS_CAP_BYTES = 16 * 1024 * 1024
SCREENSHOT_MAX_SIDE = 480
# The same broken asset is reported again at most this often (it may sit in the loop for days).
ERROR_REPEAT_S = 600.0
PLAYLIST_CHECK_S = 5.0


def grab_window() -> np.ndarray:
    """What the window shows right now (our own frame buffer: screen content only), as a BGR
    array. Rows are read with 1-byte alignment: Kivy's ``Window.screenshot`` skews every row
    of a window whose width is not a multiple of 4."""
    from kivy.graphics.opengl import (
        GL_PACK_ALIGNMENT,
        GL_RGB,
        GL_UNSIGNED_BYTE,
        glPixelStorei,
        glReadPixels,
    )

    w, h = Window.size
    glPixelStorei(GL_PACK_ALIGNMENT, 1)
    raw = glReadPixels(0, 0, w, h, GL_RGB, GL_UNSIGNED_BYTE)
    return np.frombuffer(raw, np.uint8)[: w * h * 3].reshape(h, w, 3)[::-1, :, ::-1].copy()


def grab_screen(max_side: int = SCREENSHOT_MAX_SIDE) -> tuple[bytes, int, int]:
    """The window downscaled to ``max_side`` (aspect kept), as JPEG bytes, width, height."""
    img = grab_window()
    h, w = img.shape[:2]
    scale = min(1.0, max_side / max(w, h))
    small = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), cv2.INTER_AREA)
    ok, jpg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return jpg.tobytes(), small.shape[1], small.shape[0]


class PlayerApp(App):
    def __init__(
        self,
        cfg: AgentConfig,
        screen_id: str,
        *,
        bus: BrokerConfig,
        screenshot_dir: Path | None = None,
        exit_after: float | None = None,
        content_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.screen_id = screen_id
        self.store = cfg.store.store_id
        self.bus_cfg = bus
        self.screenshot_dir = screenshot_dir
        self.exit_after = exit_after
        self.cache = AssetCache(content_dir or cfg.paths.resolved().content_dir)
        self.tz = ZoneInfo(cfg.store.timezone)
        self.loop = Loop(tz=self.tz, usable=self._usable, screen_id=screen_id)
        self.playback = Playback(loop=self.loop)
        self.stage: Stage | None = None
        self.playlist_version: int | None = None
        self._theme_stamp: tuple[int, int, int] | None = None
        self._playlist_stamp: tuple[int, int, int] | None = None
        self._images: dict[str, CoreImage] = {}
        self._videos_ok: set[str] = set()
        self._reported: dict[tuple[str, str], float] = {}
        self.errors = 0
        self._shots = 0
        self._change_seq = 0
        self._stopping = False
        self._client: mqtt.Client | None = None
        # Proof of play is kept on disk until the bus has it (a dead bus, a restart): the
        # screen's own small outbox, the same code as the agent's (sync/outbox.py).
        self.impressions = Outbox(
            impressions_path(self.cache.root, screen_id), cap_bytes=IMPRESSIONS_CAP_BYTES
        )
        # Impressions handed to paho and not yet acknowledged (Kivy's thread only: no lock is
        # ever held across a paho call or taken in a paho callback).
        self._in_flight: list[tuple[mqtt.MQTTMessageInfo, str]] = []
        # Whether the item on screen has been drawn at least once (a frame flipped with it).
        self._current_drawn = False
        self.impressions_skipped = 0  # items replaced before their first frame: not a play
        self.last_command_at: datetime | None = None
        # Arrival (monotonic) of the command whose change waits for its first frame.
        self._awaiting_frame: float | None = None
        self._state_on_flip = False  # a new item: its state goes out after its first frame
        self.latencies_ms: deque[float] = deque(maxlen=2000)
        self.first_frame_at: float | None = None
        # Last bus state logged ("up"/"down"), so retries every few seconds log one line, not many.
        self._bus_state: str | None = None
        self.title = f"signage {screen_id}"
        # Touch (a screen with ``touch = true``): the item whose details a tap opened, and the
        # last touch (monotonic); the details close after ``touch_idle_s`` without one.
        screen = next((sc for sc in cfg.screens if sc.id == screen_id), None)
        self.touch = screen is not None and screen.touch
        self.touch_idle_s = screen.touch_idle_s if screen is not None else 20.0
        self.detail: Content | None = None
        self._detail_since = 0.0
        self._last_touch = 0.0

    # ---- Kivy ------------------------------------------------------------------------------
    def build(self) -> Stage:
        self.stage = Stage()
        self._reload_playlist()
        showing = self.playback.start(datetime.now(UTC))
        # Even before the first frame is composed the window is the card's colour, not black.
        Window.clearcolor = get_color_from_hex(showing.content.background)
        self.stage.show(showing.content, self._safe_asset(showing.content))
        Window.bind(on_flip=self._on_flip)
        if self.touch:
            self.stage.bind(on_touch_down=self._on_touch)
        log.info("showing %s (%s)", showing.content.content_id, showing.content.variant)
        self._after_change(showing.content.content_id)
        self._start_bus()
        Clock.schedule_interval(self._tick, 0.05)
        Clock.schedule_interval(lambda _dt: self._publish_state(), HEALTH_EVERY_S)
        Clock.schedule_interval(lambda _dt: self._drain_impressions(), 1.0)
        Clock.schedule_interval(lambda _dt: self._reload_playlist(), PLAYLIST_CHECK_S)
        if self.exit_after is not None:
            Clock.schedule_once(lambda _dt: self.shutdown(), self.exit_after)
        signal.signal(
            signal.SIGTERM, lambda *_: Clock.schedule_once(lambda _dt: self.shutdown(), 0)
        )
        return self.stage

    def _on_flip(self, *_: object) -> None:
        now = time.monotonic()
        if self.first_frame_at is None:
            self.first_frame_at = now
        if self.stage is not None and self.stage.prerolling:
            return  # the old item is still what is drawn: a clip waits for its first frame
        if self._awaiting_frame is not None:
            self.latencies_ms.append((now - self._awaiting_frame) * 1000)
            self._awaiting_frame = None
        self._current_drawn = True
        if self._state_on_flip:
            # The state says what is on the glass: sent once the new item's frame is drawn.
            self._state_on_flip = False
            self._publish_state()

    def _tick(self, _dt: float) -> None:
        if self.detail is not None:
            # The loop holds while a shopper reads the details; a quiet time closes them.
            if time.monotonic() - self._last_touch < self.touch_idle_s:
                return
            content = self._end_detail()
            change = self.playback.tick(datetime.now(UTC))
            if change is None:  # the item's time is not over: it comes back as it was
                assert self.stage is not None
                self.stage.show(content, self._safe_asset(content), fade=True)
                self._after_change(content.content_id)
                return
        change = self.playback.tick(datetime.now(UTC))
        if change is not None:
            self._render(change)

    # ---- touch ---------------------------------------------------------------------------
    def _on_touch(self, _stage: object, _touch: object) -> bool:
        """A tap on a card opens its details: the card alone on the screen (no ticker, no side
        panel), so larger, with its QR code and the way when it has them. A tap on open details
        keeps them open. Nothing opens over an emergency, nor on an image or a video."""
        current = self.playback.current
        if current.mode == "override":
            return False
        self._last_touch = time.monotonic()
        if self.detail is not None:
            return True
        content = current.content
        if content.template not in CARD_TEMPLATES:
            return False
        self.detail, self._detail_since = content, self._last_touch
        shown = detail_of(content)
        assert self.stage is not None
        self.stage.show(shown, self._safe_asset(content))
        log.info("details of %s (tap)", content.content_id)
        self._publish_interaction(content, "tap")
        self._after_change(shown.content_id)
        return True

    def _end_detail(self) -> Content:
        """Close the details (a quiet time, or a command replacing the item): said as an
        interaction with how long they were open. Returns the item they were of."""
        content, self.detail = self.detail, None
        assert content is not None
        open_s = time.monotonic() - self._detail_since
        self._publish_interaction(content, "detail_closed", open_s)
        log.info("details of %s closed after %.1f s", content.content_id, open_s)
        return content

    def _render(self, change: Change, previous_mode: str | None = None) -> None:
        assert self.stage is not None
        if self.detail is not None:
            self._end_detail()  # a command (an emergency, a shopper's item) replaces them
        content = change.showing.content
        # Loop items crossfade; a takeover or an override cuts in at once (the very next frame).
        fade = change.showing.mode == "loop" and previous_mode in (None, "loop")
        self.stage.show(content, self._safe_asset(content), fade=fade)
        Window.clearcolor = get_color_from_hex(content.background)
        log.info("showing %s (%s, %s)", content.content_id, content.variant, change.showing.mode)
        drawn, self._current_drawn = self._current_drawn, False
        if change.ended is not None:
            if drawn:
                self._publish_impression(change.ended)
            else:
                # Replaced before a single frame showed it: nobody saw it, it is not a play.
                self.impressions_skipped += 1
        self._after_change(content.content_id)

    # ---- content cache ------------------------------------------------------------------
    def _asset(self, content: Content) -> CoreImage | Path | None:
        """The asset a content item needs, loaded and verified (AssetError when it cannot be
        shown). Images are decoded ahead of the switch and kept, so a switch only swaps a
        texture."""
        # A card's photo too (an offer's product, a welcome's): without it the card is text-led.
        if content.template in ("image", *CARD_TEMPLATES) and content.image_sha256:
            sha = content.image_sha256
            if sha not in self._images:
                path = self.cache.verified(sha)
                try:
                    self._images[sha] = CoreImage(str(path))
                except Exception as exc:  # Kivy raises a bare Exception for undecodable files
                    raise AssetError("corrupt", sha, f"not a readable image ({exc})") from None
                while len(self._images) > 16:
                    self._images.pop(next(iter(self._images)))
            else:
                self.cache.verified(sha)  # a file swapped under us is checked again
            return self._images[sha]
        if content.template == "video" and content.video_sha256:
            sha = content.video_sha256
            path = self.cache.verified(sha)
            if sha not in self._videos_ok:
                cap = cv2.VideoCapture(str(path))
                ok = cap.isOpened() and cap.read()[0]
                cap.release()
                if not ok:
                    raise AssetError("corrupt", sha, "not a playable video")
                self._videos_ok.add(sha)
            return path
        if content.template in ("image", "video"):
            raise AssetError("missing", "-" * 64, f"{content.template} item without its sha256")
        return None

    def _safe_asset(self, content: Content) -> CoreImage | Path | None:
        """The asset, or None (the item then shows as a card of its own title and colours)
        when it went bad between the check and the switch."""
        try:
            return self._asset(content)
        except AssetError as exc:
            self._report_error(exc.kind, content.content_id, str(exc), exc.sha256)
            return None

    def _usable(self, content: Content) -> bool:
        try:
            self._asset(content)
            return True
        except AssetError as exc:
            self._report_error(exc.kind, content.content_id, str(exc), exc.sha256)
            # A card without its photo still says its piece: it plays as a text-led card.
            return content.template in CARD_TEMPLATES

    def _reload_theme(self) -> None:
        """The store's brand (``theme.json``, written by the agent from a ``theme`` push): its
        logo over every item, its colours on the screens' own default card."""
        path = self.cache.root / "theme.json"
        try:
            st = path.stat()
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        if stamp == self._theme_stamp:
            return
        self._theme_stamp = stamp
        theme: Theme | None = None
        if stamp is not None:
            try:
                theme = Theme.model_validate_json(path.read_bytes())
            except (OSError, ValidationError) as exc:
                self._report_error("theme_invalid", None, str(exc).splitlines()[0][:200])
                return
        colours = {}
        if theme is not None and theme.background:
            colours["background"] = theme.background
        if theme is not None and theme.accent:
            colours["accent"] = theme.accent
        self.loop.fallback = BUILTIN_DEFAULT.model_copy(update=colours)
        texture = None
        if theme is not None and theme.logo_sha256:
            try:
                texture = CoreImage(str(self.cache.verified(theme.logo_sha256))).texture
            except Exception as exc:  # AssetError, or an undecodable file: no logo, said once
                self._report_error("theme_logo", None, str(exc)[:200], theme.logo_sha256)
        font = self._theme_font(theme)
        if self.stage is not None:
            if theme is not None:
                self.stage.set_logo(texture, theme.logo_corner, theme.logo_size)
            else:
                self.stage.set_logo(None)
            if font != font_name():
                self.stage.set_font(font)
        else:
            use_font(font)
        log.info("theme: %s, font %s", f"v{theme.version}" if theme else "none", font)

    def _theme_font(self, theme: Theme | None) -> str:
        """The brand's typeface registered with Kivy (its name), or the default one when the
        theme has none or its file cannot be read (said once, the screen plays on)."""
        if theme is None or theme.font_sha256 is None:
            return DEFAULT_FONT
        try:
            regular = self.cache.verified(theme.font_sha256)
            bold = self.cache.verified(theme.font_bold_sha256) if theme.font_bold_sha256 else None
            name = register_font(regular, bold, theme.font_sha256)
            # Kivy opens the file only when it draws: draw a word now, so a file that is not
            # a font falls back here rather than failing in the middle of a card.
            CoreLabel(font_name=name, font_size=12, text="Ag").refresh()
            return name
        except Exception as exc:  # AssetError, or a file the text provider refuses
            self._report_error("theme_font", None, str(exc)[:200], theme.font_sha256)
            return DEFAULT_FONT

    def _reload_playlist(self) -> None:
        self._reload_theme()
        path = self.cache.playlist_path
        try:
            st = path.stat()
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        if stamp == self._playlist_stamp:
            return
        self._playlist_stamp = stamp
        try:
            playlist = load_playlist(path)
        except PlaylistError as exc:
            # Keep playing what we have: a bad push must not blank the screen.
            self._report_error("playlist_invalid", None, str(exc))
            return
        self.loop.items = playlist.items if playlist else ()
        self.playlist_version = playlist.version if playlist else None
        log.info(
            "playlist: %s",
            f"v{playlist.version}, {len(playlist.items)} items" if playlist else "none (built-in)",
        )

    def _report_error(
        self, kind: str, content_id: str | None, detail: str, sha256: str | None = None
    ) -> None:
        key = (kind, sha256 or content_id or detail)
        now = time.monotonic()
        if now - self._reported.get(key, -1e9) < ERROR_REPEAT_S:
            return
        self._reported[key] = now
        self.errors += 1
        log.warning("%s: %s%s", kind, f"{content_id}: " if content_id else "", detail)
        if self._client is not None:
            body = {
                "kind": kind,
                "screen_id": self.screen_id,
                "content_id": content_id,
                "sha256": sha256,
                "detail": detail,
                "ts": datetime.now(UTC).isoformat(),
            }
            self._client.publish(
                topics.screen_errors(self.store, self.screen_id), json.dumps(body), qos=1
            )

    # ---- screenshots ----------------------------------------------------------------------
    def _after_change(self, content_id: str) -> None:
        self._change_seq += 1
        seq = self._change_seq
        self._state_on_flip = True
        if self.screenshot_dir is not None:
            # Once two more frames have been drawn the new item is on screen (a crossfade is
            # over after FADE_S); skip if something newer replaced it by then.
            drawn_by = Clock.frames_displayed + 2
            delay = Stage.FADE_S + 0.05
            Clock.schedule_once(lambda _dt: self._screenshot(seq, content_id, drawn_by), delay)

    def _screenshot(self, seq: int, content_id: str, drawn_by: int, settled: bool = False) -> None:
        if seq != self._change_seq or self.screenshot_dir is None:
            return
        # A clip coming in is not on the glass before its first frame (``Stage.prerolling``).
        fading = self.stage is not None and (self.stage.fading or self.stage.prerolling)
        if Clock.frames_displayed < drawn_by or fading or not settled:
            # The fade's last step may not be on screen yet when it reports done: one more
            # frame after it is, so the shot never catches the last blend (seen under load).
            drawn_by = max(drawn_by, Clock.frames_displayed + 1)
            done = not fading

            def again(_dt: float) -> None:
                self._screenshot(seq, content_id, drawn_by, settled=done)

            Clock.schedule_once(again, 0.05)
            return
        # Written aside, then renamed: whoever watches the directory never sees half a PNG.
        scratch = self.screenshot_dir / ".partial"
        scratch.mkdir(parents=True, exist_ok=True)
        self._shots += 1
        partial = scratch / "shot.png"
        if cv2.imwrite(str(partial), grab_window()):
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in content_id)
            target = self.screenshot_dir / f"{self._shots:04d}-{safe}.png"
            os.replace(partial, target)
            log.info("screenshot %s", target.name)

    def _send_screenshot(self, cmd: ScreenCommand) -> None:
        """For ops: a downscaled JPEG of our own window (never a camera image) on the bus."""
        if self._client is None:
            return
        try:
            jpg, w, h = grab_screen()
        except Exception as exc:  # GL read or encoding: report, never crash the player
            self._report_error("screenshot_failed", None, str(exc))
            return
        body = {
            "cmd_id": cmd.cmd_id,
            "screen_id": self.screen_id,
            "ts": datetime.now(UTC).isoformat(),
            "content_id": self.playback.current.content.content_id,
            "width": w,
            "height": h,
            "jpeg_b64": base64.b64encode(jpg).decode(),
        }
        self._client.publish(
            topics.screen_screenshot(self.store, self.screen_id), json.dumps(body), qos=1
        )
        log.info("screenshot for ops: %dx%d, %d bytes", w, h, len(jpg))

    # ---- bus ---------------------------------------------------------------------------------
    def _start_bus(self) -> None:
        client = make_client(f"signage-{self.store}-{self.screen_id}", self.bus_cfg)
        state_topic = topics.screen_state(self.store, self.screen_id)
        client.will_set(state_topic, json.dumps({"status": "offline"}), qos=1, retain=True)
        cmd_topic = topics.screen_cmd(self.store, self.screen_id)
        emergency_topic = topics.emergency(self.store)
        where = f"{self.bus_cfg.host}:{self.bus_cfg.port}"

        # These run on paho's thread: they only log and hand work to Kivy's main thread.
        def on_connect(c: mqtt.Client, _u: object, _f: object, reason_code, _p: object) -> None:
            if reason_code.is_failure:
                self._bus_changed("down", f"bus: {where} refused the connection: {reason_code}")
                return
            c.subscribe([(cmd_topic, 1), (emergency_topic, 1)])
            self._bus_changed("up", f"bus: connected to {where}")
            Clock.schedule_once(lambda _dt: self._in_flight.clear(), 0)  # sent again below
            Clock.schedule_once(lambda _dt: self._publish_state(), 0)
            Clock.schedule_once(lambda _dt: self._drain_impressions(), 0)

        def on_connect_fail(_c: mqtt.Client, _u: object) -> None:
            self._bus_changed("down", f"bus: {where} unreachable; playing on, retrying")

        def on_disconnect(_c: mqtt.Client, _u: object, _f: object, reason_code, _p: object) -> None:
            if not self._stopping:
                self._bus_changed("down", f"bus: lost {where} ({reason_code}); retrying")

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            raw, received = bytes(msg.payload), time.monotonic()
            if not raw:  # a retained message being deleted
                return
            cmd = prepared(raw)
            Clock.schedule_once(lambda _dt: self._guarded_command(raw, received, cmd), 0)

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
            up = state == "up"
            Clock.schedule_once(lambda _dt: setattr(self.playback, "bus_up", up), 0)

    def _guarded_command(
        self, raw: bytes, received: float | None, cmd: ScreenCommand | None = None
    ) -> None:
        """No message may stop the player: whatever a command breaks is reported, once per
        kind, and the screen plays on."""
        try:
            self._on_command(raw, received, cmd)
        except Exception as exc:
            self._report_error("bad_command", None, f"{type(exc).__name__}: {str(exc)[:120]}")

    def _on_command(
        self, raw: bytes, received: float | None = None, parsed: ScreenCommand | None = None
    ) -> None:
        try:
            cmd = parsed if parsed is not None else ScreenCommand.from_bytes(raw)
        except ValidationError as exc:
            log.warning("bus: ignored a malformed command: %s", first_error(exc, "command"))
            return
        except ValueError as exc:  # not JSON (json.JSONDecodeError, UnicodeDecodeError)
            log.warning("bus: ignored a malformed command: not JSON: %s", exc)
            return
        now = datetime.now(UTC)
        self.last_command_at = now
        if cmd.expired(now):
            log.info("bus: ignored stale command %s (issued %s)", cmd.cmd_id, cmd.issued_at)
            return
        if cmd.kind == "screenshot":
            Clock.schedule_once(lambda _dt: self._send_screenshot(cmd), 0)
            return
        if cmd.content is not None and not self._usable(cmd.content):
            log.warning("bus: %s skipped: its asset cannot be shown", cmd.content.content_id)
            return
        previous_mode = self.playback.current.mode
        change = self.playback.apply(cmd, now)
        if change is not None:
            self._awaiting_frame = received
            self._render(change, previous_mode)
        elif self.playback.pending is cmd:
            log.info("holding %s; %s waits", self.playback.current.content.content_id, cmd.kind)

    def _publish_impression(self, imp: Impression) -> mqtt.MQTTMessageInfo | None:
        """Proof of play for an item that left the screen: on disk first, then to the bus; it
        leaves the disk when the broker has it (PUBACK), so a dead bus or a restart loses none
        (the CDP drops a second copy by its id)."""
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
        return self._send_event(event)

    def _publish_interaction(
        self, content: Content, action: str, detail_s: float | None = None
    ) -> mqtt.MQTTMessageInfo | None:
        """A tap or the details closing, the impressions' way (disk first, then the bus): what
        was touched, never who."""
        event = make_event(
            ContentInteraction(
                interaction_id=new_event_id(),
                screen_id=self.screen_id,
                content_id=content.content_id,
                campaign_id=content.campaign_id,
                variant=content.variant,
                action=action,  # type: ignore[arg-type]
                detail_s=None if detail_s is None else round(detail_s, 3),
                rule=content.rule,
            ),
            store_id=self.store,
            device_id=self.cfg.store.device_id,
        )
        return self._send_event(event)

    def _send_event(self, event: CloudEvent) -> mqtt.MQTTMessageInfo | None:
        try:
            self.impressions.append([event])
        except Exception as exc:  # a full or broken disk: still try the bus, say it once
            self._report_error("impressions", None, f"{type(exc).__name__}: {str(exc)[:120]}")
            if self._client is None:
                return None
            return self._client.publish(
                topics.screen_events(self.store, self.screen_id), event.to_json(), qos=1
            )
        return self._drain_impressions()

    def _drain_impressions(self) -> mqtt.MQTTMessageInfo | None:
        """Send what the disk holds and the bus has not confirmed (when connected); let go of
        what the broker has acknowledged since the last look."""
        self._settle_impressions()
        client = self._client
        if client is None or not client.is_connected():
            return None
        topic = topics.screen_events(self.store, self.screen_id)
        flying = {event_id for _, event_id in self._in_flight}
        last: mqtt.MQTTMessageInfo | None = None
        for row in self.impressions.pending(200, 512 * 1024):
            if row.id in flying:
                continue
            info = client.publish(topic, _without_sequence(row.body), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break
            self._in_flight.append((info, row.id))
            last = info
        return last

    def _settle_impressions(self) -> None:
        """The broker has these (PUBACK): the disk may let them go."""
        done: list[tuple[mqtt.MQTTMessageInfo, str]] = []
        waiting: list[tuple[mqtt.MQTTMessageInfo, str]] = []
        for info, event_id in self._in_flight:
            (done if info.is_published() else waiting).append((info, event_id))
        if done:
            self._in_flight = waiting
            self.impressions.mark_sent([event_id for _, event_id in done])

    def health(self) -> dict[str, object]:
        current = self.playback.current
        lat = sorted(self.latencies_ms)
        return {
            "status": "online",
            "content_id": current.content.content_id,
            "mode": current.mode,
            "since": current.start.isoformat(),
            "fps": round(Clock.get_fps(), 1),
            "cache_bytes": self.cache.size_bytes(),
            "playlist_version": self.playlist_version,
            "last_command_at": self.last_command_at.isoformat() if self.last_command_at else None,
            "cmd_to_frame_ms_p50": round(statistics.median(lat), 1) if lat else None,
            "cmd_to_frame_ms_max": round(lat[-1], 1) if lat else None,
            "errors": self.errors,
            "impressions_pending": self.impressions.depth(),
            "impressions_skipped": self.impressions_skipped,
        }

    def _publish_state(self) -> None:
        if self._client is None:
            return
        self._client.publish(
            topics.screen_state(self.store, self.screen_id),
            json.dumps(self.health()),
            qos=1,
            retain=True,
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
        self.impressions.close()
        if self.stage is not None:
            self.stage.front.release()
            self.stage.back.release()
        log.info("stopped")
        self.stop()


def detail_of(content: Content) -> Content:
    """What a tap opens: the card alone on the screen, larger (no ticker, no side panel), with
    its QR code and its way when it has them; an id of its own for screenshots and logs."""
    return content.model_copy(
        update={"ticker": "", "side": "", "content_id": f"{content.content_id}#detail"}
    )


def prepared(raw: bytes) -> ScreenCommand | None:
    """A command read on the bus's thread while the window waits for its next frame, its QR
    code worked out (``qr.matrix`` remembers it): the frame that shows it does less. None when
    it does not read; the window's thread reads it again and reports why."""
    try:
        cmd = ScreenCommand.from_bytes(raw)
        if cmd.content is not None and cmd.content.qr_url:
            qr.matrix(cmd.content.qr_url)
        return cmd
    except Exception:  # reported where it is handled, on the window's thread
        return None


def impressions_path(content_root: Path, screen_id: str) -> Path:
    """The screen's impression outbox: the unit's own state directory (systemd's
    STATE_DIRECTORY, the player may not write the agent's), else beside the content cache."""
    base = os.environ.get("STATE_DIRECTORY")
    root = Path(base.split(":")[0]) if base else content_root.parent / "signage-ui"
    return root / f"impressions-{screen_id}.db"


def _without_sequence(body: str) -> str:
    """The event as made: the outbox's own ordering number is for the outbox alone."""
    doc = json.loads(body)
    doc.pop("sequence", None)
    return json.dumps(doc, separators=(",", ":"))
