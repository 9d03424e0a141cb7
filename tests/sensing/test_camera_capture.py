"""The camera thread: real video files through cv2.VideoCapture, a camera that dies mid-stream,
one that disappears and comes back (reconnect with backoff), one that hangs in read()."""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from contracts.backoff import Backoff
from edge_agent.sensing.camera.capture import CameraWorker
from edge_agent.sensing.camera.pipeline import ScreenObservation, ScreenPipeline
from edge_agent.sensing.camera.sources import CameraError, VideoCaptureSource, open_source
from tests.watching import wait_for

pytest.importorskip("skimage.data")

from edge_agent.sensing.camera.clips import Actor, Clip  # noqa: E402


def poll(cond: Callable[[], bool], timeout: float = 30.0) -> bool:
    return wait_for(cond, timeout)


def write_clip(path: Path, clip: Clip) -> int:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), clip.fps, (640, 480))
    assert w.isOpened()
    n = 0
    for f in clip.frames():
        w.write(f)
        n += 1
    w.release()
    return n


@pytest.fixture(scope="module")
def watcher_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("clips") / "watcher.avi"
    n = write_clip(path, Clip([Actor("watcher", 0, stop_at=0.4, stay=25)], 40, seed=5))
    return path, n


class Collector:
    def __init__(self) -> None:
        self.q: queue.SimpleQueue[ScreenObservation] = queue.SimpleQueue()
        self.items: list[ScreenObservation] = []

    def __call__(self, o: ScreenObservation) -> None:
        self.q.put(o)

    def drain(self) -> list[ScreenObservation]:
        while True:
            try:
                self.items.append(self.q.get_nowait())
            except queue.Empty:
                return self.items


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    b = Backoff(0.5, 2.0, 3.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next() == 0.5
    with pytest.raises(ValueError):
        Backoff(0.0)


def test_file_plays_to_the_end_then_the_worker_says_ended(watcher_clip) -> None:
    path, n = watcher_clip
    got = Collector()
    # The clip's own frame clock (30 fps): on a loaded machine a pause between two reads longer
    # than the tracker's gap would end the visit and start another (CI saw it).
    frames = itertools.count()
    w = CameraWorker(
        [ScreenPipeline("s")],
        got,
        source=VideoCaptureSource(str(path)),
        interval_s=0.0,
        now=lambda: next(frames) / 30.0,
    ).start()
    assert poll(lambda: w.health().state == "ended")
    assert w.stop(5)
    obs = got.drain()
    seen = [o for o in obs if o.seen]
    assert len(seen) == n and w.health().frames == n
    assert max(o.watchers for o in seen) == 1
    # The visit that was open when the file ended is reported once, on the way out.
    ended = [s for o in obs for s in o.ended]
    # They watched nearly all the time.
    assert len(ended) == 1 and ended[0].dwell_s > 0
    assert ended[0].attention_s >= 0.7 * ended[0].dwell_s


def test_camera_dying_mid_stream_ends_open_visits(tmp_path: Path, watcher_clip) -> None:
    src_path, n = watcher_clip
    cut = tmp_path / "cut.avi"
    data = src_path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # the camera dies half way through
    got = Collector()
    # The clip's own frame clock (30 fps), not the wall's: on a loaded machine a pause between
    # two reads longer than the tracker's gap would end the visit and start another.
    frames = itertools.count()
    w = CameraWorker(
        [ScreenPipeline("s")],
        got,
        source=open_source(str(cut)),
        interval_s=0.0,
        now=lambda: next(frames) / 30.0,
    )
    w.start()
    assert poll(lambda: w.health().state == "ended")
    w.stop(5)
    obs = got.drain()
    assert 0 < sum(o.seen for o in obs) < n
    assert len([s for o in obs for s in o.ended]) == 1  # the person in view was closed off


def test_camera_that_disappears_is_reopened_with_backoff(tmp_path: Path, watcher_clip) -> None:
    src_path, n = watcher_clip
    cam = tmp_path / "camera.avi"
    attempts: list[float] = []

    def opener() -> VideoCaptureSource:
        attempts.append(time.monotonic())
        src = VideoCaptureSource(str(cam))  # CameraError while the "camera" is unplugged
        src.live = True  # a camera, not a file: when it stops, try again
        return src

    got = Collector()
    w = CameraWorker(
        [ScreenPipeline("s")],
        got,
        opener=opener,
        interval_s=0.0,
        backoff=Backoff(0.05, 2.0, 0.4),
    ).start()
    try:
        assert poll(lambda: len(attempts) >= 5)
        h = w.health()
        assert h.state == "reconnecting" and h.frames == 0
        assert "cannot open camera source" in (h.last_error or "")
        gaps = np.diff(attempts[:5])
        # Waits grow 0.05, 0.1, 0.2, 0.4 (a loaded machine only makes them longer).
        assert all(g >= d * 0.9 for g, d in zip(gaps, [0.05, 0.1, 0.2, 0.4], strict=True))
        os.link(src_path, cam)  # plugged in
        assert poll(lambda: w.health().frames >= n)
        h = w.health()
        assert h.reconnects >= 1 and h.frames >= n
        before = len(attempts)
        cam.unlink()  # unplugged again: the open capture plays out, then reopening fails
        assert poll(lambda: len(attempts) >= before + 2 and w.health().state == "reconnecting")
    finally:
        assert w.stop(5)
    assert w.health().state == "stopped"


def test_stuck_camera_never_blocks_the_caller() -> None:
    release = threading.Event()
    reads = []

    class HangingCamera:  # a driver stuck in read(): nothing comes back until released
        live = True

        def read(self) -> np.ndarray | None:
            reads.append(time.monotonic())
            release.wait(30)
            return None

        def close(self) -> None:
            pass

    w = CameraWorker(
        [ScreenPipeline("s")],
        lambda o: None,
        source=HangingCamera(),
        backoff=Backoff(0.01),
        stall_s=0.5,
    )
    w.start()
    try:
        assert poll(lambda: len(reads) == 1)
        t0 = time.monotonic()
        h = w.health()
        assert time.monotonic() - t0 < 0.5 and h.frames == 0
        assert poll(lambda: w.health().state == "stalled")
        assert w.stop(timeout=0.2) is False  # still stuck: stop() gives up instead of hanging
    finally:
        release.set()
    assert poll(lambda: not w._thread.is_alive(), 10)


def test_camera_missing_at_start_keeps_retrying() -> None:
    def opener() -> VideoCaptureSource:
        raise CameraError("cannot open camera source '7': no such video device")

    w = CameraWorker([ScreenPipeline("s")], lambda o: None, opener=opener, backoff=Backoff(0.01))
    w.start()
    assert poll(lambda: w.health().state == "reconnecting")
    assert w.stop(5)
    with pytest.raises(ValueError, match="source or an opener"):
        CameraWorker([], lambda o: None)


def test_stream_credentials_stay_out_of_errors_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    spec = "rtsp://admin:s3cret@127.0.0.1:9/stream"  # discard port on loopback: refused at once
    with pytest.raises(CameraError) as err:
        open_source(spec)
    msg = str(err.value)
    assert "s3cret" not in msg and "admin" not in msg and "rtsp://***@127.0.0.1:9/stream" in msg
    assert "s3cret" not in caplog.text


def test_malformed_frames_are_skipped_not_fatal() -> None:
    class OddCamera:  # a driver handing out an empty frame now and then
        live = True

        def __init__(self) -> None:
            self.n = 0

        def read(self) -> np.ndarray | None:
            self.n += 1
            if self.n > 12:
                return None
            return np.zeros((0, 0, 3), np.uint8) if self.n % 3 == 0 else np.zeros((48, 64, 3))

        def close(self) -> None:
            pass

    got = Collector()
    w = CameraWorker([ScreenPipeline("s")], got, source=OddCamera(), interval_s=0.0)
    w.start()
    assert poll(lambda: w.health().state == "reconnecting")
    assert w.stop(5)
    assert w.health().frames == 8 and len([o for o in got.drain() if o.seen]) == 8


def test_backoff_with_jitter_stays_within_its_step_and_counts_failures() -> None:
    b = Backoff(0.5, 2.0, 30.0, jitter=0.5)
    delays = [b.next() for _ in range(8)]
    steps = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert all(s * 0.5 <= d <= s for d, s in zip(delays, steps, strict=True))
    assert b.failures == 8 and 0 < b.remaining() <= 30.0
    b.reset()
    assert b.failures == 0 and b.remaining() == 0.0
    with pytest.raises(ValueError):
        Backoff(jitter=1.5)
