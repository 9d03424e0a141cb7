"""The agent's side of the camera worker process (issue 20): start it, read it, restart it.

``CameraProcess`` is what ``AudienceStage`` holds as its camera, with the same two calls as the
in-process ``CameraWorker`` (``health()``, ``stop()``) and the same observations handed to the
same callback, so the audience, fusion and decision code do not know where the camera runs.

A supervisor thread starts ``python -m edge_agent.sensing.camera.worker`` with one end of a
socketpair, sends it the setup, and reads its messages (``camera/observation.py``) until the
channel ends. A worker that dies (a crash, an OOM kill, ``kill -9``) is restarted with
exponential backoff; meanwhile ``health()`` says "restarting", which the audience stage treats
like a lost camera (the screen counts as unobserved: BLE-only, nothing personal), and
``summary()`` says in one line what happened. What the agent had received before the death was
already handed on and stays; only the visits still open in the dead worker are lost with its
tracker (no dwell is invented for them).

Track ids are a per-process counter in the worker; a restarted worker counts from 1 again, so
each worker's ids are moved into their own range here (``generation << 32``) and fused presence
can never take a new person for someone an earlier worker saw.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from contracts.backoff import Backoff
from edge_agent.sensing.camera import observation as channel
from edge_agent.sensing.camera.observation import ScreenObservation, WorkerHealth

log = logging.getLogger("edge_agent")
EXIT_BAD_SETUP = 2  # camera/worker.py: the setup was refused
_AGENT_ONLY_ENV = frozenset({"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"})
# A worker that ran this long before it died was healthy: its restart starts the backoff over.
HEALTHY_RUN_S = 30.0
# No health message for this long from a live worker: it is wedged (health comes every 0.5 s).
SILENT_WORKER_S = 5.0
# A worker silent, or whose camera is stuck inside a driver read, this long is killed and
# restarted: a new process opens the device afresh, which a read stuck in the driver never
# does by itself (in a thread of the agent, only the watchdog's restart of the whole agent,
# after [systemd] camera_stall_s, could cure it).
KILL_WEDGED_S = 30.0
# A message that has begun arrives whole within this, or the worker is wedged mid-write.
MESSAGE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ProcessHealth:
    """``CameraHealth``'s fields as the audience stage and the watchdog read them."""

    state: str
    frames: int
    reconnects: int
    fps: float
    frame_age_s: float | None


def _how_it_ended(code: int | None) -> str:
    if code is None:
        return "lost"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited {code}"


class CameraProcess:
    def __init__(
        self,
        setup: dict[str, Any],
        on_observation: Callable[[ScreenObservation], None],
        *,
        backoff: Backoff | None = None,
        command: list[str] | None = None,
        kill_wedged_s: float = KILL_WEDGED_S,
    ) -> None:
        self.setup = setup
        self.on_observation = on_observation
        self.backoff = backoff or Backoff(0.5, 2.0, 30.0)
        self.command = command or [sys.executable, "-m", "edge_agent.sensing.camera.worker"]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._generation = 0
        self.restarts = 0
        self._frames_before = 0  # frames counted by the workers before this one
        self._worker: WorkerHealth | None = None
        self._health_at: float | None = None  # monotonic time of the last health message
        self._state = "starting"  # the process's own: starting | running | restarting | ...
        self._last_exit: str | None = None
        self._retry_at: float | None = None
        self.kill_wedged_s = kill_wedged_s
        self._stalled_since: float | None = None
        self._killed_for: str | None = None  # why we killed the current worker, if we did
        self._thread = threading.Thread(target=self._run, name="camera-process", daemon=True)

    # ---- control -------------------------------------------------------------------------
    def start(self) -> CameraProcess:
        self._thread.start()
        return self

    @property
    def pid(self) -> int | None:
        with self._lock:
            p = self._proc
        return p.pid if p is not None and p.poll() is None else None

    def stop(self, timeout: float = 5.0) -> bool:
        """SIGTERM to the worker (it ends its open visits and says so), then wait for it."""
        self._stop.set()
        with self._lock:
            p = self._proc
        if p is not None and p.poll() is None:
            p.terminate()
        self._thread.join(timeout)
        with self._lock:
            p = self._proc
        if p is not None and p.poll() is None:
            p.kill()  # it ignored SIGTERM for ``timeout`` seconds: a stuck driver read
            p.wait(5)
            self._thread.join(2.0)
        return not self._thread.is_alive()

    def health(self) -> ProcessHealth:
        with self._lock:
            w, at, state = self._worker, self._health_at, self._state
            frames = self._frames_before + (w.frames if w else 0)
        if state != "running":
            return ProcessHealth(state, frames, self.restarts, 0.0, None)
        if w is None:
            return ProcessHealth("starting", frames, self.restarts, 0.0, None)
        since = time.monotonic() - at if at is not None else 0.0
        if since > SILENT_WORKER_S:
            # Alive but not talking: as blind as a camera stuck in its driver.
            return ProcessHealth("stalled", frames, self.restarts, 0.0, None)
        age = w.frame_age_s + since if w.frame_age_s is not None else None
        return ProcessHealth(w.state, frames, w.reconnects + self.restarts, w.fps, age)

    def summary(self) -> str:
        """One line for the heartbeat: the worker's pid and restarts, or why it is down."""
        with self._lock:
            state, last, retry = self._state, self._last_exit, self._retry_at
            p = self._proc
        pid = p.pid if p is not None else None
        if state == "running":
            tail = f", last {last}" if last else ""
            return f"running pid {pid}, {self.restarts} restarts{tail}"
        if state == "restarting":
            wait = max(0.0, (retry or 0.0) - time.monotonic())
            return f"{last}; restart {self.restarts + 1} in {wait:.1f}s"
        return f"{state}{f' ({last})' if last else ''}"

    # ---- supervisor thread ---------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            code = self._one_worker()
            how = self._killed_for or _how_it_ended(code)
            with self._lock:
                self._last_exit = how
                w = self._worker
                if w is not None:
                    self._frames_before += w.frames
                self._worker = None
            # A recording that played to its end is not restarted (as before), and stays
            # "ended" when our stop came while the worker was on its way out anyway.
            if w is not None and w.state == "ended" and code == 0:
                self._set("ended")
                return
            if self._stop.is_set():
                break
            if time.monotonic() - started > HEALTHY_RUN_S:
                self.backoff.reset()
            delay = self.backoff.next()
            if code == EXIT_BAD_SETUP:
                delay = self.backoff.max_s  # the config will not change by retrying fast
            with self._lock:
                self._retry_at = time.monotonic() + delay
            self._set("restarting")
            log.warning("camera worker %s; restarting in %.1fs", how, delay)
            if self._stop.wait(delay):
                break
            self.restarts += 1
        self._set("stopped")

    def _saw_frame(self) -> None:
        """A frame's observation is news of a camera that delivers, whatever the last health
        message (up to 0.5 s old) said: the worker's thread says "ok" before it hands one on."""
        with self._lock:
            w = self._worker
            if w is not None and w.state != "ok":
                self._worker = replace(w, state="ok", frame_age_s=0.0)
                self._health_at = time.monotonic()

    def _wedged(self, started: float) -> str | None:
        """Why the current worker is of no more use, if it is not: silent or stuck too long."""
        now = time.monotonic()
        with self._lock:
            heard, stalled = self._health_at, self._stalled_since
        if now - (heard if heard is not None else started) > self.kill_wedged_s:
            return f"silent for {self.kill_wedged_s:g}s"
        if stalled is not None and now - stalled > self.kill_wedged_s:
            return f"camera stuck in a read for {self.kill_wedged_s:g}s"
        return None

    def _set(self, state: str) -> None:
        with self._lock:
            self._state = state

    def _one_worker(self) -> int | None:
        """Start a worker, relay its messages until its channel ends; its exit status."""
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [*self.command, "--fd", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # the channel is the socket; stderr is the journal
                # systemd's notify socket is the agent's alone (READY, the watchdog).
                env={k: v for k, v in os.environ.items() if k not in _AGENT_ONLY_ENV},
            )
        except OSError as exc:
            log.error("camera worker: cannot start: %s", exc)
            ours.close()
            theirs.close()
            return None
        theirs.close()  # the child holds it now: its death closes the channel
        started = time.monotonic()
        with self._lock:
            self._proc, self._sock = proc, ours
            self._generation += 1
            offset = self._generation << 32
            self._stalled_since, self._killed_for = None, None
        self._set("running")
        ours.settimeout(MESSAGE_TIMEOUT_S)
        try:
            channel.send(ours, {"type": "setup", **self.setup})
            while True:
                # Wait a second at a time, so that a worker that says nothing is noticed.
                if not select.select([ours], [], [], 1.0)[0]:
                    wedged = self._wedged(started)
                    if wedged and self._killed_for is None:
                        self._killed_for = wedged
                        log.error("camera worker %s; killing it", wedged)
                        proc.kill()
                    continue
                msg = channel.receive(ours)
                if msg is None:
                    break
                if msg["type"] == "obs":
                    o = channel.decode_observation(msg)
                    if o.seen:
                        self._saw_frame()
                    self.on_observation(replace(o, tracks=tuple(i + offset for i in o.tracks)))
                elif msg["type"] == "health":
                    h = channel.decode_health(msg)
                    now = time.monotonic()
                    with self._lock:
                        self._worker, self._health_at = h, now
                        if h.state != "stalled":
                            self._stalled_since = None
                        elif self._stalled_since is None:
                            self._stalled_since = now
                    if self._killed_for is None and (wedged := self._wedged(started)):
                        self._killed_for = wedged
                        log.error("camera worker %s; killing it", wedged)
                        proc.kill()
                else:
                    raise channel.ChannelError(f"unknown message type {msg['type']!r}")
        except channel.ChannelError as exc:
            log.error("camera worker: broken message (%s); restarting it", exc)
            self._killed_for = "sent a broken message"
            proc.kill()
        except OSError:  # died mid-write (nothing to do), or wedged mid-write (killed here)
            proc.kill()
        finally:
            ours.close()
        try:
            return proc.wait(10)
        except subprocess.TimeoutExpired:  # closed its end but lives on: it is no use
            proc.kill()
            return proc.wait(5)


def worker_setup(cam: Any, clock: Any) -> dict[str, Any]:
    """The setup message for a ``[camera]`` config and the agent's clock."""
    from edge_agent.sensing.camera.worker import clock_spec

    return {"camera": cam.model_dump(mode="json"), "clock": clock_spec(clock)}


__all__ = ["CameraProcess", "ProcessHealth", "worker_setup"]
