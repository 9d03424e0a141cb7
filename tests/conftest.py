"""Shared fixtures: a real mosquitto, an Xvfb display, temp SQLite paths.

Every process started here is stopped here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.broker import Mosquitto


@pytest.fixture(scope="session")
def broker() -> Iterator[Mosquitto]:
    """One mosquitto for the whole session, on a free loopback port. Do not kill it."""
    with Mosquitto() as m:
        yield m


@pytest.fixture
def fresh_broker() -> Iterator[Mosquitto]:
    """A mosquitto of this test's own, for tests that kill and restart it."""
    m = Mosquitto().start()
    try:
        yield m
    finally:
        m.cleanup()


@pytest.fixture(scope="session")
def xvfb_display() -> Iterator[str]:
    """A private Xvfb display for real Kivy windows; yields its DISPLAY value."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.fail("Xvfb not installed; run: apt-get install -y xvfb")
    rfd, wfd = os.pipe()
    # -displayfd lets Xvfb pick a free display number and tell us when it is ready.
    proc = subprocess.Popen(
        [exe, "-displayfd", str(wfd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(wfd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(wfd)
    try:
        deadline = time.monotonic() + 10
        buf = b""
        while time.monotonic() < deadline and not buf.endswith(b"\n"):
            chunk = os.read(rfd, 16)
            if not chunk:
                break
            buf += chunk
        os.close(rfd)
        if not buf.strip():
            pytest.fail("Xvfb did not report a display")
        yield f":{buf.strip().decode()}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def kivy_env(tmp_path: Path, xvfb_display: str) -> dict[str, str]:
    """Environment for a Kivy subprocess: a real window on the private Xvfb display."""
    env = dict(os.environ)
    env.update(
        DISPLAY=xvfb_display,
        KIVY_NO_ARGS="1",
        KIVY_HOME=str(tmp_path / "kivy-home"),
        KIVY_NO_FILELOG="1",
        KIVY_NO_CONSOLELOG="1",
    )
    return env


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "test.db"
