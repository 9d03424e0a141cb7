"""On-the-box figures (issues 9, 20): cold start to READY, steady-state RSS of agent and player,
and the systemd exposure score of every unit.

Cold start is measured the way systemd sees it: from fork/exec of `edge-agent run` to the
READY=1 datagram on a notify socket, against the demo store (its camera scene and its store
map) on a private mosquitto, and once more with the camera off. The naive baseline in the same
run is a bare interpreter start (`python -c pass`): the floor any Python service pays, so the
ratio says what the agent adds on top.

Issue 20 puts the camera in a worker process: with a camera configured the bench reports the
agent's RSS (the goal), the camera worker's and their sum, beside the single-process layout
(`[camera] run_in = "thread"`) measured in the same run, since on a 1 GB Pi the total counts.

``baseline="REF"`` (`edge-agent bench box --baseline REF`) measures that git commit too, in the
same run and interleaved with this tree (one cold start of each in turn), from a `git archive`
of it put first on the children's PYTHONPATH: the machine's noise then falls on both alike,
and the ratios compare like with like (issue 20 compares against the commit before it).
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

from bench.procstat import children, rss_mb
from contracts.signing import generate_keypair
from demo import scenario
from testbed.broker import Mosquitto

DEMO = Path(scenario.__file__).parent
UNITS = Path(__file__).resolve().parent.parent / "systemd"
BIN = Path(sys.executable).parent
# Issue 20: room on a 1 GB Pi beside the player (about 210 MB) and the broker.
GOAL_RSS_MB = 100
GOAL_READY_S = 1.5


def _config(tmp: Path, port: int, *, camera: bool = True, thread: bool = False) -> Path:
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
    # The demo store's map, so that the box loads it as in the demo (screens draw routes).
    text = text.replace('path = "store-map.toml"', f'path = "{DEMO / "store-map.toml"}"')
    if not camera:
        text = text.replace("[camera]\nenabled = true", "[camera]\nenabled = false")
    elif thread:  # the camera inside the agent, the single-process layout before issue 20
        text = text.replace(
            "[camera]\nenabled = true", '[camera]\nenabled = true\nrun_in = "thread"'
        )
    name = "agent.toml" if camera and not thread else "agent-thread.toml" if camera else ""
    p = tmp / (name or "agent-no-camera.toml")
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


def _env(src: Path | None, **extra: str) -> dict[str, str]:
    """The children's environment: ``src`` (a baseline tree) first on the import path."""
    env = {**os.environ, **extra}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def _export(ref: str, dest: Path) -> Path:
    """The tree of git commit ``ref`` in ``dest`` (`git archive`: no checkout, no branch)."""
    root = Path(__file__).resolve().parent.parent
    dest.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def _cold_start(
    cfg: Path, tmp: Path, steady_s: float, src: Path | None = None
) -> tuple[float, float, float | None]:
    """Seconds to READY=1, and the RSS of the agent and of its camera worker (None without
    one) after ``steady_s`` more seconds of running."""
    path = str(tmp / f"notify-{time.monotonic_ns()}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    env = _env(src, NOTIFY_SOCKET=path, WATCHDOG_USEC="30000000")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "edge-agent"), "run", "-c", str(cfg)],
        env=env,
        # Not the checkout: Python puts the working directory first on the import path, and
        # a baseline tree on PYTHONPATH must win over this one.
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while b"READY=1" not in sock.recv(4096):
            pass
        ready = time.perf_counter() - t0
        time.sleep(steady_s)
        rss = rss_mb(proc.pid)
        workers = children(proc.pid)
        worker = sum(rss_mb(k) for k in workers) if workers else None
    finally:
        _stop(proc)
        sock.close()
    return ready, rss, worker


def _player_rss(cfg: Path, tmp: Path, steady_s: float, src: Path | None = None) -> dict[str, Any]:
    try:
        from testbed.display import Xvfb, kivy_env
    except ImportError as exc:
        return {"error": f"not available: {exc}"}
    try:
        with Xvfb() as display:
            env = kivy_env(display, tmp / "kivy-home")
            if src is not None:
                env["PYTHONPATH"] = str(src)
            proc = subprocess.Popen(
                [str(BIN / "signage-ui"), "-c", str(cfg), "--screen", "screen-entrance"],
                env=env,
                cwd=tmp,
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


def _starts(
    cfg: Path | dict[str, Path],
    tmp: Path,
    runs: int,
    steady_s: float,
    trees: dict[str, Path | None],
) -> dict[str, tuple[list[float], float, float | None]]:
    """Per tree: ``runs`` cold starts (taken in turn with the other trees') and the RSS of the
    agent and of its camera worker after the last one has run ``steady_s`` seconds. ``cfg`` may
    name a config per tree (a layout only one tree knows)."""
    starts: dict[str, list[float]] = {name: [] for name in trees}
    rss: dict[str, tuple[float, float | None]] = {}
    for i in range(runs):
        last = i == runs - 1
        for name, src in trees.items():
            c = cfg[name] if isinstance(cfg, dict) else cfg
            ready, r, w = _cold_start(c, tmp, steady_s if last else 0.0, src)
            starts[name].append(ready)
            if last:
                rss[name] = (r, w)
    return {name: (starts[name], *rss[name]) for name in trees}


def _worker_first_observation(runs: int) -> dict[str, Any]:
    """Seconds from spawning a camera worker (the demo scene) to its first observation at the
    agent's end of the channel: the camera's own cold start, which READY no longer waits for."""
    from edge_agent.clock import SystemClock
    from edge_agent.config import CameraConfig
    from edge_agent.sensing.camera.process import CameraProcess, worker_setup

    cam = CameraConfig(source="demo:entrance", screen="screen-entrance")
    took: list[float] = []
    for _ in range(runs):
        first: list[float] = []
        t0 = time.perf_counter()
        proc = CameraProcess(
            worker_setup(cam, SystemClock()), lambda _o, f=first: f.append(time.perf_counter())
        ).start()
        try:
            while not first and time.perf_counter() - t0 < 60:
                time.sleep(0.005)
        finally:
            proc.stop(10)
        if first:
            took.append(first[0] - t0)
    if not took:
        return {"error": "no observation within 60 s"}
    return {"median": round(statistics.median(took), 3), "max": round(max(took), 3), "runs": runs}


def _rss_figures(agent: float, worker: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {"rss_mb": round(agent, 1)}
    if worker is not None:
        out["camera_worker_rss_mb"] = round(worker, 1)
        out["agent_plus_worker_rss_mb"] = round(agent + worker, 1)
    return out


def _start_figures(starts: list[float], base_med: float) -> dict[str, Any]:
    med = statistics.median(starts)
    return {
        "median": round(med, 3),
        "max": round(max(starts), 3),
        "runs": len(starts),
        "goal_s": GOAL_READY_S,
        "bare_python_start_s": round(base_med, 3),
        "ratio_vs_bare_python": round(med / base_med, 1),
    }


def _ratio(ours: float, theirs: float) -> float:
    return round(theirs / ours, 2) if ours > 0 else float("nan")


def run(quick: bool = False, baseline: str | None = None) -> dict[str, Any]:
    runs = 2 if quick else 5
    steady_s = 5.0 if quick else 20.0
    base = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        base.append(time.perf_counter() - t0)
    base_med = statistics.median(base)
    with tempfile.TemporaryDirectory() as d, Mosquitto() as broker:
        tmp = Path(d)
        trees: dict[str, Path | None] = {"ours": None}
        if baseline is not None:
            trees["baseline"] = _export(baseline, tmp / "baseline-src")
        cfg = _config(tmp, broker.port)
        no_cam = _config(tmp, broker.port, camera=False)
        in_thread = _config(tmp, broker.port, thread=True)
        # The same tree with the camera in a thread of the agent, interleaved with the worker
        # layout (and the baseline tree): the single-process figures issue 20 started from,
        # in the same run.
        layouts: dict[str, Path | None] = {"ours": None, "ours_thread": None, **trees}
        configs = {name: in_thread if name == "ours_thread" else cfg for name in layouts}
        cam = _starts(configs, tmp, runs, steady_s, layouts)
        bare = _starts(no_cam, tmp, runs, steady_s, trees)
        players = {name: _player_rss(cfg, tmp, steady_s, src) for name, src in trees.items()}
    out: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        "cold_start_to_ready_s": _start_figures(cam["ours"][0], base_med),
        "cold_start_to_ready_no_camera_s": _start_figures(bare["ours"][0], base_med),
        "agent_rss_mb": {
            "steady_s": steady_s,
            **_rss_figures(cam["ours"][1], cam["ours"][2]),
            "goal_mb": GOAL_RSS_MB,
        },
        "camera_worker_spawn_to_first_observation_s": _worker_first_observation(runs),
        "camera_in_a_thread": {
            "cold_start_to_ready_s": _start_figures(cam["ours_thread"][0], base_med),
            "agent_rss_mb": round(cam["ours_thread"][1], 1),
        },
        "agent_rss_no_camera_mb": {"steady_s": steady_s, "rss_mb": round(bare["ours"][1], 1)},
        "player_rss_mb": {"steady_s": steady_s, **players["ours"]},
        "unit_exposure": _exposure(),
    }
    if baseline is not None:
        b_cam, b_bare = cam["baseline"], bare["baseline"]
        out["baseline"] = {
            "ref": baseline,
            "cold_start_to_ready_s": _start_figures(b_cam[0], base_med),
            "cold_start_to_ready_no_camera_s": _start_figures(b_bare[0], base_med),
            "agent_rss_mb": round(b_cam[1], 1),
            "agent_rss_no_camera_mb": round(b_bare[1], 1),
            "player_rss_mb": players["baseline"],
            # > 1: this tree is that many times faster or smaller than the baseline.
            "ratio_cold_start_median": _ratio(
                statistics.median(cam["ours"][0]), statistics.median(b_cam[0])
            ),
            "ratio_cold_start_no_camera_median": _ratio(
                statistics.median(bare["ours"][0]), statistics.median(b_bare[0])
            ),
            "ratio_agent_rss": _ratio(cam["ours"][1], b_cam[1]),
            "ratio_agent_rss_no_camera": _ratio(bare["ours"][1], b_bare[1]),
        }
    return out
