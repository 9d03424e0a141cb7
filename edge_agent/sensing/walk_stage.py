"""The walk survey (issue 18): records a store trace with ground truth.

The kiosk starts a walk for a staff tag (a store beacon of ``[ble] beacons``), taps zones as the
walker steps into them, and stops it (``contracts/walk.py`` on ``instore/<store>/walk/cmd``).
Meanwhile every reading of that tag, by any receiver, and every tap go to
``<state_dir>/walks/walk-<time>.jsonl`` (format: ``edge_agent/sensing/ble/walk.py``), line by
line and flushed, so a box killed mid-walk keeps all but the last line. The stage says on
``instore/<store>/walk/state`` (retained) what it records, so the kiosk shows the count grow.

Only the tag's configured name is written: no address, no token, nothing of anyone else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from contracts import topics
from contracts.walk import WalkCommand, WalkState
from edge_agent.app.bus import Publisher
from edge_agent.sensing.ble.calibrate import Calibration
from edge_agent.sensing.ble.walk import (
    WalkReceiver,
    advert_line,
    end_line,
    header_line,
    tap_line,
)

log = logging.getLogger(__name__)

STATE_EVERY_S = 1.0  # the kiosk's counter: often enough to see it move, not per advert


class WalkStage:
    def __init__(
        self,
        *,
        store: str,
        walks_dir: Path,
        tags: set[str],
        zones: set[str],
        receivers: dict[str, tuple[str, Calibration]],
        bus: Publisher,
        now: Callable[[], float],
    ) -> None:
        self.store = store
        self.walks_dir = walks_dir
        self.tags = tags
        self.zones = zones
        self.receivers = receivers
        self.bus = bus
        self._now = now
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._t0 = 0.0
        self._last_state = 0.0
        self.state = WalkState(recording=False)

    # ---- the kiosk's commands (bus thread) -------------------------------------------------
    def on_command(self, topic: str, payload: bytes) -> None:
        try:
            cmd = WalkCommand.model_validate_json(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            self._refuse(f"walk: command refused: {first['loc']}: {first['msg']}"[:200])
            return
        with self._lock:
            if cmd.action == "start":
                self._start(cmd.tag)
            elif self._file is None:
                self._refuse_locked(f"walk: {cmd.action} while no walk is recorded")
            elif cmd.action == "tap":
                self._tap(cmd.zone)
            else:
                self._stop()
        self._publish()

    def _start(self, tag: str | None) -> None:
        if tag not in self.tags:
            known = ", ".join(sorted(self.tags)) or "none configured"
            self._refuse_locked(f"walk: tag {tag!r} is not a store beacon ({known})")
            return
        if self._file is not None:
            self._stop()  # a new walk ends the one before: never two files half written
        now = self._now()
        name = datetime.fromtimestamp(now, UTC).strftime("walk-%Y%m%d-%H%M%S.jsonl")
        receivers = {
            rid: WalkReceiver(zone, cal.rssi_1m, cal.path_loss_n)
            for rid, (zone, cal) in self.receivers.items()
        }
        try:
            self.walks_dir.mkdir(parents=True, exist_ok=True)
            fh = (self.walks_dir / name).open("x", encoding="utf-8")
        except OSError as exc:
            self._refuse_locked(f"walk: cannot write {name}: {exc.strerror}")
            return
        started = datetime.fromtimestamp(now, UTC).isoformat()
        self._file, self._t0 = fh, now
        self._write(header_line(self.store, tag, started, receivers, tuple(self.zones)))
        self.state = WalkState(recording=True, tag=tag, file=name)
        log.info("walk: recording tag %s to %s", tag, name)

    def _tap(self, zone: str | None) -> None:
        if zone is not None and zone not in self.zones:
            self._refuse_locked(f"walk: no receiver covers zone {zone!r}")
            return
        t = self._now() - self._t0
        self._write(tap_line(t, zone))
        self.state = self.state.model_copy(
            update={
                "zone": zone,
                "taps": self.state.taps + 1,
                "seconds": round(t, 1),
                "error": None,
            }
        )

    def _stop(self) -> None:
        assert self._file is not None
        t = self._now() - self._t0
        self._write(end_line(t))
        self._file.close()
        self._file = None
        self.state = self.state.model_copy(update={"recording": False, "seconds": round(t, 1)})
        log.info(
            "walk: %s done: %d readings, %d taps, %.0f s",
            self.state.file,
            self.state.adverts,
            self.state.taps,
            t,
        )

    # ---- what the receivers hear (the agent's loop) ----------------------------------------
    def on_tag(self, name: str, receiver: str, rssi: int, ts: float) -> None:
        if self._file is None or name != self.state.tag:
            return  # the common case, without the lock
        with self._lock:
            if self._file is None or receiver not in self.receivers:
                return
            t = max(0.0, ts - self._t0)
            self._write(advert_line(t, receiver, rssi))
            self.state = self.state.model_copy(
                update={"adverts": self.state.adverts + 1, "seconds": round(t, 1)}
            )
        mono = time.monotonic()
        if mono - self._last_state >= STATE_EVERY_S:
            self._last_state = mono
            self._publish()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._stop()

    # ---- helpers ---------------------------------------------------------------------------
    def _write(self, line: str) -> None:
        assert self._file is not None
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as exc:  # a full disk ends the walk; the agent goes on
            log.error("walk: %s stopped: %s", self.state.file, exc.strerror)
            self._file.close()
            self._file = None
            self.state = self.state.model_copy(update={"recording": False, "error": str(exc)})

    def _refuse(self, why: str) -> None:
        with self._lock:
            self._refuse_locked(why)
        self._publish()

    def _refuse_locked(self, why: str) -> None:
        log.warning("%s", why)
        self.state = self.state.model_copy(update={"error": why})

    def _publish(self) -> None:
        self.bus.publish(
            topics.walk_state(self.store), self.state.model_dump_json(), qos=1, retain=True
        )
