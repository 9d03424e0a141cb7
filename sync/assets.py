"""Assets named in a content manifest, fetched by sha256 into the box's content cache.

Layout (shared with the player, ``signage_ui/assets.py``): ``<content_dir>/assets/<sha256>``.
A download goes to ``assets/.partial/<sha256>`` first and is renamed into place only once its
size and sha256 match the manifest, so the player never sees half a file under a real name.

- HTTP(S) with resume: an interrupted download continues from the partial file with a
  ``Range`` request (a server that ignores it, answering 200, is read from the start again).
- Small files may come inline in the signed manifest (``data_b64``), so a store without an
  asset server still gets its images over MQTT.
- Garbage collection removes cached assets no manifest in force refers to (and stale partials).

Errors are ``AssetFetchError`` with one line naming the asset and what went wrong.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The cache's layout and names belong to the player's side; this module only fills it.
from contracts.files import SHA256, fsync_path, sha256_of

CHUNK = 1 << 16
MAX_INLINE_BYTES = 256 * 1024


class AssetFetchError(Exception):
    """``permanent``: trying again cannot help (wrong bytes, a 404); otherwise the network or
    the server is down for now and the install should try again later."""

    def __init__(self, sha256: str, detail: str, *, permanent: bool = True) -> None:
        super().__init__(f"asset {sha256[:12]}: {detail}")
        self.sha256 = sha256
        self.permanent = permanent


class AssetRef(BaseModel):
    """One asset of a manifest: where to get it and what it must be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0, le=2 * 1024**3)
    url: str | None = Field(None, pattern=r"^https?://")
    data_b64: str | None = Field(None, max_length=(MAX_INLINE_BYTES * 4) // 3 + 4)

    @model_validator(mode="after")
    def _one_source(self) -> AssetRef:
        if (self.url is None) == (self.data_b64 is None):
            raise ValueError("give exactly one of url and data_b64")
        return self


@dataclass
class FetchStats:
    downloaded_bytes: int = 0
    resumed: int = 0
    already_cached: int = 0


class AssetStore:
    def __init__(
        self,
        root: Path,
        *,
        timeout_s: float = 30.0,
        retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.root = Path(root)
        self.dir = self.root / "assets"
        self.partial_dir = self.dir / ".partial"
        self.timeout_s = timeout_s
        self.retries = retries
        self.sleep = sleep
        self.stats = FetchStats()

    def path_for(self, sha256: str) -> Path:
        if not SHA256.match(sha256):
            raise AssetFetchError(sha256, "not a sha256 name")
        return self.dir / sha256

    def fetch(self, ref: AssetRef) -> Path:
        """Make ``ref`` present and verified in the cache; returns its path."""
        final = self.path_for(ref.sha256)
        if final.is_file() and final.stat().st_size == ref.size:
            if sha256_of(final) == ref.sha256:
                self.stats.already_cached += 1
                return final
            final.unlink()  # rotten: fetch it again
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        partial = self.partial_dir / ref.sha256
        if ref.data_b64 is not None:
            try:
                data = base64.b64decode(ref.data_b64, validate=True)
            except (binascii.Error, ValueError):
                raise AssetFetchError(ref.sha256, "data_b64 is not base64") from None
            partial.write_bytes(data)
        else:
            assert ref.url is not None
            self._download(ref, partial)
        size = partial.stat().st_size
        digest = sha256_of(partial)
        if size != ref.size or digest != ref.sha256:
            partial.unlink(missing_ok=True)
            raise AssetFetchError(
                ref.sha256, f"got {size} bytes with sha256 {digest[:12]}, expected {ref.size}"
            )
        fsync_path(partial)
        os.replace(partial, final)
        fsync_path(self.dir)
        return final

    def _download(self, ref: AssetRef, partial: Path) -> None:
        assert ref.url is not None
        last = "no attempt"
        permanent = False
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(min(10.0, 0.2 * 2**attempt))
            have = partial.stat().st_size if partial.exists() else 0
            if have > ref.size:
                partial.unlink()
                have = 0
            if have == ref.size:
                return
            req = urllib.request.Request(ref.url)
            if have:
                req.add_header("Range", f"bytes={have}-")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    status = resp.status
                    if have and status == 206:
                        self.stats.resumed += 1
                        mode = "ab"
                    elif status == 200:
                        mode = "wb"  # the server ignored the Range: start over
                    else:
                        raise AssetFetchError(ref.sha256, f"HTTP {status} from {ref.url}")
                    with open(partial, mode) as fh:
                        while chunk := resp.read(CHUNK):
                            fh.write(chunk)
                            self.stats.downloaded_bytes += len(chunk)
                            if fh.tell() > ref.size:
                                raise AssetFetchError(ref.sha256, "longer than the manifest says")
                        got = fh.tell()
                if got >= ref.size:
                    return
                last = f"connection closed after {got} of {ref.size} bytes"  # resume next time
            except urllib.error.HTTPError as exc:
                if exc.code == 416:  # our partial is complete or wrong: start over
                    partial.unlink(missing_ok=True)
                last = f"HTTP {exc.code}"
                if 400 <= exc.code < 500 and exc.code not in (408, 416, 429):
                    permanent = True
                    break  # retrying a 404 or 403 will not help
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                last = str(getattr(exc, "reason", exc)) or type(exc).__name__
        raise AssetFetchError(
            ref.sha256, f"download from {ref.url} failed: {last}", permanent=permanent
        )

    def cached(self) -> set[str]:
        """The sha256 of every verified file in the cache."""
        if not self.dir.is_dir():
            return set()
        return {p.name for p in self.dir.iterdir() if p.is_file() and SHA256.match(p.name)}

    def gc(self, keep: Iterable[str]) -> int:
        """Delete cached assets not in ``keep`` and every stale partial; returns files removed."""
        keep = set(keep)
        removed = 0
        if self.dir.is_dir():
            for p in self.dir.iterdir():
                if p.is_file() and p.name not in keep:
                    p.unlink(missing_ok=True)
                    removed += 1
        if self.partial_dir.is_dir():
            for p in self.partial_dir.iterdir():
                if p.name not in keep:
                    p.unlink(missing_ok=True)
                    removed += 1
        return removed
