"""Where frames come from: a V4L2 camera, an RTSP/HTTP stream, a video file, or a demo scene.

Every source hands out one BGR frame at a time and keeps no copy of it: the caller analyses
the frame and drops it. A source that dies (camera unplugged, stream cut, file truncated or
finished) makes ``read()`` return None rather than raise, so the camera loop simply waits and
tries again; only *opening* a source that is not there raises ``CameraError``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

log = logging.getLogger(__name__)

# Network streams can block forever inside FFmpeg without these (milliseconds).
_OPEN_TIMEOUT_MS = 5000
_READ_TIMEOUT_MS = 5000


class CameraError(RuntimeError):
    """A camera source cannot be opened; the message is one line for the operator."""


@runtime_checkable
class FrameSource(Protocol):
    def read(self) -> np.ndarray | None:
        """The next BGR frame (H x W x 3, uint8), or None when no frame is available now."""
        ...

    def close(self) -> None: ...


def redact(spec: str) -> str:
    """``rtsp://user:secret@host/x`` -> ``rtsp://***@host/x``: credentials stay out of logs."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/]*@", r"\1***@", spec)


def _is_url(spec: str) -> bool:
    return "://" in spec


def _is_live(spec: str) -> bool:
    # Devices and network streams can come back after a failure; a file that ended cannot.
    return spec.isdigit() or spec.startswith("/dev/video") or _is_url(spec)


class VideoCaptureSource:
    """``cv2.VideoCapture`` for a V4L2 index ("0"), a device path, an RTSP/HTTP URL or a file.

    Live sources that stop delivering are reopened at most every ``reconnect_s`` seconds; a
    file that ends (or is truncated) returns None from then on.
    """

    def __init__(
        self,
        spec: str,
        *,
        width: int | None = None,
        height: int | None = None,
        reconnect_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        # What logs and errors show: a stream URL without its user name and password.
        self.name = redact(spec)
        self.width = width
        self.height = height
        self.reconnect_s = reconnect_s
        self._monotonic = monotonic
        self.live = _is_live(spec)
        self.failures = 0
        self.reopens = 0
        self._closed = False
        self._last_reopen = monotonic()
        cap = self._open()
        if cap is None:
            raise CameraError(f"cannot open camera source {self.name!r}: {self._hint()}")
        self._cap: Any = cap

    def _hint(self) -> str:
        if self.spec.isdigit() or self.spec.startswith("/dev/video"):
            return "no such video device or it is busy (check /dev/video* and permissions)"
        if _is_url(self.spec):
            return "stream unreachable or unsupported (check URL, network and credentials)"
        return "no such file or unsupported video format"

    def _open(self) -> Any | None:
        if self.spec.isdigit():
            cap = cv2.VideoCapture(int(self.spec))
        elif _is_url(self.spec):
            cap = cv2.VideoCapture(
                self.spec,
                cv2.CAP_FFMPEG,
                [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                    _OPEN_TIMEOUT_MS,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    _READ_TIMEOUT_MS,
                ],
            )
        else:
            cap = cv2.VideoCapture(self.spec)
        if not cap.isOpened():
            cap.release()
            return None
        if self.live:
            # Analyse the newest frame, not one that waited in a driver queue.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if self.width and self.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        return cap

    def read(self) -> np.ndarray | None:
        if self._closed:
            return None
        if self._cap is None and not self._maybe_reopen():
            return None
        try:
            ok, frame = self._cap.read()
        except cv2.error as exc:  # a corrupt stream can surface as an exception
            log.warning("camera %s: read failed: %s", self.name, exc)
            ok, frame = False, None
        if ok and frame is not None and frame.size:
            self.failures = 0
            return frame
        self.failures += 1
        if self.failures == 1:
            # Log on state change only, and never anything about the frame itself.
            log.warning("camera %s: no frame (stream ended or camera lost)", self.name)
        if self.live:
            self._cap.release()
            self._cap = None
        return None

    def _maybe_reopen(self) -> bool:
        if not self.live:
            return False
        now = self._monotonic()
        if now - self._last_reopen < self.reconnect_s:
            return False
        self._last_reopen = now
        self._cap = self._open()
        if self._cap is None:
            return False
        self.reopens += 1
        log.info("camera %s: reopened", self.name)
        return True

    def close(self) -> None:
        self._closed = True
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> VideoCaptureSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _scene_clock(clock: Any) -> Callable[[], float]:
    """Scene seconds since the source was opened, from a ``Clock`` object or a callable."""
    now: Callable[[], float]
    if clock is None:
        now = time.monotonic
    elif callable(clock):
        now = clock
    else:
        now = clock.now
    t0 = now()
    return lambda: now() - t0


def open_source(
    spec: str,
    *,
    clock: Any = None,
    width: int | None = None,
    height: int | None = None,
) -> FrameSource:
    """Open a frame source from a config string.

    ``demo:<name>`` is the synthetic scene built from real photos (needs scikit-image):
    ``demo:entrance`` follows the demo scenario's camera timeline, ``demo:empty`` shows nobody
    and ``demo:<n>`` shows n people. Its timeline runs from the moment it is opened, in
    ``clock`` time (a ``Clock`` with ``now()`` or a callable; default monotonic), and loops.
    Anything else goes to ``VideoCaptureSource``.
    """
    if spec.startswith("demo:"):
        from edge_agent.sensing.camera.scene import SceneSource, demo_timeline

        timeline = demo_timeline(spec.removeprefix("demo:"))
        return SceneSource(timeline, clock=_scene_clock(clock), loop=True)
    return VideoCaptureSource(spec, width=width, height=height)
