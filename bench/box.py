"""On-the-box figures (issue 9): cold start to READY, steady-state RSS of agent and player,
and the systemd exposure score of every unit.

Cold start is measured the way systemd sees it: from fork/exec of `edge-agent run` to the
READY=1 datagram on a notify socket, against the demo store on a private mosquitto. The naive
baseline in the same run is a bare interpreter start (`python -c pass`): the floor any Python
service pays, so the ratio says what the agent adds on top.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procstat import rss_mb
from contracts.signing import generate_keypair
from demo import scenario
from testbed.broker import Mosquitto

DEMO = Path(scenario.__file__).parent
UNITS = Path(__file__).resolve().parent.parent / "systemd"
BIN = Path(sys.executable).parent


def _config(tmp: Path, port: int) -> Path:
    text = (DEMO / "store.toml").read_text()
    text = text.replace("port = 1883", f"port = {port}")
    text = text.replace(
        'replay_file = "data/trace.jsonl.gz"', f'replay_file = "{DEMO / "data" / "trace.jsonl.gz"}"'
    )
    text = text.replace("replay_speed = 4.0", "replay_speed = 1.0")
    text = text.replace(
        'ops_public_key = "REPLACED-BY-DEMO"', f'ops_public_key = "{generate_keypair()[1]}"'
    )
    text = text.replace('state_dir = "var"', f'state_dir = "{tmp / "var"}"')
    p = tmp / "agent.toml"
    p.write_text(text + "\n[metrics]\nenabled = false\n")
    return p


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cold_start(cfg: Path, tmp: Path, steady_s: float) -> tuple[float, float]:
    """Seconds to READY=1, and RSS after ``steady_s`` more seconds of running."""
    path = str(tmp / f"notify-{time.monotonic_ns()}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "edge-agent"), "run", "-c", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while b"READY=1" not in sock.recv(4096):
            pass
        ready = time.perf_counter() - t0
        time.sleep(steady_s)
        rss = rss_mb(proc.pid)
    finally:
        _stop(proc)
        sock.close()
    return ready, rss


def _player_rss(cfg: Path, tmp: Path, steady_s: float) -> dict[str, Any]:
    try:
        from testbed.display import Xvfb, kivy_env
    except ImportError as exc:
        return {"error": f"not available: {exc}"}
    try:
        with Xvfb() as display:
            env = kivy_env(display, tmp / "kivy-home")
            proc = subprocess.Popen(
                [str(BIN / "signage-ui"), "-c", str(cfg), "--screen", "screen-entrance"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(steady_s)
                if proc.poll() is not None:
                    return {"error": f"player exited with {proc.returncode}"}
                return {"rss_mb": round(rss_mb(proc.pid), 1)}
            finally:
                _stop(proc)
    except Exception as exc:  # no Xvfb here: say so in the JSON
        return {"error": str(exc)}


def _exposure() -> dict[str, Any]:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        return {"error": "systemd-analyze not installed"}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        for unit in sorted(UNITS.glob("*.service")):
            name = unit.name.replace("@.", "@screen-1.")
            (Path(d) / name).write_text(unit.read_text())
            proc = subprocess.run(
                [exe, "security", "--offline=true", "--no-pager", str(Path(d) / name)],
                capture_output=True,
                text=True,
            )
            m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
            out[unit.name] = float(m.group(1)) if m else proc.stderr.strip()
    return out


def run(quick: bool = False) -> dict[str, Any]:
    runs = 2 if quick else 5
    steady_s = 5.0 if quick else 20.0
    base = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        base.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as d, Mosquitto() as broker:
        tmp = Path(d)
        cfg = _config(tmp, broker.port)
        starts, rss = [], []
        for i in range(runs):
            ready, r = _cold_start(cfg, tmp, steady_s if i == runs - 1 else 0.0)
            starts.append(ready)
            if i == runs - 1:
                rss.append(r)
        player = _player_rss(cfg, tmp, steady_s)
    ready_med = statistics.median(starts)
    base_med = statistics.median(base)
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        "cold_start_to_ready_s": {
            "median": round(ready_med, 3),
            "max": round(max(starts), 3),
            "runs": runs,
            "goal_s": 3.0,
            "bare_python_start_s": round(base_med, 3),
            "ratio_vs_bare_python": round(ready_med / base_med, 1),
        },
        "agent_rss_mb": {"steady_s": steady_s, "rss_mb": round(rss[0], 1), "goal_mb": 150},
        "player_rss_mb": {"steady_s": steady_s, **player},
        "unit_exposure": _exposure(),
    }
