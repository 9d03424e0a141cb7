"""One screen's view of a camera: region of interest -> audience analyser -> tracker.

``ScreenPipeline.process(frame, t)`` crops the screen's region of interest (a view into the
frame, no copy), counts people and watchers there and follows them with short-lived anonymous
tracks. What comes out (``ScreenObservation``) is counts and seconds only: nothing in it can
hold a pixel, so it may cross threads and become events.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_agent.sensing.camera.audience import AudienceAnalyzer
from edge_agent.sensing.camera.observation import ScreenObservation  # lives with its channel
from edge_agent.sensing.camera.ranging import FACE_WIDTH_M, Ranger, focal_px
from edge_agent.sensing.camera.tracker import Detection, Tracker

Roi = tuple[float, float, float, float]  # x, y, w, h as fractions of the frame
FULL_FRAME: Roi = (0.0, 0.0, 1.0, 1.0)

__all__ = ["FULL_FRAME", "Roi", "ScreenObservation", "ScreenPipeline", "roi_pixels", "validate_roi"]


def validate_roi(roi: Sequence[float]) -> Roi:
    """A region as fractions of the frame; ValueError names what is wrong."""
    if len(roi) != 4:
        raise ValueError("roi must be [x, y, w, h] (fractions of the frame)")
    x, y, w, h = (float(v) for v in roi)
    if not (0.0 <= x < 1.0 and 0.0 <= y < 1.0):
        raise ValueError("roi x and y must be in [0, 1)")
    if not (w > 0 and h > 0 and x + w <= 1.0 + 1e-9 and y + h <= 1.0 + 1e-9):
        raise ValueError("roi w and h must be > 0 and keep the region inside the frame")
    return (x, y, w, h)


def roi_pixels(roi: Roi, width: int, height: int) -> tuple[int, int, int, int]:
    x, y, w, h = roi
    # At least one pixel, inside the frame, however small the frame.
    x0, y0 = min(width - 1, int(round(x * width))), min(height - 1, int(round(y * height)))
    x1 = max(x0 + 1, min(width, int(round((x + w) * width))))
    y1 = max(y0 + 1, min(height, int(round((y + h) * height))))
    return x0, y0, x1, y1


class ScreenPipeline:
    def __init__(
        self,
        screen_id: str,
        *,
        roi: Sequence[float] = FULL_FRAME,
        width: int = 640,
        height: int = 480,
        detect_every: int = 10,
        face_model: str | None = None,
        track_gap_s: float = 1.0,
        hfov_deg: float | None = None,
        face_width_m: float = FACE_WIDTH_M,
    ) -> None:
        self.screen_id = screen_id
        self.roi = validate_roi(roi)
        self.width, self.height = width, height
        x0, y0, x1, y1 = roi_pixels(self.roi, width, height)
        # The analyser's thresholds are in pixels of the region at the configured camera size.
        self.analyzer = AudienceAnalyzer(
            width=x1 - x0, height=y1 - y0, detect_every=detect_every, face_model=face_model
        )
        self.tracker = Tracker(max_gap_s=track_gap_s, bounds=(x1 - x0, y1 - y0))
        # With the camera's field of view: where each person stands (the fused presence's
        # motion association), in the region's pixels at the configured size, out to as far as
        # the smallest face the analyser looks for.
        self.ranger: Ranger | None = None
        if hfov_deg is not None:
            smallest_face = self.analyzer.min_face / self.analyzer.detect_scale
            self.ranger = Ranger(
                hfov_deg,
                frame_w=width,
                region_x0=x0,
                region_w=x1 - x0,
                face_width_m=face_width_m,
                reach_m=focal_px(hfov_deg, width) * face_width_m / smallest_face,
            )
        self._region_h = y1 - y0

    def crop(self, frame: np.ndarray) -> np.ndarray:
        if self.roi == FULL_FRAME:
            return frame
        h, w = frame.shape[:2]
        x0, y0, x1, y1 = roi_pixels(self.roi, w, h)
        return frame[y0:y1, x0:x1]

    def process(self, frame: np.ndarray, t: float) -> ScreenObservation:
        r = self.analyzer.process(self.crop(frame))
        dets = [Detection(b, True) for b in r.faces] + [Detection(b, False) for b in r.bodies]
        u = self.tracker.update(dets, t)
        feet: tuple[tuple[float, float], ...] | None = None
        edges: tuple[bool, ...] = ()
        if self.ranger is not None:
            # The analyser's boxes are in pixels of the region at the configured camera size.
            places = [self.ranger.place(b, face, self._region_h) for b, face in u.boxes]
            feet = tuple(p.foot for p in places)
            edges = tuple(p.at_edge for p in places)
        return ScreenObservation(
            self.screen_id,
            t,
            r.people,
            r.watchers,
            u.new,
            u.ended,
            tracks=u.ids,
            feet=feet,
            edges=edges,
        )

    def finish(self, t: float) -> ScreenObservation:
        """The camera stopped or was lost: every open visit ends now."""
        self.analyzer.reset()
        return ScreenObservation(self.screen_id, t, 0, 0, 0, self.tracker.finish(), seen=False)
