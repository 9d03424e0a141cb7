"""Watching from a test: waiting for a condition that has no event of its own (another
process's state), and which files a run touched."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def wait_for(cond: Callable[[], object], timeout: float = 10.0, step: float = 0.02) -> bool:
    """True as soon as ``cond()`` holds, False if it still does not after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def snapshot(roots: list[Path]) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file below ``roots`` (virtualenvs, .git and caches left out);
    compare two snapshots to see what a run wrote."""
    files: dict[str, tuple[int, int]] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in {".venv", ".git", "__pycache__"}]
            for name in filenames:
                p = os.path.join(dirpath, name)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                files[p] = (st.st_size, st.st_mtime_ns)
    return files
