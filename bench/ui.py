"""Signage UI: command received -> new frame drawn, frame rate during transitions, memory after
10,000 content switches, start to first frame; our player side by side with a naive one.

The naive player is what a first version looks like (and what the signage players' trackers
complain about): it polls its command queue every 100 ms and builds a new widget tree for every
item, loading images from disk each time. Ours applies a command before the next frame and
refills two long-lived item views.

Everything runs for real: a private Xvfb (when there is no DISPLAY), a private mosquitto, each
player in its own process (``python -m bench.ui child MODE ...``), commands over MQTT.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.procstat import rss_mb

WIDTH, HEIGHT = 800, 450
STORE, SCREEN = "bench", "s1"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def write_config(d: Path, port: int) -> Path:
    text = f"""
[store]
store_id = "{STORE}"
device_id = "box-bench"

[[zones]]
id = "z"

[[screens]]
id = "{SCREEN}"
zone = "z"
width = {WIDTH}
height = {HEIGHT}

[ble]
source = "bleak"
zone = "z"

[downlink]
ops_public_key = "unused"

[bus]
host = "127.0.0.1"
port = {port}

[paths]
state_dir = "{d / "var"}"
content_dir = "{d / "content"}"
"""
    path = d / "bench.toml"
    path.write_text(text)
    return path


def contents(content_dir: Path, n_images: int = 4) -> list[Any]:
    """A mix like a real loop: offer cards in three languages with prices, tickers and side
    panels, and photos from the content cache."""
    import cv2
    import numpy as np

    from contracts.screen_protocol import Content
    from signage_ui.assets import AssetCache

    cache = AssetCache(content_dir)
    rng = np.random.default_rng(7)
    out = []
    for i in range(n_images):
        img = (rng.random((360, 640, 3)) * 255).astype(np.uint8)
        cv2.putText(img, f"photo {i}", (40, 200), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 6)
        sha = cache.put(cv2.imencode(".png", img)[1].tobytes())
        out.append(
            Content(content_id=f"img{i}", template="image", image_sha256=sha, title=f"Photo {i}")
        )
    for i, lang in enumerate(("en", "fr", "de", "en", "fr", "de")):
        out.append(
            Content(
                content_id=f"card{i}",
                title=f"Offer number {i}",
                body="Waterproof winter boots, lined, in every size",
                price=19.99 + i,
                was_price=29.99 + i,
                language=lang,
                background=f"#{(37 * i) % 256:02x}{(91 * i) % 256:02x}{(53 * i) % 256:02x}",
                ticker="Free coffee at the counter until noon" if i % 2 else "",
                side="Ask our staff about sizes" if i % 3 == 0 else "",
            )
        )
    return out


def template_items(content_dir: Path) -> list[Any]:
    """Every template a store plays besides offers and photos: a looping video clip (from the
    content cache), a personal welcome, an order ready with the way to the counter, the way to
    a product, a survey with its QR code and an emergency card, on the demo store's map. Built
    by the parent (the map and routes are the agent's work) and handed to the player child."""
    import cv2
    import numpy as np

    from contracts.screen_protocol import Content
    from demo import scenario
    from edge_agent.wayfinding.graph import build_graph
    from edge_agent.wayfinding.plan import author, load_plan
    from edge_agent.wayfinding.planogram_store import load_file
    from edge_agent.wayfinding.product_places import MapPlaces
    from edge_agent.wayfinding.route import plan_route, resolve_ref
    from edge_agent.wayfinding.screen_map import build_wayfinding
    from signage_ui.assets import AssetCache

    cache = AssetCache(content_dir)
    clip = content_dir.parent / "clip.avi"
    mjpg = cv2.VideoWriter_fourcc(*"MJPG")  # type: ignore[attr-defined]
    writer = cv2.VideoWriter(str(clip), mjpg, 25, (320, 180))
    for i in range(25):  # one second, a bar moving across a coloured field
        frame = np.full((180, 320, 3), (40, 120, 200), np.uint8)
        cv2.rectangle(frame, (i * 12, 60), (i * 12 + 20, 120), (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    video = cache.put(clip.read_bytes())
    plan, layout = load_plan(Path(scenario.__file__).parent / "store-map.toml")
    _, authored, errors, _ = author(plan, layout)
    if errors or authored.venue is None:
        raise RuntimeError(f"the demo map does not build: {errors}")
    venue = authored.venue
    graph = build_graph(venue)
    resolvers = {"sku": MapPlaces(venue, 1).resolver(load_file(scenario.PLANOGRAM, 1).by_sku())}

    def way(to: str, language: str) -> Any:
        route = plan_route(
            graph, resolve_ref(venue, "screen:screen-entrance"), resolve_ref(venue, to, resolvers)
        )
        return build_wayfinding(venue, route, language)

    return [
        Content(
            content_id="clip", template="video", video_sha256=video, title="Clip",
            background="#203040",
        ),
        Content(
            content_id="welcome", template="welcome", title="Willkommen zurück, Maximilian",
            body="Heute doppelte Punkte auf alle Wanderschuhe.", language="de",
            badge="Gold-Mitglied", highlight="2 × Punkte", background="#fbf7f0", accent="#c8102e",
        ),
        Content(
            content_id="order", template="order_ready", title="Your order is ready",
            body="Collect it at counter 2, next to the fitting rooms.", highlight="CC-4711",
            background="#2a9d8f", accent="#e9c46a", qr_url="http://northwind.example/way/pickup",
            wayfinding=way("Pickup", "en"),
        ),
        Content(
            content_id="way", title="Ridge GTX trail shoe", body="Every size on the shelf.",
            background="#6a0dad", accent="#ffd166", qr_url="http://northwind.example/way/ridge",
            wayfinding=way("sku:SKU-RIDGE-GTX-42", "en"),
        ),
        Content(
            content_id="survey", template="survey", title="How was our advice today?",
            body="Three questions, one minute.", cta="A 5 € voucher as thanks",
            qr_url="https://northwind.example/survey", background="#f1faee", accent="#457b9d",
        ),
        Content(
            content_id="emergency-card", template="emergency", variant="override",
            title="Please leave the store by the nearest exit", body="Do not use the lifts.",
            background="#b00020",
        ),
    ]  # fmt: skip


# ---- child processes ----------------------------------------------------------------------


def _child(mode: str, cfg_path: str, out: str, n: int) -> None:  # pragma: no cover - subprocess
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
    from kivy.config import Config

    Config.set("graphics", "width", str(WIDTH))
    Config.set("graphics", "height", str(HEIGHT))
    Config.set("graphics", "resizable", "0")
    if mode.startswith("memory"):
        Config.set("graphics", "maxfps", "0")  # one switch per frame, as fast as frames come
    from kivy.app import App
    from kivy.clock import Clock
    from kivy.core.image import Image as CoreImage
    from kivy.core.window import Window
    from kivy.uix.floatlayout import FloatLayout

    from contracts.screen_protocol import ScreenCommand
    from edge_agent.config import load_config
    from signage_ui.player import PlayerApp
    from signage_ui.widgets import OfferCard

    cfg = load_config(cfg_path)
    items = contents(cfg.paths.resolved().content_dir)
    extra = Path(cfg_path).parent / "template-items.json"
    if mode.startswith("frames-") and extra.exists():
        from contracts.screen_protocol import Content

        items += [Content.model_validate(c) for c in json.loads(extra.read_text())]
    result: dict[str, Any] = {}

    def finish(app: App) -> None:
        Path(out).write_text(json.dumps(result))
        app.stop()

    if mode.startswith("frames-"):
        _frames(mode, cfg, items, n, result, finish)
        return

    if mode == "latency-ours" or mode == "memory-ours":

        class Bench(PlayerApp):
            def _start_bus(self) -> None:
                if mode == "latency-ours":
                    super()._start_bus()

        app = Bench(cfg, SCREEN, bus=cfg.bus)

        if mode == "latency-ours":

            def watch(_dt: float) -> None:
                if result.get("first_frame_at") is None and app.first_frame_at is not None:
                    result["first_frame_at"] = app.first_frame_at
                if len(app.latencies_ms) >= n:
                    result["latencies_ms"] = list(app.latencies_ms)[:n]
                    fades()

            def fades() -> None:
                Clock.unschedule(watch)
                # Frame rate during crossfades: 8 loop transitions, frames counted while fading.
                stats = {"frames": 0, "seconds": 0.0}

                def one(i: int) -> None:
                    if i == 8:
                        result["transition_fps"] = stats["frames"] / stats["seconds"]
                        finish(app)
                        return
                    assert app.stage is not None
                    f0, t0 = Clock.frames_displayed, time.monotonic()
                    app.stage.show(items[4 + i % 6], fade=True)

                    def done(_dt: float) -> None:
                        if app.stage is not None and app.stage.fading:
                            Clock.schedule_once(done, 0)
                            return
                        stats["frames"] += Clock.frames_displayed - f0
                        stats["seconds"] += time.monotonic() - t0
                        Clock.schedule_once(lambda _dt: one(i + 1), 0.1)

                    Clock.schedule_once(done, 0)

                one(0)

            Clock.schedule_interval(watch, 0.05)
        else:
            cmds = [ScreenCommand(kind="show", content=c, ttl_s=1e6).to_bytes() for c in items]

            def switches(count: int, then) -> None:
                state = {"i": 0}

                def step(_dt: float) -> None:
                    app._on_command(cmds[state["i"] % len(cmds)])
                    state["i"] += 1
                    if state["i"] >= count:
                        Clock.unschedule(step)
                        then()

                Clock.schedule_interval(step, 0)

            def warm() -> None:
                gc.collect()
                result["rss_after_warmup_mb"] = rss_mb()
                t0 = time.monotonic()

                def end() -> None:
                    gc.collect()
                    result["seconds"] = time.monotonic() - t0
                    result["rss_after_mb"] = rss_mb()
                    finish(app)

                switches(n, end)

            Clock.schedule_once(lambda _dt: switches(500, warm), 0.5)
        app.run()
        return

    # ---- the naive player -----------------------------------------------------------------
    import queue

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from contracts import topics
    from signage_ui.assets import AssetCache

    cache = AssetCache(cfg.paths.resolved().content_dir)
    inbox: queue.Queue[tuple[bytes, float]] = queue.Queue()

    class Naive(App):
        awaiting: float | None = None
        latencies: list[float] = []
        first_frame_at: float | None = None

        def build(self) -> FloatLayout:
            self.root_box = FloatLayout()
            Window.bind(on_flip=self.flip)
            Clock.schedule_interval(self.poll, 0.1)  # the polling loop
            return self.root_box

        def flip(self, *_a: object) -> None:
            now = time.monotonic()
            if self.first_frame_at is None:
                self.first_frame_at = now
                result["first_frame_at"] = now
            if self.awaiting is not None:
                self.latencies.append((now - self.awaiting) * 1000)
                self.awaiting = None

        def show(self, content) -> None:
            # A new widget tree per item; images loaded from disk every time.
            self.root_box.clear_widgets()
            if content.template == "image":
                from kivy.uix.image import Image

                img = CoreImage(str(cache.verified(content.image_sha256)), nocache=True)
                self.root_box.add_widget(Image(texture=img.texture, fit_mode="contain"))
            else:
                card = OfferCard()
                self.root_box.add_widget(card)
                card.show(content)

        def poll(self, _dt: float) -> None:
            latest = None
            while not inbox.empty():
                latest = inbox.get_nowait()
            if latest is not None:
                cmd = ScreenCommand.from_bytes(latest[0])
                self.show(cmd.content)
                self.awaiting = latest[1]
            if mode == "latency-naive" and len(self.latencies) >= n:
                result["latencies_ms"] = self.latencies[:n]
                finish(self)

    app = Naive()
    if mode == "latency-naive":
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        client.on_connect = lambda c, *_a: c.subscribe(topics.screen_cmd(STORE, SCREEN), qos=1)
        client.on_message = lambda _c, _u, m: inbox.put((bytes(m.payload), time.monotonic()))
        client.connect(cfg.bus.host, cfg.bus.port)
        client.loop_start()
        # Tell the bench we are listening, as the player does with its state.
        Clock.schedule_once(
            lambda _dt: client.publish(
                topics.screen_state(STORE, SCREEN), b'{"status":"online"}', qos=1
            ),
            0.5,
        )
    else:
        cmds = [ScreenCommand(kind="show", content=c, ttl_s=1e6).to_bytes() for c in items]
        state: dict[str, Any] = {"i": 0, "phase": "warm"}

        def step(_dt: float) -> None:
            app.show(ScreenCommand.from_bytes(cmds[state["i"] % len(cmds)]).content)
            state["i"] += 1
            if state["phase"] == "warm" and state["i"] >= 500:
                gc.collect()
                result["rss_after_warmup_mb"] = rss_mb()
                state.update(phase="run", i=0, t0=time.monotonic())
            elif state["phase"] == "run" and state["i"] >= n:
                Clock.unschedule(step)
                gc.collect()
                result["seconds"] = time.monotonic() - state["t0"]
                result["rss_after_mb"] = rss_mb()
                finish(app)

        Clock.schedule_once(lambda _dt: Clock.schedule_interval(step, 0), 0.5)
    app.run()


def _frames(
    mode: str, cfg: Any, items: list[Any], n: int, result: dict[str, Any], finish: Any
) -> None:  # pragma: no cover - subprocess
    """Every frame read back while the player goes through ``n`` transitions: loop items,
    photos, takeovers, emergency overrides, the bus going down and back. A frame is black when
    nearly all of it is near black, blank when it is one flat colour (nothing drawn on it)."""
    import numpy as np
    from kivy.app import App
    from kivy.clock import Clock
    from kivy.core.window import Window
    from kivy.graphics.opengl import GL_RGBA, GL_UNSIGNED_BYTE, glReadPixels
    from kivy.uix.floatlayout import FloatLayout

    from contracts.screen_protocol import Content, ScreenCommand
    from signage_ui.player import PlayerApp
    from signage_ui.widgets import OfferCard

    counts = {"frames": 0, "black": 0, "blank": 0}
    culprits: dict[str, int] = {}

    def read(*_a: object) -> None:
        w, h = Window.size
        raw = glReadPixels(0, 0, w, h, GL_RGBA, GL_UNSIGNED_BYTE)
        px = np.frombuffer(raw, np.uint8).reshape(h, w, 4)[::6, ::6, :3]
        counts["frames"] += 1
        bad = ""
        if (px.max(axis=2) < 24).mean() > 0.98:
            bad = "black"
        elif px.reshape(-1, 3).std(axis=0).max() < 1.0:
            bad = "blank"
        if bad:
            counts[bad] += 1
            # After which transition: what to fix, when a change brings one back.
            after = f"{bad} after {state['last']}"
            culprits[after] = culprits.get(after, 0) + 1

    emergency = Content(
        content_id="emergency:bench", title="Please leave the store", background="#b00020",
        variant="override",
    )  # fmt: skip

    def script(i: int) -> tuple[str, Any]:
        """The i-th transition: mostly shows, an override and its end, the bus down and up."""
        if i % 50 == 20:
            return "override", ScreenCommand(kind="override", content=emergency, ttl_s=1e6)
        if i % 50 == 23:
            return "override", ScreenCommand(kind="clear_override", ttl_s=1e6)
        if i % 100 == 60:
            return "bus", False
        if i % 100 == 64:
            return "bus", True
        return "show", ScreenCommand(kind="show", content=items[i % len(items)], ttl_s=1e6)

    if mode == "frames-ours":

        class Bench(PlayerApp):
            def _start_bus(self) -> None:
                pass  # commands come from the script, not the bus

        app: Any = Bench(cfg, SCREEN, bus=cfg.bus)

        def apply(kind: str, what: Any) -> None:
            if kind == "bus":
                app.playback.bus_up = what
            else:
                app._on_command(what.to_bytes())

    else:

        class Unloader(App):
            """The naive way: drop the old item, build the new one on the next frame."""

            def build(self) -> FloatLayout:
                self.box = FloatLayout()
                return self.box

            def show(self, content: Any) -> None:
                self.box.clear_widgets()

                def load(_dt: float) -> None:
                    card = OfferCard()
                    self.box.add_widget(card)
                    card.show(content)

                Clock.schedule_once(load, 0)

        app = Unloader()

        def apply(kind: str, what: Any) -> None:
            if kind != "bus" and what.content is not None:
                app.show(what.content)

    state: dict[str, Any] = {"i": 0, "frame": 0, "last": "start"}

    def step(_dt: float) -> None:
        state["frame"] += 1
        if state["frame"] % 3:
            return  # a transition every third frame: fast, like a busy store's screens
        kind, what = script(state["i"])
        apply(kind, what)
        content = getattr(what, "content", None)
        if kind == "bus":
            state["last"] = "bus up" if what else "bus down"
        elif content is None:
            state["last"] = what.kind
        else:
            way = "+wayfinding" if content.wayfinding is not None else ""
            state["last"] = f"{kind} {content.template}{way}"
        state["i"] += 1
        if state["i"] >= n:
            Clock.unschedule(step)
            Window.unbind(on_flip=read)
            result.update(
                transitions=state["i"],
                items=sorted({c.template + ("+wayfinding" if c.wayfinding else "") for c in items}),
                culprits=culprits, **counts,
            )  # fmt: skip
            finish(app)

    def begin(_dt: float) -> None:
        Window.bind(on_flip=read)
        Clock.schedule_interval(step, 0)

    Clock.schedule_once(begin, 1.0)
    app.run()


# ---- the parent -------------------------------------------------------------------------------


def _run_child(
    mode: str, cfg: Path, env: dict[str, str], n: int, bus: Any | None, timeout: float
) -> dict[str, Any]:
    out = cfg.parent / f"{mode}.json"
    out.unlink(missing_ok=True)
    log = cfg.parent / f"{mode}.log"
    started = time.monotonic()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.ui", "child", mode, str(cfg), str(out), str(n)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        if bus is not None:
            bus.drive(n, timeout)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:
        from testbed.procs import terminate

        terminate(proc)
    if not out.exists():
        tail = log.read_text(errors="replace")[-800:]
        raise RuntimeError(f"bench child {mode} gave no result: {tail}")
    result = json.loads(out.read_text())
    if "first_frame_at" in result:
        result["start_to_first_frame_s"] = result.pop("first_frame_at") - started
    return result


class Driver:
    """The agent's side: waits for the player to be online, then sends show commands at random
    100-200 ms intervals, each a different item, over MQTT QoS 1."""

    def __init__(self, host: str, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from contracts import topics

        self.topic = topics.screen_cmd(STORE, SCREEN)
        self.online = threading.Event()
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)

        def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
            if b"online" in m.payload:
                self.online.set()

        self.c.on_message = on_message
        self.c.connect(host, port)
        self.c.subscribe(topics.screen_state(STORE, SCREEN), qos=1)
        self.c.loop_start()

    def drive(self, n: int, timeout: float) -> None:
        from contracts import topics
        from contracts.screen_protocol import Content, ScreenCommand

        self.online.clear()
        # A retained state from a previous child must not count: clear it first.
        self.c.publish(
            topics.screen_state(STORE, SCREEN), b"", qos=1, retain=True
        ).wait_for_publish(5)
        time.sleep(0.2)
        self.online.clear()
        if not self.online.wait(timeout):
            raise RuntimeError("the player never came online")
        time.sleep(1.0)  # let the first frames settle
        rng = random.Random(3)
        for i in range(n):
            c = Content(
                content_id=f"cmd{i}", title=f"Command {i}", background=f"#{i % 200:02x}3050"
            )
            self.c.publish(self.topic, ScreenCommand(kind="show", content=c).to_bytes(), qos=1)
            time.sleep(rng.uniform(0.1, 0.2))

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def black_frames(
    cfg: Path, env: dict[str, str], n: int, naive_n: int | None = None
) -> dict[str, Any]:
    """Every frame of ``n`` transitions read back, ours and the naive player's (``_frames``):
    each player in its own process on ``env``'s display, with the config ``cfg``
    (``write_config``; no bus needed). ``naive_n``: the naive player's transitions, when fewer
    do (it shows a black frame at about every one of them; the test only needs it to show some)."""
    extra = template_items(cfg.parent / "content")
    (cfg.parent / "template-items.json").write_text(
        json.dumps([c.model_dump(mode="json") for c in extra])
    )
    ours = _run_child("frames-ours", cfg, env, n, None, 900)
    naive = _run_child("frames-naive", cfg, env, naive_n or n, None, 900)
    return {
        "transitions": ours["transitions"],
        "items": ours.get("items", []),
        "total": ours["black"] + ours["blank"],
        "ours": {k: ours[k] for k in ("frames", "black", "blank")},
        "ours_after": ours.get("culprits", {}),
        "naive_unload_then_load": {k: naive[k] for k in ("frames", "black", "blank")},
        "naive_after": naive.get("culprits", {}),
    }


def run(quick: bool = False) -> dict[str, Any]:
    from testbed.broker import Mosquitto
    from testbed.display import Xvfb, kivy_env

    n_cmds = 60 if quick else 300
    n_switch = 1000 if quick else 10_000
    n_transitions = 300 if quick else 1200
    work = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    xvfb = Xvfb(f"{WIDTH}x{HEIGHT}x24")
    display = xvfb.start()
    broker = Mosquitto().start()
    driver = Driver(broker.host, broker.port)
    try:
        cfg = write_config(work, broker.port)
        env = kivy_env(display, work / "kivy-home")
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        lat_ours = _run_child("latency-ours", cfg, env, n_cmds, driver, 120)
        lat_naive = _run_child("latency-naive", cfg, env, n_cmds, driver, 120)
        mem_ours = _run_child("memory-ours", cfg, env, n_switch, None, 900)
        mem_naive = _run_child("memory-naive", cfg, env, n_switch, None, 900)
        black = black_frames(cfg, env, n_transitions)
    finally:
        driver.close()
        broker.cleanup()
        xvfb.stop()

    def lat(r: dict[str, Any]) -> dict[str, float]:
        v = r["latencies_ms"]
        return {
            "p50_ms": round(statistics.median(v), 1),
            "p99_ms": round(pct(v, 99), 1),
            "max_ms": round(max(v), 1),
        }

    def mem(r: dict[str, Any]) -> dict[str, float]:
        grow = (r["rss_after_mb"] - r["rss_after_warmup_mb"]) / r["rss_after_warmup_mb"]
        return {
            "rss_after_warmup_mb": round(r["rss_after_warmup_mb"], 1),
            "rss_after_switches_mb": round(r["rss_after_mb"], 1),
            "growth_pct": round(100 * grow, 1),
            "switches_per_s": round(n_switch / r["seconds"], 1),
        }

    ours, naive = lat(lat_ours), lat(lat_naive)
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "display": "Xvfb (Mesa llvmpipe)",
        "commands": n_cmds,
        "cmd_to_frame": {"ours": ours, "naive_polling_100ms": naive},
        "p99_ratio": round(naive["p99_ms"] / ours["p99_ms"], 1),
        "goal_p99_under_100ms": ours["p99_ms"] < 100,
        "transition_fps": round(lat_ours["transition_fps"], 1),
        "switches": n_switch,
        "memory": {"ours": mem(mem_ours), "naive_new_widgets": mem(mem_naive)},
        "goal_growth_under_10pct": mem(mem_ours)["growth_pct"] < 10,
        "black_frames": black,
        "goal_no_black_frames": black["total"] == 0,
        "start_to_first_frame_s": {
            "ours": round(lat_ours["start_to_first_frame_s"], 2),
            "naive": round(lat_naive["start_to_first_frame_s"], 2),
        },
    }


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
