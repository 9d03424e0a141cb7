"""A deterministic synthetic camera made from real photos, with ground truth.

No public clip shows people facing a screen, so the demo and the tests composite a real
frontal face (the astronaut in ``skimage.data.astronaut()``, head and shoulders, with a
feathered edge) onto a real background with no people in it (``skimage.data.coffee()``, a
cafe table). A timeline says how many people stand in view when; each stands in its own slot
and sways a few pixels, and the whole frame gets sensor noise and slow lighting drift, so it
is never a static image.

scikit-image is a demo/dev dependency only: it is imported lazily, with a clear error, and
only to find its photos; they are decoded with OpenCV (``_photo``), since ``skimage.data``'s own
loaders import ``skimage.io`` and with it SciPy, about 40 MB of a box's memory for three PNGs.
Frames are generated in memory and handed out one at a time; nothing is written.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from edge_agent.sensing.camera.sources import CameraError

Timeline = Sequence[tuple[float, float, int]]

MAX_PEOPLE = 3
# The astronaut's face as the Haar cascade finds it in the 512 x 512 photo (x, y, w, h).
_FACE_BOX = (177, 67, 93, 93)
# Face width in the 640-wide frame: about 1.2 m from a wide-angle camera above a screen.
_FACE_PX = 76
_NOISE_BANK = 8
_NOISE_ROWS = 32  # rows of the bank drawn at once: 0.5 MB of float64 at 640 wide


@dataclass(frozen=True)
class _Sprite:
    bgr: np.ndarray  # h x w x 3 float32
    alpha: np.ndarray  # h x w x 1 float32, feathered


def _skimage_data() -> ModuleType:
    try:
        import skimage.data as data
    except ImportError as exc:
        raise CameraError(
            "the demo camera scene needs scikit-image: pip install 'edge-agent[demo]'"
        ) from exc
    return data


def _photo(name: str) -> np.ndarray:
    """``skimage.data.<name>()``, pixel for pixel (RGB, or grey for a grey photo), decoded by
    OpenCV from the PNG scikit-image ships, so the agent never imports ``skimage.io``."""
    data = _skimage_data()
    path = Path(data.__file__ or "").parent / f"{name}.png"
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
    if img is None:  # a scikit-image that fetches its photos instead of shipping them
        loaded: np.ndarray = getattr(data, name)()
        return loaded
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img


def _sprite(person_rgb: np.ndarray, scale: float, flip: bool, tint: tuple[float, ...]) -> _Sprite:
    fx, fy, fw, fh = _FACE_BOX
    # Generous head-and-shoulders crop around the face.
    x0, x1 = max(0, fx - int(0.75 * fw)), min(person_rgb.shape[1], fx + fw + int(0.75 * fw))
    y0, y1 = max(0, fy - int(0.45 * fh)), min(person_rgb.shape[0], fy + fh + int(1.3 * fh))
    crop = cv2.cvtColor(np.ascontiguousarray(person_rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2BGR)
    s = scale * _FACE_PX / fw
    crop = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    if flip:
        crop = crop[:, ::-1]
    h, w = crop.shape[:2]
    # Feathered mask: a head-and-shoulders ellipse, soft at the edge, open at the bottom.
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, int(h * 0.62)), (int(w * 0.47), int(h * 0.62)), 0, 0, 360, 1.0, -1)
    mask[int(h * 0.62) :, int(w * 0.03) : int(w * 0.97)] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(2.0, w / 40))
    bgr = crop.astype(np.float32) * np.array(tint, np.float32)
    return _Sprite(np.ascontiguousarray(bgr), mask[:, :, None])


@functools.lru_cache(maxsize=2)
def _assets(width: int, height: int) -> tuple[np.ndarray, tuple[_Sprite, ...]]:
    bg = _photo("coffee")  # 400 x 600 RGB, no people
    bh, bw = bg.shape[:2]
    cw = min(bw, bh * width // height)  # centre crop to the frame's aspect, then resize
    bg = bg[:, (bw - cw) // 2 : (bw - cw) // 2 + cw]
    bg = cv2.resize(cv2.cvtColor(bg, cv2.COLOR_RGB2BGR), (width, height), cv2.INTER_AREA)
    person = _photo("astronaut")
    k = width / 640
    sprites = (
        _sprite(person, k, flip=False, tint=(1.0, 1.0, 1.0)),
        _sprite(person, k * 1.08, flip=True, tint=(0.92, 0.97, 1.05)),
        _sprite(person, k * 0.92, flip=False, tint=(1.05, 1.0, 0.9)),
    )
    return bg, sprites


# Which slots (left, centre, right) are occupied for n people, so positions are distinct.
_SLOTS = {0: (), 1: (1,), 2: (0, 2), 3: (0, 1, 2)}


class SceneSource:
    """A ``FrameSource`` showing ``people_count`` people per timeline segment.

    ``timeline`` holds ``(t_start_s, t_end_s, people_count)`` in scene seconds; ``clock``
    returns the current scene time (the demo passes an accelerated clock). Outside every
    segment nobody is in view; with ``loop=True`` the timeline repeats.
    """

    def __init__(
        self,
        timeline: Timeline,
        clock: Callable[[], float] | None = None,
        *,
        width: int = 640,
        height: int = 480,
        seed: int = 0,
        loop: bool = False,
    ) -> None:
        self.timeline = _validate(timeline)
        if clock is None:
            t0 = time.monotonic()
            clock = lambda: time.monotonic() - t0  # noqa: E731 - seconds since construction
        self.clock: Callable[[], float] = clock
        self.width = width
        self.height = height
        self.loop = loop
        self.end = max((end for _, end, _ in self.timeline), default=0.0)
        self._bg, self._sprites = _assets(width, height)
        rng = np.random.default_rng(seed)
        # Saturating uint8 adds/subtracts of a small bank are far cheaper than fresh noise.
        # The bank is kept as one signed int8 array (noise of sigma 3 never nears 127) and
        # split into its saturating positive and negative parts per frame: half the memory of
        # keeping both parts (7 MB, not 15, at 640 x 480), for two tiny array ops per frame.
        # Drawn a few rows at a time, in order: the same values as one draw of the whole bank,
        # which in float64 was a 59 MB peak, much of it kept by the allocator.
        self._noise = np.empty((_NOISE_BANK, height, width, 3), np.int8)
        rows = self._noise.reshape(_NOISE_BANK * height, width, 3)
        for y in range(0, len(rows), _NOISE_ROWS):
            noise = rng.normal(0.0, 3.0, rows[y : y + _NOISE_ROWS].shape)
            # Truncated toward zero, as the uint8 casts of each part were.
            rows[y : y + _NOISE_ROWS] = np.clip(noise, -127, 127)
        self._phase = rng.uniform(0, 2 * math.pi, MAX_PEOPLE)
        self._n = 0
        self._closed = False

    def people_at(self, t: float) -> int:
        if self.loop and self.end > 0:
            t = t % self.end
        for start, end, count in self.timeline:
            if start <= t < end:
                return count
        return 0

    def render(self, t: float) -> np.ndarray:
        """The frame at scene time ``t`` (a new array each call)."""
        frame = self._bg.copy()
        for slot in _SLOTS[self.people_at(t)]:
            self._paste(frame, slot, t)
        # Slow lighting drift (gain and offset), plus sensor noise.
        gain = 1.0 + 0.12 * math.sin(2 * math.pi * t / 23.0)
        offset = 6.0 * math.sin(2 * math.pi * t / 37.0 + 1.0)
        frame = cv2.convertScaleAbs(frame, alpha=gain, beta=offset)
        i = self._n % _NOISE_BANK
        self._n += 1
        noise = self._noise[i]
        cv2.add(frame, np.maximum(noise, 0).view(np.uint8), dst=frame)
        cv2.subtract(frame, np.negative(np.minimum(noise, 0)).view(np.uint8), dst=frame)
        return frame

    def _paste(self, frame: np.ndarray, slot: int, t: float) -> None:
        sp = self._sprites[slot]
        h, w = sp.alpha.shape[:2]
        fh, fw = frame.shape[:2]
        ph = self._phase[slot]
        # People are never quite still: a few pixels of sway.
        dx = round(4 * math.sin(2 * math.pi * t / 3.1 + ph) * fw / 640)
        dy = round(2 * math.sin(2 * math.pi * t / 4.3 + ph) * fw / 640)
        cx = int(fw * (0.18, 0.5, 0.82)[slot]) + dx
        x0 = min(max(0, cx - w // 2), fw - w)
        y0 = min(max(0, fh - h - int(fh * 0.04) + dy), fh - h)
        roi = frame[y0 : y0 + h, x0 : x0 + w]
        blended = sp.bgr * sp.alpha + roi.astype(np.float32) * (1.0 - sp.alpha)
        roi[:] = np.clip(blended, 0, 255).astype(np.uint8)

    def read(self) -> np.ndarray | None:
        if self._closed:
            return None
        return self.render(self.clock())

    def close(self) -> None:
        self._closed = True


def _validate(timeline: Timeline) -> list[tuple[float, float, int]]:
    out = []
    for seg in timeline:
        start, end, count = float(seg[0]), float(seg[1]), int(seg[2])
        if not end > start:
            raise ValueError(f"timeline segment {seg}: end must be after start")
        if not 0 <= count <= MAX_PEOPLE:
            raise ValueError(f"timeline segment {seg}: people must be 0..{MAX_PEOPLE}")
        out.append((start, end, count))
    return out


def frames_for(
    timeline: Timeline,
    fps: float,
    duration: float,
    *,
    seed: int = 0,
    width: int = 640,
    height: int = 480,
) -> Iterator[tuple[float, int, np.ndarray]]:
    """``(t, people_in_view, frame)`` at ``fps`` for ``duration`` scene seconds: ground truth."""
    scene = SceneSource(timeline, clock=lambda: 0.0, seed=seed, width=width, height=height)
    for i in range(round(duration * fps)):
        t = i / fps
        yield t, scene.people_at(t), scene.render(t)


# The demo store's entrance camera, (start, end, people seen) in trace seconds: the scene
# `demo:entrance` plays (demo/scenario.py times its shoppers' visits to it).
ENTRANCE_TIMELINE: list[tuple[float, float, int]] = [
    (0, 18, 0),
    (18, 62, 1),
    (62, 75, 0),
    (75, 100, 1),
    (100, 115, 2),
    (115, 120, 0),
    (120, 152, 3),
    (152, 158, 0),
    (158, 180, 1),
]


def demo_timeline(name: str) -> list[tuple[float, float, int]]:
    """Named scenes for ``demo:<name>``: entrance (the demo scenario), empty, or 0..3 people."""
    if name == "entrance":
        return list(ENTRANCE_TIMELINE)
    if name == "empty":
        return [(0.0, 3600.0, 0)]
    if name.isdigit() and int(name) <= MAX_PEOPLE:
        return [(0.0, 3600.0, int(name))]
    raise CameraError(f"unknown demo scene {name!r}: use entrance, empty or 0..{MAX_PEOPLE}")
