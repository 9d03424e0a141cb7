"""The campaign bundle in force on this box: loaded at start, replaced atomically on push.

A pushed bundle is validated in full before it replaces the file (temp file, fsync, rename), so a
crash mid-apply leaves the previous good bundle in place.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge_agent.journey.campaigns import CampaignBundle

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


from contracts.files import atomic_write  # noqa: E402  (re-exported for the box)


class BundleError(ValueError):
    pass


def parse_bundle(obj: Any) -> CampaignBundle:
    try:
        return CampaignBundle.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "bundle"
        raise BundleError(f"campaigns.{loc}: {err['msg'].removeprefix('Value error, ')}") from None


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
