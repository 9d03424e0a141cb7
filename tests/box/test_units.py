"""The systemd units: exposure <= 2.0 by systemd's own analyzer, `verify` clean, and the
directives the issue asks for present (a unit that drops one fails here, not on a box)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
# Template units are analysed as an instance, the way systemd runs them.
INSTANCES = {
    "edge-agent.service": "edge-agent.service",
    "signage-ui@.service": "signage-ui@screen-1.service",
    "mosquitto.service": "mosquitto.service",
    "store-api.service": "store-api.service",
}
MAX_EXPOSURE = 2.0
ANALYZE = shutil.which("systemd-analyze")


def directives(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    section = ""
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


def test_every_unit_file_is_covered() -> None:
    assert sorted(p.name for p in UNITS.glob("*.service")) == sorted(INSTANCES)


def as_installed(tmp_path: Path, name: str) -> Path:
    """The unit as `edge-agent install` would write it for this venv (ExecStart must exist)."""
    text = (UNITS / name).read_text()
    text = text.replace("/opt/edge-agent/.venv/bin/", str(Path(sys.executable).parent) + "/")
    # The release `current` names (OTA): here, this venv as the factory release would.
    text = text.replace("/opt/edge-agent/ota/current/bin/", str(Path(sys.executable).parent) + "/")
    p = tmp_path / INSTANCES[name]
    p.write_text(text)
    return p


needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (scripts/bootstrap.sh installs systemd)"
)


@needs_analyze
@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_exposure_at_most_2(tmp_path: Path, name: str) -> None:
    unit = as_installed(tmp_path, name)
    proc = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    if m is None:
        pytest.skip(
            f"systemd-analyze security --offline=true cannot run here: {proc.stderr.strip()}"
        )
    assert float(m.group(1)) <= MAX_EXPOSURE, proc.stdout


@needs_analyze
@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_verify_is_clean(tmp_path: Path, name: str) -> None:
    unit = as_installed(tmp_path, name)
    if name == "mosquitto.service" and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("no /usr/sbin/mosquitto to point ExecStart at")
    proc = subprocess.run(
        [ANALYZE, "verify", "--no-pager", str(unit)], capture_output=True, text=True, timeout=60
    )
    # Only findings about our own unit count: the host may lack units we order after.
    ours = [line for line in proc.stderr.splitlines() if unit.name in line or str(unit) in line]
    assert proc.returncode == 0 and not ours, proc.stderr


def test_agent_unit_watchdog_and_restart_policy() -> None:
    d = directives("edge-agent.service")
    assert d["Service.Type"] == ["notify"]
    assert d["Service.NotifyAccess"] == ["main"]
    assert 5 <= int(d["Service.WatchdogSec"][0]) <= 120
    assert d["Service.Restart"] == ["on-failure"]
    # StartLimit* belong to [Unit] (systemd ignores them in [Service], with a warning).
    assert "Unit.StartLimitIntervalSec" in d and "Unit.StartLimitBurst" in d
    after = d["Unit.After"][0].split()
    assert {"network-online.target", "mosquitto.service"} <= set(after)
    assert "network-online.target" in d["Unit.Wants"][0].split()


@pytest.mark.parametrize("name", ["edge-agent.service", "signage-ui@.service"])
def test_hardening_directives(name: str) -> None:
    d = directives(name)
    s = {k.removeprefix("Service."): v for k, v in d.items() if k.startswith("Service.")}
    assert s["User"][0] not in ("root", "") and s["ProtectSystem"] == ["strict"]
    assert s["StateDirectory"] and s["UMask"] == ["0077"]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert s[key] == ["yes"], key
    assert s["DevicePolicy"] == ["closed"] and s["DeviceAllow"]
    assert s["SystemCallFilter"][0] == "@system-service"
    assert s["CapabilityBoundingSet"] == [""]  # bleak scans via bluetoothd: no capability needed
    if name == "edge-agent.service":
        families = s["RestrictAddressFamilies"][0].split()
        assert families == ["AF_UNIX", "AF_INET", "AF_INET6", "AF_BLUETOOTH", "AF_NETLINK"]
        allowed = {v.split()[0] for v in s["DeviceAllow"]}
        assert allowed == {
            "char-video4linux",
            "char-ttyUSB",
            "char-ttyACM",
            "char-ttyAMA",
            "char-ttyS",
        }


def test_store_api_unit_only_reads_the_agents_state() -> None:
    d = directives("store-api.service")
    s = {k.removeprefix("Service."): v for k, v in d.items() if k.startswith("Service.")}
    assert s["User"] == ["edge-agent"] and s["ProtectSystem"] == ["strict"]
    assert s["ReadOnlyPaths"] == ["/var/lib/edge-agent"] and "StateDirectory" not in s
    assert s["MemoryDenyWriteExecute"] == ["yes"] and s["PrivateDevices"] == ["yes"]
    assert s["CapabilityBoundingSet"] == [""] and "api" in s["ExecStart"][0].split()
