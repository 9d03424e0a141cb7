"""`edge-agent doctor`: is this box fit to run the agent? A table of OK / WARN / FAIL."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from contracts.mqtt import port_open
from edge_agent.config import AgentConfig, load_or_report


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "OK", "WARN", "FAIL"
    detail: str


def check_python() -> Check:
    v = sys.version_info
    ok = v >= (3, 11)
    return Check(
        "python",
        "OK" if ok else "FAIL",
        f"{v.major}.{v.minor}.{v.micro}" + ("" if ok else " (need 3.11+)"),
    )


def check_bluetooth() -> Check:
    bus = Path("/run/dbus/system_bus_socket")
    if not bus.exists():
        return Check(
            "bluetooth",
            "WARN",
            "no system D-Bus: live BLE scanning unavailable (replay and serial still work)",
        )
    adapters = (
        sorted(p.name for p in Path("/sys/class/bluetooth").glob("hci*"))
        if Path("/sys/class/bluetooth").exists()
        else []
    )
    if not adapters:
        return Check("bluetooth", "WARN", "D-Bus present but no Bluetooth adapter (hci*)")
    return Check("bluetooth", "OK", ", ".join(adapters))


def check_camera(cfg: AgentConfig | None) -> Check:
    if cfg is not None and (cfg.camera is None or not cfg.camera.enabled):
        return Check("camera", "OK", "disabled in config")
    spec = cfg.camera.source if cfg and cfg.camera else "0"
    if spec.startswith("demo:"):
        return Check("camera", "OK", f"synthetic scene {spec}")
    devices = sorted(glob.glob("/dev/video*"))
    if spec.isdigit() and not devices:
        return Check("camera", "WARN", f"no /dev/video* device for camera {spec}")
    import cv2

    cap = cv2.VideoCapture(int(spec) if spec.isdigit() else spec)
    try:
        ok = cap.isOpened() and cap.read()[0]
    finally:
        cap.release()
    # The frame is dropped at once: doctor only checks that one can be read.
    return Check(
        "camera", "OK" if ok else "FAIL", f"{spec}: {'frame read' if ok else 'cannot open or read'}"
    )


def check_serial(cfg: AgentConfig | None) -> Check:
    ports = sorted(
        glob.glob("/dev/ttyUSB*") + glob.glob("/dev/ttyACM*") + glob.glob("/dev/serial/by-id/*")
    )
    if cfg is not None and cfg.ble.source == "serial":
        want = cfg.ble.serial_port or ""
        ok = want.startswith(("loop://", "socket://", "rfc2217://")) or os.path.exists(want)
        return Check("serial", "OK" if ok else "FAIL", f"{want}: {'present' if ok else 'missing'}")
    return Check(
        "serial", "OK", ", ".join(ports) if ports else "no serial scanner ports (none configured)"
    )


def check_broker(name: str, host: str, port: int) -> Check:
    ok = port_open(host, port, timeout=1.0)
    return Check(
        name, "OK" if ok else "FAIL", f"{host}:{port} {'reachable' if ok else 'unreachable'}"
    )


def check_disk(path: Path) -> Check:
    # The state dir may not exist yet on a fresh box: measure the filesystem it will live on.
    while not path.exists() and path != path.parent:
        path = path.parent
    u = shutil.disk_usage(path)
    free_mb = u.free / 1e6
    status = "OK" if free_mb > 1024 else "WARN" if free_mb > 200 else "FAIL"
    return Check("disk", status, f"{free_mb:,.0f} MB free at {path}")


def check_clock() -> Check:
    exe = shutil.which("timedatectl")
    if exe:
        try:
            out = subprocess.run(
                [exe, "show", "-p", "NTPSynchronized", "--value"],
                capture_output=True,
                text=True,
                timeout=3,
            )
            if out.returncode == 0 and out.stdout.strip():
                synced = out.stdout.strip() == "yes"
                return Check(
                    "clock",
                    "OK" if synced else "WARN",
                    "NTP synchronised" if synced else "not NTP-synchronised",
                )
        except (OSError, subprocess.TimeoutExpired):
            pass
    return Check(
        "clock", "WARN", "cannot tell whether the clock is synchronised (no timedatectl/systemd)"
    )


UNIT_NAMES = ("edge-agent.service", "signage-ui@.service")


def check_units(root: Path = Path("/")) -> Check:
    """Installed units match this checkout's (modulo the install prefix), and the agent's state."""
    from edge_agent.box.install import DEFAULT_PREFIX, UNITS_DIR

    unit_dir = root / "etc/systemd/system"
    missing = [u for u in UNIT_NAMES if not (unit_dir / u).exists()]
    if missing:
        return Check("units", "WARN", f"not installed: {', '.join(missing)} (edge-agent install)")
    stale = []
    for u in UNIT_NAMES:
        installed = (unit_dir / u).read_text()
        ours = (UNITS_DIR / u).read_text()
        prefix = DEFAULT_PREFIX
        for line in installed.splitlines():
            # The units run the current OTA release; older ones ran the checkout's venv.
            for tail in ("/ota/current/bin/", "/.venv/bin/"):
                if line.startswith("ExecStart=") and tail in line:
                    prefix = Path(line.removeprefix("ExecStart=").split(tail)[0])
                    break
        if installed != ours.replace(f"{DEFAULT_PREFIX}/", f"{prefix}/"):
            stale.append(u)
    if stale:
        return Check("units", "WARN", f"differ from this checkout: {', '.join(stale)} (reinstall)")
    detail = "installed"
    exe = shutil.which("systemctl")
    if exe and root == Path("/") and Path("/run/systemd/system").exists():
        state = subprocess.run(
            [exe, "is-active", "edge-agent.service"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if state == "failed":
            return Check("units", "FAIL", "edge-agent.service failed (journalctl -u edge-agent)")
        detail += f", edge-agent.service {state}"
    return Check("units", "OK", detail)


def check_certificate(cfg: AgentConfig) -> Check:
    """The central TLS client certificate: WARN once a third of its life is left (the agent has
    asked for a new one by then; ops has not signed it yet), FAIL once expired (the box cannot
    reach central any more: README, "A box whose certificate expired")."""
    import datetime as dt

    from edge_agent.downlink import credentials

    try:
        life = credentials.life(cfg.central)
    except ValueError as exc:
        return Check("certificate", "FAIL", str(exc))
    if life is None:
        return Check("certificate", "OK", "central uses no client certificate")
    now = dt.datetime.now(dt.UTC)
    days = life.days_left(now)
    until = f"until {life.not_after:%Y-%m-%d %H:%M} UTC"
    if life.expired(now):
        return Check("certificate", "FAIL", f"expired {-days:.1f} days ago ({until})")
    if now < life.not_before:
        return Check("certificate", "FAIL", f"not valid before {life.not_before:%Y-%m-%d %H:%M}")
    detail = f"{days:.1f} days left ({until})"
    if life.renewal_due(now):
        try:
            pending = credentials.pending_request(cfg.central) is not None
        except ValueError:
            pending = False
        asked = "renewal requested, waiting for ops to sign" if pending else "renewal due"
        return Check("certificate", "WARN", f"{detail}; {asked}")
    return Check("certificate", "OK", detail)


def check_metrics(cfg: AgentConfig) -> Check:
    """Ask the running agent itself: watchdog health, outbox, MQTT links (its /metrics)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    m = cfg.metrics
    if not m.enabled:
        return Check("agent", "WARN", "metrics disabled in config: cannot see the running agent")
    host = "127.0.0.1" if m.host in ("0.0.0.0", "::", "") else m.host
    url = f"http://{host}:{m.port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return Check("agent", "WARN", f"not running (nothing at {url})")
    v: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for sm in fam.samples:
            key = sm.name + "".join(f"{{{val}}}" for val in sm.labels.values())
            v[key] = sm.value
    depth = int(v.get("edge_agent_outbox_depth", 0))
    oldest = v.get("edge_agent_outbox_oldest_pending_seconds", 0.0)
    central = v.get("edge_agent_mqtt_connected{central}") == 1
    detail = (
        f"running; {v.get('edge_agent_adverts_per_second', 0):.0f} adverts/s, outbox {depth} "
        f"(oldest {oldest:.0f}s), central {'up' if central else 'down'}"
    )
    if v.get("edge_agent_watchdog_healthy") != 1:
        return Check("agent", "FAIL", "watchdog unhealthy (systemd will restart it); " + detail)
    return Check("agent", "OK" if central and oldest < 600 else "WARN", detail)


def run_checks(cfg: AgentConfig | None) -> list[Check]:
    checks = [check_python(), check_bluetooth(), check_camera(cfg), check_serial(cfg)]
    if cfg is not None:
        checks.append(check_broker("central broker", cfg.central.host, cfg.central.port))
        checks.append(check_certificate(cfg))
        checks.append(check_broker("in-store bus", cfg.bus.host, cfg.bus.port))
        checks.append(check_disk(cfg.paths_resolved.state_dir))
        checks.append(check_metrics(cfg))
    else:
        checks.append(Check("config", "WARN", "no --config given: broker checks skipped"))
        checks.append(check_disk(Path.cwd()))
    checks.append(check_clock())
    checks.append(check_units())
    return checks


def run_doctor(config_path: str | None) -> int:
    cfg = None
    console = Console()
    if config_path:
        cfg = load_or_report(config_path, sys.stdout)
        if cfg is None:
            return 2
    checks = run_checks(cfg)
    table = Table(title="edge-agent doctor")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail")
    colours = {"OK": "green", "WARN": "yellow", "FAIL": "red"}
    for c in checks:
        table.add_row(c.name, f"[{colours[c.status]}]{c.status}[/]", c.detail)
    console.print(table)
    return 1 if any(c.status == "FAIL" for c in checks) else 0
