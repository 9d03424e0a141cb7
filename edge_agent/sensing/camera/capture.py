"""The camera runs in its own thread: capture, analyse, hand over counts.

``CameraWorker`` owns the frame source and the screen pipelines. Its thread reads a frame,
runs every pipeline on it, drops the frame and hands the observations (counts and seconds,
never pixels) to ``on_observation``; the agent's asyncio loop never touches a frame and never
waits for the camera, however slow or stuck the camera is.

When a live camera stops delivering (unplugged, stream cut) or cannot be opened, the worker
retries with exponential backoff (``Backoff``) and reports its state in ``health()``: the
agent puts it in every heartbeat. A file that ends is "ended", not retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.backoff import Backoff
from edge_agent.sensing.camera.pipeline import ScreenObservation, ScreenPipeline
from edge_agent.sensing.camera.sources import CameraError, FrameSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraHealth:
    # starting | ok | stalled | reconnecting | ended | stopped
    state: str
    frames: int
    reconnects: int
    fps: float
    last_error: str | None = None
    # Seconds (monotonic) since the last frame; None before the first.
    frame_age_s: float | None = None


class CameraWorker:
    """A thread that reads ``source`` (or opens one with ``opener``) at most every
    ``interval_s`` seconds and runs ``pipelines`` on each frame.

    ``now`` gives the timestamp of each frame (the agent's clock, so dwell is in agent
    seconds). With ``opener``, a lost live camera is closed and reopened; without it, the
    source is asked again (``VideoCaptureSource`` reopens itself).
    """

    def __init__(
        self,
        pipelines: Sequence[ScreenPipeline],
        on_observation: Callable[[ScreenObservation], None],
        *,
        source: FrameSource | None = None,
        opener: Callable[[], FrameSource] | None = None,
        interval_s: float = 0.1,
        now: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
        stall_s: float = 3.0,
    ) -> None:
        if source is None and opener is None:
            raise ValueError("CameraWorker needs a source or an opener")
        self.pipelines = list(pipelines)
        self.on_observation = on_observation
        self.interval_s = interval_s
        self.now = now
        self.backoff = backoff or Backoff()
        # A read that has not returned after this long is reported as "stalled".
        self.stall_s = stall_s
        self._reading_since: float | None = None
        self._source = source
        self._opener = opener
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state = "starting"
        self._frames = 0
        self._reconnects = 0
        self._last_error: str | None = None
        self._bad_frames = 0
        self._recent: list[float] = []  # monotonic times of the last frames, for fps
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)

    # ---- control -------------------------------------------------------------------------
    def start(self) -> CameraWorker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread; False if it is stuck in a camera read past ``timeout``."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def health(self) -> CameraHealth:
        with self._lock:
            recent = list(self._recent)
            reading_since = self._reading_since
            state, frames, reconnects, err = (
                self._state,
                self._frames,
                self._reconnects,
                self._last_error,
            )
        if reading_since is not None and time.monotonic() - reading_since > self.stall_s:
            state = "stalled"  # stuck inside the driver: only the camera can end this
        fps = 0.0
        if len(recent) >= 2 and recent[-1] > recent[0]:
            fps = (len(recent) - 1) / (recent[-1] - recent[0])
        age = time.monotonic() - recent[-1] if recent else None
        return CameraHealth(state, frames, reconnects, round(fps, 1), err, age)

    def _set(self, state: str, error: str | None = None) -> None:
        with self._lock:
            if state != self._state:
                # Log on state change only, and never anything about a frame.
                log.log(
                    logging.INFO if state in ("ok", "stopped") else logging.WARNING,
                    "camera: %s%s",
                    state,
                    f" ({error})" if error else "",
                )
            self._state = state
            if error is not None:
                self._last_error = error

    # ---- thread --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug must not kill the agent; it shows in health
            log.exception("camera worker failed")
            self._set("ended", f"{type(exc).__name__}: {exc}")
        finally:
            self._end_visits()
            if self._source is not None:
                self._source.close()
            if self._state != "ended":
                self._set("stopped")

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            if self._source is None and not self._open():
                continue
            assert self._source is not None
            delay = next_at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            next_at = max(next_at + self.interval_s, time.monotonic())
            with self._lock:
                self._reading_since = time.monotonic()
            try:
                frame = self._source.read()
            except Exception as exc:  # drivers surface odd errors; treat as no frame
                log.warning("camera: read raised %s", type(exc).__name__)
                frame = None
            finally:
                with self._lock:
                    self._reading_since = None
            if frame is None:
                if not self._lost():
                    return
                continue
            t = self.now()
            try:
                observations = [p.process(frame, t) for p in self.pipelines]
            except ValueError as exc:  # a malformed frame from a driver: skip it, keep going
                self._bad_frames += 1
                if self._bad_frames == 1:
                    log.warning("camera: frame skipped: %s", exc)
                continue
            finally:
                del frame  # the only reference: gone before anything is handed over
            with self._lock:
                self._frames += 1
                self._recent = (self._recent + [time.monotonic()])[-20:]
            if self._state != "ok":
                self.backoff.reset()
                self._set("ok")
            for o in observations:
                self.on_observation(o)

    def _open(self) -> bool:
        assert self._opener is not None
        try:
            self._source = self._opener()
        except CameraError as exc:
            self._set("reconnecting", str(exc))
            self._stop.wait(self.backoff.next())
            return False
        if self._state != "starting":
            with self._lock:
                self._reconnects += 1
        return True

    def _lost(self) -> bool:
        """No frame: True to keep trying (live camera), False when the source has ended."""
        assert self._source is not None
        live = bool(getattr(self._source, "live", False))
        self._end_visits()
        if not live:
            self._set("ended", "no more frames")
            return False
        self._set("reconnecting", "no frame")
        if self._opener is not None:
            self._source.close()
            self._source = None
        # Also when it reopens at once: a stream that opens but sends nothing must not spin.
        self._stop.wait(self.backoff.next())
        return True

    def _end_visits(self) -> None:
        """Nobody is seen while the camera is lost: open visits end now, once."""
        t = self.now()
        for p in self.pipelines:
            o = p.finish(t)
            if o.ended:
                self.on_observation(o)


def health_label(health: CameraHealth | None, configured: bool) -> str:
    """The heartbeat's one-word camera state."""
    if not configured:
        return "off"
    if health is None:
        return "silent"
    return health.state


def make_pipelines(cam: Any) -> list[ScreenPipeline]:
    """Pipelines from a ``CameraConfig``: one per screen the camera watches."""
    return [
        ScreenPipeline(
            cam.screen,
            roi=cam.roi or (0.0, 0.0, 1.0, 1.0),
            width=cam.width,
            height=cam.height,
            detect_every=cam.detect_every,
            face_model=str(cam.face_model) if cam.face_model else None,
            track_gap_s=cam.track_gap_s,
            hfov_deg=cam.hfov_deg,
            face_width_m=cam.face_width_m,
        )
    ]
