"""Tracker (pure, property-tested) and the per-screen pipeline on ground-truth clips made from
real photos: people walking in, watching, walking out; passers-by; an empty scene with light
switching; regions of interest."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.sensing.camera.audience import FACING_YAW, facing
from edge_agent.sensing.camera.pipeline import (
    ScreenObservation,
    ScreenPipeline,
    roi_pixels,
    validate_roi,
)
from edge_agent.sensing.camera.tracker import Detection, Tracker, TrackSummary

pytest.importorskip("skimage.data")

from edge_agent.sensing.camera.clips import Actor, Clip, standard_clips  # noqa: E402

CLIPS = {c.name: c for c in standard_clips()}


# ---- tracker ----------------------------------------------------------------------------------
def walk(tracker: Tracker, n: int, t0: float, *, x0: int = 0, dx: int = 10, facing_from: int = 0):
    out = []
    for i in range(n):
        box = (x0 + i * dx, 100, 60, 60)
        out.append(tracker.update([Detection(box, i >= facing_from)], t0 + i * 0.1))
    return out


def test_one_person_is_one_track_with_dwell_and_attention() -> None:
    tr = Tracker(max_gap_s=0.5)
    ups = walk(tr, 20, 10.0, facing_from=5)  # 1.9 s in view, facing for the last 1.4 s
    assert [u.new for u in ups] == [0, 1] + [0] * 18  # confirmed on the second frame
    assert all(u.active == 1 for u in ups[1:]) and not any(u.ended for u in ups)
    ended = [s for t in (12.0, 12.3, 12.6) for s in tr.update([], t).ended]
    assert ended == [TrackSummary(start=10.0, end=11.9, dwell_s=1.9, attention_s=1.4)]
    assert tr.active == 0


def test_a_single_flicker_is_nobody() -> None:
    tr = Tracker(max_gap_s=0.3)
    assert tr.update([Detection((5, 5, 40, 40), True)], 0.0).new == 0
    assert tr.update([], 1.0).ended == ()
    assert tr.finish() == ()


def test_short_miss_keeps_the_track_long_absence_ends_it() -> None:
    tr = Tracker(max_gap_s=1.0)
    walk(tr, 5, 0.0, dx=0)
    assert tr.update([], 0.9).ended == ()  # missed for 0.5 s: still the same person
    u = tr.update([Detection((0, 100, 60, 60), True)], 1.0)
    assert u.new == 0 and u.active == 1
    assert tr.update([], 2.5).ended[0].dwell_s == 1.0  # gone for 1.5 s: the visit ended at 1.0


def test_two_people_apart_are_two_tracks() -> None:
    tr = Tracker()
    for i in range(5):
        a = Detection((10 + i, 50, 60, 60), True)
        b = Detection((400 - i, 60, 60, 60), False)
        u = tr.update([a, b], i * 0.1)
    assert u.active == 2
    summaries = sorted(tr.finish(), key=lambda s: s.attention_s)
    assert [s.attention_s for s in summaries] == [0.0, 0.4]


def test_a_walking_person_is_followed_across_the_frame() -> None:
    tr = Tracker()
    ups = walk(tr, 30, 0.0, dx=45)  # fast: most of a box width per frame
    assert sum(u.new for u in ups) == 1


def test_walking_out_of_the_frame_ends_the_visit_at_once() -> None:
    tr = Tracker(max_gap_s=2.0, bounds=(640, 480))
    walk(tr, 10, 0.0, x0=300, dx=30)  # walking right, last seen centred at x 600
    ended = tr.update([], 1.1).ended  # predicted beyond the right edge: gone
    assert len(ended) == 1 and ended[0].dwell_s == 0.9
    # Without bounds the same track waits for the gap.
    tr = Tracker(max_gap_s=2.0)
    walk(tr, 10, 0.0, x0=300, dx=30)
    assert tr.update([], 1.1).ended == ()


def test_bad_tracker_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_gap_s"):
        Tracker(max_gap_s=0)


boxes = st.tuples(
    st.integers(-50, 700), st.integers(-50, 500), st.integers(1, 300), st.integers(1, 300)
)


@settings(max_examples=150, deadline=None)
@given(
    frames=st.lists(
        st.tuples(
            st.floats(-1.0, 5.0, allow_nan=False),
            st.lists(st.tuples(boxes, st.booleans()), max_size=5),
        ),
        max_size=40,
    ),
    gap=st.floats(0.05, 2.0),
    hits=st.integers(1, 3),
)
def test_every_confirmed_track_is_reported_once_and_sanely(
    frames: list[tuple[float, list]], gap: float, hits: int
) -> None:
    tr = Tracker(max_gap_s=gap, min_hits=hits)
    new, summaries, t = 0, [], 0.0
    for dt, dets in frames:
        t += dt  # time may step backwards: never negative dwell
        u = tr.update([Detection(b, f) for b, f in dets], t)
        assert 0 <= u.active <= sum(1 for _ in dets) + 40
        new += u.new
        summaries += u.ended
    summaries += tr.finish()
    assert len(summaries) == new
    for s in summaries:
        assert s.dwell_s >= 0 and 0 <= s.attention_s <= s.dwell_s + 1e-9 and s.end >= s.start


# ---- yaw proxy for YuNet landmarks ------------------------------------------------------------
def test_yaw_proxy_separates_facing_from_turned() -> None:
    # right eye, left eye, nose (x, y): nose between the eyes is facing the camera.
    assert facing([100, 50, 140, 50, 121, 70])
    assert not facing([100, 50, 140, 50, 100 + 40 * (0.5 + FACING_YAW) + 1, 70])
    assert not facing([100, 50, 100.5, 50, 100, 70])  # eyes on top of each other: profile


# ---- regions of interest ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "roi,msg",
    [
        ([0, 0, 1], "x, y, w, h"),
        ([0.5, 0, 0.6, 1], "inside the frame"),
        ([0, 1.0, 1, 1], "x and y"),
    ],
)
def test_bad_roi_names_what_is_wrong(roi: list[float], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        validate_roi(roi)


@given(x=st.floats(0, 0.99), y=st.floats(0, 0.99), w=st.floats(0.01, 1), h=st.floats(0.01, 1))
def test_roi_pixels_stay_inside_the_frame(x: float, y: float, w: float, h: float) -> None:
    w, h = min(w, 1 - x), min(h, 1 - y)
    if w <= 0 or h <= 0:
        return
    x0, y0, x1, y1 = roi_pixels((x, y, w, h), 640, 480)
    assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480


def test_roi_per_screen_sees_only_its_half() -> None:
    clip = CLIPS["two-watchers-then-passer"]
    both = [i for i, n in enumerate(clip.watchers) if n == 2]
    assert len(both) > 20
    full = ScreenPipeline("s")
    left = ScreenPipeline("left", roi=(0.0, 0.0, 0.5, 1.0))
    right = ScreenPipeline("right", roi=(0.5, 0.0, 0.5, 1.0))
    seen: dict[str, list[int]] = {"s": [], "left": [], "right": []}
    for i, frame in enumerate(clip.frames()):
        for p in (full, left, right):
            o = p.process(frame, i / clip.fps)
            if i in both[5:-5]:
                seen[p.screen_id].append(o.watchers)
    assert np.mean([n == 2 for n in seen["s"]]) > 0.9
    assert np.mean([n == 1 for n in seen["left"]]) > 0.9
    assert np.mean([n == 1 for n in seen["right"]]) > 0.9


# ---- ground-truth clips -----------------------------------------------------------------------
def run_clip(clip: Clip) -> tuple[list[ScreenObservation], list[TrackSummary]]:
    p = ScreenPipeline("screen-1")
    obs = [p.process(f, i / clip.fps) for i, f in enumerate(clip.frames())]
    tracks = [s for o in obs for s in o.ended] + list(p.finish(clip.n_frames / clip.fps).ended)
    return obs, tracks


def test_clip_ground_truth_is_what_was_drawn() -> None:
    clip = CLIPS["one-watcher"]
    (t,) = clip.truth
    assert t.kind == "watcher" and 5 <= t.first < t.last < clip.n_frames
    assert clip.people[t.first - 1] == 0 and clip.people[t.first] == 1
    assert clip.people[t.last] == 1 and clip.people[t.last + 1] == 0
    assert sum(clip.watchers) == t.watch_frames and 0 < t.attention_s <= t.dwell_s
    frames = list(clip.frames())
    assert len(frames) == clip.n_frames and frames[0].shape == (480, 640, 3)
    # The person really is drawn while in view: the frame differs from the empty scene there.
    empty = next(Clip([], 1, seed=1).frames()).astype(int)
    mid = (t.first + t.last) // 2
    assert np.abs(frames[mid].astype(int) - empty).mean() > 5
    assert np.abs(frames[0].astype(int) - empty).mean() < 5


@pytest.mark.parametrize("name", ["one-watcher", "two-watchers-then-passer", "passers-by"])
def test_counts_tracks_dwell_and_attention_match_ground_truth(name: str) -> None:
    clip = CLIPS[name]
    obs, tracks = run_clip(clip)
    people_ok = np.mean([o.people == n for o, n in zip(obs, clip.people, strict=True)])
    watch_ok = np.mean([o.watchers == n for o, n in zip(obs, clip.watchers, strict=True)])
    assert people_ok >= 0.8, people_ok
    assert watch_ok >= 0.9, watch_ok
    # One track per person: nobody split in two, nobody invented.
    assert sum(o.new_tracks for o in obs) == len(clip.truth) == len(tracks)
    left = list(tracks)
    for truth in clip.truth:
        a, b = truth.first / clip.fps, truth.last / clip.fps
        # The track that overlaps this visit most in time is this person.
        track = max(left, key=lambda s: min(b, s.end) - max(a, s.start))
        left.remove(track)
        assert abs(track.dwell_s - truth.dwell_s) <= 1.2, (truth, track)
        assert abs(track.attention_s - truth.attention_s) <= 1.2, (truth, track)
        if truth.kind == "passer":
            assert track.attention_s == 0.0  # looking down at his camera, not at the screen


def test_empty_scene_with_light_switching_has_nobody_and_costs_little() -> None:
    clip = CLIPS["empty-lighting"]
    p = ScreenPipeline("screen-1")
    obs = [p.process(f, i / clip.fps) for i, f in enumerate(clip.frames())]
    assert all(o.people == 0 and o.watchers == 0 and o.new_tracks == 0 for o in obs)
    assert p.finish(9.0).ended == ()
    # The detector ran on the periodic re-check and the two light switches, not every frame.
    assert p.analyzer.detections <= clip.n_frames // 10 + 4


def test_people_arriving_while_light_changes_are_still_found() -> None:
    clip = Clip(
        [Actor("watcher", 10, stop_at=0.5, stay=40)], 80, seed=9, lighting=[(30, 0.75), (50, 1.2)]
    )
    obs, tracks = run_clip(clip)
    assert np.mean([o.watchers == n for o, n in zip(obs, clip.watchers, strict=True)]) >= 0.9
    assert len(tracks) == 1


# ---- configuration ----------------------------------------------------------------------------
def camera_config(tmp_path, **camera):  # type: ignore[no-untyped-def]
    import tomllib
    from pathlib import Path

    from demo import scenario
    from edge_agent.config import parse_config

    demo = Path(scenario.__file__).parent
    data = tomllib.loads((demo / "store.toml").read_text())
    data["downlink"]["ops_public_key"] = "A" * 43 + "="
    data["paths"]["state_dir"] = str(tmp_path / "var")
    data["camera"].update(camera)
    return parse_config(data, base_dir=tmp_path)


@pytest.mark.parametrize(
    "camera,key",
    [
        ({"roi": [0.5, 0.0, 0.6, 1.0]}, "camera.roi"),
        ({"roi": [0.1, 0.1]}, "camera.roi"),
        ({"face_model": "models/yunet.onnx"}, "camera.face_model"),
        ({"fps": 0}, "camera.fps"),
        ({"detect_every": 0}, "camera.detect_every"),
    ],
)
def test_bad_camera_settings_name_the_key(tmp_path, camera: dict, key: str) -> None:  # type: ignore[no-untyped-def]
    from edge_agent.config import ConfigError

    with pytest.raises(ConfigError) as err:
        camera_config(tmp_path, **camera)
    lines = err.value.errors
    assert len(lines) == 1 and lines[0].startswith(key + ":"), lines


def test_camera_settings_reach_the_pipeline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edge_agent.sensing.camera.capture import make_pipelines
    from edge_agent.sensing.camera.sources import CameraError

    cfg = camera_config(tmp_path, roi=[0.25, 0.0, 0.5, 1.0], detect_every=4, track_gap_s=3.0)
    (p,) = make_pipelines(cfg.camera)
    assert p.screen_id == "screen-entrance" and p.roi == (0.25, 0.0, 0.5, 1.0)
    assert (p.analyzer.width, p.analyzer.height, p.analyzer.detect_every) == (320, 480, 4)
    assert p.tracker.max_gap_s == 3.0
    # A model path resolves against the config file's directory; a file that is not a model
    # is one clear line when the camera starts.
    (tmp_path / "yunet.onnx").write_bytes(b"not a model")
    cfg = camera_config(tmp_path, face_model="yunet.onnx")
    assert cfg.camera.face_model == tmp_path / "yunet.onnx"
    with pytest.raises(CameraError, match=r"cannot load face model .*yunet.onnx") as err:
        make_pipelines(cfg.camera)
    assert "\n" not in str(err.value)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(2, 90),
    w=st.integers(2, 120),
    channels=st.sampled_from([None, 1, 3, 4]),
    roi=st.sampled_from([(0.0, 0.0, 1.0, 1.0), (0.5, 0.25, 0.5, 0.5), (0.9, 0.9, 0.1, 0.1)]),
    seed=st.integers(0, 2**16),
)
def test_any_frame_through_a_roi_gives_sane_observations(
    h: int, w: int, channels: int | None, roi: tuple[float, float, float, float], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels is None else (h, w, channels)
    p = ScreenPipeline("s", roi=roi, detect_every=2)
    for i in range(3):
        o = p.process(rng.integers(0, 256, shape, dtype=np.uint8), i * 0.1)
        assert 0 <= o.watchers <= o.people and o.new_tracks >= 0
    assert all(s.dwell_s >= 0 for s in p.finish(1.0).ended)
