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

from edge_agent.broker import port_open
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


def run_checks(cfg: AgentConfig | None) -> list[Check]:
    checks = [check_python(), check_bluetooth(), check_camera(cfg), check_serial(cfg)]
    if cfg is not None:
        checks.append(check_broker("central broker", cfg.central.host, cfg.central.port))
        checks.append(check_broker("in-store bus", cfg.bus.host, cfg.bus.port))
        checks.append(check_disk(cfg.paths_resolved.state_dir))
    else:
        checks.append(Check("config", "WARN", "no --config given: broker checks skipped"))
        checks.append(check_disk(Path.cwd()))
    checks.append(check_clock())
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
