"""Issue 20: the camera in its own process. Real worker processes (``python -m
edge_agent.sensing.camera.worker``) reading real clips and real photos, their results crossing
the socketpair into a real ``Agent``; a worker killed with SIGKILL mid-run; workers that speak
nonsense or refuse their setup; the channel's framing on a real socketpair."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.procstat import children
from demo import scenario
from edge_agent.app.agent import Agent
from edge_agent.clock import ScaledClock
from edge_agent.sensing.camera import observation as channel
from edge_agent.sensing.camera.observation import ScreenObservation
from edge_agent.sensing.camera.process import CameraProcess
from edge_agent.sensing.camera.tracker import TrackSummary
from tests.watching import snapshot, wait_for

pytest.importorskip("skimage.data")

from edge_agent.sensing.camera.clips import Actor, Clip  # noqa: E402
from tests.app.test_camera_agent import config, prepared  # noqa: E402
from tests.sensing.test_camera_capture import write_clip  # noqa: E402


def _gone(pid: int) -> bool:
    """Neither running nor a zombie left unreaped by its parent."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] in "ZX"
    except FileNotFoundError:
        return True


class Running:
    """An agent in a thread of this process, its camera worker a real child process; the test
    thread watches it and stops it (and any worker it started) at the end."""

    def __init__(self, agent: Agent, until: float) -> None:
        self.agent = agent
        self.error: BaseException | None = None
        self.pids: set[int] = set()
        # The camera health and fused view as the agent's own loop saw them, after each drain.
        self.seen: list[tuple[dict[str, str], int | None]] = []
        drain = agent.audience._drain

        def recording(*a: Any) -> int:
            n = drain(*a)
            self.seen.append((agent.audience.health(), agent.audience.people))
            return n

        agent.audience._drain = recording  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self._run, args=(until,), daemon=True)

    def _run(self, until: float) -> None:
        try:
            asyncio.run(self.agent.run(until=until))
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def pid(self) -> int | None:
        cam = self.agent.audience.camera
        pid = cam.pid if isinstance(cam, CameraProcess) else None
        if pid is not None:
            self.pids.add(pid)
        return pid

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pid()
        self.agent.stop()
        self.thread.join(30)
        for pid in self.pids:  # a worker the agent failed to stop must not outlive the test
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
        assert not self.thread.is_alive()
        assert all(_gone(p) for p in self.pids)


def _events(agent: Agent) -> list[Any]:
    events: list[Any] = []
    agent.journal.emit_event = events.append  # type: ignore[method-assign]
    return events


def _of(events: list[Any], suffix: str) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type.endswith(suffix)]


# ---- agent + worker, end to end ---------------------------------------------------------
@pytest.mark.timeout(120)
def test_a_clip_through_the_worker_process_gives_the_agent_its_counts_and_visits(
    tmp_path: Path,
) -> None:
    clip = Clip([Actor("watcher", 0, stop_at=0.4, stay=25)], 40, seed=5)
    path = tmp_path / "watcher.avi"
    n = write_clip(path, clip)
    (truth,) = clip.truth
    # No broker: the events are collected here. The clip's 10 fps in agent seconds, at half
    # speed: a frame every 0.2 s of real time leaves a loaded CI machine room to keep pace
    # (frames are stamped when analysed, so a worker that lags would stretch the dwell).
    cfg = config(tmp_path, 1, source=str(path), fps=10.0, sample_interval_s=0.5, track_gap_s=2.0)
    clock = ScaledClock(scenario.T0, 0.5)
    agent = prepared(cfg, clock, camera_worker=True)
    events = _events(agent)
    before = snapshot([tmp_path])
    with Running(agent, scenario.T0 + 60) as run:
        assert wait_for(lambda: run.pid() is not None, 30)
        # The file played to its end and the worker, done, exited on its own.
        assert wait_for(
            lambda: agent.audience.health().get("camera_worker") == "ended (exited 0)", 60
        )
    assert run.error is None
    # Every frame of the file was analysed in the worker and its counts crossed the channel.
    assert agent.audience.counts.frames == n
    samples = _of(events, "audience.sample.v1")
    assert samples and max(s["people"] for s in samples) == 1
    assert sum(s["new_tracks"] for s in samples) == 1
    assert any(people == 1 for _, people in run.seen)  # the screen's occupancy, smoothed
    # The one visit, with the clip's ground truth (same tolerance as the in-process pipeline).
    (track,) = _of(events, "audience.track.v1")
    assert abs(track["dwell_s"] - truth.dwell_s) <= 1.2, (track, truth)
    assert abs(track["attention_s"] - truth.attention_s) <= 1.2, (track, truth)
    # A recording that ended is not restarted, and is no fault: said as "ended" in health.
    health, _ = run.seen[-1]
    assert health["camera"] == "ended" and "restart" not in health["camera_worker"]
    # Neither process wrote an image: what changed is the agent's state, nothing else.
    after = snapshot([tmp_path])
    changed = [Path(p).relative_to(tmp_path) for p, sig in after.items() if before.get(p) != sig]
    assert changed and all(p.parts[0] == "var" for p in changed), changed
    assert all(p.suffix not in {".png", ".jpg", ".avi", ".npy", ".ppm"} for p in changed)


@pytest.mark.timeout(150)
def test_worker_killed_mid_run_is_restarted_and_the_agent_runs_on(tmp_path: Path) -> None:
    # One person in front of the screen all along, drawn from real photos (the demo scene).
    cfg = config(tmp_path, 1, source="demo:1", fps=10.0, sample_interval_s=0.5)
    clock = ScaledClock(scenario.T0, 1.0)
    agent = prepared(cfg, clock, camera_worker=True)
    events = _events(agent)
    with Running(agent, scenario.T0 + 300) as run:
        assert wait_for(
            lambda: run.pid() is not None and agent.audience.people == 1 and agent.audience.tracks,
            60,
        )
        first = run.pid()
        assert first is not None
        # Under memory pressure the kernel takes the camera before the agent.
        assert Path(f"/proc/{first}/oom_score_adj").read_text().strip() == "500"
        frames, adverts = agent.audience.counts.frames, agent.stats.adverts
        before = list(events)
        old_tracks = agent.audience.tracks
        assert old_tracks and all(i >> 32 == 1 for i in old_tracks)

        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: _gone(first), 10)
        # Back: a new worker, the person seen again, frames counted on from where they were.
        assert wait_for(
            lambda: (
                run.pid() not in (None, first)
                and agent.audience.people == 1
                and agent.audience.counts.frames > frames + 10
            ),
            60,
        )
        # The agent ran on the while: the BLE trace kept flowing through it.
        assert agent.stats.adverts > adverts
        # A new worker's track ids never collide with the dead one's (fused presence).
        assert agent.audience.tracks and all(i >> 32 == 2 for i in agent.audience.tracks)
        summary = agent.audience.health()["camera_worker"]
    assert run.error is None
    # Said in health, in one line, from the agent's own loop: the worker died and came back;
    # meanwhile the screen counted as unobserved (fail safe: nothing personal, BLE only).
    lines = [h.get("camera_worker", "") for h, _ in run.seen]
    assert all("\n" not in line for line in lines)
    down = [(h, p) for h, p in run.seen if h["camera"] == "restarting"]
    assert down and all(p is None for _, p in down)
    assert any("killed by SIGKILL; restart 1 in" in h["camera_worker"] for h, _ in down)
    assert "1 restarts, last killed by SIGKILL" in summary
    # Nothing the agent had accepted was lost: every event from before the kill is still there,
    # in order, and the counts only went on.
    assert events[: len(before)] == before
    assert len(_of(events, "audience.sample.v1")) > len(_of(before, "audience.sample.v1"))
    assert agent.audience.health()["camera"] == "stopped"


# ---- workers that misbehave ---------------------------------------------------------------
def _process(script: str, seen: list[ScreenObservation], **kw: Any) -> CameraProcess:
    """A CameraProcess whose 'worker' is ``script`` (its fd number is the last argument)."""
    from contracts.backoff import Backoff

    return CameraProcess(
        {"camera": {}, "clock": {"kind": "wall"}},
        seen.append,
        backoff=Backoff(0.2, 2.0, 0.4),
        command=[sys.executable, "-c", script],
        **kw,
    )


_SILENT = """
import signal, socket, sys
s = socket.socket(fileno=int(sys.argv[-1]))
s.recv(65536)
signal.pause()  # alive, says nothing: wedged until killed
"""

_STUCK = """
import json, socket, struct, sys, time
s = socket.socket(fileno=int(sys.argv[-1]))
s.recv(65536)
h = {"type": "health", "state": "stalled", "frames": 0, "reconnects": 0, "fps": 0.0,
     "frame_age_s": None}
body = json.dumps(h).encode()
for _ in range(600):  # talks, but its camera is stuck inside a driver read
    s.sendall(struct.pack(">I", len(body)) + body)
    time.sleep(0.1)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("script", "why"), [(_SILENT, "silent for 1.5s"), (_STUCK, "camera stuck in a read for 1.5s")]
)
def test_a_wedged_worker_is_killed_and_restarted_and_health_says_why(script: str, why: str) -> None:
    seen: list[ScreenObservation] = []
    proc = _process(script, seen, kill_wedged_s=1.5).start()
    pids: set[int] = set()
    lines: list[str] = []

    def restarted() -> bool:
        if proc.pid is not None:
            pids.add(proc.pid)
        lines.append(proc.summary())
        return lines[-1].startswith("running") and proc.restarts >= 1

    try:
        assert wait_for(restarted, 30)
        first = min(pids)
        assert wait_for(lambda: _gone(first), 10)
    finally:
        assert proc.stop(timeout=5)
    assert any(line.startswith(f"{why}; restart 1 in") for line in lines), lines[-5:]
    assert any(line.endswith(f", 1 restarts, last {why}") for line in lines), lines[-5:]
    assert all(_gone(p) for p in pids)


_GARBAGE = """
import signal, socket, struct, sys
s = socket.socket(fileno=int(sys.argv[-1]))
s.recv(65536)  # the setup
s.sendall(struct.pack(">I", 3) + b"{}]")
signal.pause()  # a broken worker that would hang on until killed: the agent must not wait for it
"""


@pytest.mark.timeout(60)
def test_a_worker_that_sends_nonsense_is_killed_and_restarted() -> None:
    seen: list[ScreenObservation] = []
    proc = _process(_GARBAGE, seen).start()
    pids: set[int] = set()

    def restarted_twice() -> bool:
        if proc.pid is not None:
            pids.add(proc.pid)
        return proc.restarts >= 2

    try:
        assert wait_for(restarted_twice, 30)
        assert len(pids) >= 2
        line = proc.summary()
    finally:
        assert proc.stop(timeout=5)
    assert seen == [] and all(_gone(p) for p in pids)
    assert "sent a broken message" in line, line
    assert proc.health().state == "stopped"


@pytest.mark.timeout(60)
def test_a_worker_refusing_its_setup_waits_the_longest_backoff() -> None:
    from contracts.backoff import Backoff

    seen: list[ScreenObservation] = []
    # The real worker, a setup without the camera's fields: it exits 2 at once.
    proc = CameraProcess({"camera": {}, "clock": {}}, seen.append, backoff=Backoff(0.2, 2.0, 5.0))
    proc.start()
    try:
        assert wait_for(lambda: proc.health().state == "restarting", 30)
        line = proc.summary()
        assert line.startswith("exited 2; restart 1 in ") and float(line.split()[-1][:-1]) > 3.0
    finally:
        assert proc.stop(timeout=5)


# ---- the channel ------------------------------------------------------------------------
@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_observations_and_health_cross_the_channel_unchanged(pair) -> None:
    a, b = pair
    o = ScreenObservation(
        "screen-1", 12.5, 2, 1, 1, (TrackSummary(1.0, 9.5, 8.5, 3.0),), True, (7, 9)
    )
    channel.send(a, channel.observation_message(o))
    h = channel.WorkerHealth("ok", 10, 0, 9.5, 0.1)
    channel.send(a, channel.health_message(h))
    a.close()
    assert channel.decode_observation(channel.receive(b) or {}) == o
    assert channel.decode_health(channel.receive(b) or {}) == h
    assert channel.receive(b) is None  # closed between messages: the end, not an error


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x10\x00\x01" + b"x" * 16,  # a length over the cap: an image, or a torn stream
        b"\x00\x00\x00\x05{}]]]",
        b"\x00\x00\x00\x02[]",
        b'\x00\x00\x00\x10{"type"',  # closed inside a message
    ],
)
def test_what_is_not_a_message_is_refused(pair, raw: bytes) -> None:
    a, b = pair
    a.sendall(raw)
    a.close()
    with pytest.raises(channel.ChannelError):
        channel.receive(b)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.update(people=-1),
        lambda m: m.update(people=True),
        lambda m: m.update(t=float("inf")),
        lambda m: m.update(tracks=list(range(300))),
        lambda m: m.update(ended=[[1, 2, 3]]),
        lambda m: m.update(screen_id=""),
        lambda m: m.update(seen="yes"),
    ],
)
def test_an_observation_out_of_shape_is_refused(change: Callable[[dict[str, Any]], None]) -> None:
    m = channel.observation_message(ScreenObservation("s", 1.0, 1, 0, 0))
    change(m)
    with pytest.raises(channel.ChannelError):
        channel.decode_observation(m)


def test_a_message_too_big_to_be_counts_is_not_sent() -> None:
    with pytest.raises(channel.ChannelError):
        channel.encode({"type": "obs", "pixels": "x" * channel.MAX_MESSAGE_BYTES})


# ---- the real service -------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_the_worker_never_outlives_the_agent_even_a_killed_one(tmp_path: Path, broker) -> None:
    """`edge-agent run` with the demo camera: its worker is its child; SIGKILL the agent (no
    chance to stop anything) and the worker goes too, so that a restarted agent's worker finds
    the camera free rather than held by an orphan."""
    from tests.box.test_sdnotify import agent_config, notify_socket, running

    cfg = agent_config(tmp_path, broker.port, "box-camproc-1")
    assert 'source = "demo:entrance"' in cfg.read_text()
    path = str(tmp_path / "notify")
    workers: list[int] = []
    try:
        with notify_socket(path) as s, running(cfg, {"NOTIFY_SOCKET": path}) as agent:
            s.wait_for("READY", 30)
            assert wait_for(lambda: bool(workers.extend(children(agent.pid)) or workers), 30)
            (worker,) = set(workers)
            cmdline = Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")
            assert b"edge_agent.sensing.camera.worker" in cmdline
            # The setup went over the socket: the camera's source is not on the command line.
            assert not any(b"demo:" in arg for arg in cmdline)
            # systemd's notify socket is the agent's alone.
            environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
            assert not any(v.startswith(b"NOTIFY_SOCKET=") for v in environ)
            agent.kill()
            agent.wait(10)
            assert wait_for(lambda: _gone(worker), 15)
    finally:
        for pid in set(workers):
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
