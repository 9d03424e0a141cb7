"""The relay of the box's WARN-and-above log records to central, as ``device.log.v1`` events.

Why events (journal -> outbox -> uplink -> CDP) and not a live topic: the project's rule is that
everything the box reports goes through the outbox, and a warning matters most exactly when the
link is down (a box that lost central for an hour should still tell ops why, afterwards). The
CDP stores them, so ``edge-ops logs`` can ask for a device's last day as well as follow live.
They are low-priority events: the outbox's cap drops them before any journey event.

Bounded three ways, so a box in a warning loop cannot flood its outbox or the CDP:

- Coalesced: identical records (level, logger, redacted message) waiting for the same drain
  are one record with a ``count``.
- A ring buffer of ``capacity`` distinct records waits between drains; when it is full the
  oldest goes and is counted as suppressed.
- A token bucket: at most ``burst`` records at once, refilled at ``per_minute``. What does not
  fit is counted, and one summary record ("N more suppressed") says so at the next drain that
  has a token (and at the last drain, on the way out).

Redacted: the relay runs ``RedactFilter`` itself, whatever the order of the root's handlers, so
an address, token or key in a message is masked before it is kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from contracts.events import DeviceLog
from edge_agent.box.logs import RedactFilter, redact

MAX_MESSAGE = 1024  # a record's message beyond this is cut (DeviceLog takes 2048)
MAX_LOGGER = 128
_LEVELS = {logging.WARNING: "warning", logging.ERROR: "error", logging.CRITICAL: "critical"}
SUMMARY_LOGGER = "edge_agent.log_relay"


@dataclass
class _Pending:
    level: str
    logger: str
    message: str
    first: float
    last: float
    count: int = 1


@dataclass
class RelayCounts:
    relayed: int = 0  # records handed to the journal (a coalesced record counts once)
    suppressed: int = 0  # records held back by the bound (rate limit or a full buffer)


def _level_name(levelno: int) -> str:
    if levelno >= logging.CRITICAL:
        return "critical"
    return _LEVELS.get(levelno, "error" if levelno >= logging.ERROR else "warning")


class LogRelay(logging.Handler):
    """A ``logging.Handler`` that keeps WARN+ records, bounded, for ``drain`` to turn into
    ``(time, DeviceLog)`` pairs. ``emit`` never does I/O or logs, so it is safe from any thread
    and cannot recurse through the journal or the uplink."""

    def __init__(
        self,
        *,
        capacity: int = 200,
        burst: int = 50,
        per_minute: float = 30.0,
        summary_s: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(level=logging.WARNING)
        self.set_name("edge-agent-relay")
        self.addFilter(RedactFilter())
        self.capacity = capacity
        self.burst = burst
        self.per_s = per_minute / 60.0
        self.summary_s = summary_s
        self._mono = monotonic
        self._tokens = float(burst)
        self._refilled_at = monotonic()
        self._pending: OrderedDict[tuple[str, str, str], _Pending] = OrderedDict()
        self._suppressed = 0  # since the last summary
        self._suppressed_since: float | None = None
        self._suppressed_mono: float | None = None  # when the summary started waiting
        self.counts = RelayCounts()
        self._guard = threading.Lock()  # the handler's own lock is held in emit; this in drain

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # The filter has run (RedactFilter replaced msg when it masked anything); redact
            # again anyway: a record another handler's filter changed after ours stays clean.
            msg = redact(record.getMessage())
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                # Type and first line only, like the JSON formatter: no traceback frames.
                first = (redact(str(exc)).splitlines() or [""])[0]
                msg = f"{msg} [{type(exc).__name__}: {first}]"
            msg = msg[:MAX_MESSAGE]
            level = _level_name(record.levelno)
            logger = record.name[:MAX_LOGGER]
            key = (level, logger, msg)
            with self._guard:
                p = self._pending.get(key)
                if p is not None:
                    p.count += 1
                    p.last = record.created
                    return
                if len(self._pending) >= self.capacity:
                    # Ring buffer: the oldest waiting record goes, and is counted.
                    _, old = self._pending.popitem(last=False)
                    self._suppress(old.count, old.first)
                self._pending[key] = _Pending(level, logger, msg, record.created, record.created)
        except Exception:  # a log record must never break the code that logged it
            self.handleError(record)

    def _suppress(self, n: int, at: float) -> None:
        self._suppressed += n
        self.counts.suppressed += n
        if self._suppressed_since is None:
            self._suppressed_since, self._suppressed_mono = at, self._mono()

    def _refill(self) -> None:
        now = self._mono()
        self._tokens = min(float(self.burst), self._tokens + (now - self._refilled_at) * self.per_s)
        self._refilled_at = now

    def drain(self, final: bool = False) -> list[tuple[datetime, DeviceLog]]:
        """The records to relay now, oldest first, each with its first occurrence's time;
        what the rate limit does not allow is counted into the next summary. ``final``: the
        last drain (shutdown) always says what it suppressed."""
        out: list[tuple[datetime, DeviceLog]] = []
        with self._guard:
            self._refill()
            waiting, self._pending = self._pending, OrderedDict()
            # Records first, the summary with a token left over; but under a steady flood
            # every new token goes to a record and the summary would never come: once it has
            # waited ``summary_s`` it takes the first token.
            starved = (
                self._suppressed_mono is not None
                and self._mono() - self._suppressed_mono >= self.summary_s
            )
            if starved and self._tokens >= 1.0:
                self._tokens -= 1.0
                out.append(self._summary())
            for p in waiting.values():
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    out.append(
                        (
                            datetime.fromtimestamp(p.first, UTC),
                            DeviceLog(
                                level=p.level,  # type: ignore[arg-type]
                                logger=p.logger,
                                message=p.message,
                                count=p.count,
                                last=datetime.fromtimestamp(p.last, UTC) if p.count > 1 else None,
                            ),
                        )
                    )
                else:
                    self._suppress(p.count, p.first)
            # The summary waits for a token so a flood yields one summary per refill, not one
            # per drain; the last drain says it regardless (nothing would say it later).
            if self._suppressed and (final or self._tokens >= 1.0):
                if not final:
                    self._tokens -= 1.0
                out.append(self._summary())
            self.counts.relayed += len(out)
        return out

    def _summary(self) -> tuple[datetime, DeviceLog]:
        since = self._suppressed_since or time.time()
        n = self._suppressed
        self._suppressed, self._suppressed_since, self._suppressed_mono = 0, None, None
        return (
            datetime.fromtimestamp(since, UTC),
            DeviceLog(
                level="warning",
                logger=SUMMARY_LOGGER,
                message=f"{n} more suppressed (the relay's bound: "
                f"{self.burst} at once, {self.per_s * 60:g}/min)",
                suppressed=n,
                last=datetime.now(UTC),
            ),
        )


def install(relay: LogRelay) -> LogRelay:
    """On the root logger, replacing an earlier relay (idempotent, like setup_logging)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == relay.get_name():
            root.removeHandler(h)
    root.addHandler(relay)
    return relay


def uninstall(relay: LogRelay) -> None:
    logging.getLogger().removeHandler(relay)
