"""Release pushes (downlink kind ``release``, issue 20): fetch, check, install side by side,
switch, restart; then, in the new release, probation and the result for central.

Body (``contracts/release.py`` ``push_body``)::

    {"release": "0.2.0", "arch": "x86_64", "python": "3.11",
     "bundle": {"sha256": "...", "size": 123, "url": "https://..."}}   # or "data_b64": "..."

The downlink's ack says the push was read (or refused at once: another architecture or Python,
a malformed body, releases off on this box). The bundle is fetched with the content manifests'
code (``sync/assets.py``: by sha256, resumed, verified) off paho's thread, checked against its
signed manifest and unpacked by ``edge_agent/box/releases.py``; a refusal there changes nothing and
is acked as ``release.installed`` with ``accepted: false``. Otherwise ``current`` is switched and
the agent exits to be restarted on the new release, which acks ``release.installed`` once it has
passed probation; a release that fails it is rolled back and the old one acks the failure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.release import NAME, ReleaseError
from contracts.validation import first_error
from edge_agent.box.releases import ReleaseStore, Result, check_target
from sync.assets import AssetFetchError, AssetRef, AssetStore

log = logging.getLogger(__name__)


class ReleaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    release: str = Field(pattern=NAME)
    arch: str = Field(min_length=1, max_length=32)
    python: str = Field(pattern=r"^3\.\d{1,2}$")
    bundle: AssetRef


def parse_body(body: dict[str, Any]) -> ReleaseBody:
    try:
        return ReleaseBody.model_validate(body)
    except ValidationError as exc:
        raise ValueError(f"release {first_error(exc, 'body')}") from None


class ReleaseApplier:
    def __init__(
        self,
        store: ReleaseStore,
        *,
        probation_s: float,
        request_restart: Callable[[str], None],
        report: Callable[[Result], bool],
        downloads: AssetStore | None = None,
    ) -> None:
        self.store = store
        self.probation_s = probation_s
        self.request_restart = request_restart  # exits for the restart on the new release
        self.report = report  # acks a result to central; False while it cannot
        self.downloads = downloads or AssetStore(store.root / "downloads")
        # What this process runs: fixed at start, so the agent that switches to a new release
        # (still running the old one) never vouches for it.
        self.running = store.running()
        self.started = time.monotonic()
        self._thread: threading.Thread | None = None
        self.state: dict[str, str] = {"running": self.running or ""}

    # ---- the push (paho's thread) ----------------------------------------------------------
    def apply(self, body: dict[str, Any], version: int) -> None:
        """Refuses at once what needs no download; the rest goes on in a thread."""
        rb = parse_body(body)
        try:
            check_target(rb.release, rb.arch, rb.python, self.store.arch, self.store.python)
        except ReleaseError as exc:
            raise ValueError(str(exc)) from None
        if rb.release == self.running:
            raise ValueError(f"release {rb.release} is already running")
        if self._thread is not None and self._thread.is_alive():
            raise ValueError("another release is still being installed")
        if self.store.on_probation(self.running) is not None:
            raise ValueError(f"release {self.running} is still on probation")
        self.state = {"running": self.running or "", "installing": rb.release}
        t = threading.Thread(
            target=self._install, args=(rb, version), name="release-install", daemon=True
        )
        self._thread = t
        t.start()

    def wait(self, timeout: float) -> bool:
        t = self._thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    def _install(self, rb: ReleaseBody, version: int) -> None:
        path: Path | None = None
        try:
            path = self.downloads.fetch(rb.bundle)
            self.store.install(path, expect=rb.release)
            self.store.switch(rb.release, version)
        except (AssetFetchError, ReleaseError, OSError) as exc:
            why = f"release {rb.release} refused, {self.running} runs on: {exc}"
            log.error("%s", why)
            self.state = {"running": self.running or "", "failed": rb.release}
            self.report(Result(version, rb.release, False, why))
            return
        finally:
            # The bundle is unpacked (or refused): its download is not kept.
            self.downloads.gc(())
        self.request_restart(f"release {rb.release}")

    # ---- probation (the heartbeat) -----------------------------------------------------------
    def check(self, *, ready: bool, connected: bool) -> None:
        """Confirm the release this process runs once it has proved itself, roll it back when
        it is out of time, and ack a result a previous process left (a rollback)."""
        doc = self.store.on_probation(self.running)
        if doc is not None and self.running is not None:
            up = time.monotonic() - self.started
            age = time.time() - float(doc.get("since") or 0)
            if ready and connected and up >= self.probation_s:
                self.store.confirm(
                    self.running, f"release {self.running}: READY, central reached, up {up:.0f} s"
                )
                log.info("release %s confirmed", self.running)
            elif age > self.store.timeout_s:
                what = "not READY" if not ready else "central not reached"
                note = self.store.rollback(f"{what} within {self.store.timeout_s:g} s")
                log.error("%s", note)
                self.request_restart("release rollback")
                return
        result = self.store.read_result()
        if result is not None and connected and self.report(result):
            self.store.clear_result()

    def health(self) -> dict[str, str]:
        on_probation = self.store.on_probation(self.running) is not None
        return {**self.state, "probation": "yes" if on_probation else "no"}
