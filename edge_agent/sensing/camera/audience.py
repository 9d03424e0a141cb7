"""Per-frame anonymous audience: how many people are in view, how many face the screen.

Pipeline, per frame, on downscaled grey copies only (the caller's frame is never kept):

1. **Motion gate** on a 1/4-size blurred grey image against a fast running-average background.
   Global brightness changes (auto exposure, clouds, a dimmed light) are divided and subtracted
   out first, so only local change counts as motion; when most of the view changes at once
   (a light switched, the camera bumped) the background is re-learnt. An empty or static scene
   therefore costs a resize and a few tiny array ops.
2. **Frontal faces** (OpenCV's Haar ``frontalface_default`` cascade) on a 1/2-size grey image,
   run when there was motion, while the last two runs disagree, and in any case every
   ``detect_every`` frames so that somebody standing perfectly still is neither lost nor
   invented. Every other run searches half a pyramid step larger, so a face that falls between
   scales is not missed twice in a row, and each candidate is re-checked by the independently
   trained ``frontalface_alt2`` cascade (their false hits rarely coincide). With a YuNet model
   file configured, ``cv2.FaceDetectorYN`` replaces both cascades and its landmarks add a yaw
   test (``facing``); no YuNet model ships with any package here, so the cascades are the
   default. The face count is
   the larger of the last two runs: one missed face does not drop a watcher, and a departure
   shows one frame late at most (leaving is motion, and motion runs the detector).
3. **Counts.** ``watchers`` = frontal faces: a frontal-only detector is the attention proxy
   (someone turned more than ~25 degrees away is not found). ``people`` = watchers + moving
   person-sized regions that no recent face explains (passers-by turned away), where a region
   must move in two consecutive frames so that a face vanishing or a lighting step does not
   count as a body. Honest limits: a person standing still while turned away is not counted,
   two turned-away people walking together count as one, and a turned-away passer-by lingers
   a frame or two after leaving (the background settling where they were). No HOG people
   detector: it needs whole upright bodies about 128 px tall, and a camera on a screen sees
   heads and shoulders at 1-3 m; the face and moving-body boxes feed the tracker instead.

State is only the tiny background image (1/4 size, blurred: not a recognisable picture), the
recent face and motion boxes, and counters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_agent.sensing.camera.sources import CameraError

Box = tuple[int, int, int, int]  # x, y, w, h

_SCALE_STEP = 1.1  # Haar pyramid step: 1.05 finds a little more at twice the cost
_HALF_STEP = _SCALE_STEP**0.5
_VERIFY_PX = 72  # face width at which a candidate is re-checked
_GLOBAL_CHANGE = 0.4  # fraction of the motion image that changed: lighting or camera, not people


@dataclass(frozen=True)
class AudienceResult:
    people: int
    watchers: int
    motion: bool
    detect_ran: bool
    # Where they are, in the analysed frame's pixels, for the tracker: the faces counted as
    # watchers and the moving faceless bodies. Boxes only, never pixels.
    faces: tuple[Box, ...] = field(default=(), compare=False)
    bodies: tuple[Box, ...] = field(default=(), compare=False)


def _cascade(path: str | None, default: str) -> cv2.CascadeClassifier:
    path = path or cv2.data.haarcascades + default  # type: ignore[attr-defined]
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"cannot load face cascade {path}")
    return cascade


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _contains_centre(outer: Box, inner: Box) -> bool:
    cx, cy = inner[0] + inner[2] / 2, inner[1] + inner[3] / 2
    return outer[0] <= cx <= outer[0] + outer[2] and outer[1] <= cy <= outer[1] + outer[3]


# |nose x - eye midpoint x| / eye distance below this: facing the camera, within about the
# +-22.5 degree "looker" rule of shopper-gaze designs.
FACING_YAW = 0.25


def facing(landmarks: Sequence[float]) -> bool:
    """Yaw proxy from YuNet's first landmarks: right eye x, y, left eye x, y, nose x, y."""
    rex, _rey, lex, _ley, nx = (float(v) for v in landmarks[:5])
    eye_dist = abs(lex - rex)
    if eye_dist < 1.0:
        return False
    return abs(nx - (rex + lex) / 2) / eye_dist < FACING_YAW


def _yunet(path: str, score: float) -> Any:
    if not Path(path).is_file():
        raise CameraError(f"cannot load face model {path}: no such file")
    try:
        return cv2.FaceDetectorYN.create(path, "", (320, 240), score)
    except cv2.error as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise CameraError(f"cannot load face model {path}: {first}") from exc


def _scaled(b: Box, k: float) -> Box:
    return (round(b[0] * k), round(b[1] * k), max(1, round(b[2] * k)), max(1, round(b[3] * k)))


def _dedupe(boxes: list[Box]) -> list[Box]:
    """One box per face when Haar nests detections: of nested boxes the smallest stays.

    A big box around a face is either a false hit spanning a face and its surroundings (a real
    face holds no other face) or the same face found twice; either way it is not a new person.
    """
    kept: list[Box] = []
    for b in sorted(boxes, key=lambda r: r[2]):  # smallest first
        if any(_contains_centre(b, k) or _contains_centre(k, b) for k in kept):
            continue
        kept.append(b)
    return kept


class AudienceAnalyzer:
    """Counts people and watchers in a stream of BGR (or grey) frames.

    ``width`` x ``height`` is the reference geometry the thresholds are tuned for (the agent
    passes the configured camera size); frames of another size are scaled to that width,
    keeping their aspect. ``min_face_px`` is the smallest face found, in reference pixels:
    48 px at 640 wide is roughly 2 m from a typical 60-70 degree camera.
    """

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        detect_every: int = 10,
        *,
        detect_scale: float = 0.5,
        min_face_px: int = 48,
        min_neighbors: int = 4,
        motion_threshold: float = 15.0,
        min_motion_frac: float = 0.003,
        min_body_frac: float = 0.02,
        background_alpha: float = 0.6,
        face_memory: int = 8,
        cascade_path: str | None = None,
        face_model: str | None = None,
        face_score: float = 0.7,
    ) -> None:
        if detect_every < 1:
            raise ValueError("detect_every must be >= 1")
        self.width = width
        self.height = height
        self.detect_every = detect_every
        self.detect_scale = detect_scale
        # Haar's own window is 24 px; asking for smaller faces would only add false hits.
        self.min_face = max(24, round(min_face_px * detect_scale))
        self.min_neighbors = min_neighbors
        self.motion_threshold = motion_threshold
        self.min_motion_frac = min_motion_frac
        self.min_body_frac = min_body_frac
        self.background_alpha = background_alpha
        self.face_memory = face_memory
        self._cascade = _cascade(cascade_path, "haarcascade_frontalface_default.xml")
        # A second, independently trained cascade re-checks each candidate: their false hits
        # rarely coincide (shoulders, textures), true faces pass both.
        self._verifier = _cascade(None, "haarcascade_frontalface_alt2.xml")
        # Optional YuNet (cv2.FaceDetectorYN) instead of the cascades, when a model file is
        # configured: more robust to light and pose, and its landmarks give a yaw test.
        self._yunet = _yunet(face_model, face_score) if face_model else None
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._merge = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
        # State: background model, boxes and counters. Never a frame.
        self._bg: np.ndarray | None = None
        # Face boxes (motion-image pixels) of the last two detection runs: the count is the
        # larger, so one missed detection does not drop a watcher; a departure shows one frame
        # late at most, because leaving is motion and motion runs the detector.
        self._runs: deque[list[Box]] = deque(maxlen=2)
        # Where faces were seen lately (box, frame number): motion there is that person
        # (swaying, turning, or the background reappearing as they leave), not a new body.
        self._face_regions: list[tuple[Box, int]] = []
        self._prev_blobs: list[Box] = []
        self._since_detect = detect_every  # so the first frame is searched
        self.frames = 0
        self.detections = 0

    def reset(self) -> None:
        """Forget the background (e.g. after the camera reconnected or moved)."""
        self._bg = None
        self._runs.clear()
        self._face_regions = []
        self._prev_blobs = []
        self._since_detect = self.detect_every

    # ---- per frame ------------------------------------------------------------------------
    def process(self, frame: np.ndarray) -> AudienceResult:
        gray = self._gray(frame)
        det_w = max(1, round(self.width * self.detect_scale))
        det_h = max(1, round(gray.shape[0] * det_w / gray.shape[1]))
        det = cv2.resize(gray, (det_w, det_h), interpolation=cv2.INTER_AREA)
        # pyrDown blurs and halves in one pass: the motion image is 1/4 of the reference size.
        small = cv2.GaussianBlur(cv2.pyrDown(det), (5, 5), 0).astype(np.float32)
        motion, blobs = self._motion(small)
        self.frames += 1
        self._since_detect += 1

        # Re-check at once while the last two runs disagree: a count in flux (or one missed
        # face) should not be held for detect_every frames.
        unsettled = len(self._runs) == 2 and len(self._runs[0]) != len(self._runs[1])
        detect = motion or unsettled or self._since_detect >= self.detect_every
        if detect:
            faces = self._detect_faces(det)
            self._runs.append(faces)
            self._face_regions = [
                (b, n) for b, n in self._face_regions if self.frames - n < self.face_memory
            ] + [(b, self.frames) for b in faces]
            self._since_detect = 0
            self.detections += 1
        bodies = self._bodies(blobs, small.shape[0] * small.shape[1])
        faces = max(self._runs, key=len, default=[])
        k = gray.shape[1] / small.shape[1]  # motion-image pixels -> frame pixels
        return AudienceResult(
            people=len(faces) + len(bodies),
            watchers=len(faces),
            motion=motion,
            detect_ran=detect,
            faces=tuple(_scaled(b, k) for b in faces),
            bodies=tuple(_scaled(b, k) for b in bodies),
        )

    def _gray(self, frame: np.ndarray) -> np.ndarray:
        if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
            raise ValueError("frame must be a non-empty H x W (x C) numpy array")
        if frame.dtype != np.uint8:
            frame = np.clip(frame, 0, 255).astype(np.uint8)
        if frame.ndim == 2:
            return frame
        channels = frame.shape[2]
        if channels == 1:
            return frame[:, :, 0]
        if channels == 4:
            return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)

    def _motion(self, small: np.ndarray) -> tuple[bool, list[Box]]:
        """(motion anywhere, moving regions) against the background, which it then updates."""
        if self._bg is None or self._bg.shape != small.shape:
            self._bg = small.copy()
            return False, []
        bg = self._bg
        # Undo a global gain and offset change first: lighting is not motion.
        gain = float(bg.mean()) / max(1.0, float(small.mean()))
        diff = small * gain - bg
        diff -= float(np.median(diff))
        cv2.accumulateWeighted(small, bg, self.background_alpha)
        mask = (np.abs(diff) > self.motion_threshold).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        changed = float(mask.mean())
        if changed == 0.0:
            return False, []
        if changed > _GLOBAL_CHANGE:
            # Most of the view changed at once: a light switched (with clipping the gain fix
            # cannot undo) or the camera was bumped. Re-learn the background and re-check
            # faces, but do not read the change as people.
            self._bg = small.copy()
            self._prev_blobs = []
            return True, []
        # Merge the fragments one moving person leaves (edges, clothing) into one region.
        mask = cv2.dilate(mask, self._merge, iterations=2)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_area = self.min_motion_frac * mask.size
        boxes = []
        for c in contours:
            if cv2.contourArea(c) >= min_area:
                x, y, w, h = cv2.boundingRect(c)
                boxes.append((int(x), int(y), int(w), int(h)))
        return bool(boxes), boxes

    def _detect_faces(self, det: np.ndarray) -> list[Box]:
        if self._yunet is not None:
            return self._detect_yunet(det)
        # Every other run searches a copy enlarged by half a pyramid step: a face whose size
        # falls between two scales of one run lands on a scale in the next, so misses do not
        # repeat frame after frame (the recall of scaleFactor 1.05 at the cost of 1.1).
        zoom = _HALF_STEP if self.detections % 2 else 1.0
        img = det if zoom == 1.0 else cv2.resize(det, None, fx=zoom, fy=zoom)
        eq = cv2.equalizeHist(img)
        max_side = int(min(img.shape) * 0.9)
        found = self._cascade.detectMultiScale(
            eq,
            scaleFactor=_SCALE_STEP,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_face, self.min_face),
            maxSize=(max_side, max_side),
        )
        boxes = _dedupe([(int(x), int(y), int(w), int(h)) for x, y, w, h in found])
        faces = [b for b in boxes if self._verified(img, b)]
        # Face boxes in motion-image pixels (half of the unzoomed detection image).
        k = 0.5 / zoom
        return [
            (int(x * k), int(y * k), max(1, int(w * k)), max(1, int(h * k))) for x, y, w, h in faces
        ]

    def _detect_yunet(self, det: np.ndarray) -> list[Box]:
        h, w = det.shape[:2]
        assert self._yunet is not None  # only called when a YuNet model is loaded
        self._yunet.setInputSize((w, h))
        _, found = self._yunet.detect(cv2.cvtColor(det, cv2.COLOR_GRAY2BGR))
        boxes = []
        for row in [] if found is None else found:
            x, y, bw, bh = (float(v) for v in row[:4])
            if bw < self.min_face or not facing(row[4:10]):
                continue
            boxes.append((int(x * 0.5), int(y * 0.5), max(1, int(bw * 0.5)), max(1, int(bh * 0.5))))
        return boxes

    def _verified(self, img: np.ndarray, box: Box) -> bool:
        x, y, w, h = box
        m = int(0.3 * w)
        crop = img[max(0, y - m) : y + h + m, max(0, x - m) : x + w + m]
        # Same face size for every check: small faces get enough pixels, big ones cost little.
        s = _VERIFY_PX / w
        crop = cv2.equalizeHist(cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR))
        side = int(_VERIFY_PX * 0.6)
        found = self._verifier.detectMultiScale(crop, 1.1, 2, minSize=(side, side))
        return len(found) > 0

    def _bodies(self, blobs: list[Box], area: int) -> list[Box]:
        """Moving person-sized regions that no face explains, seen moving two frames running."""
        # A face explains the region around it: head sway, shoulders and torso below.
        regions = [
            (x - w, y - h, 3 * w, 6 * h)
            for (x, y, w, h), n in self._face_regions
            if self.frames - n < self.face_memory
        ]
        big = [b for b in blobs if b[2] * b[3] >= self.min_body_frac * area]
        faceless = [b for b in big if not any(_overlaps(b, r) for r in regions)]
        persistent = [b for b in faceless if any(_overlaps(b, p) for p in self._prev_blobs)]
        self._prev_blobs = faceless
        return persistent
