"""Camera audience: frames per second on one thread, naive baseline vs our pipeline.

The naive baseline is what most "count faces with OpenCV" setups do: the Haar frontal-face
cascade on every full-resolution frame (grey, equalised, scaleFactor 1.1, minNeighbors 5,
minSize 40). Ours is ``AudienceAnalyzer``: motion gate on a 1/4-size image, Haar on a 1/2-size
image only on motion or every ``detect_every`` frames, candidates re-checked by a second
cascade. Both see the same pre-rendered 640x480 frames of the synthetic scene (real photos):
a busy one where people come and go every 1.5 s, and an empty one with lighting drift and
noise. Accuracy is the share of frames whose count equals the ground truth.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import time
from collections.abc import Callable

import cv2
import numpy as np

from edge_agent.camera.audience import AudienceAnalyzer
from edge_agent.camera.scene import frames_for

FPS = 10.0
BUSY = [
    (0.0, 1.5, 1),
    (1.5, 3.0, 2),
    (3.0, 4.5, 3),
    (4.5, 6.0, 2),
    (6.0, 7.5, 0),
    (7.5, 9.0, 3),
    (9.0, 10.5, 1),
]
EMPTY = [(0.0, 3600.0, 0)]


def _naive() -> Callable[[np.ndarray], int]:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    def count(frame: np.ndarray) -> int:
        gray = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        return len(cascade.detectMultiScale(gray, 1.1, 5, minSize=(40, 40)))

    return count


def _measure(
    frames: list[tuple[float, int, np.ndarray]], count: Callable[[np.ndarray], int]
) -> tuple[float, float]:
    t0 = time.perf_counter()
    got = [count(f) for _, _, f in frames]
    elapsed = time.perf_counter() - t0
    ok = sum(g == truth for g, (_, truth, _) in zip(got, frames, strict=True))
    return len(frames) / elapsed, ok / len(frames)


def _scene(
    name: str, timeline: list[tuple[float, float, int]], n: int, naive_every: int
) -> dict[str, float]:
    frames = list(frames_for(timeline, FPS, n / FPS, seed=5))
    # The naive detector keeps no state, so a sample of the frames measures it just as well.
    naive_fps, naive_acc = _measure(frames[::naive_every], _naive())
    analyzer = AudienceAnalyzer()
    ours_fps, ours_acc = _measure(frames, lambda f: analyzer.process(f).people)
    return {
        f"{name}_naive_fps": round(naive_fps, 1),
        f"{name}_ours_fps": round(ours_fps, 1),
        f"{name}_speedup": round(ours_fps / naive_fps, 1),
        f"{name}_naive_accuracy": round(naive_acc, 3),
        f"{name}_ours_accuracy": round(ours_acc, 3),
        f"{name}_ours_detect_share": round(analyzer.detections / analyzer.frames, 2),
    }


def run(quick: bool) -> dict:
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # one core: what a Pi-class box can spare per camera
    try:
        # Quick mode times the (stateless, slow) naive detector on every 4th frame only.
        n_busy, n_empty, naive_every = (40, 30, 4) if quick else (105, 150, 1)
        result: dict = {
            "date": dt.date.today().isoformat(),
            "machine": f"{platform.machine()} x{os.cpu_count()} {platform.system()}",
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "opencv": cv2.__version__,
            "threads": 1,
            "resolution": "640x480",
            "scene_fps": FPS,
            "frames_busy": n_busy,
            "frames_empty": n_empty,
            "naive_sampled_every": naive_every,
        }
        result.update(_scene("busy", BUSY, n_busy, naive_every))
        result.update(_scene("empty", EMPTY, n_empty, naive_every))
        return result
    finally:
        cv2.setNumThreads(threads)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
