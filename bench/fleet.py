"""Fleet bench (issue 19): simulated stores through a 3-node nats cluster into PostgreSQL.

``edge-agent bench fleet [--quick] [--stores N] [--per-store N]``: N simulated stores (one box
each, the agent's real outbox and uplink, in processes of 50: paho's ``select()`` cannot go past
1024 descriptors in one process) publish over MQTT 3.1.1 to nodes 1 and 2 of a 3-node
nats-server cluster (JetStream R3). ``edge-ops cdp-sink --nats`` processes share one durable
JetStream consumer and store into one PostgreSQL database. The same boxes run one phase per
sink count (1, 2, 4 sinks; a fresh database each): every box appends ``per_store`` events at
once, in groups of 10, and the phase ends when PostgreSQL holds them all and every box's outbox
is empty (every batch confirmed back to its box).

Then a fourth phase with 4 sinks: once a third of its events are stored, one sink is killed with
SIGKILL and nats node 3 (the one no box is on; sinks and the stream's replicas are) with kill -9;
the node comes back at the end. Per phase: events/s (stored over the phase's wall time), end-to-end
latency (event time to the sink's store call) p50/p99, ``lost`` (events the boxes accepted that
PostgreSQL does not hold), ``duplicates_stored`` (rows beyond one per (store, device, event id))
and the boxes' re-sent batches. ``sink_scaling_ratio`` is events/s with the most sinks over one
(clean phases), ``sink_scaling_ratio_with_kills`` the kill phase's over one; ``lost``,
``duplicates_stored`` and ``gaps_missing`` (PostgreSQL's gap report) cover the whole run.

The PostgreSQL server is the testbed's (fsync off, on loopback). The boxes' confirmation
timeout is 30 s (production: 15 s), so a phase with one busy sink measures the sink rather than
the boxes re-sending what waits in the stream. A batch published while the stream's leader node
dies is not stored by JetStream (nats-server turns an MQTT publish into a plain NATS publish,
which the stream does not acknowledge): the box re-sends it after that timeout, which is what
the kill phase's wall time and p99 show.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEVICES_PER_PROCESS = 50
CONFIRM_TIMEOUT_S = 30.0
SINK_COUNTS = (1, 2, 4)  # clean phases; then 4 again with a sink and a node killed
ACK_WAIT_S = 5.0
VICTIM_NODE = 2  # nats node 3: no box publishes through it


def _store_id(i: int) -> str:
    return f"fleet-s{i:05d}"


def _worker(
    host: str, ports: list[int], d: str, first: int, n: int, per_store: int, inq: Any, outq: Any
) -> None:
    """Boxes ``first .. first+n-1``, each a store of its own; one phase per "go"."""
    from contracts.events import AudienceSample, make_event
    from edge_agent.config import BrokerConfig, UplinkConfig
    from sync.outbox import Outbox
    from sync.uplink import Uplink

    outboxes = [Outbox(Path(d) / f"box-{i}.db") for i in range(first, first + n)]
    ups = []
    for k, ob in enumerate(outboxes):
        i = first + k
        broker = BrokerConfig(host=host, port=ports[i % len(ports)], keepalive=10, protocol="3.1.1")
        cfg = UplinkConfig(linger_s=0.05, confirm_timeout_s=CONFIRM_TIMEOUT_S)
        ups.append(Uplink(ob, broker, _store_id(i), "box-1", cfg))
    try:
        for up in ups:
            up.start()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all(u.connected for u in ups):
            time.sleep(0.05)
        outq.put(("ready", first, sum(1 for u in ups if u.connected)))
        while True:
            cmd = inq.get()
            if cmd != "go":
                break
            for j in range(0, per_store, 10):
                for k, ob in enumerate(outboxes):
                    now = datetime.now(UTC)
                    ob.append(
                        [
                            make_event(
                                AudienceSample(screen_id="s", people=1, watchers=0),
                                store_id=_store_id(first + k),
                                device_id="box-1",
                                time=now,
                            )
                            for _ in range(min(10, per_store - j))
                        ]
                    )
            drained = all(up.flush(1800) for up in ups)
            resent = sum(up.stats()["resent_unconfirmed"] for up in ups)
            outq.put(("done", first, drained, resent))
    finally:
        for up in ups:
            up.stop(flush_timeout_s=0)
        for ob in outboxes:
            ob.close()


def _start_sink(dsn: str, servers: str, ack_wait_s: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "central.ops_cli", "cdp-sink", "--db", dsn, "--nats", servers,
         "--ack-wait", str(ack_wait_s), "--report-s", "3600"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=60):
            proc.kill()
            raise RuntimeError("a sink did not report in 60 s")
    line = proc.stdout.readline()
    if not line.startswith("cdp-sink: jetstream:"):
        proc.kill()
        raise RuntimeError(f"sink: {line!r}")
    return proc


def _phase_counts(dsn: str, since: float) -> tuple[int, int]:
    """Rows and distinct events of this phase (made after its start: a batch of the previous
    phase that JetStream delivers late is not counted as this phase's)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (store_id, device_id, id)) FROM cdp.events"
            " WHERE time >= to_timestamp(%s)",
            (since,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _latency_ms(dsn: str, since: float) -> tuple[float, float]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d),"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY d)"
            " FROM (SELECT received_at - extract(epoch FROM time) AS d FROM cdp.events"
            " WHERE time >= to_timestamp(%s)) x",
            (since,),
        ).fetchone()
    assert row is not None and row[0] is not None
    return round(1000 * float(row[0]), 1), round(1000 * float(row[1]), 1)


def _gap_missing(dsn: str) -> int:
    from central.cdp_store import open_store

    store = open_store(dsn)
    try:
        return sum(int(g["missing"]) for g in store.gaps(5))
    finally:
        store.close()


def run(
    quick: bool, stores: int | None = None, per_store: int | None = None, chaos: bool = True
) -> dict[str, Any]:
    from testbed.nats_cluster import NatsCluster
    from testbed.postgres import Postgres, missing_binaries
    from testbed.procs import terminate

    if missing_binaries():
        return {"error": f"PostgreSQL: {missing_binaries()}"}
    stores = stores or (100 if quick else 2000)
    per_store = per_store or (20 if quick else 50)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # nats holds a socket per box
    ctx = mp.get_context("spawn")  # no forking of paho's threads
    phases: list[dict[str, Any]] = []
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp,
        NatsCluster() as cluster,
        Postgres() as pg,
    ):
        servers = ",".join(f"nats://{cluster.host}:{n.client_port}" for n in cluster.nodes)
        box_ports = [n.mqtt_port for i, n in enumerate(cluster.nodes) if i != VICTIM_NODE]
        outq = ctx.Queue()
        workers = []
        for first in range(0, stores, DEVICES_PER_PROCESS):
            inq = ctx.Queue()
            p = ctx.Process(
                target=_worker,
                args=(cluster.host, box_ports, tmp, first, min(DEVICES_PER_PROCESS,
                      stores - first), per_store, inq, outq),
            )  # fmt: skip
            p.start()
            workers.append((p, inq))
        try:
            ready = [outq.get(timeout=600) for _ in workers]
            connected = sum(r[2] for r in ready)
            connect_s = time.monotonic() - started
            # One database for the whole run, so the gap report covers every phase.
            dsn = pg.create_database()
            plan = [(n, False) for n in SINK_COUNTS] + ([(SINK_COUNTS[-1], True)] if chaos else [])
            for n_sinks, kill in plan:
                phases.append(
                    _phase(cluster, dsn, servers, workers, outq, n_sinks, stores * per_store,
                           chaos=kill, terminate=terminate)
                )  # fmt: skip
            gaps_missing = _gap_missing(dsn)
        finally:
            for _, inq in workers:
                inq.put("stop")
            for p, _ in workers:
                p.join(60)
                if p.is_alive():
                    p.kill()
    clean = [p for p in phases if not p["killed_sink_and_node"]]
    one, most = clean[0]["events_per_s"], clean[-1]["events_per_s"]
    killed = [p for p in phases if p["killed_sink_and_node"]]
    return {
        "quick": quick,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": sys.version.split()[0],
        "stores": stores,
        "devices_per_process": DEVICES_PER_PROCESS,
        "events_per_store_per_phase": per_store,
        "connected": connected,
        "connect_s": round(connect_s, 1),
        "postgres": True,
        "broker": "nats-server 3 nodes, JetStream R3, MQTT 3.1.1",
        "phases": phases,
        "sinks": [p["sinks"] for p in phases],
        "lost": sum(p["lost"] for p in phases),
        "duplicates_stored": sum(p["duplicates_stored"] for p in phases),
        "gaps_missing": gaps_missing,
        # Clean phases: the most sinks over one. The kill phase on its own below (its wall time
        # holds the killed sink's batches waiting out the ack wait).
        "sink_scaling_ratio": round(most / one, 2) if one else None,
        "sink_scaling_ratio_with_kills": (
            round(killed[0]["events_per_s"] / one, 2) if killed and one else None
        ),
        "events_per_s": most,
        "latency_ms_p50": clean[-1]["latency_ms_p50"],
        "latency_ms_p99": clean[-1]["latency_ms_p99"],
    }


def _phase(
    cluster: Any,
    dsn: str,
    servers: str,
    workers: list[tuple[Any, Any]],
    outq: Any,
    n_sinks: int,
    expected: int,
    *,
    chaos: bool,
    terminate: Any,
) -> dict[str, Any]:
    # The ack wait bounds how long a killed sink's batches wait for another sink.
    sinks = [_start_sink(dsn, servers, ack_wait_s=ACK_WAIT_S) for _ in range(n_sinks)]
    killed: dict[str, float] = {}
    try:
        t0, since = time.monotonic(), time.time()
        for _, inq in workers:
            inq.put("go")
        deadline = t0 + 1800
        stored = 0
        while time.monotonic() < deadline:
            stored = _phase_counts(dsn, since)[1]
            if stored >= expected:
                break
            if chaos and not killed and stored >= expected // 3:
                os.kill(sinks[0].pid, signal.SIGKILL)
                sinks[0].wait(5)
                cluster.kill(VICTIM_NODE)
                killed = {"at_stored": stored, "at_s": round(time.monotonic() - t0, 2)}
            time.sleep(0.2)
        t1 = time.monotonic()
        done = [outq.get(timeout=1800) for _ in workers]
        t_confirmed = time.monotonic()
    finally:
        for s in sinks:
            terminate(s)
        if killed:
            cluster.start_node(VICTIM_NODE)
    rows, distinct = _phase_counts(dsn, since)
    p50, p99 = _latency_ms(dsn, since)
    seconds = t1 - t0
    return {
        "sinks": n_sinks,
        "events": expected,
        "stored": distinct,
        "lost": expected - distinct,
        "duplicates_stored": rows - distinct,
        "seconds": round(seconds, 2),
        "events_per_s": round(distinct / seconds, 1),
        "latency_ms_p50": p50,
        "latency_ms_p99": p99,
        "all_confirmed_s": round(t_confirmed - t0, 2),
        "boxes_drained": all(r[2] for r in done),
        "batches_resent": sum(r[3] for r in done),
        "killed_sink_and_node": killed or None,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
