"""An HM-10 BLE module on a pseudo-terminal, built from the datasheet's AT command table.

Source: JNHuaMao, "HM Bluetooth module datasheet", Current Version V605 (2018-02), the
"AT Commands" chapter (the iBeacon commands are there since firmware V517..V522; the same
table is in V527 2014-04-12). The parts this module answers, with the replies a real module
gives (no line ending, uppercase commands, no CR/LF after a command):

    AT               -> OK
    AT+ADDR?         -> OK+ADDR:A4C138F00D42          (12 hex digits)
    AT+VERR?         -> HMSoft V605
    AT+IBEA?         -> OK+Get:0        AT+IBEA[0|1]            -> OK+Set:[0|1]
    AT+IBE0?         -> OK+Get:0x74278BDA
                                        AT+IBE[0-3]<8 hex>      -> OK+Set:0x<8 hex>
                                        (00000001..FFFFFFFE; the UUID in four 32-bit words)
    AT+MARJ?         -> OK+Get:0xFFE0   AT+MARJ0x<4 hex>        -> OK+Set:0x<4 hex>
    AT+MINO?         -> OK+Get:0xFFE1   AT+MINO0x<4 hex>        -> OK+Set:0x<4 hex>
                                        (both 0x0001..0xFFFE)
    AT+MEAS?         -> OK+Get:0xC5     AT+MEAS0x<2 hex>        -> OK+Set:0x<2 hex>
                                        (measured power; older firmware spells it AT+MEA??)
    AT+POWE?         -> OK+Get:2        AT+POWE[0-3]            -> OK+Set:[0-3]
                                        (0 = -23 dBm, 1 = -6, 2 = 0, 3 = +6)
    AT+ADVI?         -> OK+Get:0        AT+ADVI[0-F]            -> OK+Set:[0-F]
                                        (0 = 100 ms ... 5 = 546.25 ms ... F = 7000 ms)
    AT+ADTY?         -> OK+Get:0        AT+ADTY[0-3]            -> OK+Set:[0-3]
                                        (3 = advertising only: non-connectable)
    AT+NAME?         -> OK+NAME:HMSoft  AT+NAME<1..12 chars>    -> OK+Set:<name>
    AT+DELO[1|2]     -> OK+DELO[1|2]    (2 = broadcast-only iBeacon; no query exists; the
                                        module resets itself 500 ms after the reply)
    AT+RESET         -> OK+RESET        (reboots; settings persist)
    AT+RENEW         -> OK+RENEW        (factory defaults)

Corroborated against transcripts of real modules in public code (e.g. a V539 module's
``AT+IBE0? -> OK+Get:0x74278BDA``, ``AT+IBE074278BDA -> OK+Set:0x74278BDA``,
``AT+DELO2 -> OK+DELO2``, ``AT+ADTY3 -> OK+Set:3``).

Unknown commands: the datasheet defines no error reply, and a genuine HM-10 answers nothing to
a command it does not know (``AT+VER?``, or the ``AT+IBEACON1`` an earlier provisioner sent),
so by default this module stays **silent**, and the provisioner times out naming the command.
Some clone firmwares answer ``ERROR`` instead: ``unknown="error"`` models them. A value out of
the datasheet's range is an unknown command too (``AT+POWE7``, ``AT+MARJ0x0000``). A command
ends when the line goes quiet (there is no terminator): a trailing CR/LF makes it a different,
unknown command, as on the module.

The module's logic (``Hm10Module.handle``, pure, never raises whatever the bytes) is separate
from its pseudo-terminal (``Hm10Sim``): real pty bytes, read by the provisioner through
pyserial. Replies carry no line end unless ``crlf``. Settings persist across a reboot unless
named in ``forget_on_reset``. ``faults`` maps a command prefix (e.g. ``"AT+MARJ0x"``) to what
goes wrong on it: ``silent`` (no reply), ``garbage`` (binary noise), ``error`` (``ERROR``),
``trailing`` (the reply followed by ``OK+LOST``), ``wrong`` (echoes a different value and keeps
it), ``ignore`` (says OK but keeps nothing), ``disconnect`` (the device vanishes), ``dead``
(answers this one, then never again: a module that does not come back).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Literal

DATASHEET = 'JNHuaMao "HM Bluetooth module datasheet" V605 (2018-02)'
FIRMWARE = "HMSoft V605"

Unknown = Literal["silent", "error"]
Reboot = Literal["none", "now", "delayed"]


@dataclass
class Hm10State:
    """What the module keeps in flash; the defaults are the datasheet's factory settings."""

    ibea: str = "0"
    ibe: list[str] = field(default_factory=lambda: ["74278BDA", "B6444520", "8F0C720E", "AF059935"])
    marj: str = "FFE0"
    mino: str = "FFE1"
    meas: str = "C5"
    powe: str = "2"
    advi: str = "0"
    adty: str = "0"
    delo: str = "1"
    name: str = "HMSoft"

    def restore(self, keys: set[str] | None = None) -> None:
        fresh = Hm10State()
        for f in fields(self):
            if keys is None or f.name in keys:
                setattr(self, f.name, getattr(fresh, f.name))


@dataclass(frozen=True)
class Response:
    reply: str | None  # None: the module says nothing
    reboot: Reboot = "none"


_HEX = "[0-9A-Fa-f]"


def _in_range(hex_value: str, low: int, high: int) -> bool:
    return low <= int(hex_value, 16) <= high


@dataclass
class Hm10Module:
    """The command table as a pure function of (state, command bytes) -> reply."""

    addr: str = "A4C138F00D42"
    unknown: Unknown = "silent"
    state: Hm10State = field(default_factory=Hm10State)

    def handle(self, raw: bytes, *, keep: bool = True, wrong: bool = False) -> Response:
        """One command as the module framed it. ``keep=False``: reply OK but store nothing;
        ``wrong``: store and echo a different value (faults). Never raises."""
        try:
            cmd = raw.decode("ascii")
        except UnicodeDecodeError:
            return self._unknown()
        if not cmd.isprintable():  # CR, LF, NUL ...: not a command the module knows
            return self._unknown()
        for pattern, action in self._table():
            m = re.fullmatch(pattern, cmd)
            if m is not None:
                response = action(m, keep, wrong)
                if response is not None:
                    return response
        return self._unknown()

    def _unknown(self) -> Response:
        return Response("ERROR" if self.unknown == "error" else None)

    def _table(self) -> list[tuple[str, Callable[[re.Match[str], bool, bool], Response | None]]]:
        s = self.state

        def get(attr: str, shown: str = "") -> Callable[[re.Match[str], bool, bool], Response]:
            return lambda m, keep, wrong: Response(f"OK+Get:{shown}{getattr(s, attr)}")

        def put(
            attr: str,
            shown: str = "",
            check: Callable[[str], bool] = lambda v: True,
            index: int | None = None,
        ) -> Callable[[re.Match[str], bool, bool], Response | None]:
            def action(m: re.Match[str], keep: bool, wrong: bool) -> Response | None:
                value = m["v"].upper()
                if not check(value):
                    return None  # out of the datasheet's range: not a command it knows
                if wrong:
                    value = value[:-1] + ("1" if value[-1] != "1" else "2")
                if keep:
                    if index is None:
                        setattr(s, attr, value)
                    else:
                        s.ibe[index] = value
                return Response(f"OK+Set:{shown}{value}")

            return action

        def word(v: str) -> bool:
            return _in_range(v, 0x00000001, 0xFFFFFFFE)

        def short(v: str) -> bool:
            return _in_range(v, 0x0001, 0xFFFE)

        def reset(m: re.Match[str], keep: bool, wrong: bool) -> Response:
            return Response("OK+RESET", reboot="now")

        def renew(m: re.Match[str], keep: bool, wrong: bool) -> Response:
            if keep:
                s.restore()
            return Response("OK+RENEW")

        def delo(m: re.Match[str], keep: bool, wrong: bool) -> Response:
            value = m["v"]
            if wrong:
                value = "1" if value == "2" else "2"
            if keep:
                s.delo = value
            return Response(f"OK+DELO{value}", reboot="delayed")

        def name(m: re.Match[str], keep: bool, wrong: bool) -> Response:
            value = m["v"]
            if keep:
                s.name = value
            return Response(f"OK+Set:{value}")

        table: list[tuple[str, Callable[[re.Match[str], bool, bool], Response | None]]] = [
            (r"AT", lambda m, k, w: Response("OK")),
            (r"AT\+ADDR\?", lambda m, k, w: Response(f"OK+ADDR:{self.addr}")),
            (r"AT\+VER[RS]\?", lambda m, k, w: Response(FIRMWARE)),
            (r"AT\+RESET", reset),
            (r"AT\+RENEW", renew),
            (r"AT\+IBEA\?", get("ibea")),
            (r"AT\+IBEA(?P<v>[01])", put("ibea")),
            (r"AT\+MARJ\?", get("marj", "0x")),
            (rf"AT\+MARJ0x(?P<v>{_HEX}{{4}})", put("marj", "0x", short)),
            (r"AT\+MINO\?", get("mino", "0x")),
            (rf"AT\+MINO0x(?P<v>{_HEX}{{4}})", put("mino", "0x", short)),
            (r"AT\+MEAS\?", get("meas", "0x")),
            (rf"AT\+MEAS0x(?P<v>{_HEX}{{2}})", put("meas", "0x")),
            (r"AT\+POWE\?", get("powe")),
            (r"AT\+POWE(?P<v>[0-3])", put("powe")),
            (r"AT\+ADVI\?", get("advi")),
            (r"AT\+ADVI(?P<v>[0-9A-F])", put("advi")),
            (r"AT\+ADTY\?", get("adty")),
            (r"AT\+ADTY(?P<v>[0-3])", put("adty")),
            (r"AT\+NAME\?", lambda m, k, w: Response(f"OK+NAME:{s.name}")),
            (r"AT\+NAME(?P<v>[!-~]{1,12})", name),
            (r"AT\+DELO(?P<v>[12])", delo),
        ]
        for i in range(4):
            table.append((rf"AT\+IBE{i}\?", self._ibe_get(i)))
            table.append((rf"AT\+IBE{i}(?P<v>{_HEX}{{8}})", put("ibe", "0x", word, i)))
        return table

    def _ibe_get(self, i: int) -> Callable[[re.Match[str], bool, bool], Response]:
        return lambda m, keep, wrong: Response(f"OK+Get:0x{self.state.ibe[i]}")


@dataclass
class Hm10Sim:
    """The module behind a pseudo-terminal: ``path`` is the device the provisioner opens."""

    faults: dict[str, str] = field(default_factory=dict)
    crlf: bool = False
    chunked: bool = False  # replies dribble out a few bytes at a time
    forget_on_reset: set[str] = field(default_factory=set)
    unknown: Unknown = "silent"
    boot_s: float = 0.05
    delo_reset_s: float = 0.05  # the datasheet's 500 ms, shortened for tests
    addr: str = "A4C138F00D42"
    commands: list[str] = field(default_factory=list)
    replies: list[str | None] = field(default_factory=list)
    boots: int = 0  # reboots so far (AT+RESET, AT+DELO)

    def __post_init__(self) -> None:
        self.module = Hm10Module(addr=self.addr, unknown=self.unknown)
        self._stop = threading.Event()
        self._dead = False
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def state(self) -> Hm10State:
        return self.module.state

    def __enter__(self) -> Hm10Sim:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):  # already gone after a "disconnect" fault
                os.close(fd)

    # -- the wire ----------------------------------------------------------------------------

    def _run(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.master], [], [], 0.02)
            except (OSError, ValueError):
                return
            if ready:
                try:
                    buf += os.read(self.master, 256)
                except OSError:
                    return
                continue
            if buf:  # the line went quiet: that was one command
                raw, buf = buf, b""
                self.commands.append(raw.decode("ascii", "replace"))
                if not self._dead and not self._handle(raw):
                    return

    def _send(self, text: str | bytes) -> None:
        data = text.encode("ascii") if isinstance(text, str) else text
        if self.crlf:
            data += b"\r\n"
        if not self.chunked:
            os.write(self.master, data)
            return
        for i in range(0, len(data), 3):
            os.write(self.master, data[i : i + 3])
            time.sleep(0.005)

    def _reboot(self, delay: float) -> None:
        """Off for ``delay`` + ``boot_s``: what arrives meanwhile is lost, as on the module."""
        time.sleep(delay + self.boot_s)
        self.state.restore(self.forget_on_reset)
        self.boots += 1
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0)
                if not ready or not os.read(self.master, 256):
                    return
            except OSError:
                return

    def _fault(self, cmd: str) -> str | None:
        for prefix, fault in self.faults.items():
            if cmd.startswith(prefix):
                return fault
        return None

    def _handle(self, raw: bytes) -> bool:
        fault = self._fault(raw.decode("ascii", "replace"))
        if fault == "silent":
            self.replies.append(None)
            return True
        if fault == "garbage":
            self._send(b"\xfe\x00OK\x9c+S\xff")
            self.replies.append("<garbage>")
            return True
        if fault == "error":
            self._send("ERROR")
            self.replies.append("ERROR")
            return True
        if fault == "disconnect":
            os.close(self.master)
            os.close(self.slave)
            self.master = self.slave = -1
            return False
        response = self.module.handle(raw, keep=fault != "ignore", wrong=fault == "wrong")
        reply = response.reply
        if reply is not None and fault == "trailing":
            reply += "OK+LOST"
        self.replies.append(reply)
        if reply is not None:
            self._send(reply)
        if response.reboot != "none":
            self._reboot(self.delo_reset_s if response.reboot == "delayed" else 0.0)
        if fault == "dead":
            self._dead = True
        return True
