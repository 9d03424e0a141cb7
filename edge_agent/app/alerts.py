"""Staff alerts: one message per alert for the store's kiosks, on the in-store bus only (never to
the CDP). Every stage that notices something staff must act on raises it here."""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from contracts import topics
from edge_agent.app.bus import Publisher

log = logging.getLogger("edge_agent")


class StaffAlerts:
    def __init__(self, bus: Publisher, store_id: str) -> None:
        self.bus = bus
        self.topic = topics.alerts(store_id)
        self.raised = 0

    def raise_alert(self, kind: str, text: str, **fields: Any) -> None:
        self.raised += 1
        log.info("staff alert %s: %s", kind, text)
        body = {
            "alert_id": secrets.token_hex(8),
            "kind": kind,
            "text": text,
            "ts": datetime.now(UTC).isoformat(),
            **fields,
        }
        self.bus.publish(self.topic, json.dumps(body), qos=1)
