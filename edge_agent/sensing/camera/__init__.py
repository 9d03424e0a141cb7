"""Anonymous camera audience: frame sources, per-frame analysis, tracks, the camera thread.

Frames are numpy arrays that live only in memory, one at a time, inside the camera thread;
nothing here writes, logs or sends an image. What leaves the thread is counts and seconds.
"""

from edge_agent.sensing.camera.audience import AudienceAnalyzer, AudienceResult
from edge_agent.sensing.camera.capture import Backoff, CameraHealth, CameraWorker
from edge_agent.sensing.camera.pipeline import ScreenObservation, ScreenPipeline
from edge_agent.sensing.camera.sources import (
    CameraError,
    FrameSource,
    VideoCaptureSource,
    open_source,
)
from edge_agent.sensing.camera.tracker import Detection, Tracker, TrackSummary

__all__ = [
    "AudienceAnalyzer",
    "AudienceResult",
    "Backoff",
    "CameraError",
    "CameraHealth",
    "CameraWorker",
    "Detection",
    "FrameSource",
    "ScreenObservation",
    "ScreenPipeline",
    "Tracker",
    "TrackSummary",
    "VideoCaptureSource",
    "open_source",
]
