"""Camera audience: speed, quality and cost of our pipeline against a naive baseline.

The naive baseline is what most "count faces with OpenCV" setups do: the Haar frontal-face
cascade on every full-resolution frame (grey, equalised, scaleFactor 1.1, minNeighbors 5,
minSize 40). Ours is ``ScreenPipeline``: motion gate on a 1/4-size image, Haar on a 1/2-size
image only on motion or every ``detect_every`` frames, candidates re-checked by a second
cascade, then the tracker. Both see the same pre-rendered 640x480 frames made from real photos
on one thread:

- speed: a busy scene (people come and go every 1.5 s), an empty one (lighting drift and
  noise), and the two back to back ("mixed": a screen is empty much of the day);
- quality on the ground-truth clips (``edge_agent/sensing/camera/clips.py``): people-count accuracy per
  frame, attention precision and recall (frame-level watcher counts), dwell and attention time
  error per person, tracks against people;
- cost: CPU percent of one core and resident memory while the real camera thread analyses
  10 frames per second, busy and empty.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from bench.procstat import rss_mb
from edge_agent.sensing.camera.capture import CameraWorker
from edge_agent.sensing.camera.clips import Clip, standard_clips
from edge_agent.sensing.camera.pipeline import ScreenPipeline
from edge_agent.sensing.camera.scene import frames_for

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
Frames = list[tuple[float, int, np.ndarray]]


def _naive() -> Callable[[np.ndarray], int]:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    def count(frame: np.ndarray) -> int:
        gray = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        return len(cascade.detectMultiScale(gray, 1.1, 5, minSize=(40, 40)))

    return count


def _ours() -> Callable[[np.ndarray], int]:
    p = ScreenPipeline("bench")
    t = [0.0]

    def count(frame: np.ndarray) -> int:
        t[0] += 1 / FPS
        return p.process(frame, t[0]).people

    return count


def _timed(frames: Frames, count: Callable[[np.ndarray], int]) -> tuple[float, int]:
    t0 = time.perf_counter()
    ok = sum(count(f) == truth for _, truth, f in frames)
    return time.perf_counter() - t0, ok


def _speed(busy: Frames, empty: Frames, naive_every: int) -> dict[str, float]:
    out: dict[str, float] = {}
    # The naive detector keeps no state, so a sample of the frames measures it just as well.
    nb_t, nb_ok = _timed(busy[::naive_every], _naive())
    ne_t, ne_ok = _timed(empty[::naive_every], _naive())
    ours = _ours()  # one pipeline through both scenes, as on a real screen
    ob_t, ob_ok = _timed(busy, ours)
    oe_t, oe_ok = _timed(empty, ours)
    nb, ne = len(busy[::naive_every]), len(empty[::naive_every])
    for name, (n_t, n_n, n_ok, o_t, o_n, o_ok) in {
        "busy": (nb_t, nb, nb_ok, ob_t, len(busy), ob_ok),
        "empty": (ne_t, ne, ne_ok, oe_t, len(empty), oe_ok),
    }.items():
        naive_fps, ours_fps = n_n / n_t, o_n / o_t
        out[f"{name}_naive_fps"] = round(naive_fps, 1)
        out[f"{name}_ours_fps"] = round(ours_fps, 1)
        out[f"{name}_speedup"] = round(ours_fps / naive_fps, 1)
        out[f"{name}_naive_accuracy"] = round(n_ok / n_n, 3)
        out[f"{name}_ours_accuracy"] = round(o_ok / o_n, 3)
    # Mixed: half the frames busy, half empty, whatever the scene lengths above.
    half_naive = 0.5 * nb_t / nb + 0.5 * ne_t / ne
    half_ours = 0.5 * ob_t / len(busy) + 0.5 * oe_t / len(empty)
    out["mixed_naive_fps"] = round(1 / half_naive, 1)
    out["mixed_ours_fps"] = round(1 / half_ours, 1)
    out["mixed_speedup"] = round(half_naive / half_ours, 1)
    return out


def clip_quality(clips: list[Clip]) -> dict[str, float]:
    """Per-frame counts and per-person seconds against the clips' ground truth."""
    frames = people_ok = tp = fp = fn = 0
    dwell_err: list[float] = []
    attention_err: list[float] = []
    tracks = persons = 0
    for clip in clips:
        p = ScreenPipeline("quality")
        summaries = []
        for i, f in enumerate(clip.frames()):
            o = p.process(f, i / clip.fps)
            summaries += o.ended
            frames += 1
            people_ok += o.people == clip.people[i]
            truth = clip.watchers[i]
            tp += min(o.watchers, truth)
            fp += max(0, o.watchers - truth)
            fn += max(0, truth - o.watchers)
        summaries += p.finish(clip.n_frames / clip.fps).ended
        tracks += len(summaries)
        persons += len(clip.truth)
        left = list(summaries)
        for t in clip.truth:
            a, b = t.first / clip.fps, t.last / clip.fps
            overlap = [(min(b, s.end) - max(a, s.start), s) for s in left]
            best = max(overlap, key=lambda x: x[0], default=None)
            if best is None or best[0] < 0:
                dwell_err.append(t.dwell_s)  # missed altogether: the whole visit is the error
                attention_err.append(t.attention_s)
                continue
            left.remove(best[1])
            dwell_err.append(abs(best[1].dwell_s - t.dwell_s))
            attention_err.append(abs(best[1].attention_s - t.attention_s))
    return {
        "quality_clips": len(clips),
        "quality_frames": frames,
        "people_count_accuracy": round(people_ok / frames, 3),
        "attention_precision": round(tp / (tp + fp), 3) if tp + fp else 1.0,
        "attention_recall": round(tp / (tp + fn), 3) if tp + fn else 1.0,
        "dwell_error_mean_s": round(float(np.mean(dwell_err)), 2),
        "dwell_error_max_s": round(float(np.max(dwell_err)), 2),
        "attention_error_mean_s": round(float(np.mean(attention_err)), 2),
        "people_in_clips": persons,
        "tracks_reported": tracks,
    }


class _Loop:
    """A camera replaying pre-rendered frames forever (no rendering cost in the figures)."""

    live = True

    def __init__(self, frames: Frames) -> None:
        self.frames = [f for _, _, f in frames]
        self.i = 0

    def read(self) -> np.ndarray | None:
        f = self.frames[self.i % len(self.frames)]
        self.i += 1
        return f

    def close(self) -> None:
        pass


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cost(frames: Frames, seconds: float, ours: bool) -> tuple[float, float, float]:
    """(CPU % of one core, RSS MB, frames analysed per second) at 10 fps for ``seconds``."""
    if ours:
        worker = CameraWorker(
            [ScreenPipeline("cost")], lambda o: None, source=_Loop(frames), interval_s=0.1
        )
        cpu0, t0 = _cpu_s(), time.monotonic()
        worker.start()
        time.sleep(seconds)
        worker.stop(5)
        n = worker.health().frames
    else:
        stop, count, src = threading.Event(), _naive(), _Loop(frames)
        done = [0]

        def naive_loop() -> None:
            next_at = time.monotonic()
            while not stop.wait(max(0.0, next_at - time.monotonic())):
                next_at += 0.1
                count(src.read())  # type: ignore[arg-type]
                done[0] += 1

        th = threading.Thread(target=naive_loop, daemon=True)
        cpu0, t0 = _cpu_s(), time.monotonic()
        th.start()
        time.sleep(seconds)
        stop.set()
        th.join(5)
        n = done[0]
    wall = time.monotonic() - t0
    return 100 * (_cpu_s() - cpu0) / wall, rss_mb(), n / wall


def run(quick: bool) -> dict:
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # one core: what a Pi-class box can spare per camera
    try:
        # Quick mode times the (stateless, slow) naive detector on every 4th frame only.
        n_busy, n_empty, naive_every, cost_s = (40, 30, 4, 2.0) if quick else (105, 150, 1, 8.0)
        busy = list(frames_for(BUSY, FPS, n_busy / FPS, seed=5))
        empty = list(frames_for(EMPTY, FPS, n_empty / FPS, seed=5))
        result: dict = {
            "date": dt.date.today().isoformat(),
            "machine": f"{platform.machine()} x{os.cpu_count()} {platform.system()}",
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "opencv": cv2.__version__,
            "threads": 1,
            "resolution": "640x480",
            "frames_busy": n_busy,
            "frames_empty": n_empty,
            "naive_sampled_every": naive_every,
        }
        result.update(_speed(busy, empty, naive_every))
        clips = standard_clips(FPS)
        result.update(clip_quality(clips[:2] + clips[3:] if quick else clips))
        rss_before = rss_mb()
        for name, frames in (("busy", busy[:30]), ("empty", empty[:30])):
            for who in ("naive", "ours"):
                cpu, rss, fps = _cost(frames, cost_s, ours=who == "ours")
                result[f"cost_{name}_{who}_cpu_pct"] = round(cpu, 1)
                result[f"cost_{name}_{who}_fps"] = round(fps, 1)
        # The process also holds the bench's pre-rendered frames (~0.9 MB each): the growth is
        # what the camera thread and its pipelines added.
        result["cost_rss_total_mb"] = round(rss_mb(), 1)
        result["cost_rss_growth_mb"] = round(rss_mb() - rss_before, 1)
        return result
    finally:
        cv2.setNumThreads(threads)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
