"""Issue 20: the agent imports heavy modules only where they are used.

The real `edge-agent run` in a child process, as systemd starts it (READY=1 on a notify
socket), then SIGTERM; an exit hook writes the names in ``sys.modules``, so everything the agent
imported on its way up, while running (the camera thread included) and on its way out counts.
A top-level import of OpenCV, Kivy or FastAPI on the start path fails these tests; what each
costs is in BENCHMARKS.md (`edge-agent bench box`). With a camera configured, OpenCV runs in the
camera worker process (``camera/worker.py``), never in the agent, unless ``run_in = "thread"``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.box.test_sdnotify import agent_config, notify_socket
from tests.watching import wait_for

# Runs the agent's own entry point; the exit hook is the only thing added.
_WRAPPER = """
import atexit, json, sys
atexit.register(lambda: open(sys.argv[1], "w").write(json.dumps(sorted(sys.modules))))
from edge_agent.cli import main
sys.exit(main(["run", "-c", sys.argv[2]]))
"""

# Never in the agent: the player's toolkit, the store API's web stack (its own process), the
# demo scene's image loaders (the photos are decoded with OpenCV) and metrics when off.
NEVER = {"kivy", "fastapi", "uvicorn", "starlette", "skimage.io", "scipy", "prometheus_client"}
CAMERA_ONLY = {"cv2"}
# Only once a kiosk searches.
ON_DEMAND = {"rapidfuzz"}


def _modules_of_a_run(
    tmp_path: Path, cfg: Path, run_s: float, until: Callable[[str], bool] | None = None
) -> set[str]:
    """The agent's modules after READY, ``run_s`` seconds of running (or until its log, the
    camera worker's included, satisfies ``until``) and a clean stop."""
    path = str(tmp_path / "notify")
    out = tmp_path / "modules.json"
    log = tmp_path / "agent.log"
    with notify_socket(path) as s, log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRAPPER, str(out), str(cfg)],
            env={**os.environ, "NOTIFY_SOCKET": path},
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            s.wait_for("READY", 30)
            s.poll(run_s)  # steady running: the camera thread's lazy imports count too
            if until is not None:
                assert wait_for(lambda: until(log.read_text(errors="replace")), 30)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    return set(json.loads(out.read_text()))


def _loaded(modules: set[str], names: set[str]) -> set[str]:
    return {n for n in names if n in modules}


@pytest.mark.timeout(90)
def test_agent_without_a_camera_imports_no_opencv_kivy_or_web_stack(tmp_path: Path, broker) -> None:
    cfg = agent_config(tmp_path, broker.port, "box-lazy-1")
    text = cfg.read_text()
    assert "[camera]\nenabled = true" in text  # the demo store has one: switch it off
    cfg.write_text(text.replace("[camera]\nenabled = true", "[camera]\nenabled = false"))
    modules = _modules_of_a_run(tmp_path, cfg, 1.0)
    assert "edge_agent.app.agent" in modules  # the agent did run
    assert _loaded(modules, NEVER | CAMERA_ONLY | ON_DEMAND) == set()


@pytest.mark.timeout(90)
def test_agent_with_a_camera_never_imports_opencv_its_worker_process_does(
    tmp_path: Path, broker
) -> None:
    cfg = agent_config(tmp_path, broker.port, "box-lazy-2")  # demo:entrance, the demo scene
    # The camera did run: its worker process opened the scene and analysed frames ("camera:
    # ok" is the worker's thread saying so; its log goes to the agent's stderr, the journal).
    modules = _modules_of_a_run(tmp_path, cfg, 1.0, until=lambda log: "camera: ok" in log)
    assert "edge_agent.sensing.camera.process" in modules
    assert _loaded(modules, NEVER | CAMERA_ONLY | ON_DEMAND) == set()
    assert "numpy" not in modules or "shapely" in modules  # numpy only for the store map


@pytest.mark.timeout(90)
def test_agent_with_the_camera_in_a_thread_imports_opencv_but_no_kivy_or_web_stack(
    tmp_path: Path, broker
) -> None:
    cfg = agent_config(tmp_path, broker.port, "box-lazy-3")
    text = cfg.read_text()
    assert "[camera]\nenabled = true" in text
    cfg.write_text(text.replace("[camera]\nenabled = true", '[camera]\nrun_in = "thread"'))
    modules = _modules_of_a_run(tmp_path, cfg, 2.0)
    assert _loaded(modules, CAMERA_ONLY) == CAMERA_ONLY  # the camera path did run, in here
    assert _loaded(modules, NEVER | ON_DEMAND) == set()
