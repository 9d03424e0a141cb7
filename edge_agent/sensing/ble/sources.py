"""Where adverts come from: bleak (live radio), ESP32 scanner nodes on a UART, recorded traces.

All three produce ``Advert`` objects and call the same callback, so replayed and serial bytes go
through exactly the code path live adverts take.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_agent.clock import Clock, TraceClock
from edge_agent.sensing.ble.advert import Advert, AdvertError

log = logging.getLogger(__name__)

AdvertCallback = Callable[[Advert], None]


class SourceError(RuntimeError):
    """The source cannot run (no radio, no port); the message is one line for the operator."""


@dataclass
class SourceStats:
    adverts: int = 0
    bad_lines: int = 0
    restarts: int = 0
    last_error: str = ""
    mode: str = ""  # bleak: "passive" or "active" once scanning


def _open_trace(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:  # type: ignore[operator]
        yield from fh


def first_timestamp(path: Path) -> float:
    for line in _open_trace(path):
        try:
            return Advert.from_json(line).timestamp
        except AdvertError:
            continue
    raise SourceError(f"{path}: no readable advert in trace")


@dataclass
class ReplaySource:
    """Replays a JSON-lines trace (optionally gzipped).

    Paced by ``clock`` (a ``ScaledClock`` for real or accelerated time); a ``TraceClock`` or
    None replays flat out, the ``TraceClock`` then following the trace's own timestamps.
    """

    path: Path
    clock: Clock | None = None
    stats: SourceStats = field(default_factory=SourceStats)

    async def run(self, callback: AdvertCallback) -> None:
        n = 0
        for line in _open_trace(self.path):
            if not line.strip():
                continue
            try:
                advert = Advert.from_json(line)
            except AdvertError as exc:
                self.stats.bad_lines += 1
                self.stats.last_error = str(exc)
                continue
            if isinstance(self.clock, TraceClock):
                self.clock.advance(advert.timestamp)
                if n % 256 == 0:
                    await asyncio.sleep(0)
            elif self.clock is not None:
                while (lag := advert.timestamp - self.clock.now()) > 0:
                    speed = getattr(self.clock, "speed", 1.0) or 1.0
                    await asyncio.sleep(min(lag / speed, 0.25))
            elif n % 256 == 0:
                await asyncio.sleep(0)
            n += 1
            self.stats.adverts += 1
            callback(advert)


@dataclass
class SerialSource:
    """ESP32 scanner nodes on a UART: one advert per line, the same JSON as a trace line.

    Garbage and partial lines are counted and skipped; a vanished port is reopened with backoff.
    ``url`` is anything pyserial's ``serial_for_url`` takes: ``/dev/ttyUSB0``, ``loop://``, a pty.
    """

    url: str
    baudrate: int = 115200
    clock: Clock | None = None
    stats: SourceStats = field(default_factory=SourceStats)
    max_line: int = 4096

    async def run(self, callback: AdvertCallback) -> None:
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def deliver(advert: Advert) -> None:
            loop.call_soon_threadsafe(callback, advert)

        thread = threading.Thread(target=self._reader, args=(deliver, stop), daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                await asyncio.sleep(0.2)
        finally:
            stop.set()

    def _reader(self, deliver: AdvertCallback, stop: threading.Event) -> None:
        import serial

        backoff = 0.5
        while not stop.is_set():
            try:
                port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.2)
            except (serial.SerialException, OSError) as exc:
                self.stats.last_error = f"cannot open {self.url}: {exc}"
                log.warning("serial: %s; retrying in %.1fs", self.stats.last_error, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 30)
                continue
            backoff = 0.5
            buf = b""
            try:
                while not stop.is_set():
                    chunk = port.read(512)
                    if not chunk:
                        continue
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    if len(buf) > self.max_line:
                        self.stats.bad_lines += 1
                        buf = b""
                    for raw in lines:
                        self._line(raw, deliver)
            except (serial.SerialException, OSError) as exc:
                self.stats.restarts += 1
                self.stats.last_error = f"{self.url} lost: {exc}"
                log.warning("serial: %s; reopening", self.stats.last_error)
            finally:
                port.close()

    def _line(self, raw: bytes, deliver: AdvertCallback) -> None:
        raw = raw.strip()
        if not raw:
            return
        try:
            advert = advert_from_line(raw, self.clock.now() if self.clock else time.time())
        except AdvertError as exc:
            self.stats.bad_lines += 1
            self.stats.last_error = str(exc)
            return
        self.stats.adverts += 1
        deliver(advert)


def advert_from_line(raw: bytes, now: float, receiver: str | None = None) -> Advert:
    """One scanner node's advert (a UART line or an MQTT message: the same JSON), stamped
    ``now`` when the node sent no time (an ESP32 has no wall clock); ``receiver``, when given,
    overrides what the line claims. AdvertError says what is wrong with it."""
    advert = Advert.from_json(raw)
    changes: dict[str, Any] = {} if advert.timestamp else {"timestamp": now}
    if receiver is not None:
        changes["receiver"] = receiver
    return replace(advert, **changes) if changes else advert


def beacon_or_patterns() -> list:
    """BlueZ advertisement-monitor patterns for what a store box needs: Eddystone (service
    data under 0xFEAA: shopper tokens, TLM, UID, URL), iBeacon and AltBeacon. Passive scanning
    on BlueZ only reports adverts matching one of them, which also spares the CPU phones'
    chatter."""
    from bleak.args.bluez import OrPattern
    from bleak.assigned_numbers import AdvertisementDataType as T

    return [
        OrPattern(0, T.SERVICE_DATA_UUID16, b"\xaa\xfe"),
        OrPattern(0, T.MANUFACTURER_SPECIFIC_DATA, b"\x4c\x00\x02\x15"),
        OrPattern(2, T.MANUFACTURER_SPECIFIC_DATA, b"\xbe\xac"),
    ]


@dataclass
class BleakSource:
    """Live scanning with bleak: passive with ``or_patterns`` where BlueZ allows it (active
    otherwise, said once in the log and in ``stats.mode``), on a selectable adapter, with a
    watchdog that restarts the scanner when adverts stop for ``stall_s`` (BlueZ stalls happen)
    and counts it in ``stats.restarts``.

    ``scanner_factory`` builds the scanner (``bleak.BleakScanner`` by default); tests pass a
    fake with the same ``start()``/``stop()`` and keyword arguments.
    """

    adapter: str | None = None
    passive: bool = True
    stall_s: float = 30.0
    poll_s: float = 1.0
    scanner_factory: Callable[..., Any] | None = None
    stats: SourceStats = field(default_factory=SourceStats)

    def _kwargs(self, on_detect: Callable, passive: bool) -> dict[str, Any]:
        bluez: dict[str, Any] = {}
        if self.adapter:
            bluez["adapter"] = self.adapter
        kwargs: dict[str, Any] = {"detection_callback": on_detect}
        if passive:
            kwargs["scanning_mode"] = "passive"
            bluez["or_patterns"] = beacon_or_patterns()
        if bluez:
            kwargs["bluez"] = bluez
        return kwargs

    async def run(self, callback: AdvertCallback) -> None:
        from bleak.exc import BleakError

        factory = self.scanner_factory
        if factory is None:
            from bleak import BleakScanner

            factory = BleakScanner
        last = time.monotonic()

        def on_detect(device: Any, adv: Any) -> None:  # bleak's callback signature
            nonlocal last
            last = time.monotonic()
            self.stats.adverts += 1
            callback(
                Advert(
                    address=device.address,
                    rssi=adv.rssi,
                    manufacturer_data=dict(adv.manufacturer_data),
                    service_data={k.lower(): v for k, v in adv.service_data.items()},
                    service_uuids=tuple(u.lower() for u in adv.service_uuids),
                    tx_power=adv.tx_power,
                    local_name=adv.local_name,
                    timestamp=time.time(),
                )
            )

        passive = self.passive
        while True:
            scanner = factory(**self._kwargs(on_detect, passive))
            try:
                await scanner.start()
            except (BleakError, FileNotFoundError, OSError) as exc:
                if passive and isinstance(exc, BleakError):
                    # Old BlueZ, or BlueZ without experimental advertisement monitors.
                    log.warning("ble: passive scanning unavailable (%s); scanning actively", exc)
                    passive = False
                    continue
                # No D-Bus raises FileNotFoundError, D-Bus without BlueZ raises BleakDBusError.
                raise SourceError(
                    f"BLE scanning unavailable: {type(exc).__name__}: {exc}"
                ) from None
            self.stats.mode = "passive" if passive else "active"
            last = time.monotonic()
            try:
                while time.monotonic() - last < self.stall_s:
                    await asyncio.sleep(self.poll_s)
                self.stats.restarts += 1
                self.stats.last_error = f"no adverts for {self.stall_s:g}s; restarting scan"
                log.warning("ble: %s", self.stats.last_error)
            finally:
                await scanner.stop()
