"""Lines from a serial device, in a thread, surviving garbage, overlong lines and unplugging.

One reader serves every line-oriented UART peer of the box (ESP32 scanner nodes, POS tills):
it splits on LF, drops a line longer than ``max_line`` whole (not just its head, so its tail is
not mistaken for a line), reopens a vanished port with capped exponential backoff, and hands
each complete line to ``on_line``. ``url`` is anything pyserial's ``serial_for_url`` takes:
``/dev/ttyUSB0``, ``loop://``, or a pseudo-terminal in tests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class LineStats:
    lines: int = 0
    overlong: int = 0
    reopens: int = 0
    connected: bool = False
    last_error: str = ""


class SerialLineReader:
    def __init__(
        self,
        url: str,
        on_line: Callable[[bytes], object],
        *,
        baudrate: int = 115200,
        max_line: int = 4096,
        name: str = "serial",
    ) -> None:
        self.url = url
        self.on_line = on_line
        self.baudrate = baudrate
        self.max_line = max_line
        self.name = name
        self.stats = LineStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SerialLineReader:
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        import serial

        backoff = 0.5
        while not self._stop.is_set():
            try:
                port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.2)
            except (serial.SerialException, OSError, ValueError) as exc:
                self.stats.last_error = f"cannot open {self.url}: {exc}"
                log.warning("%s: %s; retrying in %.1fs", self.name, self.stats.last_error, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.5
            self.stats.connected = True
            try:
                self._pump(port)
            except (serial.SerialException, OSError) as exc:
                self.stats.reopens += 1
                self.stats.last_error = f"{self.url} lost: {exc}"
                log.warning("%s: %s; reopening", self.name, self.stats.last_error)
                self._stop.wait(0.2)
            finally:
                self.stats.connected = False
                port.close()

    def _pump(self, port) -> None:
        buf = b""
        discarding = False
        while not self._stop.is_set():
            chunk = port.read(512)
            if not chunk:
                continue
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                if discarding:
                    # The tail of an overlong line: the line is already counted and dropped.
                    discarding = False
                elif len(raw) > self.max_line:
                    self.stats.overlong += 1
                else:
                    self._deliver(raw)
            if len(buf) > self.max_line:
                self.stats.overlong += 1
                buf, discarding = b"", True

    def _deliver(self, raw: bytes) -> None:
        raw = raw.strip(b"\r\x00 \t")
        if not raw:
            return
        self.stats.lines += 1
        try:
            self.on_line(raw)
        except Exception:  # a consumer bug must not kill the reader of a whole device
            log.exception("%s: line handler failed", self.name)
