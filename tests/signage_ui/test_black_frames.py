"""No black or blank frame on the glass, whatever the player goes through: every frame of a run
read back from the real player's window (``bench ui``'s black-frame run, bounded): offer cards,
photos, a looping video, every message template, the way to a product and to the pickup counter,
an emergency and its end, the bus down and back. The naive player (unload, then load) runs the
same script and must show black frames, so the counter is known to see them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bench import ui

pytestmark = [pytest.mark.ui, pytest.mark.timeout(300)]


def test_no_black_or_blank_frame_through_every_kind_of_transition(
    tmp_path: Path, kivy_env: dict[str, str]
) -> None:
    cfg = ui.write_config(tmp_path, 1)  # no bus: the script drives the player
    env = {**kivy_env, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    # The naive player goes through 60 transitions, not 160: it shows a black frame at about
    # every one (59 of 60 here), and the check only needs it to show more than 20.
    got = ui.black_frames(cfg, env, 160, naive_n=60)
    assert got["transitions"] == 160
    # Every kind of item went by, the clip included.
    assert {"video", "image", "offer_card", "welcome", "order_ready+wayfinding", "survey"} <= set(
        got["items"]
    ), got["items"]
    assert got["ours"]["frames"] >= 100, got
    assert got["total"] == 0, got["ours_after"]
    assert got["naive_unload_then_load"]["black"] > 20, got
