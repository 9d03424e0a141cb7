"""The systemd notify protocol, spoken directly: one datagram per message to $NOTIFY_SOCKET.

No libsystemd binding: the protocol is a newline-separated list of ``KEY=VALUE`` sent on an
AF_UNIX datagram socket (sd_notify(3)). A path starting with ``@`` names a socket in the
abstract namespace (a leading NUL byte). Outside systemd (no $NOTIFY_SOCKET) every call is a
cheap no-op, so the agent runs the same under a terminal, in tests and under the service manager.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger("edge_agent.box.sdnotify")


def _address(raw: str) -> str | bytes:
    if raw.startswith("@"):
        # Abstract namespace: the kernel wants the name after a NUL byte, not a filesystem path.
        return b"\0" + raw[1:].encode()
    return raw


def watchdog_usec(env: Mapping[str, str] | None = None) -> int | None:
    """The watchdog period systemd asked for (WatchdogSec=), or None when there is none.

    Like sd_watchdog_enabled(3): WATCHDOG_PID, when set, must be this process, so a child
    that inherits the environment does not ping for its parent.
    """
    env = os.environ if env is None else env
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("sdnotify: WATCHDOG_USEC=%r is not a number; no watchdog pings", raw)
        return None
    return usec if usec > 0 else None


@dataclass
class Notifier:
    """Sends notify messages; never raises (a lost status line must not stop the agent)."""

    address: str | None = None
    _sock: socket.socket | None = None
    _warned: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram: ``send(READY=1, STATUS="up")``."""
        if not self.address:
            return False
        lines = []
        for key, value in fields.items():
            # A newline inside a value would start a bogus assignment of its own.
            text = str(value).replace("\n", " ")
            lines.append(f"{key}={text}")
        data = "\n".join(lines).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(data, _address(self.address))
        except OSError as exc:
            if not self._warned:
                # Once: a manager that went away would otherwise flood the log every ping.
                self._warned = True
                log.warning("sdnotify: cannot notify %s: %s", self.address, exc.strerror or exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send(READY=1, STATUS=status) if status else self.send(READY=1)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(STOPPING=1, STATUS=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
