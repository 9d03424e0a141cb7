"""Boxes for the CDP sink tests: each a real outbox filled by the load generator and a real
uplink started on it, as a store's box sends (tests/central/test_cdp_postgres.py on mosquitto,
test_jetstream_sink.py on the nats cluster)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge_agent.config import BrokerConfig, UplinkConfig
from sync.loadgen import generate
from sync.outbox import Outbox
from sync.uplink import Uplink

Box = tuple[Outbox, Uplink]
REPO = Path(__file__).resolve().parents[2]


def start_boxes(
    tmp_path: Path,
    broker: BrokerConfig,
    store: str,
    devices: list[str],
    n: int,
    cfg: UplinkConfig,
) -> list[Box]:
    """``n`` loadgen events in each device's outbox (the default seed), its uplink started."""
    out = []
    for device in devices:
        ob = Outbox(tmp_path / f"outbox-{device}.db")
        generate(ob, store_id=store, device_id=device, count=n, rate=0)
        out.append((ob, Uplink(ob, broker, store, device, cfg)))
    for _, up in out:
        up.start()
    return out


def close_boxes(bs: list[Box]) -> None:
    for ob, up in bs:
        up.stop(flush_timeout_s=0)
        ob.close()


def gap_report(dsn: str) -> list[dict[str, Any]]:
    """`edge-ops cdp-gaps --db DSN`, as ops run it: one JSON object per device."""
    out = subprocess.run(
        [sys.executable, "-m", "central.ops_cli", "cdp-gaps", "--db", dsn],
        capture_output=True, text=True, cwd=REPO, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [json.loads(x) for x in out.stdout.splitlines()]
