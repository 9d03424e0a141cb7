"""Logging for `edge-agent run`: JSON lines for journald and log shippers, text on a terminal.

Under systemd, stderr goes to journald (JOURNAL_STREAM names it): each record becomes one JSON
object, prefixed with a syslog ``<N>`` priority so `journalctl -p warning` works. On a terminal
it is the usual readable line. ``EDGE_AGENT_LOG_FORMAT=json|text`` overrides the choice.

A redaction filter is the last line of defence for "no personal data in logs": the code never
logs an address, token or key on purpose, and anything shaped like one is masked anyway.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

FORMAT_ENV = "EDGE_AGENT_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Bluetooth/MAC addresses, and long hex strings (EIDs, tokens, key material).
_MAC = re.compile(r"\b[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}\b")
_HEX = re.compile(r"\b[0-9A-Fa-f]{16,}\b")
_SYSLOG = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def redact(text: str) -> str:
    return _HEX.sub("<hex>", _MAC.sub("<addr>", text))


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, journald: bool = False) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            # Type and message only: a traceback's locals never reach the log, but its frames
            # are multi-line; keep one object per line.
            body["exc"] = redact(self.formatException(record.exc_info))
        line = json.dumps(body, ensure_ascii=False)
        if self.journald:
            prio = _SYSLOG.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
            line = f"<{prio}>{line}"
        return line


def _under_journald(stream: TextIO, env: Mapping[str, str]) -> bool:
    """JOURNAL_STREAM is "DEV:INODE" of the journal socket; it must be our stderr's."""
    raw = env.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in raw.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def choose_format(stream: TextIO, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    forced = env.get(FORMAT_ENV, "").lower()
    if forced in ("json", "text"):
        return forced
    if _under_journald(stream, env):
        return "journald"
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def setup_logging(
    level: int = logging.INFO, stream: TextIO | None = None, env: Mapping[str, str] | None = None
) -> str:
    """Configure the root logger once (idempotent); returns the format chosen."""
    stream = stream or sys.stderr
    fmt = choose_format(stream, env)
    handler = logging.StreamHandler(stream)
    handler.set_name("edge-agent")
    if fmt == "text":
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    else:
        handler.setFormatter(JsonFormatter(journald=fmt == "journald"))
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == "edge-agent":
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    return fmt
