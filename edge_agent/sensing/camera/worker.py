"""The camera worker process (issue 20): ``python -m edge_agent.sensing.camera.worker --fd N``.

OpenCV, numpy's image work, the frames and the detectors live here and only here, so the agent
never carries them. The agent starts this process with one end of a socketpair as fd N and
supervises it (``camera/process.py``). The agent writes one message, the setup (the
``[camera]`` config and the agent's clock); it goes over the socket, not the command line,
because a stream URL may carry credentials that ``ps`` would show to every user of the box.

Then the worker runs the same ``CameraWorker`` thread as before (capture -> pipelines ->
tracker) and writes back only what that thread hands out: one message per observation (counts,
track ids, finished visits' seconds) and the camera's health twice a second. Never a frame.

It stops on SIGTERM or when the agent's end of the socket closes (the agent died, even by
SIGKILL), ending open visits first so that their dwell reaches the agent.
"""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, fields
from typing import Any

from edge_agent.clock import Clock, ScaledClock, SystemClock
from edge_agent.sensing.camera import observation as channel

log = logging.getLogger("edge_agent.camera_worker")
HEALTH_EVERY_S = 0.5
# Exit statuses the agent tells apart: 0 stopped or the recording ended (not restarted),
# 2 the setup was refused (restarting cannot help; the agent says so and backs off).
EXIT_BAD_SETUP = 2


def clock_spec(clock: Any) -> dict[str, Any]:
    """The agent's clock, for a worker to run the same one (dwell in agent seconds, a demo
    scene on the agent's timeline). CLOCK_MONOTONIC is one clock for every process of the box,
    so a ``ScaledClock`` is rebuilt exactly from its start, speed and monotonic origin."""
    if isinstance(clock, ScaledClock):
        return {"kind": "scaled", "start": clock.start, "speed": clock.speed, "m0": clock._m0}
    if isinstance(clock, SystemClock) or not hasattr(clock, "now"):
        return {"kind": "wall"}
    # A flat-out trace clock follows the replayed adverts, which the worker does not see:
    # real time from the agent's now is the closest the worker can keep.
    return {"kind": "scaled", "start": clock.now(), "speed": 1.0, "m0": time.monotonic()}


def clock_from_spec(spec: dict[str, Any]) -> Clock:
    if spec.get("kind") == "scaled":
        c = ScaledClock(float(spec["start"]), float(spec["speed"]))
        c._m0 = float(spec["m0"])
        return c
    return SystemClock()


@dataclass(frozen=True)
class WorkerCamera:
    """The ``[camera]`` fields the worker uses, as the agent validated them (``CameraConfig``).

    A plain dataclass, not the pydantic model: importing the config module (pydantic, its
    compiled models, paho and ssl through the broker settings) would cost this process about
    20 MB for fields the agent has already checked. Types are checked here once more.
    """

    source: str
    screen: str
    width: int
    height: int
    fps: float
    roi: list[float] | None
    detect_every: int
    face_model: str | None
    track_gap_s: float
    reconnect_max_s: float
    hfov_deg: float | None
    face_width_m: float

    @classmethod
    def from_setup(cls, d: dict[str, Any]) -> WorkerCamera:
        kw = {f.name: d[f.name] for f in fields(cls)}
        for name in ("source", "screen"):
            if not isinstance(kw[name], str):
                raise TypeError(f"{name} is not a string")
        for name in ("width", "height", "detect_every"):
            if isinstance(kw[name], bool) or not isinstance(kw[name], int) or kw[name] <= 0:
                raise TypeError(f"{name} is not a positive integer")
        for name in ("fps", "track_gap_s", "reconnect_max_s", "face_width_m"):
            kw[name] = float(kw[name])
            if not kw[name] > 0:
                raise ValueError(f"{name} must be > 0")
        return cls(**kw)


def serve(sock: socket.socket, stop: threading.Event) -> int:
    """Run the camera described by the agent's setup message until ``stop``; the exit status."""
    from contracts.backoff import Backoff
    from edge_agent.sensing.camera.capture import CameraWorker, make_pipelines
    from edge_agent.sensing.camera.sources import CameraError, FrameSource, open_source

    setup = channel.receive(sock)
    if setup is None or setup.get("type") != "setup":
        log.error("camera worker: no setup from the agent")
        return EXIT_BAD_SETUP
    try:
        cam = WorkerCamera.from_setup(setup["camera"])
        clock = clock_from_spec(setup["clock"])
        pipelines = make_pipelines(cam)
    except (KeyError, TypeError, ValueError, CameraError) as exc:
        log.error("camera worker: setup refused: %s", exc)
        return EXIT_BAD_SETUP

    def opener() -> FrameSource:
        return open_source(cam.source, clock=clock, width=cam.width, height=cam.height)

    frames: FrameSource | None = None
    try:
        frames = opener()
    except CameraError as exc:  # the thread retries with backoff, as in the agent before
        log.error("camera not available yet: %s", exc)
    out: queue.SimpleQueue[Any] = queue.SimpleQueue()
    speed = getattr(clock, "speed", 1.0) or 1.0
    camera = CameraWorker(
        pipelines,
        out.put,
        source=frames,
        opener=opener,
        interval_s=max(0.02, 1.0 / (cam.fps * speed)),
        now=clock.now,
        backoff=Backoff(0.5, 2.0, cam.reconnect_max_s),
    ).start()

    def forward() -> None:
        while True:
            try:
                o = out.get_nowait()
            except queue.Empty:
                return
            channel.send(sock, channel.observation_message(o))

    # The agent's end closing (it stopped or died) stops us too: nobody reads the counts.
    def watch_agent() -> None:
        try:
            while sock.recv(1024):
                pass
        except OSError:
            pass
        stop.set()

    threading.Thread(target=watch_agent, name="agent-watch", daemon=True).start()
    next_health = 0.0
    try:
        while not stop.wait(0.02):
            forward()
            now = time.monotonic()
            if now >= next_health:
                next_health = now + HEALTH_EVERY_S
                h = camera.health()
                channel.send(sock, channel.health_message(h))
                if h.state == "ended":  # a recording played to its end: nothing more to do
                    break
    except OSError:  # the agent went away mid-message: nothing left to tell
        camera.stop(timeout=2.0)
        return 0
    camera.stop(timeout=2.0)
    try:
        forward()  # the visits the stop ended
        channel.send(sock, channel.health_message(camera.health()))
    except OSError:
        pass
    return 0


# Out of memory, the kernel kills the process with the highest badness; this one is the
# biggest on the box after the player, and losing it costs the least (the agent restarts it and
# runs BLE-only meanwhile), so it volunteers to go before the agent. Raising it needs no
# privilege.
OOM_SCORE_ADJ = 500


def _first_to_go() -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write(str(OOM_SCORE_ADJ))
    except OSError:  # not Linux, or /proc not mounted: only the order of OOM kills changes
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edge_agent.sensing.camera.worker")
    ap.add_argument("--fd", type=int, required=True, help="this end of the agent's socketpair")
    args = ap.parse_args(argv)
    from edge_agent.box.logs import setup_logging

    # The agent's stderr, hence its journal: the same JSON lines (or text on a terminal) and
    # the same redaction as the agent's own records.
    setup_logging()
    _first_to_go()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sock = socket.socket(fileno=args.fd)
    try:
        return serve(sock, stop)
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
