"""Node logins the in-store broker refused, counted from its own log.

mosquitto (2.0) has no counter of refused CONNECTs, in ``$SYS`` or anywhere else; what it has is
a log line at "notice" level for each: ``Client <unknown> disconnected, not authorised.`` (a wrong
password, an unknown user, no credentials on the nodes' listener, a will topic the ACL denies).
The box's mosquitto.conf sends its log to ``$SYS/broker/log/<level>`` as well (``log_dest
topic``), and the agent, on the loopback listener, routes ``$SYS/broker/log/N`` here. The count
goes into the agent's health as ``bus_nodes_refused`` (heartbeat, ``edge-ops status``), with
the address the last refused connection came from: a node flashed with stale secrets, or
something on the store LAN trying passwords.

The refusal line does not name the peer; the ``New connection from <address>:<port> on port
<port>.`` line just before it does. So the address is the last one seen connecting: exact when
connections do not overlap (a node reconnects every few seconds at most), a neighbour's
otherwise. The count is exact.

Lines in, counts out, no I/O. ``on_log`` runs in paho's thread, ``health`` in the agent's
loop; the lock keeps the count and its address together.
"""

from __future__ import annotations

import re
import threading

# Where `log_dest topic` puts notice-level lines (N), which connection messages are.
LOG_TOPIC = "$SYS/broker/log/N"

_NEW = re.compile(r"New connection from (\S+?)(?::\d+)? on port (\d+)\.")
_REFUSED = re.compile(r"Client \S+ disconnected, not authori[sz]ed\.")


class BusAuthWatch:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_peer: str | None = None
        self.refused = 0
        self.last_refused_from: str | None = None

    def on_log(self, topic: str, payload: bytes) -> None:
        """One ``$SYS/broker/log/N`` message: ``<unix time>: <text>``."""
        line = payload.decode("utf-8", errors="replace")
        with self._lock:
            if m := _NEW.search(line):
                self._last_peer = m[1]
            elif _REFUSED.search(line):
                self.refused += 1
                self.last_refused_from = self._last_peer

    def health(self) -> dict[str, str]:
        """For the heartbeat's ``sensors`` (strings, like every other entry there)."""
        with self._lock:
            out = {"bus_nodes_refused": str(self.refused)}
            if self.last_refused_from is not None:
                out["bus_nodes_refused_last_from"] = self.last_refused_from
            return out
