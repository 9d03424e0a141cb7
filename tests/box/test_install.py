"""`edge-agent install --root DIR`: the layout a box gets, in a temp dir; --dry-run touches nothing."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.test_agent_process import write_config

EXE = os.path.join(os.path.dirname(sys.executable), "edge-agent")


def install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, "install", *args], capture_output=True, text=True, timeout=60)


def box_config(tmp_path: Path, state_dir: str = "/var/lib/edge-agent") -> Path:
    cfg = write_config(tmp_path, 1883, "box-install-1", speed=1.0)
    text = cfg.read_text().replace(
        f'state_dir = "{tmp_path / "var"}"', f'state_dir = "{state_dir}"'
    )
    cfg.write_text(text)
    return cfg


def render_nodes(tmp_path: Path) -> str:
    """The demo store's node listener as `edge-agent firmware render` writes it (OUT/mosquitto)."""
    out = tmp_path / "fw"
    layout = Path(__file__).resolve().parents[2] / "firmware_configs" / "demo-store.layout.toml"
    render = subprocess.run(
        [EXE, "firmware", "render", str(layout), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert render.returncode == 0, render.stderr
    return str(out / "mosquitto")


def test_dry_run_prints_the_plan_and_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    proc = install("--root", str(root), "--dry-run", "--with-mosquitto")
    assert proc.returncode == 0, proc.stderr
    assert "edge-agent.service" in proc.stdout and "mosquitto.conf" in proc.stdout
    assert "systemd-sysusers" in proc.stdout
    assert list(root.iterdir()) == []


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_install_lays_out_the_box_and_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "root"
    cfg = box_config(tmp_path)
    nodes = render_nodes(tmp_path)
    proc = install(
        "--root", str(root), "--config", str(cfg), "--with-mosquitto", "--bus-nodes", nodes
    )
    assert proc.returncode == 0, proc.stderr
    broker_dir = root / "etc/edge-agent/mosquitto.d"
    assert sorted(p.name for p in broker_dir.iterdir()) == [
        "nodes-server.crt",
        "nodes-server.key",
        "nodes.acl",
        "nodes.conf",
        "nodes.passwd",
    ]
    assert stat.S_IMODE((broker_dir / "nodes.passwd").stat().st_mode) == 0o600
    assert stat.S_IMODE((broker_dir / "nodes-server.key").stat().st_mode) == 0o600
    units = root / "etc/systemd/system"
    assert {p.name for p in units.iterdir()} == {
        "edge-agent.service",
        "signage-ui@.service",
        "mosquitto.service",
        "store-api.service",
    }
    # ExecStart runs the release `current` names; the first is this checkout's venv (OTA).
    prefix = Path(sys.prefix).parent
    unit = (units / "edge-agent.service").read_text()
    assert f"{prefix}/ota/current/bin/edge-agent run" in unit
    assert f"{Path(sys.prefix)}/bin/edge-agent release pre-start" in unit
    ota = root / prefix.relative_to("/") / "ota"
    assert os.readlink(ota / "current") == "releases/factory"
    assert (
        os.readlink(ota / "releases/factory/bin/edge-agent") == f"{Path(sys.prefix)}/bin/edge-agent"
    )
    assert (root / "etc/edge-agent/agent.toml").read_bytes() == cfg.read_bytes()
    passwd = (root / "etc/passwd").read_text()
    assert "edge-agent:" in passwd and "signage:" in passwd
    state = root / "var/lib/edge-agent"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    if os.geteuid() == 0:
        uid = next(
            int(line.split(":")[2])
            for line in passwd.splitlines()
            if line.startswith("edge-agent:")
        )
        assert state.stat().st_uid == uid

    # Again: nothing rewritten, and a config edited on the box is kept.
    (root / "etc/edge-agent/agent.toml").write_text("# edited on the box\n")
    again = install(
        "--root", str(root), "--config", str(cfg), "--with-mosquitto", "--bus-nodes", nodes
    )
    assert again.returncode == 0, again.stderr
    assert "wrote" not in again.stdout
    assert "kept" in again.stdout
    assert (root / "etc/edge-agent/agent.toml").read_text() == "# edited on the box\n"
    assert (root / "etc/passwd").read_text() == passwd


def test_refuses_a_config_the_unit_could_not_run(tmp_path: Path) -> None:
    root = tmp_path / "root"
    cfg = box_config(tmp_path, state_dir="/srv/agent-state")
    proc = install("--root", str(root), "--config", str(cfg))
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "paths.state_dir" in line and "Traceback" not in line
    assert not root.exists()  # refused before anything was written


def test_refuses_an_invalid_config_and_a_hidden_prefix(tmp_path: Path) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text("[store]\nstore_id = 'x'\n")
    proc = install("--root", str(tmp_path / "r"), "--config", str(bad))
    assert proc.returncode == 2 and "device_id" in proc.stderr
    proc = install("--root", str(tmp_path / "r"), "--prefix", "/home/pi/edge-agent")
    assert proc.returncode == 2 and "ProtectHome" in proc.stderr


def test_bus_nodes_are_installed_with_the_broker_and_the_hashes_kept_private(
    tmp_path: Path,
) -> None:
    """`firmware render` output -> /etc/edge-agent/mosquitto.d, which the shipped mosquitto.conf
    includes (tests/box/test_node_bus.py runs that pair on a real mosquitto)."""
    from edge_agent.box.install import Options, plan

    out = Path(render_nodes(tmp_path)).parent
    root = tmp_path / "root"
    actions = plan(Options(root=root, with_mosquitto=True, bus_nodes=out / "mosquitto"))
    files = {a.path.name: a for a in actions if a.kind == "file" and a.path is not None}
    d = root / "etc/edge-agent/mosquitto.d"
    assert any(a.kind == "dir" and a.path == d for a in actions)
    assert files["nodes.passwd"].path == d / "nodes.passwd"
    assert (files["nodes.passwd"].mode, files["nodes.passwd"].owner) == (0o600, "mosquitto")
    assert files["nodes.conf"].content == (out / "mosquitto/nodes.conf").read_bytes()
    # The demo layout's bus is TLS: the box's key for the nodes is mosquitto's only; the
    # store's bus CA key (beside the secrets) is never installed.
    assert (files["nodes-server.key"].mode, files["nodes-server.key"].owner) == (0o600, "mosquitto")
    assert "bus-ca.key" not in files
    assert "include_dir /etc/edge-agent/mosquitto.d" in files["mosquitto.conf"].content.decode()

    # Refused before anything is written: without the broker, or without a rendered listener.
    proc = install("--root", str(root), "--bus-nodes", str(out / "mosquitto"))
    assert proc.returncode == 2 and "--with-mosquitto" in proc.stderr
    proc = install("--root", str(root), "--with-mosquitto", "--bus-nodes", str(out))
    assert proc.returncode == 2 and "no nodes.conf" in proc.stderr
    assert not root.exists()
