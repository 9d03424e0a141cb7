"""``EDGE_SOAK=1``: the soak and chaos tests run their full sizes, not CI's bounded ones."""

from __future__ import annotations

import os

SOAK = os.environ.get("EDGE_SOAK") == "1"
