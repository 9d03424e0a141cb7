"""`edge-agent doctor`: a table of OK/WARN/FAIL, and a failing exit when something is broken."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from testbed.broker import free_port

DEMO = Path(__file__).parents[2] / "demo" / "store.toml"


def run_doctor(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "doctor", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def config_with_port(tmp_path: Path, port: int) -> Path:
    text = DEMO.read_text().replace("port = 1883", f"port = {port}")
    text = text.replace(
        'replay_file = "data/trace.jsonl.gz"', f'replay_file = "{DEMO.parent}/data/trace.jsonl.gz"'
    )
    text = text.replace('state_dir = "var"', f'state_dir = "{tmp_path}/var"')
    p = tmp_path / "agent.toml"
    p.write_text(text)
    return p


def test_doctor_reports_a_reachable_broker(tmp_path: Path, broker) -> None:
    out = run_doctor(config_with_port(tmp_path, broker.port))
    line = next(ln for ln in out.stdout.splitlines() if "central broker" in ln)
    assert "OK" in line and f"127.0.0.1:{broker.port} reachable" in line
    assert "python" in out.stdout and "disk" in out.stdout and "clock" in out.stdout
    assert out.returncode == 0, out.stdout
    # Doctor looks, it does not create the state directory.
    assert not (tmp_path / "var").exists()


def test_doctor_fails_on_a_dead_broker(tmp_path: Path) -> None:
    port = free_port()
    out = run_doctor(config_with_port(tmp_path, port))
    line = next(ln for ln in out.stdout.splitlines() if "central broker" in ln)
    assert "FAIL" in line and "unreachable" in line
    assert out.returncode == 1


def test_doctor_on_a_broken_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text("[store]\nstore_id = 'x'\n")
    out = run_doctor(bad)
    assert out.returncode == 2
    assert "store.device_id: Field required" in out.stdout


def test_doctor_units_check_follows_the_install(tmp_path: Path) -> None:
    from edge_agent.box.doctor import check_units

    root = tmp_path / "root"
    assert check_units(root).status == "WARN"  # not installed yet
    exe = Path(sys.executable).parent / "edge-agent"
    subprocess.run(
        [str(exe), "install", "--root", str(root), "--prefix", "/opt/box"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert check_units(root) == check_units(root)
    assert check_units(root).status == "OK", check_units(root)
    unit = root / "etc/systemd/system/edge-agent.service"
    unit.write_text(unit.read_text().replace("WatchdogSec=30", "WatchdogSec=0"))
    c = check_units(root)
    assert c.status == "WARN" and "edge-agent.service" in c.detail
