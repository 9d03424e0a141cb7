"""Camera audience on real photos: skimage's astronaut (a real frontal face), real backgrounds
with nobody in them, a synthetic scene with ground truth, video files read back through
cv2.VideoCapture, dying cameras, and the privacy rule (no image ever reaches the disk)."""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.sensing.camera import scene as scene_mod
from edge_agent.sensing.camera.audience import AudienceAnalyzer, AudienceResult
from edge_agent.sensing.camera.scene import SceneSource, demo_timeline, frames_for
from edge_agent.sensing.camera.sources import (
    CameraError,
    FrameSource,
    VideoCaptureSource,
    open_source,
)
from tests.watching import snapshot

skdata = pytest.importorskip("skimage.data")

TIMELINE = [(0.0, 2.0, 0), (2.0, 5.0, 1), (5.0, 8.0, 2), (8.0, 10.0, 0)]
FPS = 10


def bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def noisy(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return cv2.add(frame, rng.integers(0, 6, frame.shape, dtype=np.uint8))


def per_segment(
    timeline: list[tuple[float, float, int]], rows: Iterable[tuple[float, int, AudienceResult]]
) -> dict[tuple[float, float, int], list[tuple[float, AudienceResult]]]:
    out: dict[tuple[float, float, int], list[tuple[float, AudienceResult]]] = defaultdict(list)
    for t, _truth, r in rows:
        seg = next(s for s in timeline if s[0] <= t < s[1])
        out[seg].append((t, r))
    return out


def assert_counts_match(rows: list[tuple[float, int, AudienceResult]], min_ok: float) -> None:
    for (start, _end, truth), results in per_segment(TIMELINE, rows).items():
        ok = sum(r.people == truth and r.watchers == truth for _, r in results)
        assert ok / len(results) >= min_ok, (start, truth, [(t, r.people) for t, r in results])
        if truth == 0:
            # Nobody invented in an empty segment. The one frame at a handover may still show
            # who just left (the count drops on the next detection, one frame later).
            late = [(t, r) for t, r in results if t >= start + 1.5 / FPS]
            assert all(r.people == 0 and r.watchers == 0 for _, r in late), late


# ---- real photos ----------------------------------------------------------------------------
def test_astronaut_is_one_watcher() -> None:
    r = AudienceAnalyzer().process(bgr(skdata.astronaut()))
    assert r == AudienceResult(people=1, watchers=1, motion=False, detect_ran=True)


def test_turned_head_is_not_a_watcher() -> None:
    # skimage's cameraman looks down at his camera, not at us.
    r = AudienceAnalyzer().process(skdata.camera())
    assert r.watchers == 0 and r.people == 0


@pytest.mark.parametrize("name", ["coffee", "rocket", "chelsea"])
def test_photos_without_people_show_nobody(name: str) -> None:
    photo = bgr(getattr(skdata, name)())
    rng = np.random.default_rng(7)
    a = AudienceAnalyzer(detect_every=3)
    results = [a.process(noisy(photo, rng)) for _ in range(12)]
    assert sum(r.detect_ran for r in results) >= 4  # the detector did look, repeatedly
    assert all(r.people == 0 and r.watchers == 0 for r in results)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(8, 120),
    w=st.integers(8, 160),
    channels=st.sampled_from([None, 1, 3, 4]),
    seed=st.integers(0, 2**16),
)
def test_any_frame_shape_gives_sane_counts(h: int, w: int, channels: int | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels is None else (h, w, channels)
    a = AudienceAnalyzer(detect_every=2)
    for _ in range(3):
        r = a.process(rng.integers(0, 256, shape, dtype=np.uint8))
        assert 0 <= r.watchers <= r.people


def test_not_a_frame_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        AudienceAnalyzer().process(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ValueError):
        AudienceAnalyzer().process(np.zeros((4, 4, 3, 2), np.uint8))


# ---- synthetic scene with ground truth --------------------------------------------------------
def analyse(
    frames: Iterable[tuple[float, int, np.ndarray]],
) -> list[tuple[float, int, AudienceResult]]:
    a = AudienceAnalyzer()
    return [(t, truth, a.process(f)) for t, truth, f in frames]


def test_scene_counts_match_ground_truth() -> None:
    rows = analyse(frames_for(TIMELINE, FPS, 10.0))
    assert_counts_match(rows, min_ok=0.9)
    # The gate did its job: the detector did not run on every frame.
    assert sum(r.detect_ran for _, _, r in rows) < 0.9 * len(rows)


def test_empty_scene_with_lighting_steps_and_noise_costs_little_and_finds_nobody() -> None:
    a = AudienceAnalyzer(detect_every=10)
    results = []
    for i, (_t, _truth, frame) in enumerate(frames_for([(0, 100, 0)], FPS, 8.0, seed=3)):
        gain = 1.0 if i < 25 else 0.7 if i < 50 else 1.25  # lights dimmed, then brighter
        results.append(a.process(cv2.convertScaleAbs(frame, alpha=gain)))
    assert all(r.people == 0 and r.watchers == 0 for r in results)
    # Drift and noise are not motion; a light switching may be (it re-checks faces once).
    assert {i for i, r in enumerate(results) if r.motion} <= {25, 50}
    # Otherwise only the periodic re-check runs the detector.
    assert sum(r.detect_ran for r in results) <= len(range(0, len(results), 10)) + 2


def test_person_standing_still_is_kept_by_periodic_recheck() -> None:
    scene = SceneSource([(0, 100, 1)], clock=lambda: 1.0)
    a = AudienceAnalyzer(detect_every=5)
    results = [a.process(scene.read()) for _ in range(20)]  # type: ignore[arg-type]
    assert all(r.people == 1 and r.watchers == 1 for r in results)
    assert [i for i, r in enumerate(results) if r.detect_ran] == [0, 5, 10, 15]


def test_turned_away_passer_by_is_a_person_not_a_watcher() -> None:
    bg = SceneSource([(0, 1, 0)], clock=lambda: 0.0).render(0.0)
    man = cv2.cvtColor(cv2.resize(skdata.camera()[40:400, 150:400], (150, 216)), cv2.COLOR_GRAY2BGR)
    rng = np.random.default_rng(1)
    a = AudienceAnalyzer()
    walking = []
    for i in range(34):
        f = bg.copy()
        if i >= 10:  # walks across the frame, 18 px a frame
            x = 20 + (i - 10) * 18
            f[240:456, x : x + 150] = man
        r = a.process(noisy(f, rng))
        assert r.watchers == 0
        if i < 10:
            assert r.people == 0
        else:
            walking.append(r.people)
    assert sum(p == 1 for p in walking) >= 0.9 * len(walking)


def test_scene_is_deterministic_and_never_static() -> None:
    a = [f for _, _, f in frames_for(TIMELINE, 5, 3.0, seed=1)]
    b = [f for _, _, f in frames_for(TIMELINE, 5, 3.0, seed=1)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], a[1])  # noise and drift
    assert a[0].shape == (480, 640, 3) and a[0].dtype == np.uint8


def test_scene_follows_its_clock_and_closes() -> None:
    now = [0.0]
    scene = SceneSource(TIMELINE, clock=lambda: now[0])
    assert isinstance(scene, FrameSource)
    counts = []
    for t in (1.0, 3.0, 6.0, 9.0, 12.0):
        now[0] = t
        counts.append(scene.people_at(t))
        assert scene.read() is not None
    assert counts == [0, 1, 2, 0, 0]
    scene.close()
    assert scene.read() is None
    with pytest.raises(ValueError, match="people must be"):
        SceneSource([(0, 1, 9)])
    with pytest.raises(ValueError, match="end must be after"):
        SceneSource([(2, 1, 1)])


def test_scene_without_scikit_image_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    scene_mod._assets.cache_clear()
    monkeypatch.setitem(sys.modules, "skimage.data", None)  # import now raises ImportError
    try:
        with pytest.raises(CameraError, match=r"scikit-image.*edge-agent\[demo\]"):
            SceneSource(TIMELINE)
    finally:
        monkeypatch.undo()
        scene_mod._assets.cache_clear()


def test_open_source_demo_scenes() -> None:
    class FakeClock:  # the agent's Clock protocol: epoch seconds from now()
        t = 1_700_000_000.0

        def now(self) -> float:
            return self.t

    clock = FakeClock()
    src = open_source("demo:entrance", clock=clock)
    assert isinstance(src, SceneSource)
    assert src.people_at(0.0) == 0 and src.people_at(20.0) == 1  # scene time from opening
    clock.t += 20.0
    r = AudienceAnalyzer().process(src.read())  # type: ignore[arg-type]
    assert r.watchers == 1
    assert open_source("demo:2").people_at(5.0) == 2  # type: ignore[attr-defined]
    assert demo_timeline("empty") == [(0.0, 3600.0, 0)]
    with pytest.raises(CameraError, match="unknown demo scene"):
        open_source("demo:nope")


# ---- video files and cameras ------------------------------------------------------------------
def write_video(path: Path, frames: Iterable[np.ndarray], fps: float = FPS) -> int:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    assert writer.isOpened()
    n = 0
    for f in frames:
        writer.write(f)
        n += 1
    writer.release()
    return n


def test_video_file_gives_the_same_counts(tmp_path: Path) -> None:
    truth = list(frames_for(TIMELINE, FPS, 10.0))
    path = tmp_path / "scene.avi"
    assert write_video(path, (f for _, _, f in truth)) == len(truth)
    direct = analyse(truth)
    src = VideoCaptureSource(str(path))
    a = AudienceAnalyzer()
    rows = []
    for t, n, _ in truth:
        frame = src.read()
        assert frame is not None and frame.shape == (480, 640, 3)
        rows.append((t, n, a.process(frame)))
    assert src.read() is None  # end of file: None, no exception
    src.close()
    assert_counts_match(rows, min_ok=0.9)
    same = sum(r.people == d.people for (_, _, r), (_, _, d) in zip(rows, direct, strict=True))
    assert same >= 0.95 * len(rows)


def test_camera_dying_mid_stream_returns_none(tmp_path: Path) -> None:
    path = tmp_path / "cut.avi"
    n = write_video(path, (f for _, _, f in frames_for([(0, 10, 1)], FPS, 4.0)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the recording stops half way (power cut)
    src = VideoCaptureSource(str(path))
    got = 0
    for _ in range(n + 5):
        frame = src.read()
        if frame is None:
            break
        got += 1
    assert 0 < got < n
    assert src.read() is None and src.read() is None  # stays dead, quietly
    src.close()
    assert src.read() is None


def test_lost_live_camera_returns_none_then_reconnects(tmp_path: Path) -> None:
    # A "live" source (an HTTP URL scheme is live) that cannot be reached again after it
    # dropped: read() gives None and retries opening at most every reconnect_s.
    path = tmp_path / "clip.avi"
    write_video(path, (f for _, _, f in frames_for([(0, 10, 0)], FPS, 0.3)))
    now = [0.0]
    src = VideoCaptureSource(str(path), reconnect_s=5.0, monotonic=lambda: now[0])
    src.live = True  # behave like a camera: reopen after a failure
    frames = [src.read() for _ in range(3)]
    assert all(f is not None for f in frames)
    assert src.read() is None  # dropped
    assert src.read() is None and src.reopens == 0  # too soon to retry
    now[0] = 6.0
    assert src.read() is not None and src.reopens == 1  # came back
    src.close()


@pytest.mark.parametrize("spec", ["/dev/video99", "99", "/nonexistent/camera.avi"])
def test_missing_camera_is_a_one_line_camera_error(spec: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(CameraError) as err:
        open_source(spec)
    msg = str(err.value)
    assert spec in msg and "\n" not in msg and "cannot open camera source" in msg
    assert time.monotonic() - t0 < 5


# ---- privacy ----------------------------------------------------------------------------------
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pnm", ".tif", ".tiff", ".webp"}
VIDEO_EXT = {".avi", ".mp4", ".mkv", ".webm", ".mov", ".npy", ".npz"}
REPO = Path(__file__).resolve().parents[2]


def test_frames_never_reach_the_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Private cwd, HOME and TMPDIR, so anything the pipeline might write lands where we look
    # (and other tests running at the same time cannot confuse us); the repo is watched too.
    for d in ("cwd", "home", "tmp"):
        (tmp_path / d).mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    roots = [tmp_path, REPO / "edge_agent", REPO / "tests", REPO / "bench", REPO / "demo"]
    before = snapshot(roots)

    # Two people in view, on the scene's own frame clock (10 fps): a loaded machine's slow
    # reads would otherwise move the scene's lighting drift along and make the count vary.
    tick = iter(i / 10 for i in range(10_000))
    src = open_source("demo:2", clock=lambda: next(tick))
    a = AudienceAnalyzer(detect_every=2)
    results = [a.process(src.read()) for _ in range(30)]  # type: ignore[arg-type]
    src.close()
    assert all(r.watchers == 2 for r in results)  # the pipeline really ran on faces

    after = snapshot(roots)
    changed = sorted(p for p, sig in after.items() if before.get(p) != sig)
    media = [p for p in changed if Path(p).suffix.lower() in IMAGE_EXT | VIDEO_EXT]
    assert media == []
    # Nothing at all appeared in the private dirs.
    assert [p for p in changed if p.startswith(str(tmp_path))] == []


@pytest.mark.parametrize("name", ["astronaut", "coffee", "camera"])
def test_scene_photos_decoded_by_opencv_are_scikit_images_own(name: str) -> None:
    # The scene reads the PNGs itself (skimage.data's loaders import SciPy: issue 20).
    skimage_data = pytest.importorskip("skimage.data")
    assert np.array_equal(scene_mod._photo(name), getattr(skimage_data, name)())
