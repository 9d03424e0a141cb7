"""Anonymous camera audience: frame sources, per-frame analysis, tracks, the camera thread and
the camera worker process.

Frames are numpy arrays that live only in memory, one at a time, inside the camera thread;
nothing here writes, logs or sends an image. What leaves the thread is counts and seconds.

The names below load on first use (issue 20): the agent imports ``camera.observation`` and
``camera.process`` (no OpenCV) while OpenCV lives only in the worker process.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "AudienceAnalyzer": "audience",
    "AudienceResult": "audience",
    "Backoff": "capture",
    "CameraHealth": "capture",
    "CameraWorker": "capture",
    "ScreenObservation": "observation",
    "ScreenPipeline": "pipeline",
    "CameraError": "sources",
    "FrameSource": "sources",
    "VideoCaptureSource": "sources",
    "open_source": "sources",
    "Detection": "tracker",
    "Tracker": "tracker",
    "TrackSummary": "tracker",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
