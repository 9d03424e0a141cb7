"""Content manifests pushed by central ops (downlink kind ``content``): the screens' default loop
and the assets it needs, applied all at once or not at all.

Body::

    {"playlist": {"version": 7, "items": [...]},          # contracts.screen_protocol.Playlist
     "assets": [{"sha256": "...", "size": 123, "url": "https://..."},
                {"sha256": "...", "size": 45, "data_b64": "..."}]}   # small files inline

Every asset an item refers to (``image_sha256``, ``video_sha256``) must be listed. The agent
checks the manifest at once (a bad one is refused in the downlink's ack), fetches and verifies
the assets in the background, and only then swaps ``playlist.json`` (which the player watches)
and removes assets no longer used: until then the previous loop plays on, whole.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from contracts.screen_protocol import Playlist
from contracts.validation import first_error
from edge_agent.journey.content_store import atomic_write
from sync.assets import AssetFetchError, AssetRef, AssetStore

log = logging.getLogger(__name__)


class ContentManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    playlist: Playlist
    assets: tuple[AssetRef, ...] = ()

    def referenced(self) -> set[str]:
        out: set[str] = set()
        for item in self.playlist.items:
            for sha in (item.content.image_sha256, item.content.video_sha256):
                if sha:
                    out.add(sha)
        return out

    @model_validator(mode="after")
    def _complete(self) -> ContentManifest:
        listed = {a.sha256 for a in self.assets}
        for i, item in enumerate(self.playlist.items):
            for field in ("image_sha256", "video_sha256"):
                sha = getattr(item.content, field)
                if sha and sha not in listed:
                    raise ValueError(f"playlist.items.{i}.content.{field} is not in assets")
        if len(listed) != len(self.assets):
            raise ValueError("assets lists the same sha256 twice")
        return self


def parse_manifest(body: dict[str, Any]) -> ContentManifest:
    """The manifest, or ValueError with one line naming the key."""
    try:
        return ContentManifest.model_validate(body)
    except ValidationError as exc:
        raise ValueError(f"content {first_error(exc, 'manifest')}") from None


# Waits between install attempts while the asset server or the network is down: quick at first
# (a blip), then every few minutes for as long as it takes (a store offline for a day).
RETRY_BACKOFF_S = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0)
PENDING = "manifest-pending.json"


class ContentInstaller:
    """Fetches a manifest's assets off the caller's thread, then swaps the playlist. A newer
    manifest supersedes one still downloading. The manifest is kept on disk until it is
    installed or refused for good, so a restart resumes it; a server that is down is tried again,
    backing off, for as long as it takes; only wrong bytes or a missing file fail the push."""

    def __init__(
        self,
        content_dir: Path,
        on_done: Callable[[int, bool, str], None],
        *,
        store: AssetStore | None = None,
        ways: Callable[[Playlist], Playlist] | None = None,
        in_use: Callable[[], set[str]] | None = None,
    ) -> None:
        self.content_dir = Path(content_dir)
        self.store = store or AssetStore(self.content_dir)
        self.on_done = on_done  # (playlist version, ok, one-line reason)
        # Draws the way from each screen into "find us" items (the box's map, not central's).
        self.ways = ways
        # Files others still show (the campaigns' product photos): never collected.
        self.in_use = in_use
        self._gen = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()  # a newer manifest or close(): stop waiting to retry
        self._closed = False
        self.backoff_s = RETRY_BACKOFF_S
        # What the heartbeat says: version, state (installing, retrying, installed, failed), why.
        self.state: dict[str, str] = {}

    def resume(self) -> bool:
        """The manifest a previous run had not finished (a restart mid-download): go on."""
        path = self.content_dir / PENDING
        try:
            manifest = ContentManifest.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return False
        except (OSError, ValidationError) as exc:
            log.warning("content: the pending manifest cannot be read, dropped: %s", str(exc)[:200])
            path.unlink(missing_ok=True)
            return False
        log.info(
            "content v%d: resuming the install a restart interrupted", manifest.playlist.version
        )
        self._start(manifest)
        return True

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def install(self, manifest: ContentManifest) -> None:
        self.content_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.content_dir / PENDING, manifest.model_dump_json().encode())
        self._start(manifest)

    def _start(self, manifest: ContentManifest) -> None:
        with self._lock:
            self._gen += 1
            gen = self._gen
        self._wake.set()  # an older install waiting to retry gives up now
        self.state = {"version": str(manifest.playlist.version), "state": "installing"}
        t = threading.Thread(
            target=self._run, args=(manifest, gen), name="content-fetch", daemon=True
        )
        self._thread = t
        t.start()

    def wait(self, timeout: float) -> bool:
        t = self._thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    def _current(self, gen: int) -> bool:
        with self._lock:
            return gen == self._gen

    def _run(self, manifest: ContentManifest, gen: int) -> None:
        version = manifest.playlist.version
        attempt = 0
        said = ""
        while True:
            try:
                for ref in manifest.assets:
                    if not self._current(gen) or self._closed:
                        return  # a newer manifest took over; it reports for itself
                    self.store.fetch(ref)
                break
            except AssetFetchError as exc:
                if exc.permanent:
                    self._failed(version, gen, str(exc))
                    return
                # Down for now: say it once per reason, then wait and try again.
                if str(exc) != said:
                    said = str(exc)
                    log.warning("content v%d: %s; trying again", version, said)
                self.state = {"version": str(version), "state": "retrying", "reason": said[:200]}
                wait = self.backoff_s[min(attempt, len(self.backoff_s) - 1)]
                attempt += 1
                self._wake.clear()
                if not self._current(gen):
                    return
                self._wake.wait(wait)
                if not self._current(gen) or self._closed:
                    return
            except OSError as exc:  # the box's own disk: not the server's fault, not retried
                self._failed(version, gen, f"{type(exc).__name__}: {exc}")
                return
        try:
            with self._lock:
                if gen != self._gen:
                    return
                self._write(manifest.playlist)
                keep = {a.sha256 for a in manifest.assets}
                if self.in_use is not None:
                    keep |= self.in_use()
                removed = self.store.gc(keep)
        except OSError as exc:
            self._failed(version, gen, f"{type(exc).__name__}: {exc}")
            return
        reason = f"{len(manifest.assets)} asset(s) ready, {removed} unused removed"
        log.info("content v%d installed: %s", version, reason)
        self._settled(gen)
        self.state = {"version": str(version), "state": "installed"}
        self.on_done(version, True, reason)

    def _settled(self, gen: int) -> None:
        """Installed or refused for good: a restart has nothing to resume (unless newer came)."""
        with self._lock:
            if gen == self._gen:
                (self.content_dir / PENDING).unlink(missing_ok=True)

    def _failed(self, version: int, gen: int, why: str) -> None:
        log.error("content v%d not installed, the previous loop plays on: %s", version, why)
        self._settled(gen)
        self.state = {"version": str(version), "state": "failed", "reason": why[:200]}
        self.on_done(version, False, why[:300])

    def _write(self, playlist: Playlist) -> None:
        if self.ways is not None:
            playlist = self.ways(playlist)
        self.content_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(
            self.content_dir / "playlist.json", playlist.model_dump_json(indent=1).encode()
        )

    def redraw_ways(self) -> None:
        """The map or the planogram changed: the installed loop's "find us" items get the new
        ways (or lose a way to a place that is gone), in place; nothing else of it changes."""
        path = self.content_dir / "playlist.json"
        with self._lock:
            try:
                playlist = Playlist.model_validate_json(path.read_bytes())
            except FileNotFoundError:
                return
            except (OSError, ValidationError) as exc:
                log.warning(
                    "content: the installed loop cannot be read to redraw its ways: %s",
                    str(exc).splitlines()[0][:200],
                )
                return
            if not any(item.way_to for item in playlist.items):
                return
            self._write(playlist)
