"""Short ground-truth clips made from real photos: people walk in, stop, watch, walk out.

``SceneSource`` (scene.py) makes people appear in fixed places; these clips move them. A
*watcher* (the astronaut from ``skimage.data.astronaut()``, a real frontal face) walks in from
one side, stops in front of the screen, sways, and walks out again; a *passer* (the
cameraman from ``skimage.data.camera()``, a real person looking down, not at the screen)
walks straight across. Both are composited onto the cafe counter of ``skimage.data.coffee()``
with sensor noise, slow lighting drift and optional lighting steps.

Every clip knows its ground truth per frame (people in view, watchers) and per actor (first
and last frame in view, so dwell and attention in seconds). Definitions: a person is *in
view* when at least half of them is inside the frame; a watcher *watches* while their whole
face is inside the frame (they face the screen all the time they are in view).

Frames are generated on demand, in memory, one at a time; nothing is written.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from edge_agent.sensing.camera.scene import _FACE_PX, _assets, _photo, _Sprite


@dataclass(frozen=True)
class Actor:
    kind: Literal["watcher", "passer"]
    enter: int  # frame at which they step into the frame's edge
    from_left: bool = True
    # Watchers: where they stop (centre x as a fraction of the width) and for how many frames.
    stop_at: float = 0.5
    stay: int = 30
    leave_left: bool | None = None  # default: back the way they came
    speed: int = 20  # pixels per frame at 640 wide
    look: int = 0  # which astronaut variant (0..2) a watcher is


@dataclass(frozen=True)
class ActorTruth:
    kind: str
    first: int  # first frame in view
    last: int  # last frame in view
    watch_frames: int  # frames with the whole face in view (watchers only)
    fps: float

    @property
    def dwell_s(self) -> float:
        return (self.last - self.first) / self.fps

    @property
    def attention_s(self) -> float:
        return max(0, self.watch_frames - 1) / self.fps


@functools.lru_cache(maxsize=2)
def _passer(width: int) -> _Sprite:
    k = width / 640
    man = cv2.resize(_photo("camera")[40:400, 150:400], (round(150 * k), round(216 * k)))
    bgr = cv2.cvtColor(man, cv2.COLOR_GRAY2BGR).astype(np.float32)
    h, w = bgr.shape[:2]
    mask = np.ones((h, w), np.float32)
    return _Sprite(bgr, mask[:, :, None])


class Clip:
    def __init__(
        self,
        actors: Sequence[Actor],
        n_frames: int,
        *,
        fps: float = 10.0,
        seed: int = 0,
        width: int = 640,
        height: int = 480,
        lighting: Sequence[tuple[int, float]] = (),
        name: str = "clip",
    ) -> None:
        self.name = name
        self.actors = tuple(actors)
        self.n_frames = n_frames
        self.fps = fps
        self.seed = seed
        self.width, self.height = width, height
        self.lighting = sorted(lighting)
        self._bg, self._watchers = _assets(width, height)
        self._passer = _passer(width)
        self._paths = [self._path(a) for a in self.actors]
        people = [0] * n_frames
        watchers = [0] * n_frames
        truths = []
        for a, path in zip(self.actors, self._paths, strict=True):
            sp = self._sprite(a)
            w = sp.alpha.shape[1]
            seen = [i for i, x in path.items() if self._visible(x, w) >= 0.5]
            watching = [i for i in seen if a.kind == "watcher" and self._face_in(x=path[i], a=a)]
            for i in seen:
                people[i] += 1
            for i in watching:
                watchers[i] += 1
            if seen:
                truths.append(ActorTruth(a.kind, min(seen), max(seen), len(watching), fps))
        self.people = tuple(people)
        self.watchers = tuple(watchers)
        self.truth = tuple(truths)

    # ---- geometry --------------------------------------------------------------------------
    def _sprite(self, a: Actor) -> _Sprite:
        return self._watchers[a.look % 3] if a.kind == "watcher" else self._passer

    def _path(self, a: Actor) -> dict[int, float]:
        """Centre x of the actor for every frame they are (at least partly) in the frame."""
        w = self._sprite(a).alpha.shape[1]
        k = self.width / 640
        v = a.speed * k
        start = -w / 2 if a.from_left else self.width + w / 2
        direction = 1 if a.from_left else -1
        out: dict[int, float] = {}
        i, x = a.enter, start
        if a.kind == "passer":
            while -w / 2 <= x <= self.width + w / 2 and i < self.n_frames:
                out[i] = x
                i, x = i + 1, x + direction * v
            return out
        stop = a.stop_at * self.width
        while (x - stop) * direction < 0 and i < self.n_frames:
            out[i] = x
            i, x = i + 1, x + direction * v
            if (x - stop) * direction >= 0:
                x = stop
        for _ in range(a.stay):
            if i >= self.n_frames:
                return out
            out[i] = stop + 4 * k * math.sin(2 * math.pi * i / 31)  # never quite still
            i += 1
        leave_left = a.from_left if a.leave_left is None else a.leave_left
        direction = -1 if leave_left else 1
        x = stop
        while -w / 2 <= x <= self.width + w / 2 and i < self.n_frames:
            out[i] = x
            i, x = i + 1, x + direction * v
        return out

    def _visible(self, x: float, w: int) -> float:
        left, right = max(0.0, x - w / 2), min(float(self.width), x + w / 2)
        return max(0.0, right - left) / w

    def _face_in(self, x: float, a: Actor) -> bool:
        scale = (1.0, 1.08, 0.92)[a.look % 3] * self.width / 640
        half_face = _FACE_PX * scale / 2
        return x - half_face >= 0 and x + half_face <= self.width

    # ---- frames ----------------------------------------------------------------------------
    def frames(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        for i in range(self.n_frames):
            frame = self._bg.copy()
            for a, path in zip(self.actors, self._paths, strict=True):
                if i in path:
                    self._paste(frame, self._sprite(a), path[i])
            gain = 1.0 + 0.1 * math.sin(2 * math.pi * i / (23 * self.fps))
            for start, g in self.lighting:
                if i >= start:
                    gain = g * (1.0 + 0.1 * math.sin(2 * math.pi * i / (23 * self.fps)))
            frame = cv2.convertScaleAbs(frame, alpha=gain, beta=0)
            noise = rng.integers(0, 7, frame.shape, dtype=np.uint8)
            cv2.add(frame, noise, dst=frame)
            cv2.subtract(frame, 3, dst=frame)
            yield frame

    def _paste(self, frame: np.ndarray, sp: _Sprite, cx: float) -> None:
        h, w = sp.alpha.shape[:2]
        fh, fw = frame.shape[:2]
        x0 = int(round(cx - w / 2))
        y0 = fh - h - int(fh * 0.04)
        sx0, sx1 = max(0, -x0), min(w, fw - x0)
        if sx1 <= sx0:
            return
        roi = frame[y0 : y0 + h, x0 + sx0 : x0 + sx1]
        alpha = sp.alpha[:, sx0:sx1]
        blended = sp.bgr[:, sx0:sx1] * alpha + roi.astype(np.float32) * (1.0 - alpha)
        roi[:] = np.clip(blended, 0, 255).astype(np.uint8)


def standard_clips(fps: float = 10.0) -> list[Clip]:
    """The ground-truth clips the tests and the camera bench use."""
    return [
        Clip(
            [Actor("watcher", 5, from_left=True, stop_at=0.35, stay=40)],
            90,
            fps=fps,
            seed=1,
            name="one-watcher",
        ),
        Clip(
            [
                Actor("watcher", 0, from_left=True, stop_at=0.22, stay=55),
                Actor("watcher", 20, from_left=False, stop_at=0.78, stay=40, look=1),
                Actor("passer", 100, from_left=True),
            ],
            140,
            fps=fps,
            seed=2,
            name="two-watchers-then-passer",
        ),
        Clip(
            [Actor("passer", 5, from_left=False), Actor("passer", 50, from_left=True, speed=16)],
            100,
            fps=fps,
            seed=3,
            name="passers-by",
        ),
        Clip([], 90, fps=fps, seed=4, lighting=[(30, 0.7), (60, 1.25)], name="empty-lighting"),
    ]


__all__ = ["Actor", "ActorTruth", "Clip", "standard_clips"]
