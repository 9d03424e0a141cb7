"""The pushed store map on the box: ``<state_dir>/map/v<N>/`` IMDF folders and a ``current``
symlink naming the one in use.

A new version is written aside (``.v<N>.tmp-*``, every file fsynced), renamed to ``v<N>``, then
``current`` is swapped by renaming a fresh symlink over it: a reader (``edge-agent map route``,
the agent) resolves ``current`` once and reads one whole version, and a kill -9 at any point
leaves the old map or the new one in use, never a mix. The previous version stays on disk (a
reader may still be on it); older ones are removed. The version is the folder's name, so
``edge-agent map check <state_dir>/map/current`` works on the box as on a laptop.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from contracts.files import fsync_path
from edge_agent.wayfinding.imdf import ImportResult, load_imdf
from edge_agent.wayfinding.model import VenueMap

_VERSION_DIR = re.compile(r"^v(\d{1,12})$")
KEEP = 2  # the version in use and the one before it


def version_of(path: Path) -> int | None:
    """The map version of a folder the store wrote (``.../map/current`` or ``.../map/v7``)."""
    m = _VERSION_DIR.match(path.resolve().name)
    return int(m.group(1)) if m else None


class MapStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: tuple[Path, VenueMap] | None = None

    @property
    def current_path(self) -> Path:
        return self.root / "current"

    def version(self) -> int | None:
        if not self.current_path.is_symlink():
            return None
        return version_of(self.current_path)

    def install(self, version: int, files: Mapping[str, bytes]) -> Path:
        """Write ``files`` as version ``version`` and make it current; returns its folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"v{version}"
        tmp = Path(tempfile.mkdtemp(prefix=f".v{version}.tmp-", dir=self.root))
        try:
            for name, data in files.items():
                with open(tmp / name, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
            fsync_path(tmp)
            if final.exists():  # a refused or half-done earlier try of this version
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        link = self.root / f".current.tmp-{os.getpid()}"
        link.unlink(missing_ok=True)
        os.symlink(final.name, link)  # relative: the state dir may be moved or mounted elsewhere
        os.replace(link, self.current_path)
        fsync_path(self.root)
        self._prune(version)
        return final

    def _prune(self, current: int) -> None:
        versions = sorted(
            int(m.group(1)) for p in self.root.iterdir() if (m := _VERSION_DIR.match(p.name))
        )
        keep = {v for v in versions if v <= current}
        keep = set(sorted(keep)[-KEEP:]) | {v for v in versions if v > current}
        for v in versions:
            if v not in keep:
                shutil.rmtree(self.root / f"v{v}", ignore_errors=True)
        for p in self.root.glob(".v*.tmp-*"):  # left by a kill mid-install
            shutil.rmtree(p, ignore_errors=True)

    def load(self) -> tuple[int, VenueMap] | None:
        """The map in use and its version (imported once per version), or None if none."""
        if not self.current_path.is_symlink():
            return None
        folder = self.current_path.resolve()
        version = version_of(folder)
        if version is None:
            return None
        if self._cache is not None and self._cache[0] == folder:
            return version, self._cache[1]
        result: ImportResult = load_imdf(folder)
        if result.venue is None or result.errors:
            return None  # validated before install: only a hand-edited folder gets here
        self._cache = (folder, result.venue)
        return version, result.venue
