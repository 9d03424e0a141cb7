"""Sync benchmark (issue 4): the outbox, end-to-end delivery, a big backlog, and a fleet.

All in one run, side by side, on a private mosquitto on loopback:

- ``append``: durable events/s, one commit per event vs group commit (``synchronous=FULL``).
- ``end_to_end``: events/s from a full outbox into the CDP sink's database, confirmed back to
  the box, for our uplink (batches, pipelined, CDP confirmation) vs the naive tracker: one
  event per QoS 1 message, wait for the PUBACK, delete, next.
- ``backlog``: drain time of a 1,000,000-event backlog (100,000 with ``--quick``) and the
  process's resident memory while doing it.
- ``fleet``: N devices (500; 50 with ``--quick``), each with its own outbox and uplink, against
  one mosquitto with two CDP sinks sharing the load (MQTT 5 shared subscription): messages/s and
  end-to-end latency (event time to CDP commit) p50/p99.
"""

from __future__ import annotations

import platform
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.outbox import _append_rate, _events
from central.cdp_sink import CdpSink
from contracts import topics
from contracts.batch import encode_batch, publish_properties
from contracts.events import AudienceSample, make_event
from contracts.mqtt import connect, make_client
from edge_agent.config import BrokerConfig, UplinkConfig
from sync.outbox import Outbox
from sync.uplink import Uplink
from testbed.broker import Mosquitto


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ours(broker: BrokerConfig, d: Path, n: int, tag: str) -> dict[str, Any]:
    sink = CdpSink(broker, d / f"cdp-{tag}.db", group=f"b-{tag}")
    sink.start(wait_s=5)
    try:
        with Outbox(d / f"ob-{tag}.db") as ob:
            for i in range(0, n, 5000):
                ob.append(_events(min(5000, n - i), f"dev-{tag}"))
            rss0 = _rss_mb()
            up = Uplink(ob, broker, "bench-store", f"dev-{tag}", UplinkConfig(linger_s=0.0))
            t0 = time.perf_counter()
            up.start()
            drained = up.flush(3600)
            dt = time.perf_counter() - t0
            stats = up.stats()
            up.stop(flush_timeout_s=0)
        stored = sink.wait_for(n, 30) and sink.count() == n and not sink.stats()["rejected"]
    finally:
        sink.stop(end_session=True)
    return {
        "events": n,
        "drained_and_stored": drained and stored,
        "seconds": round(dt, 2),
        "events_per_s": round(n / dt, 1),
        "batches": stats["published_batches"],
        "resent_unconfirmed": stats["resent_unconfirmed"],
        "max_rss_mb": round(max(rss0, _rss_mb()), 1),
    }


def _naive(broker: BrokerConfig, d: Path, n: int) -> dict[str, Any]:
    """The classic tracker: publish one event, wait for its PUBACK, delete it, next."""
    sink = CdpSink(broker, d / "cdp-naive.db", group="b-naive")
    sink.start(wait_s=5)
    client = make_client("bench-naive", broker)
    connect(client, broker, clean_start=True, session_expiry_s=0)
    client.loop_start()
    try:
        deadline = time.monotonic() + 10
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        topic = topics.events("bench-store", "dev-naive")
        with Outbox(d / "ob-naive.db") as ob:
            ob.append(_events(n, "dev-naive"))
            t0 = time.perf_counter()
            for row in ob.pending(n, 10**12):
                payload, enc = encode_batch(row.id, "bench-store", "dev-naive", [row.body], 10**9)
                client.publish(
                    topic, payload, 1, properties=publish_properties(enc)
                ).wait_for_publish(10)
                ob.mark_sent([row.id])
            dt = time.perf_counter() - t0
        stored = sink.wait_for(n, 30) and not sink.stats()["rejected"]
    finally:
        client.disconnect()
        client.loop_stop()
        sink.stop(end_session=True)
    return {
        "events": n,
        "stored": stored,
        "seconds": round(dt, 2),
        "events_per_s": round(n / dt, 1),
    }


DEVICES_PER_PROCESS = 50  # paho's loop uses select(): descriptors above 1024 break it


def _fleet_worker(host: str, port: int, d: str, first: int, n: int, per_device: int, ctl) -> None:
    """One process simulating devices ``first .. first+n-1``: own outboxes and uplinks."""
    broker = BrokerConfig(host=host, port=port)
    outboxes = [Outbox(Path(d) / f"fleet-{i}.db") for i in range(first, first + n)]
    ups = [
        Uplink(ob, broker, "fleet-store", f"dev-{first + k:04d}", UplinkConfig(linger_s=0.05))
        for k, ob in enumerate(outboxes)
    ]
    try:
        for up in ups:
            up.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(u.connected for u in ups):
            time.sleep(0.05)
        ctl.put(("ready", sum(1 for u in ups if u.connected)))
        ctl.get_go()  # every process starts feeding at once
        # Each device trickles its events in groups of 10, as a store box does.
        for j in range(0, per_device, 10):
            for k, ob in enumerate(outboxes):
                ob.append(
                    [
                        make_event(
                            AudienceSample(screen_id="s", people=1, watchers=0),
                            store_id="fleet-store",
                            device_id=f"dev-{first + k:04d}",
                            time=datetime.now(UTC),
                        )
                        for _ in range(min(10, per_device - j))
                    ]
                )
        drained = all(up.flush(300) for up in ups)
        ctl.put(("done", drained, sum(up.stats()["publish_attempts"] for up in ups)))
    finally:
        for up in ups:
            up.stop(flush_timeout_s=0)
        for ob in outboxes:
            ob.close()


class _Ctl:
    """A worker's two-way line to the parent: a result queue and a shared start signal."""

    def __init__(self, results, go) -> None:
        self.results, self.go = results, go

    def put(self, item) -> None:
        self.results.put(item)

    def get_go(self) -> None:
        self.go.wait(120)


def _fleet(broker: BrokerConfig, d: Path, devices: int, per_device: int) -> dict[str, Any]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # no forking of paho's threads
    sinks = [CdpSink(broker, d / f"fleet-cdp-{i}.db", group="fleet") for i in range(2)]
    for s in sinks:
        s.start(wait_s=5)
    results, go = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(
            target=_fleet_worker,
            args=(
                broker.host,
                broker.port,
                str(d),
                first,
                min(DEVICES_PER_PROCESS, devices - first),
                per_device,
                _Ctl(results, go),
            ),
        )  # fmt: skip
        for first in range(0, devices, DEVICES_PER_PROCESS)
    ]
    total = devices * per_device
    try:
        for p in procs:
            p.start()
        connected = sum(results.get(timeout=180)[1] for _ in procs)
        t0 = time.perf_counter()
        go.set()
        done = [results.get(timeout=600) for _ in procs]
        deadline = time.monotonic() + 60
        while sum(s.count() for s in sinks) < total and time.monotonic() < deadline:
            time.sleep(0.05)
        dt = time.perf_counter() - t0
        stored = sum(s.count() for s in sinks)
        share = [s.count() for s in sinks]
        messages = sum(r[2] for r in done)
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        for s in sinks:
            s.stop(end_session=True)
    lat: list[float] = []
    for i in range(2):
        db = sqlite3.connect(d / f"fleet-cdp-{i}.db")
        for t, rec in db.execute("SELECT time, received_at FROM events"):
            lat.append(rec - datetime.fromisoformat(t).timestamp())
        db.close()
    lat.sort()
    return {
        "devices": devices,
        "processes": len(procs),
        "connected": connected,
        "events": total,
        "stored": stored,
        "drained": all(r[1] for r in done),
        "sink_share": share,
        "seconds": round(dt, 2),
        "events_per_s": round(stored / dt, 1),
        "messages": messages,  # MQTT PUBLISHes of event batches (births and health not counted)
        "messages_per_s": round(messages / dt, 1),
        "latency_ms_p50": round(1000 * statistics.median(lat), 1) if lat else None,
        "latency_ms_p99": round(1000 * lat[int(0.99 * (len(lat) - 1))], 1) if lat else None,
    }


def _raise_fd_limit() -> int:
    """A fleet on one machine needs more than 1024 descriptors: a socket, an outbox (3 files
    with its WAL) and the broker's side per simulated device."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run(quick: bool) -> dict[str, Any]:
    fd_limit = _raise_fd_limit()  # before the broker starts: it inherits the limit
    e2e_n, naive_n, backlog_n, devices, per_device = (
        (20_000, 2_000, 100_000, 50, 100) if quick else (100_000, 5_000, 1_000_000, 500, 100)
    )
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp, Mosquitto() as m:
        d = Path(tmp)
        broker = BrokerConfig(host=m.host, port=m.port)
        naive_append = _append_rate(d / "naive-append.db", _events(1000), group=1)
        group_append = _append_rate(d / "group-append.db", _events(50_000), group=200)
        naive = _naive(broker, d, naive_n)
        ours = _ours(broker, d, e2e_n, "e2e")
        backlog = _ours(broker, d, backlog_n, "backlog")
        fleet = _fleet(broker, d, devices, per_device)
    return {
        "bench": "sync",
        "quick": quick,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "fd_limit": fd_limit,
        "append": {
            "commit_per_event_per_s": round(naive_append, 1),
            "group_commit_per_s": round(group_append, 1),
            "ratio": round(group_append / naive_append, 1),
        },
        "end_to_end": {
            "naive_one_event_per_message": naive,
            "ours": ours,
            "ratio": round(ours["events_per_s"] / naive["events_per_s"], 1),
        },
        "backlog": backlog,
        "fleet": fleet,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
