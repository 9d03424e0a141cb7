"""Anonymous camera audience: frame sources, per-frame analysis, a synthetic scene for demos.

Frames are numpy arrays that live only in memory, one at a time; nothing here writes, logs or
sends an image.
"""

from edge_agent.camera.audience import AudienceAnalyzer, AudienceResult
from edge_agent.camera.sources import CameraError, FrameSource, VideoCaptureSource, open_source

__all__ = [
    "AudienceAnalyzer",
    "AudienceResult",
    "CameraError",
    "FrameSource",
    "VideoCaptureSource",
    "open_source",
]
