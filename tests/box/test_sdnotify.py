"""sd_notify over a real AF_UNIX datagram socket, and the agent's READY / watchdog behaviour as a
subprocess against a fake notify socket this test opens (the way systemd would)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.box.liveness import Liveness, Sample, Thresholds, stall_after
from edge_agent.box.sdnotify import Notifier, watchdog_usec
from tests.app.test_agent_process import write_config


class NotifySocket:
    """What systemd listens on: a datagram socket collecting every message with its arrival."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def poll(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            self.messages.append((time.monotonic(), fields))

    def wait_for(self, key: str, timeout: float) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, m in self.messages:
                if key in m:
                    return t
            self.poll(0.1)
        raise AssertionError(f"no {key} within {timeout}s; got {self.messages[-5:]}")

    def times(self, key: str, since: float = 0.0) -> list[float]:
        return [t for t, m in self.messages if key in m and t >= since]

    def close(self) -> None:
        self.sock.close()


@contextmanager
def notify_socket(address: str | bytes) -> Iterator[NotifySocket]:
    s = NotifySocket(address)
    try:
        yield s
    finally:
        s.close()


# ---- the protocol ----------------------------------------------------------------------------
def test_path_socket_gets_key_value_lines(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with notify_socket(path) as s:
        n = Notifier(path)
        assert n.ready("up and\nrunning")  # a newline must not forge another assignment
        assert n.watchdog()
        n.close()
        s.poll(0.3)
    assert [m for _, m in s.messages] == [
        {"READY": "1", "STATUS": "up and running"},
        {"WATCHDOG": "1"},
    ]


def test_abstract_socket() -> None:
    name = f"edge-agent-test-{os.getpid()}-{time.monotonic_ns()}"
    with notify_socket(b"\0" + name.encode()) as s:
        assert Notifier("@" + name).stopping()
        s.poll(0.3)
    assert s.messages[0][1]["STOPPING"] == "1"


def test_without_socket_is_a_no_op_and_a_vanished_one_is_not_fatal(tmp_path: Path) -> None:
    assert not Notifier.from_env({}).enabled
    assert Notifier.from_env({}).watchdog() is False
    gone = Notifier(str(tmp_path / "nobody-listens"))
    assert gone.watchdog() is False and gone.watchdog() is False


def test_watchdog_usec_rules() -> None:
    assert watchdog_usec({}) is None
    assert watchdog_usec({"WATCHDOG_USEC": "30000000"}) == 30_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())})
    # Inherited from a parent: not ours to ping for.
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_usec({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_usec({"WATCHDOG_USEC": "0"}) is None


def test_stall_hook_parsing() -> None:
    assert stall_after("tick", {}) is None
    assert stall_after("tick", {"EDGE_AGENT_TEST_STALL": "loop@1,tick@2.5"}) == 2.5
    assert stall_after("camera", {"EDGE_AGENT_TEST_STALL": "tick@2"}) is None


# ---- liveness: what stops the pings, and what must not -----------------------------------------
def healthy_sample(now: float, **kw) -> Sample:
    base = dict(now=now, tick_at=now, adverts=int(now), uplink_alive=True)
    base.update(kw)
    return Sample(**base)


def test_stale_tick_is_unhealthy() -> None:
    lv = Liveness(Thresholds(tick_stale_s=5))
    assert lv.check(healthy_sample(100)) == []
    assert "tick loop stuck" in lv.check(healthy_sample(110, tick_at=104))[0]
    assert lv.check(healthy_sample(0, tick_at=None)) == ["tick loop has not started"]


def test_dead_uplink_thread_and_idle_uplink_are_unhealthy() -> None:
    lv = Liveness(Thresholds(uplink_stall_s=60))
    assert lv.check(healthy_sample(0, uplink_alive=False)) == ["uplink thread died"]
    lv = Liveness(Thresholds(uplink_stall_s=60))
    kw = dict(uplink_connected=True, outbox_depth=50, uplink_progress=(3, 3))
    assert lv.check(healthy_sample(0, **kw)) == []
    assert lv.check(healthy_sample(59, **kw)) == []
    assert "idle" in lv.check(healthy_sample(61, **kw))[0]
    # Any progress (a publish, a re-send) resets the clock.
    kw2 = dict(kw, uplink_progress=(4, 3))
    assert lv.check(healthy_sample(62, **kw2)) == []


def test_camera_stuck_in_driver_and_silent_ble_with_beacons() -> None:
    lv = Liveness(Thresholds(camera_stall_s=10, ble_silent_s=30))
    assert lv.check(healthy_sample(0, camera_state="stalled")) == []
    assert "camera" in lv.check(healthy_sample(11, camera_state="stalled"))[0]
    assert lv.check(healthy_sample(12, camera_state="reconnecting")) == []
    lv = Liveness(Thresholds(ble_silent_s=30))
    assert lv.check(healthy_sample(0, adverts=5, beacons_configured=True)) == []
    assert "BLE silent" in lv.check(healthy_sample(31, adverts=5, beacons_configured=True))[0]


@given(
    central_up=st.booleans(),
    depth=st.integers(0, 10**6),
    hours=st.floats(0, 48),
    adverts=st.integers(0, 10),
    camera=st.sampled_from([None, "ok", "starting", "reconnecting", "ended"]),
)
def test_no_restart_for_what_a_restart_cannot_cure(central_up, depth, hours, adverts, camera):
    """Central unreachable, an empty night store without beacons, a camera reconnecting: the
    watchdog keeps pinging however long it lasts (else the start limit kills the unit)."""
    lv = Liveness()
    now = 0.0
    for _ in range(5):
        s = healthy_sample(
            now,
            adverts=adverts,
            camera_state=camera,
            uplink_connected=False,
            outbox_depth=depth,
            uplink_progress=(1, 1),
        )
        assert lv.check(s) == []
        now += hours * 3600 / 4
    # Connected but with nothing to send is idle by design, not stuck.
    assert lv.check(healthy_sample(now + 1e5, uplink_connected=central_up, outbox_depth=0)) == []


# ---- the agent as systemd runs it ------------------------------------------------------------
def agent_config(tmp_path: Path, port: int, device: str, extra: str = "") -> Path:
    cfg = write_config(tmp_path, port, device, speed=1.0)
    cfg.write_text(cfg.read_text() + "\n[metrics]\nenabled = false\n" + extra)
    return cfg


def start(cfg: Path, env: dict[str, str]):
    import subprocess
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "edge-agent")
    return subprocess.Popen(
        [exe, "run", "-c", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
    )


@contextmanager
def running(cfg: Path, env: dict[str, str]):
    proc = start(cfg, env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.mark.timeout(60)
def test_ready_then_pings_then_stopping(tmp_path: Path, broker) -> None:
    cfg = agent_config(tmp_path, broker.port, "box-sd-1")
    path = str(tmp_path / "notify")
    with notify_socket(path) as s:
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}
        t0 = time.monotonic()
        with running(cfg, env) as proc:
            ready = s.wait_for("READY", 20)
            assert ready - t0 < 10  # the goal (1.5 s) is measured by `edge-agent bench box`
            s.poll(3)
            # No ping before READY; then at least every half period (1 s / 2), never silent.
            assert not s.times("WATCHDOG", 0)[:1] or s.times("WATCHDOG")[0] >= ready
            pings = s.times("WATCHDOG", ready)
            assert len(pings) >= 5, s.messages
            gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
            assert max(gaps) < 0.9
            status = [m["STATUS"] for _, m in s.messages if "STATUS" in m]
            assert status and "adverts/s" in status[-1] and "outbox" in status[-1]
            proc.terminate()
            assert proc.wait(30) == 0
        s.poll(0.3)
        assert s.times("STOPPING")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["tick", "loop"])
def test_pings_stop_when_a_loop_hangs(tmp_path: Path, broker, where: str) -> None:
    """`tick`: the tick loop awaits forever while the event loop runs on (only the health
    check can notice); `loop`: the whole event loop is blocked (nothing can ping)."""
    cfg = agent_config(tmp_path, broker.port, f"box-sd-{where}", "[systemd]\ntick_stale_s = 1.0\n")
    name = f"edge-agent-test-{os.getpid()}-{where}-{time.monotonic_ns()}"
    with notify_socket(b"\0" + name.encode()) as s:
        env = {
            "NOTIFY_SOCKET": "@" + name,
            "WATCHDOG_USEC": "1000000",
            "EDGE_AGENT_TEST_STALL": f"{where}@2",
        }
        with running(cfg, env) as proc:
            ready = s.wait_for("READY", 20)
            s.poll(1.5)
            assert len(s.times("WATCHDOG", ready)) >= 2  # it was pinging before the hang
            s.poll(5.0)
            assert proc.poll() is None  # alive but hung: exactly what systemd must catch
            last = max(s.times("WATCHDOG"))
            # Silence for the last 2.5 s: systemd (WatchdogSec=1s here) would have killed it.
            assert time.monotonic() - last > 2.5, s.messages[-6:]
            if where == "tick":
                status = [m["STATUS"] for _, m in s.messages if "STATUS" in m]
                assert any(x.startswith("UNHEALTHY: tick loop stuck") for x in status), status
