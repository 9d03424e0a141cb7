"""Where the camera says people stand: pinhole ranging, edge flags, the channel, a real clip."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edge_agent.sensing.camera import observation as channel
from edge_agent.sensing.camera.observation import ChannelError, ScreenObservation
from edge_agent.sensing.camera.ranging import Ranger


def test_a_face_of_known_size_gives_its_distance_by_the_pinhole_model() -> None:
    r = Ranger(66.0, frame_w=640)
    # f = 320 / tan(33 deg) = 492.8 px; a 0.16 m face 76 px wide stands 1.04 m away.
    assert r.focal_px == pytest.approx(492.76, abs=0.01)
    p = r.place((282, 200, 76, 76), face=True)
    assert p.foot == (0.0, 1.04) and not p.at_edge
    # Half the size: twice as far; to the right of the axis: positive x.
    far = r.place((500, 200, 38, 38), face=True)
    assert far.foot[1] == pytest.approx(2.07, abs=0.01) and far.foot[0] > 0


@settings(max_examples=200, deadline=None)
@given(
    hfov=st.floats(40, 120),
    side=st.floats(-1.0, 1.0),
    z=st.floats(0.5, 4.0),
)
def test_a_person_placed_anywhere_in_view_is_found_where_they_stand(
    hfov: float, side: float, z: float
) -> None:
    r = Ranger(hfov, frame_w=640)
    f = r.focal_px
    w = f * 0.16 / z
    cx = 320 + side * f / z
    assume(cx - w / 2 >= 0 and cx + w / 2 <= 640)  # inside the frame
    box = (round(cx - w / 2), 100, max(1, round(w)), max(1, round(w)))
    x, zz = r.place(box, face=True).foot
    # Whole pixels: the error grows with distance (a 1 px face step at 4 m is ~20 cm).
    tol = 0.03 + 1.5 * z / max(w, 1)
    assert zz == pytest.approx(z, abs=tol * z + 0.01)
    assert x == pytest.approx(side, abs=0.05 + tol * (abs(side) + 0.5))


def test_bodies_are_ranged_by_height_and_cut_ones_by_width() -> None:
    r = Ranger(66.0, frame_w=640)
    whole = r.place((300, 40, 120, 400), face=False, region_h=480)
    assert whole.foot[1] == pytest.approx(492.76 * 1.7 / 400, abs=0.01)
    # Cut by the frame's bottom edge: its height says nothing; shoulders 0.45 m across.
    cut = r.place((300, 300, 150, 180), face=False, region_h=480)
    assert cut.foot[1] == pytest.approx(492.76 * 0.45 / 150, abs=0.01)


def test_the_side_of_the_region_and_the_detectors_reach_are_the_edge_of_the_view() -> None:
    r = Ranger(66.0, frame_w=640, region_x0=64, region_w=512, reach_m=2.0)
    assert r.place((2, 100, 76, 76), face=True).at_edge  # left side of the region
    assert r.place((512 - 76 - 1, 100, 76, 76), face=True).at_edge  # right side
    assert not r.place((200, 100, 76, 76), face=True).at_edge
    assert r.place((200, 100, 44, 44), face=True).at_edge  # 1.79 m: near the reach
    # The region starts 64 px into the frame: the axis is at its pixel 256.
    assert r.place((256 - 38, 100, 76, 76), face=True).foot[0] == 0.0


@pytest.mark.parametrize("hfov", [10.0, 180.0, float("nan")])
def test_a_field_of_view_no_camera_has_is_refused(hfov: float) -> None:
    with pytest.raises(ValueError, match="field of view"):
        Ranger(hfov, frame_w=640)


def test_config_refuses_a_bad_field_of_view_in_one_line() -> None:
    from pydantic import ValidationError

    from edge_agent.config import CameraConfig

    assert CameraConfig(screen="s", hfov_deg=66).hfov_deg == 66
    with pytest.raises(ValidationError, match="hfov_deg"):
        CameraConfig(screen="s", hfov_deg=5)


def _obs(**kw: object) -> ScreenObservation:
    base: dict = dict(screen_id="s", t=1.0, people=2, watchers=1, new_tracks=0, tracks=(3, 4))
    base.update(kw)
    return ScreenObservation(**base)


def test_feet_cross_the_channel_and_back() -> None:
    o = _obs(feet=((-0.4, 1.2), (0.8, 2.5)), edges=(False, True))
    back = channel.decode_observation(channel.observation_message(o))
    assert back == o
    none = _obs()
    assert channel.decode_observation(channel.observation_message(none)).feet is None


@pytest.mark.parametrize(
    ("feet", "edges", "why"),
    [
        ([[0.1, 1.0]], [False], "one foot and one edge flag per track"),
        ([[0.1, 1.0], [0.2]], [False, False], r"a foot is \[x, z\]"),
        ([[0.1, 1.0], [0.2, -1.0]], [False, False], "within 100 m"),
        ([[0.1, 1.0], [1e9, 1.0]], [False, False], "within 100 m"),
        ([[0.1, 1.0], ["a", 1.0]], [False, False], "finite number"),
        ([[0.1, 1.0], [0.2, 1.0]], [False, 1], "true or false"),
        (None, [True, True], "edges without feet"),
        ("x", [], "lists"),
    ],
)
def test_feet_a_worker_could_not_have_meant_are_refused(feet: object, edges: object, why: str):
    msg = channel.observation_message(_obs())
    msg["feet"], msg["edges"] = feet, edges
    with pytest.raises(ChannelError, match=why):
        channel.decode_observation(msg)


def test_a_watcher_walking_in_is_at_the_edge_then_stands_where_the_scene_put_them() -> None:
    pytest.importorskip("skimage")
    from edge_agent.sensing.camera.clips import Actor, Clip
    from edge_agent.sensing.camera.pipeline import ScreenPipeline

    # A real face (the astronaut photo) walks in from the left and stops at 35% of the width.
    clip = Clip([Actor("watcher", 5, from_left=True, stop_at=0.35, stay=40)], 60, seed=1)
    pipe = ScreenPipeline("s", hfov_deg=66)
    seen: list[tuple[tuple[float, float], bool]] = []
    for i, frame in enumerate(clip.frames()):
        o = pipe.process(frame, i / 10)
        assert o.feet is not None and len(o.feet) == len(o.tracks) == len(o.edges)
        seen += [(f, e) for f, e in zip(o.feet, o.edges, strict=True)]
    assert len(seen) > 30
    assert seen[0][1]  # first seen at the side of the view: walking in
    standing = seen[-20:]  # stopped, facing the camera
    assert not any(e for _, e in standing)
    # The scene draws faces 76 px wide at 640: about 1.04 m with a 66 degree camera; 35% of
    # the width is 0.15 * 640 px left of the axis: x = -96 / f * z.
    for (x, z), _ in standing:
        assert z == pytest.approx(1.04, rel=0.15)
        assert x == pytest.approx(-96 / 492.76 * z, abs=0.1)
    assert all(math.isfinite(v) for f, _ in seen for v in f)
