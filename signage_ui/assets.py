"""The player's local content cache: assets stored by the sha256 of their bytes.

Layout under the configured ``content_dir``: ``assets/<sha256>`` (one file per asset, named by
its hash) and ``playlist.json`` (the default loop). A writer (the sync side, or ``put``) writes
aside and renames, so a half-downloaded asset never has its final name; the player still hashes
every file before first use, because a disk can rot and a name proves nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from contracts.files import SHA256, atomic_write, sha256_of  # noqa: E402


class AssetError(Exception):
    """An asset that cannot be shown; ``kind`` is ``missing`` or ``corrupt``."""

    def __init__(self, kind: str, sha256: str, detail: str) -> None:
        super().__init__(f"asset {sha256[:12]}: {detail}")
        self.kind = kind
        self.sha256 = sha256


@dataclass
class AssetCache:
    root: Path
    # sha256 -> (inode, size, mtime_ns) of the file that verified: a replaced file (new inode
    # after an atomic rename) or a rewritten one is hashed again, an unchanged one is not.
    _verified: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def assets_dir(self) -> Path:
        return self.root / "assets"

    @property
    def playlist_path(self) -> Path:
        return self.root / "playlist.json"

    def path_for(self, sha256: str) -> Path:
        if not SHA256.match(sha256):
            raise AssetError("corrupt", sha256, "not a sha256 name")
        return self.assets_dir / sha256

    def verified(self, sha256: str) -> Path:
        """The path of a good copy of the asset, or AssetError (missing / corrupt)."""
        path = self.path_for(sha256)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise AssetError("missing", sha256, "not in the content cache") from None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._verified.get(sha256) == stamp:
            return path
        actual = sha256_of(path)
        if actual != sha256:
            self._verified.pop(sha256, None)
            raise AssetError("corrupt", sha256, f"checksum mismatch (file hashes to {actual[:12]})")
        self._verified[sha256] = stamp
        return path

    def put(self, data: bytes) -> str:
        """Store bytes under their hash, atomically (temp file, fsync, rename); returns the hash."""
        digest = hashlib.sha256(data).hexdigest()
        self.assets_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path_for(digest), data, mode=0o600)
        return digest

    def size_bytes(self) -> int:
        """Bytes of finished assets (partial downloads do not count)."""
        try:
            entries = list(os.scandir(self.assets_dir))
        except FileNotFoundError:
            return 0
        total = 0
        for e in entries:
            if SHA256.match(e.name):
                # An asset swapped away between scandir and stat simply does not count.
                with contextlib.suppress(FileNotFoundError):
                    total += e.stat().st_size
        return total
