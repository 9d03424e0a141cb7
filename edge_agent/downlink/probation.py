"""A file installed from afar (a pushed config, a rotated certificate) must prove itself.

A marker beside it records when it was installed, the sha256 of what was installed, and how
many starts have tried it. Only a process running on exactly that content may confirm it (the
process that installed it is still running on the old one), and whoever finds it unproven in
time puts the last good version back.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from edge_agent.journey.content_store import atomic_write


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str | None:
    try:
        return sha256_of(path.read_bytes())
    except OSError:
        return None


class Probation:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def start(self, installed: bytes, **extra: Any) -> None:
        """``extra``: what the one who rolls back needs to know (a release's previous one)."""
        doc = {**extra, "since": time.time(), "starts": 0, "sha256": sha256_of(installed)}
        atomic_write(self.marker, json.dumps(doc).encode())

    def update(self, **fields: Any) -> None:
        """Add to the marker (the last exit status of a start); nothing when there is none."""
        try:
            doc = self.read()
        except ValueError:
            return
        if doc is not None:
            atomic_write(self.marker, json.dumps({**doc, **fields}).encode())

    def read(self) -> dict[str, Any] | None:
        """The marker, None when there is none; ValueError when it is unreadable."""
        try:
            doc = json.loads(self.marker.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.marker.name}: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{self.marker.name}: not an object")
        return doc

    def age(self, running: str | None, *, require_running: bool = True) -> float | None:
        """Seconds on probation for a process running on content ``running`` (sha256), or None
        when nothing is on probation or the process runs on something else."""
        try:
            doc = self.read()
            since = float(doc["since"]) if doc is not None else None
        except (ValueError, KeyError, TypeError):
            return None
        if since is None or doc is None:
            return None
        if (running is not None or require_running) and doc.get("sha256") != running:
            return None
        return max(0.0, time.time() - since)

    def count_start(self) -> int | None:
        """One more start tried on the new content; None when not on probation. An unreadable
        marker counts as having failed every start (trust the last good version)."""
        try:
            doc = self.read()
        except ValueError:
            return 1 << 30
        if doc is None:
            return None
        starts = int(doc.get("starts", 0)) + 1
        atomic_write(self.marker, json.dumps({**doc, "starts": starts}).encode())
        return starts

    def clear(self) -> None:
        self.marker.unlink(missing_ok=True)
