"""A private Xvfb display, for the demo on a headless box and for the UI tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from testbed.procs import terminate


class DisplayError(RuntimeError):
    pass


class Xvfb:
    """``start()`` returns the DISPLAY value (":N"); ``stop()`` ends the server."""

    def __init__(self, screen: str = "1280x800x24") -> None:
        self.screen = screen
        self.proc: subprocess.Popen[bytes] | None = None
        self.display: str | None = None

    def start(self, timeout: float = 10.0) -> str:
        exe = shutil.which("Xvfb")
        if exe is None:
            raise DisplayError("Xvfb not installed; run: apt-get install -y xvfb xauth")
        rfd, wfd = os.pipe()
        # -displayfd: Xvfb picks a free display number and writes it once it is ready.
        self.proc = subprocess.Popen(
            [exe, "-displayfd", str(wfd), "-screen", "0", self.screen, "-nolisten", "tcp"],
            pass_fds=(wfd,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(wfd)
        buf = b""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and not buf.endswith(b"\n"):
                chunk = os.read(rfd, 16)
                if not chunk:
                    break
                buf += chunk
        finally:
            os.close(rfd)
        if not buf.strip():
            self.stop()
            raise DisplayError("Xvfb did not report a display")
        self.display = f":{buf.strip().decode()}"
        return self.display

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def kivy_env(display: str, kivy_home: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a Kivy process on ``display``: no argv parsing, no log files, a private
    KIVY_HOME. KIVY_WINDOW and KIVY_GL_BACKEND stay unset (setting them breaks the window)."""
    env = dict(base if base is not None else os.environ)
    env.update(
        DISPLAY=display,
        KIVY_NO_ARGS="1",
        KIVY_HOME=str(kivy_home),
        KIVY_NO_FILELOG="1",
        KIVY_NO_CONSOLELOG="1",
    )
    return env
