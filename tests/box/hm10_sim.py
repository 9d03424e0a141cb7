"""An HM-10 BLE module on a pseudo-terminal, following the datasheet's AT protocol.

Commands arrive without a terminator, so (like the module) a command ends when the line goes
quiet. Replies carry no newline unless ``crlf``. Settings persist across AT+RESET unless named
in ``forget_on_reset``. ``faults`` maps a command prefix (e.g. ``"AT+MARJ0x"``) to what goes
wrong on it: ``silent`` (no reply), ``garbage`` (binary noise), ``wrong`` (echoes a different
value and keeps it), ``ignore`` (says OK but keeps nothing), ``disconnect`` (the device
vanishes), ``dead`` (answers this one, then never again: a module that does not come back).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
import time
from dataclasses import dataclass, field

DEFAULTS = {
    "ibeacon": "0",
    "ibe": ["74278BDA", "B6444520", "8F0C720E", "AF059935"],
    "marj": "FFE0",
    "mino": "FFE1",
    "powe": "2",
    "advi": "0",
}


@dataclass
class Hm10Sim:
    faults: dict[str, str] = field(default_factory=dict)
    crlf: bool = False
    chunked: bool = False  # replies dribble out a few bytes at a time
    forget_on_reset: set[str] = field(default_factory=set)
    boot_s: float = 0.05
    addr: str = "A4C138F00D42"
    commands: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULTS.items()}
        self._stop = threading.Event()
        self._dead = False
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)
        self._thread = threading.Thread(target=self._run, daemon=True)

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

    # -- the module --------------------------------------------------------------------------

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
                cmd, buf = buf.decode("ascii", "replace"), b""
                self.commands.append(cmd)
                if not self._dead and not self._handle(cmd):
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

    def _fault(self, cmd: str) -> str | None:
        for prefix, fault in self.faults.items():
            if cmd.startswith(prefix):
                return fault
        return None

    def _handle(self, cmd: str) -> bool:
        fault = self._fault(cmd)
        if fault == "silent":
            return True
        if fault == "garbage":
            self._send(b"\xfe\x00OK\x9c+S\xff")
            return True
        if fault == "disconnect":
            os.close(self.master)
            os.close(self.slave)
            self.master = self.slave = -1
            return False
        reply = self._reply(cmd, keep=fault != "ignore", wrong=fault == "wrong")
        if reply is not None:
            self._send(reply)
        if fault == "dead":
            self._dead = True
        return True

    def _reply(self, cmd: str, *, keep: bool, wrong: bool) -> str | None:
        s = self.state

        def setv(key: str, value: str, shown: str, idx: int | None = None) -> str:
            if wrong:
                value = value[:-1] + ("1" if value[-1] != "1" else "2")
                shown = shown[:-1] + value[-1]
            if keep:
                if idx is None:
                    s[key] = value
                else:
                    s[key][idx] = value
            return f"OK+Set:{shown}"

        if cmd == "AT":
            return "OK"
        if cmd == "AT+ADDR?":
            return f"OK+ADDR:{self.addr}"
        if cmd == "AT+RESET":
            self._send("OK+RESET")
            time.sleep(self.boot_s)
            for key in self.forget_on_reset:
                v = DEFAULTS[key]
                s[key] = list(v) if isinstance(v, list) else v
            return None
        if cmd == "AT+IBEACON?":
            return f"OK+Get:{s['ibeacon']}"
        if m := re.fullmatch(r"AT\+IBEACON([01])", cmd):
            return setv("ibeacon", m[1], m[1])
        if m := re.fullmatch(r"AT\+IBE([0-3])\?", cmd):
            return f"OK+Get:0x{s['ibe'][int(m[1])]}"
        if m := re.fullmatch(r"AT\+IBE([0-3])([0-9A-Fa-f]{8})", cmd):
            word = m[2].upper()
            return setv("ibe", word, f"0x{word}", int(m[1]))
        for key, name in (("marj", "MARJ"), ("mino", "MINO")):
            if cmd == f"AT+{name}?":
                return f"OK+Get:0x{s[key]}"
            if m := re.fullmatch(rf"AT\+{name}0x([0-9A-Fa-f]{{4}})", cmd):
                return setv(key, m[1].upper(), f"0x{m[1].upper()}")
        for key, name, pat in (("powe", "POWE", "[0-3]"), ("advi", "ADVI", "[0-9A-F]")):
            if cmd == f"AT+{name}?":
                return f"OK+Get:{s[key]}"
            if m := re.fullmatch(rf"AT\+{name}({pat})", cmd):
                return setv(key, m[1], m[1])
        return None  # the module ignores what it does not know
