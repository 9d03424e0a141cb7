"""`make demo`: the whole in-store journey on real parts, in about a minute.

A private mosquitto (central broker and in-store bus), a CDP sink, the agent replaying the demo
store's recorded adverts and synthetic camera, the Kivy signage player in its own process
(screenshots of every content change under ``out/``), and central ops pushing a signed campaign
update halfway through. Ends with a summary; exits non-zero if any accepted event was lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from demo import scenario
from edge_agent.clock import ScaledClock
from edge_agent.config import AgentConfig, parse_config
from edge_agent.wayfinding.planogram_store import load_file
from testbed.broker import Mosquitto, port_open
from testbed.display import Xvfb, kivy_env
from testbed.procs import terminate

DEMO_DIR = Path(__file__).parent
VENV_BIN = Path(sys.executable).parent


def build_config(work: Path, host: str, port: int, public_key: str, speed: float) -> AgentConfig:
    data: dict[str, Any] = tomllib.loads((DEMO_DIR / "store.toml").read_text())
    data["central"].update(host=host, port=port)
    data["bus"].update(host=host, port=port)
    data["downlink"]["ops_public_key"] = public_key
    data["paths"]["state_dir"] = str(work / "var")
    data["ble"]["replay_speed"] = speed
    if speed > 1:
        # The store's clock runs `speed` times faster than the camera can film: a camera whose
        # frames come a wall second apart is fine, not stalled (the engine's 1.5 s is store time).
        data.setdefault("fusion", {})["camera_stall_s"] = max(1.5, speed)
    return parse_config(data, base_dir=DEMO_DIR, origin="demo store.toml")


def write_runtime_toml(cfg: AgentConfig, path: Path) -> None:
    """The config the signage player reads (it runs in its own process, like on a box)."""
    d = cfg.model_dump(mode="json", exclude_none=True)
    lines: list[str] = []

    def emit(prefix: str, obj: dict[str, Any]) -> None:
        scalars = {k: v for k, v in obj.items() if not isinstance(v, dict | list)}
        for k, v in scalars.items():
            lines.append(f"{k} = {_toml_value(v)}")
        for k, v in obj.items():
            if isinstance(v, dict):
                lines.append(f"\n[{prefix}{k}]")
                emit(f"{prefix}{k}.", v)
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    lines.append(f"\n[[{prefix}{k}]]")
                    emit(f"{prefix}{k}.", item)
            elif isinstance(v, list):
                lines.append(f"{k} = {_toml_value(v)}")

    emit("", d)
    path.write_text("\n".join(lines) + "\n")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def start_player(
    cfg_path: Path, screen_id: str, shots: Path, work: Path, display: str
) -> subprocess.Popen[bytes]:
    env = kivy_env(display, work / "kivy")
    cmd = [
        str(VENV_BIN / "signage-ui"), "--config", str(cfg_path), "--screen", screen_id,
        "--screenshot-dir", str(shots),
    ]  # fmt: skip
    log = open(work / "signage-ui.log", "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_player(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM: the player reports its last impression and says goodbye on the bus."""
    terminate(proc, timeout)


def ops_push(keys: Path, cfg: AgentConfig, body_path: Path, version: int) -> str:
    """Central ops signs and pushes a campaign bundle with the real `edge-ops` CLI."""
    out = subprocess.run(
        [
            str(VENV_BIN / "edge-ops"), "push", "campaigns", str(body_path),
            "--store", cfg.store.store_id, "--version", str(version),
            "--key", str(keys / "ops_private.pem"),
            "--host", cfg.central.host, "--port", str(cfg.central.port),
        ],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"edge-ops push failed: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout.strip()


class Till:
    """The store's till on the in-store bus: sends the scenario's receipts when their time
    comes, as a real till does (README, "Point of sale"), for the closed loop and uplift."""

    def __init__(self, cfg: AgentConfig) -> None:
        from contracts import topics
        from contracts.mqtt import connect, make_client

        self.topic = topics.pos_receipts(cfg.store.store_id)
        self.pending = sorted(scenario.RECEIPTS, key=lambda r: r[0])
        self.sent = 0
        connected = threading.Event()
        self.client = make_client(f"demo-till-{os.getpid()}", cfg.bus)
        self.client.on_connect = lambda *a: connected.set()
        connect(self.client, cfg.bus, clean_start=True, session_expiry_s=0)
        self.client.loop_start()
        connected.wait(10)

    def send_due(self, trace_s: float) -> None:
        while self.pending and self.pending[0][0] <= trace_s:
            _, receipt = self.pending.pop(0)
            self.client.publish(self.topic, scenario.receipt_line(receipt), qos=1)
            self.sent += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _table(agent: Any, sink: Any, clock: ScaledClock, status: str) -> Table:
    s = agent.stats
    t = Table(title=f"Northwind Outfitters, store-0042 - {status}", show_header=False, min_width=60)
    elapsed = max(0.0, clock.now() - scenario.T0)
    bar = int(30 * min(1.0, elapsed / scenario.DURATION_S))
    t.add_row(
        "scenario time",
        f"[{'#' * bar}{'.' * (30 - bar)}] {elapsed:5.0f}/{scenario.DURATION_S:.0f} s",
    )
    t.add_row("adverts processed", str(s.adverts))
    t.add_row("people in view (camera)", str(s.last_people if s.last_people is not None else "-"))
    t.add_row("zone entries / exits", f"{s.zone_entries} / {s.zone_exits}")
    t.add_row("shoppers resolved", str(s.shoppers_resolved))
    t.add_row("decisions / content changes", f"{s.decisions} / {s.content_changes}")
    t.add_row("on screen", ", ".join(s.current.values()) or "-")
    t.add_row("events accepted (outbox)", str(s.events_accepted))
    t.add_row("events at the CDP", str(sink.count()))
    t.add_row("campaign bundle", f"v{agent.content.bundle.version}")
    return t


def run_demo(
    out_dir: str = "out",
    duration_s: float | None = None,
    headless: bool = False,
    speed: float = 4.0,
    broker: str | None = None,
) -> int:
    from central.cdp_sink import CdpSink
    from contracts.signing import generate_keypair
    from edge_agent.app.agent import Agent
    from edge_agent.sensing.ble.sources import ReplaySource
    from edge_agent.sensing.camera.scene import SceneSource

    console = Console()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = Path(out_dir).resolve()
    shots = out / "screens"
    work = out / "demo"
    for d in (shots, work):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    duration = min(duration_s or scenario.DURATION_S, scenario.DURATION_S)

    mosq: Mosquitto | None = None
    if broker:
        host, _, port_s = broker.rpartition(":")
        host, port = host or "127.0.0.1", int(port_s)
        if not port_open(host, port):
            console.print(f"[red]demo: no broker at {host}:{port}[/]")
            return 1
    else:
        mosq = Mosquitto(workdir=work / "mosquitto")
        mosq.workdir.mkdir(parents=True, exist_ok=True)
        mosq.start()
        host, port = mosq.host, mosq.port
    player = None
    xvfb: Xvfb | None = None
    sink = None
    agent = None
    till: Till | None = None
    try:
        keys = work / "keys"
        keys.mkdir()
        private_pem, public_b64 = generate_keypair()
        (keys / "ops_private.pem").write_bytes(private_pem)
        os.chmod(keys / "ops_private.pem", 0o600)
        cfg = build_config(work, host, port, public_b64, speed)
        runtime_toml = work / "store.toml"
        write_runtime_toml(cfg, runtime_toml)
        for i, body in enumerate((scenario.CAMPAIGNS_V1, scenario.CAMPAIGNS_V2), start=1):
            (work / f"campaigns-v{i}.json").write_text(json.dumps(body, indent=2))

        sink = CdpSink(cfg.central, work / "cdp.db")
        sink.start()

        clock = ScaledClock(scenario.T0, speed)
        ble = ReplaySource(cfg.ble.replay_file, clock)  # type: ignore[arg-type]
        camera = SceneSource(scenario.CAMERA_TIMELINE, clock=lambda: clock.now() - scenario.T0)
        agent = Agent(cfg, clock=clock, ble_source=ble, frame_source=camera)
        agent.accepted_ids = []
        # The profile slice central provisioned for this store (consented and not).
        agent.profiles.load_snapshot(scenario.profile_slice(), version=1)
        # And its planogram (the ERP's export): where each product is, for cards and kiosks.
        if agent.handlers.wayfinding is not None:
            agent.handlers.wayfinding.planograms.replace(load_file(scenario.PLANOGRAM, version=1))
        agent.resolver.set_keys(agent.profiles.identity_keys())
        agent.start_sync()
        display = os.environ.get("DISPLAY")
        if headless or not display:
            # No screen here: a private X server, so the player still draws real frames.
            xvfb = Xvfb()
            display = xvfb.start()
        player = start_player(runtime_toml, cfg.screens[0].id, shots, work, display)
        console.print(
            f"[bold]Northwind Outfitters demo[/]: broker 127.0.0.1:{port}, player pid {player.pid}, screenshots in {shots}"
        )
        console.print(ops_push(keys, cfg, work / "campaigns-v1.json", 1))
        # The player listens before the store opens: personal commands are not retained on the
        # bus, so a greeting sent before it subscribed would never reach the screen.
        screen = cfg.screens[0].id
        deadline = time.monotonic() + 60
        while agent.director.screen_status(screen) != "online" and time.monotonic() < deadline:
            if player.poll() is not None:
                break
            time.sleep(0.05)
        if agent.director.screen_status(screen) != "online":
            console.print(f"[yellow]the player is not online yet; see {work / 'signage-ui.log'}[/]")
        till = Till(cfg)
        shown = _watch_screen(agent, clock, screen)
        clock.restart()  # the scenario starts now, with the player listening

        async def main() -> None:
            pushed = False
            run = asyncio.create_task(agent.run(until=scenario.T0 + duration))
            with Live(
                _table(agent, sink, clock, "running"), console=console, refresh_per_second=4
            ) as live:
                while not run.done():
                    if till is not None:
                        till.send_due(clock.now() - scenario.T0)
                    if not pushed and clock.now() - scenario.T0 >= scenario.PUSH_V2_AT:
                        pushed = True
                        msg = await asyncio.to_thread(
                            ops_push, keys, cfg, work / "campaigns-v2.json", 2
                        )
                        live.console.print(f"central ops: {msg}")
                    if player is not None and player.poll() is not None:
                        live.console.print(
                            f"[red]signage player exited ({player.returncode}); see {work / 'signage-ui.log'}[/]"
                        )
                        break
                    live.update(_table(agent, sink, clock, "running"))
                    await asyncio.sleep(0.25)
                await run
                live.update(_table(agent, sink, clock, "draining"))
            if not console.is_terminal:
                console.print()  # piped: the last live table ends its line before the summary

        asyncio.run(main())
        # The player reports its last impression on the way out; the agent takes it in.
        before = agent.stats.impressions_received
        stop_player(player)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and agent.stats.impressions_received == before:
            time.sleep(0.05)
        agent.close(flush_timeout_s=15)
        accepted = agent.accepted_ids or []
        sink.wait_for(len(set(accepted)), timeout=15)
        return _summary(console, agent, sink, accepted, shots, (speed, _step_ups(shown)))
    finally:
        if till is not None:
            till.close()
        if player is not None:
            stop_player(player)
        if xvfb is not None:
            xvfb.stop()
        if sink is not None:
            sink.stop()
        if mosq is not None:
            mosq.cleanup()


def _watch_screen(agent: Any, clock: ScaledClock, screen: str) -> list[tuple[float, str]]:
    """(trace seconds, content id) of every item the player reports on ``screen``, as the agent
    hears it (its state on the bus: sent when the item's first frame is drawn)."""
    shown: list[tuple[float, str]] = []
    director = agent.director
    heard = director.on_screen_state

    def on_state(screen_id: str, payload: bytes) -> None:
        heard(screen_id, payload)
        if screen_id == screen:
            try:
                cid = json.loads(payload).get("content_id")
            except (ValueError, AttributeError):
                return
            if cid:
                shown.append((clock.now() - scenario.T0, str(cid)))

    director.on_screen_state = on_state
    return shown


def _step_ups(shown: list[tuple[float, str]]) -> str:
    """Each time one person steps up to the empty camera screen (the scene's timeline): how long
    until a personal greeting's first frame, in the store's seconds, or why there was none."""
    out = []
    timeline = scenario.CAMERA_TIMELINE
    for (_, _, before), (start, end, n) in zip(timeline, timeline[1:], strict=False):
        if before != 0 or n != 1:
            continue
        first = next(
            (t for t, c in shown if start <= t < end and c.endswith(":personalised")), None
        )
        out.append(f"{first - start:.1f} s" if first is not None else "none (anonymous)")
    return ", ".join(out) or "no step-up in the scene"


def _summary(
    console: Console,
    agent: Any,
    sink: Any,
    accepted: list[str],
    shots: Path,
    step_ups: tuple[float, str],
) -> int:
    speed, greeted = step_ups
    s = agent.stats
    at_cdp = set(sink.ids())
    delivered = len(set(accepted) & at_cdp)
    # Lost means: accepted into the outbox on this box, never stored at the CDP.
    lost = len(set(accepted) - at_cdp)
    screenshots = sorted(p.name for p in shots.glob("*.png"))
    t = Table(title="Demo summary", show_header=False)
    for k, v in [
        ("adverts processed", s.adverts),
        ("zone entries", s.zone_entries),
        ("shoppers resolved", s.shoppers_resolved),
        ("decisions", s.decisions),
        ("content changes", s.content_changes),
        (
            "  personalised / anonymous / default",
            f"{s.variants['personalised']} / {s.variants['anonymous']} / {s.variants['default']}",
        ),
        ("impressions from the player", s.impressions_received),
        # In store seconds: at a clock `speed` times the wall's, the camera's frames (filmed in
        # wall time) come `speed` times sparser, so this is slower than a store's (BENCHMARKS.md,
        # "Stepping up to a camera screen": 1.0 s p50 at real speed).
        (f"step-up -> personal greeting (s, {speed:g}x clock)", greeted),
        ("staff alerts (beacon battery, order ready)", s.staff_alerts),
        ("campaign pushes applied / refused", f"{s.downlink_applied} / {s.downlink_refused}"),
        ("events accepted into the outbox", len(accepted)),
        ("events delivered to the CDP sink", delivered),
        ("duplicates absorbed by the CDP", sink.stats().get("duplicates", 0)),
        ("events lost", lost),
        ("screenshots", f"{len(screenshots)} in {shots}"),
        *_uplift_rows(sink),
    ]:
        t.add_row(k, str(v))
    console.print(t)
    for name in screenshots:
        console.print(f"  {name}")
    ok = lost == 0 and bool(screenshots) and s.variants["personalised"] > 0
    console.print("[green]demo OK[/]" if ok else "[red]demo FAILED[/]")
    return 0 if ok else 1


def _last_heartbeat_kpis(sink: Any) -> dict[str, Any]:
    """Per campaign KPIs of the box's last heartbeat (it sends one on the way out), as stored
    at the CDP: what central learns from the box, not what the box holds in memory."""
    import json
    import sqlite3

    db = sqlite3.connect(f"file:{sink.db_path}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT body FROM events WHERE type = 'retail.instore.device.heartbeat.v1'"
            " ORDER BY julianday(time) DESC, CAST(sequence AS INTEGER) DESC LIMIT 1"
        ).fetchone()
    finally:
        db.close()
    return json.loads(row[0])["data"]["kpis"].get("campaigns", {}) if row else {}


def _uplift_rows(sink: Any) -> list[tuple[str, str]]:
    """Exposed against holdout for every campaign that held someone out: as the CDP computes it
    from the events it stored, and as the box's KPIs in its heartbeat say."""
    from contracts.uplift import NOT_ENOUGH_DATA, points

    at_cdp = sink.uplift()
    on_box = _last_heartbeat_kpis(sink)
    held = sorted(
        {c for c, u in at_cdp.items() if u.holdout_shoppers}
        | {c for c, k in on_box.items() if k["holdout_shoppers"]}
    )
    if not held:
        return [("uplift", "no campaign held anyone out")]
    rows = []
    for c in held:
        if c in at_cdp:
            u = at_cdp[c]
            counts = (
                f"exposed {u.exposed_conversions}/{u.exposed_shoppers}, "
                f"holdout {u.holdout_conversions}/{u.holdout_shoppers}"
            )
            rows.append((f"uplift {c} at the CDP", f"{counts}: {u.describe()}"))
        k = on_box.get(c)
        if k is not None:
            d, lo, hi = k["uplift"], k["uplift_ci_low"], k["uplift_ci_high"]
            said = (
                NOT_ENOUGH_DATA
                if d is None
                else f"{points(d)} pts (95% CI {points(lo)} to {points(hi)})"
            )
            counts = (
                f"exposed {k['exposed_conversions']}/{k['exposed_shoppers']}, "
                f"holdout {k['holdout_conversions']}/{k['holdout_shoppers']}"
            )
            rows.append((f"uplift {c} in the box's KPIs", f"{counts}: {said}"))
    return rows
