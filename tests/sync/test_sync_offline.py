"""Offline: a store day with the central broker unreachable, then reconnection.

The outbox keeps to its disk cap by dropping samples (counted), never conversions, impressions
or offers; once the broker is back the backlog drains, each surviving event reaches the CDP
exactly once, and the sequence numbers let the CDP restore each device's order.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from central.cdp_sink import CdpSink
from edge_agent.config import BrokerConfig, UplinkConfig
from sync import loadgen
from sync.outbox import PRIORITY_HIGH, Outbox, priority_of
from sync.uplink import Uplink
from testbed.broker import Mosquitto

DAY_EVENTS = 40_000  # ~12 opening hours of a busy store's journey events at ~1 event/s


@pytest.mark.timeout(180)
def test_a_day_offline_then_the_backlog_drains_in_order(
    fresh_broker: Mosquitto, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    store, device = f"st-{tag}", f"dev-{tag}"
    broker = BrokerConfig(host=fresh_broker.host, port=fresh_broker.port, keepalive=5)
    fresh_broker.kill()  # central is unreachable all day
    cap = 6_000_000
    with Outbox(tmp_path / "outbox.db", cap_bytes=cap) as ob:
        up = Uplink(ob, broker, store, device, UplinkConfig(max_batch=500, linger_s=0.05))
        up.start()
        try:
            res = loadgen.generate(ob, store_id=store, device_id=device, count=DAY_EVENTS, rate=0)
            assert res.total == DAY_EVENTS
            pending = ob.pending(DAY_EVENTS, 10**10)
            assert not up.stats()["connected"] and len(pending) == ob.depth()
            # The cap held, by dropping only what may be dropped, and every drop is counted.
            assert ob.pending_bytes() <= cap
            drops = ob.drops()
            assert sum(drops.values()) == DAY_EVENTS - len(pending) > 0
            assert all(k.startswith("cap:") for k in drops)
            kept = {r.id for r in pending}
            high = {
                loadgen.event_id(loadgen.SEED_DEFAULT, i)
                for i in range(DAY_EVENTS)
                if priority_of(loadgen.synthetic_type(loadgen.SEED_DEFAULT, i)) == PRIORITY_HIGH
            }
            assert high and high <= kept  # conversions, impressions, offers: all still there

            fresh_broker.start()  # the link comes back
            sink = CdpSink(broker, tmp_path / "cdp.db", group=f"cdp-{tag}")
            try:
                assert sink.start(wait_s=10)
                assert up.flush(90), up.stats()
                assert sink.wait_for(len(kept), 30), sink.stats()
                assert sink.ids() == kept and sink.count() == len(kept)
            finally:
                sink.stop(end_session=True)
        finally:
            up.stop(flush_timeout_s=0)
    # Order per device: sequence order at the CDP is the order the events happened on the box.
    db = sqlite3.connect(tmp_path / "cdp.db")
    rows = db.execute("SELECT sequence, time FROM events ORDER BY sequence").fetchall()
    assert [int(s) for s, _ in rows] == sorted(int(s) for s, _ in rows)
    times = [t for _, t in rows]
    assert times == sorted(times)


def test_two_devices_never_make_the_same_ids_by_default() -> None:
    """loadgen's default seed is the device's own: a fleet of simulated boxes gives a CDP
    distinct events, and the same box resumes with the same ids."""
    a, b = loadgen.device_seed("s1", "d1"), loadgen.device_seed("s1", "d2")
    assert a != b and a == loadgen.device_seed("s1", "d1")
    assert loadgen.device_seed("s2", "d1") not in (a, b)
    assert not loadgen.ids(a, range(2000)) & loadgen.ids(b, range(2000))
