"""The campaign bundle in force on this box: loaded at start, replaced atomically on push.

A pushed bundle is validated in full before it replaces the file (temp file, fsync, rename), so a
crash mid-apply leaves the previous good bundle in place.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge_agent.campaigns import CampaignBundle

EMBEDDED_DEFAULT: dict[str, Any] = {
    "version": 0,
    "default": [
        {
            "content_id": "welcome",
            "variant": {
                "title": "Welcome to our store",
                "body": "Ask our staff about today's offers",
                "background": "#1d3557",
                "accent": "#a8dadc",
            },
        }
    ],
    "campaigns": [],
}


class BundleError(ValueError):
    pass


def parse_bundle(obj: Any) -> CampaignBundle:
    try:
        return CampaignBundle.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "bundle"
        raise BundleError(f"campaigns.{loc}: {err['msg'].removeprefix('Value error, ')}") from None


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, whole."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), mode)  # a leftover tmp file keeps its old mode through O_TRUNC
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class ContentStore:
    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "campaigns.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.bundle = self._load()

    def _load(self) -> CampaignBundle:
        if self.path.exists():
            try:
                return parse_bundle(json.loads(self.path.read_bytes()))
            except (BundleError, ValueError):
                pass  # fall back to the embedded default; the next push repairs the file
        return parse_bundle(EMBEDDED_DEFAULT)

    def replace(self, body: dict[str, Any]) -> CampaignBundle:
        bundle = parse_bundle(body)
        with self._lock:
            atomic_write(self.path, json.dumps(body, sort_keys=True).encode())
            self.bundle = bundle
        return bundle
