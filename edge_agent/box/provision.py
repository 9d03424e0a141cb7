"""Provision HM-10-class BLE beacon modules over their UART with the AT command set.

The commands and replies are those of JNHuaMao's "HM Bluetooth module datasheet" (V605,
2018-02; the iBeacon commands exist since firmware V517..V522). The module takes commands with
no terminator and answers with no line end either: ``AT`` -> ``OK``, ``AT+IBEA1`` ->
``OK+Set:1``, ``AT+MARJ0x0064`` -> ``OK+Set:0x0064``, ``AT+MARJ?`` -> ``OK+Get:0x0064``,
``AT+DELO2`` -> ``OK+DELO2``, ``AT+RESET`` -> ``OK+RESET``. It answers nothing to a command it
does not know (some clones say ``ERROR``). So a reply cannot be read as a line: we know each
reply's exact shape, read until that many bytes have arrived (failing fast as soon as a byte
cannot belong to it), then wait a short quiet time so trailing bytes (garbage, a second reply)
are caught instead of being taken for the next command's answer. Some firmwares end replies
with CR LF: tolerated.

The sequence: handshake, read the module's address, switch iBeacon on (AT+IBEA1), UUID (four
32-bit words, AT+IBE0..3), major (AT+MARJ), minor (AT+MINO), TX power (AT+POWE code),
advertising interval (AT+ADVI code), advertising only, non-connectable (AT+ADTY3), and
broadcast-only iBeacon deployment (AT+DELO2: the module resets itself 500 ms after its reply,
so we wait for it to come back), then AT+RESET so everything takes effect, handshake again and
read every setting back. A beacon is reported ``verified`` only when every read-back value
equals what was asked *after* the reset; anything else is ``failed`` with the stage and a
one-line reason, and the record lists exactly which fields were verified. AT+DELO has no query
command in the datasheet: its ``OK+DELO2`` is recorded (``set_only``), not read back. The
measured-power byte is left at the module's default: its command differs between firmware
versions (AT+MEAS in V605, AT+MEA in older ones).

Pure parts (``Hm10Target``, ``classify_reply``) are separate from the port I/O (``AtPort``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol

from edge_agent.box.layout import HM10_INTERVAL_MS, HM10_POWER_DBM, LayoutBeacon, StoreLayout

RECORD_NAME = "provisioning.jsonl"
POLL_S = 0.02


class ProvisionError(Exception):
    """One line naming the command and what went wrong."""


class PortLost(ProvisionError):
    """The serial device vanished (unplugged, USB reset): retrying on it is pointless."""


@dataclass(frozen=True)
class Setting:
    field: str  # "major", "uuid[0]", ...
    set_cmd: str  # "AT+MARJ0x0064"
    query_cmd: str | None  # "AT+MARJ?"; None: the datasheet has no query (AT+DELO)
    value: str  # what the module echoes after the reply prefix, e.g. "0x0064"
    set_prefix: str = "OK+Set:"  # AT+DELO answers "OK+DELO2"
    reboots: bool = False  # the module resets itself after this one (AT+DELO)

    @property
    def set_reply(self) -> str:
        return self.set_prefix + self.value

    @property
    def query_reply(self) -> str | None:
        return None if self.query_cmd is None else "OK+Get:" + self.value


# Datasheet ranges: AT+MARJ/AT+MINO take 0x0001..0xFFFE, AT+IBE0..3 00000001..FFFFFFFE.
HM10_ID_MIN, HM10_ID_MAX = 0x0001, 0xFFFE
HM10_UUID_WORD_MIN, HM10_UUID_WORD_MAX = 0x00000001, 0xFFFFFFFE


@dataclass(frozen=True)
class Hm10Target:
    """What one HM-10 beacon must hold, in the module's own terms."""

    name: str
    uuid: str  # 32 uppercase hex digits
    major: int
    minor: int
    power_code: int  # AT+POWE: 0 = -23 dBm, 1 = -6, 2 = 0, 3 = +6
    interval_code: str  # AT+ADVI: "0" = 100 ms ... "F" = 7000 ms

    @classmethod
    def from_layout(cls, layout: StoreLayout, beacon: LayoutBeacon) -> Hm10Target:
        if beacon.hardware != "hm10":
            how = (
                "set it up with its maker's tool"
                if beacon.hardware == "eddystone"
                else "render its firmware with `edge-agent firmware render`"
            )
            raise ProvisionError(
                f"beacon {beacon.name!r} is hardware = {beacon.hardware!r}, not an HM-10 ({how})"
            )
        uuid, major, minor = layout.ibeacon_id(beacon)
        hex_uuid = uuid.replace("-", "").upper()
        for i in range(4):
            word = int(hex_uuid[8 * i : 8 * i + 8], 16)
            if not HM10_UUID_WORD_MIN <= word <= HM10_UUID_WORD_MAX:
                raise ProvisionError(
                    f"beacon {beacon.name!r}: uuid {uuid}: an HM-10 takes each 32-bit part "
                    f"(AT+IBE{i}) in 00000001..FFFFFFFE, part {i} is {word:08X}"
                )
        return cls(
            name=beacon.name,
            uuid=hex_uuid,
            major=major,
            minor=minor,
            power_code=HM10_POWER_DBM[beacon.tx_power_dbm],
            interval_code=HM10_INTERVAL_MS[beacon.interval_ms],
        )

    def settings(self) -> list[Setting]:
        """Every setting in the order it is sent; AT+DELO2 last (the module resets after it)."""
        out = [Setting("ibeacon", "AT+IBEA1", "AT+IBEA?", "1")]
        for i in range(4):
            word = self.uuid[8 * i : 8 * i + 8]
            out.append(Setting(f"uuid[{i}]", f"AT+IBE{i}{word}", f"AT+IBE{i}?", f"0x{word}"))
        out += [
            Setting("major", f"AT+MARJ0x{self.major:04X}", "AT+MARJ?", f"0x{self.major:04X}"),
            Setting("minor", f"AT+MINO0x{self.minor:04X}", "AT+MINO?", f"0x{self.minor:04X}"),
            Setting("tx_power", f"AT+POWE{self.power_code}", "AT+POWE?", str(self.power_code)),
            Setting(
                "interval", f"AT+ADVI{self.interval_code}", "AT+ADVI?", self.interval_code.upper()
            ),
            # 3: advertising only, no scan response, no connection.
            Setting("adv_type", "AT+ADTY3", "AT+ADTY?", "3"),
            # 2: broadcast-only iBeacon. No query command; answers OK+DELO2, resets in 500 ms.
            Setting("deploy", "AT+DELO2", None, "2", set_prefix="OK+DELO", reboots=True),
        ]
        return out

    def sequence(self) -> list[tuple[str, str]]:
        """Every command the provisioner sends on a module that answers first time, with the
        reply it expects (``--dry-run``; the tests hold the simulator to it)."""
        settings = self.settings()
        out = [("AT", "OK"), ("AT+ADDR?", "OK+ADDR:<12 hex digits>")]
        for s in settings:
            out.append((s.set_cmd, s.set_reply))
            if s.reboots:
                out.append(("AT", "OK (after the module's own reset)"))
        out += [("AT+RESET", "OK+RESET"), ("AT", "OK (after the reset)")]
        for s in settings:
            if s.query_cmd is not None and s.query_reply is not None:
                out.append((s.query_cmd, s.query_reply))
        return out


ReplyState = Literal["partial", "complete", "wrong"]
_CRLF = b"\r\n"


def classify_reply(buf: bytes, prefix: bytes, length: int) -> ReplyState:
    """Where ``buf`` stands against a reply of ``length`` bytes starting with ``prefix``.

    Leading CR/LF (a previous reply's line end) are skipped; after the reply only CR/LF may
    follow. Hex digits compare case-insensitively. Never raises, whatever the bytes.
    """
    body = buf.lstrip(_CRLF)
    head, p = body[: len(prefix)].upper(), prefix.upper()
    if not p.startswith(head):
        return "wrong"
    if len(body) < length:
        rest = body[len(prefix) :]
        return "partial" if all(32 < b < 127 for b in rest) else "wrong"
    reply, tail = body[:length], body[length:]
    if not all(32 < b < 127 for b in reply) or tail.strip(_CRLF):
        return "wrong"
    return "complete"


def _show(buf: bytes) -> str:
    text = buf.strip(_CRLF)
    if text and all(32 <= b < 127 for b in text):
        return repr(text.decode("ascii"))
    return f"garbage {text[:24]!r}{'...' if len(text) > 24 else ''}"


class SerialLike(Protocol):
    timeout: float | None

    def write(self, data: bytes) -> int | None: ...
    def read(self, size: int = 1) -> bytes: ...
    def reset_input_buffer(self) -> None: ...
    def close(self) -> None: ...


class AtPort:
    """Commands and replies on one serial port; every failure is a one-line ProvisionError."""

    def __init__(
        self,
        port: SerialLike,
        url: str,
        *,
        timeout: float = 1.0,
        settle: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port, self.url = port, url
        self.timeout, self.settle, self.clock = timeout, settle, clock
        # One short read timeout, set once (pyserial reconfigures the tty on every change);
        # the deadlines below bound the waits, overshooting by at most one poll.
        self.port.timeout = POLL_S
        self.log: list[tuple[str, str]] = []  # (command, reply) for the record

    def exchange(self, cmd: str, prefix: str, length: int, expected: str = "") -> str:
        """Send ``cmd``; return its reply of ``length`` bytes starting with ``prefix``.

        ``expected`` names the reply in error messages (default: the prefix)."""
        import serial

        try:
            # A late reply to an earlier command, or an unsolicited OK+WAKE, must not be taken
            # for this command's answer.
            self.port.reset_input_buffer()
            self.port.write(cmd.encode("ascii"))
            buf = self._read(cmd, prefix.encode("ascii"), length, expected or prefix)
        except (serial.SerialException, OSError) as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise PortLost(f"{self.url}: port lost during {cmd}: {detail}") from None
        reply = buf.strip(_CRLF).decode("ascii")
        self.log.append((cmd, reply))
        return reply

    def _read(self, cmd: str, prefix: bytes, length: int, expected: str) -> bytes:
        buf = b""
        deadline = self.clock() + self.timeout
        while True:
            state = classify_reply(buf, prefix, length)
            if state == "wrong":
                self._unexpected(cmd, buf, expected)
            if state == "complete":
                break
            remaining = deadline - self.clock()
            if remaining <= 0:
                if not buf:
                    raise ProvisionError(
                        f"{cmd}: no reply within {self.timeout:g} s (module powered, right baud "
                        "rate, not connected over BLE?)"
                    )
                raise ProvisionError(
                    f"{cmd}: incomplete reply {_show(buf)} after {self.timeout:g} s"
                )
            buf += self.port.read(max(1, length - len(buf.lstrip(_CRLF))))
        # Quiet time: trailing bytes mean the module said something else too.
        end = self.clock() + self.settle
        while self.clock() < end:
            extra = self.port.read(64)
            if extra:
                buf += extra
                if classify_reply(buf, prefix, length) == "wrong":
                    self._unexpected(cmd, buf, expected)
        return buf

    def _unexpected(self, cmd: str, buf: bytes, expected: str) -> NoReturn:
        """The reply went wrong at its first bad byte: take in the rest of what the module says
        (until the line is quiet, at most 64 bytes) so the message shows all of it."""
        end = self.clock() + self.settle
        while len(buf) < 64 and self.clock() < end:
            extra = self.port.read(64 - len(buf))
            if extra:
                buf += extra
                end = self.clock() + self.settle
        hint = " (module firmware refuses the command)" if buf.strip(_CRLF) == b"ERROR" else ""
        raise ProvisionError(f"{cmd}: unexpected reply {_show(buf)}{hint}, expected {expected!r}")


@dataclass
class ProvisionResult:
    beacon: str
    port: str
    status: Literal["verified", "failed"] = "failed"
    stage: str = "connect"
    error: str = ""
    address: str = ""
    wanted: dict[str, str] = field(default_factory=dict)
    read_back: dict[str, str] = field(default_factory=dict)
    verified: list[str] = field(default_factory=list)
    # Settings the datasheet gives no query for (AT+DELO): acknowledged, not read back.
    set_only: list[str] = field(default_factory=list)
    store_id: str = ""
    ts: str = ""
    duration_s: float = 0.0

    def record(self) -> dict[str, Any]:
        return asdict(self)


def handshake(at: AtPort, attempts: int = 3) -> None:
    """AT -> OK. Retried: a module just powered or reset may drop the first bytes."""
    last: ProvisionError | None = None
    for _ in range(attempts):
        try:
            if at.exchange("AT", "OK", 2) == "OK":
                return
        except PortLost:
            raise
        except ProvisionError as exc:
            last = exc
    assert last is not None
    raise last


def _await_boot(at: AtPort, after: str, boot_timeout: float) -> None:
    """Handshake until the module answers again after a reboot, for at most ``boot_timeout``."""
    deadline = at.clock() + boot_timeout
    while True:
        try:
            handshake(at, attempts=1)
            return
        except PortLost:
            raise
        except ProvisionError as exc:
            if at.clock() >= deadline:
                raise ProvisionError(f"module did not come back after {after}: {exc}") from None


def provision(
    at: AtPort,
    target: Hm10Target,
    *,
    reset_wait: float = 0.8,
    boot_timeout: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ProvisionResult:
    """Configure and verify one module; never raises ProvisionError (it is in the result)."""
    settings = target.settings()
    result = ProvisionResult(
        beacon=target.name, port=at.url, wanted={s.field: s.value for s in settings}
    )
    started = at.clock()
    try:
        result.stage = "handshake"
        handshake(at)
        result.stage = "address"
        # The address lets ops match this beacon's adverts (and its TLM) to its name.
        result.address = at.exchange("AT+ADDR?", "OK+ADDR:", 8 + 12, "OK+ADDR:<12 hex digits>")[
            8:
        ].upper()
        for s in settings:
            result.stage = f"set {s.field}"
            n = len(s.set_prefix)
            got = at.exchange(s.set_cmd, s.set_prefix, len(s.set_reply), s.set_reply)[n:]
            if got.upper() != s.value.upper():
                raise ProvisionError(f"{s.set_cmd}: module set {s.field} to {got}, not {s.value}")
            if s.query_cmd is None:
                result.set_only.append(s.field)
            if s.reboots:
                result.stage = f"reboot after {s.field}"
                sleep(reset_wait)
                _await_boot(at, s.set_cmd, boot_timeout)
        result.stage = "reset"
        at.exchange("AT+RESET", "OK+RESET", 8)
        sleep(reset_wait)
        result.stage = "reconnect"
        _await_boot(at, "AT+RESET", boot_timeout)
        for s in settings:
            if s.query_cmd is None or s.query_reply is None:
                continue
            result.stage = f"verify {s.field}"
            got = at.exchange(s.query_cmd, "OK+Get:", len(s.query_reply), s.query_reply)[7:]
            result.read_back[s.field] = got
            if got.upper() == s.value.upper():
                result.verified.append(s.field)
        result.stage = "verify"
        bad = [f for f in result.read_back if f not in result.verified]
        if bad:
            first = bad[0]
            raise ProvisionError(
                f"after reset the module holds {first} = {result.read_back[first]}, not "
                f"{result.wanted[first]} ({len(bad)} field(s) not kept: {', '.join(bad)})"
            )
        result.stage = "done"
        result.status = "verified"
    except ProvisionError as exc:
        result.error = str(exc)
    result.duration_s = round(at.clock() - started, 3)
    return result


def append_record(path: Path, result: ProvisionResult) -> None:
    """One JSON line per attempt, appended and fsynced: the installer's proof of what is on the
    wall. Failed attempts are recorded too, with what was verified (possibly nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not result.ts:
        result.ts = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    line = json.dumps(result.record(), sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def open_port(url: str, baudrate: int = 9600) -> Any:
    """The module's UART (HM-10 factory default: 9600 8N1). Raises ProvisionError."""
    import serial

    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=0.05)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise ProvisionError(f"cannot open {url}: {' '.join(str(exc).split())}") from None
