"""Outbox benchmark: naive commit-per-event vs group commit, and uplink throughput.

Both append modes use the real ``synchronous=FULL`` WAL settings, so each commit is an fsync:
the ratio is what group commit buys on this disk. The uplink number is events/s from a full
outbox to PUBACKed-and-deleted on a private mosquitto on loopback, with a CDP sink subscribed
(without a subscriber the uplink rightly holds events).
"""

from __future__ import annotations

import platform
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from central.cdp_sink import CdpSink
from contracts.events import AudienceSample, CloudEvent, make_event
from edge_agent.config import BrokerConfig, UplinkConfig
from sync.outbox import Outbox
from testbed.broker import Mosquitto


def _events(n: int, device: str = "bench-dev") -> list[CloudEvent]:
    """Events the CDP accepts under ``device``'s topic (a mismatch would only be rejected)."""
    return [
        make_event(
            AudienceSample(screen_id="scr-1", people=i % 9, watchers=i % 4),
            store_id="bench-store",
            device_id=device,
        )
        for i in range(n)
    ]


def _append_rate(path: Path, events: list[CloudEvent], group: int) -> float:
    with Outbox(path) as ob:
        t0 = time.perf_counter()
        for i in range(0, len(events), group):
            ob.append(events[i : i + group])
        dt = time.perf_counter() - t0
        assert ob.depth() == len(events)
    return len(events) / dt


def _uplink_rate(events: list[CloudEvent], workdir: Path) -> dict[str, Any]:
    from sync.uplink import Uplink

    with Mosquitto() as m:
        broker = BrokerConfig(host=m.host, port=m.port)
        sink = CdpSink(broker, workdir / "cdp.db", group="bench")
        sink.start(wait_s=5)
        with Outbox(workdir / "uplink.db") as ob:
            ob.append(events)
            up = Uplink(ob, broker, "bench-store", "bench-dev", UplinkConfig(linger_s=0.0))
            t0 = time.perf_counter()
            up.start()
            ok = up.flush(60)
            dt = time.perf_counter() - t0
            stats = up.stats()
            up.stop(flush_timeout_s=0)
        delivered = sink.wait_for(len(events), 10)
        sink.stop(end_session=True)
    return {
        "events": len(events),
        "drained": ok and delivered,
        "seconds": round(dt, 3),
        "events_per_s": round(len(events) / dt, 1),
        "batches": stats["published_batches"],
    }


def run(quick: bool) -> dict[str, Any]:
    naive_n, group_n, group_size, uplink_n = (
        (300, 5000, 100, 5000) if quick else (2000, 50_000, 200, 50_000)
    )
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        d = Path(tmp)
        naive = _append_rate(d / "naive.db", _events(naive_n), group=1)
        grouped = _append_rate(d / "group.db", _events(group_n), group=group_size)
        uplink = _uplink_rate(_events(uplink_n), d)
    return {
        "bench": "outbox",
        "quick": quick,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "append_naive": {"events": naive_n, "events_per_s": round(naive, 1)},
        "append_group_commit": {
            "events": group_n,
            "group_size": group_size,
            "events_per_s": round(grouped, 1),
        },
        "group_commit_speedup": round(grouped / naive, 1),
        "uplink": uplink,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
