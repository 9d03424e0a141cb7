"""CDP sinks as stateless workers on JetStream (issue 19): a real 3-node nats-server cluster, a
real PostgreSQL, real uplinks over MQTT and real ``edge-ops cdp-sink --nats`` processes.

Boxes publish over MQTT (3.1.1, node 1); the sinks pull from one stream on the uplink subjects
through one durable consumer they all share, store into one PostgreSQL schema, confirm to the
box over nats, and ack to JetStream after the commit. Each test has a stream of its own on its
own store's subjects (``stores.<store>.devices.*.events``), so tests on the module's cluster
never see each other's batches.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import nats
import psycopg
import pytest

from central.cdp_jetstream import (
    JetStreamConfig,
    JetStreamSink,
    parse_servers,
    subject_of,
    topic_of,
)
from central.cdp_store import open_store
from contracts import topics
from contracts.batch import encode_batch
from contracts.events import AudienceSample, make_event
from edge_agent.config import BrokerConfig, UplinkConfig
from sync.outbox import format_sequence
from testbed.broker import free_port, port_open
from testbed.nats_cluster import NatsCluster, nats_server_exe
from testbed.procs import terminate
from tests.central.fleet_boxes import close_boxes, gap_report, start_boxes
from tests.watching import wait_for

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(
        nats_server_exe() is None,
        reason="nats-server not installed (scripts/bootstrap.sh installs it)",
    ),
]


def servers(c: NatsCluster) -> list[str]:
    return [f"nats://{c.host}:{n.client_port}" for n in c.nodes]


def js_cfg(c: NatsCluster, store: str) -> JetStreamConfig:
    # A short ack_wait: what a killed sink took comes to another within the test's time.
    return JetStreamConfig(
        servers=servers(c),
        stream=f"CDP_{store.replace('-', '_')}",
        subject=f"stores.{store}.devices.*.events",
        ack_wait_s=3.0,
    )


def boxes(
    tmp_path: Path, c: NatsCluster, store: str, devices: list[str], n: int, confirm_qos: int = 1
) -> list:
    """Real uplinks with ``n`` loadgen events each, over MQTT 3.1.1 to node 1 (nats 2.9 has no
    MQTT 5); a short confirmation timeout so a lost confirmation is made good soon."""
    broker = BrokerConfig(host=c.host, port=c.nodes[0].mqtt_port, keepalive=5, protocol="3.1.1")
    cfg = UplinkConfig.model_validate(
        {
            "max_batch": 50,
            "linger_s": 0.01,
            "confirm_timeout_s": 3.0,
            # These tests kill nodes and sinks, not the timer's subject: a backoff capped at 4x
            # keeps a box's recovery within the tests' waits on a loaded machine.
            "confirm_timeout_max_s": 12.0,
            "confirm_qos": confirm_qos,
        }
    )
    return start_boxes(tmp_path, broker, store, devices, n, cfg)


def stored(dsn: str, store: str) -> list[tuple[str, int, int, int, int]]:
    """Per device: rows, distinct ids, first and last sequence."""
    with psycopg.connect(dsn) as conn:
        return [
            (r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]))
            for r in conn.execute(
                "SELECT device_id, count(*), count(DISTINCT id), min(sequence::bigint),"
                " max(sequence::bigint) FROM cdp.events WHERE store_id = %s"
                " GROUP BY device_id ORDER BY device_id",
                (store,),
            ).fetchall()
        ]


def pg_count(dsn: str, store: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM cdp.events WHERE store_id = %s", (store,))
        return int(row.fetchone()[0])  # type: ignore[index]


def test_subjects_map_back_to_topics_and_urls_are_checked() -> None:
    assert topic_of("stores.s1.devices.d1.events") == "stores/s1/devices/d1/events"
    assert parse_servers("nats://a:1, nats://b:2") == ["nats://a:1", "nats://b:2"]
    with pytest.raises(ValueError, match="not a nats URL"):
        parse_servers("mqtt://a:1883")


@pytest.mark.timeout(60)
def test_a_stream_that_cannot_be_made_is_a_failed_start_saying_why(tmp_path: Path) -> None:
    """R3 asked of a single, unclustered server: the sink does not start, and says why (the CLI
    prints it)."""
    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(f'listen: "127.0.0.1:{port}"\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n')
    exe = nats_server_exe()
    assert exe is not None
    proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: port_open("127.0.0.1", port), 10)
        cfg = JetStreamConfig(servers=[f"nats://127.0.0.1:{port}"], replicas=3)
        sink = JetStreamSink(cfg, tmp_path / "cdp.db")
        try:
            assert not sink.start(wait_s=20)
            assert sink.failure is not None
            assert "cannot create stream CDP_EVENTS" in sink.failure, sink.failure
        finally:
            sink.stop()
    finally:
        terminate(proc)


@pytest.mark.timeout(90)
def test_sinks_share_one_durable_consumer_and_the_box_gets_its_confirmations(
    cluster: NatsCluster, pg_dsn: str, tmp_path: Path
) -> None:
    store = f"st-{uuid.uuid4().hex[:6]}"
    n = 1500
    cfg = js_cfg(cluster, store)
    sinks = [JetStreamSink(cfg, pg_dsn) for _ in range(3)]
    for s in sinks:
        assert s.start(wait_s=20), s._failed
    bs = boxes(tmp_path, cluster, store, ["d1", "d2"], n)
    try:
        # flush: the outbox is empty only once every batch was confirmed by a sink.
        assert all(up.flush(60) for _, up in bs), [up.stats() for _, up in bs]
        resent = sum(up.stats()["resent_unconfirmed"] for _, up in bs)
    finally:
        close_boxes(bs)
        stats = [s.stats() for s in sinks]
        for s in sinks:
            s.stop()
    assert stored(pg_dsn, store) == [("d1", n, n, 1, n), ("d2", n, n, 1, n)]
    # One work queue: each batch went to one sink (no re-send was needed), and all three worked.
    assert resent == 0, stats
    assert sum(st["stored"] for st in stats) == 2 * n, stats
    assert sum(st["duplicates"] for st in stats) == 0, stats
    assert all(st["batches"] > 0 for st in stats), stats


async def mqtt_consumers(c: NatsCluster) -> int:
    """Consumers on nats' own MQTT message stream: one per QoS 1 MQTT subscription."""
    nc = await nats.connect(servers=servers(c))
    try:
        info = await nc.jetstream().stream_info("$MQTT_msgs")
        return int(info.state.consumer_count or 0)
    finally:
        await nc.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("qos", [0, 1])
def test_confirmations_at_qos_0_cost_nats_no_consumer_per_box(
    cluster: NatsCluster, pg_dsn: str, tmp_path: Path, qos: int
) -> None:
    """``[uplink] confirm_qos = 0`` for a fleet on nats: the JetStream sink's confirmations come
    as QoS 0 anyway, so the box's QoS 1 subscription only cost a JetStream consumer (replicated:
    a raft group per box on current nats). With 0 the boxes add none and still get every
    confirmation; with 1 each adds one (what makes the count a real measure)."""
    store = f"st-{uuid.uuid4().hex[:6]}"
    n, devices = 300, ["d1", "d2", "d3"]
    sink = JetStreamSink(js_cfg(cluster, store), pg_dsn)
    assert sink.start(wait_s=20), sink._failed
    before = asyncio.run(mqtt_consumers(cluster))
    bs = boxes(tmp_path, cluster, store, devices, n, confirm_qos=qos)
    try:
        assert all(up.flush(60) for _, up in bs), [up.stats() for _, up in bs]
        added = asyncio.run(mqtt_consumers(cluster)) - before
    finally:
        close_boxes(bs)
        sink.stop()
    assert stored(pg_dsn, store) == [(d, n, n, 1, n) for d in devices]
    assert added == (0 if qos == 0 else len(devices)), added


@pytest.fixture
def sink_procs(
    cluster: NatsCluster, pg_dsn: str
) -> Iterator[Callable[[JetStreamConfig], subprocess.Popen[str]]]:
    """``edge-ops cdp-sink --nats`` processes, each pulling when returned; stopped at the end."""
    procs: list[subprocess.Popen[str]] = []

    def start(cfg: JetStreamConfig) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "central.ops_cli", "cdp-sink", "--db", pg_dsn,
             "--nats", ",".join(cfg.servers), "--stream", cfg.stream, "--durable", cfg.durable,
             "--subject", cfg.subject, "--ack-wait", str(cfg.ack_wait_s), "--report-s", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None and proc.stderr is not None
        with selectors.DefaultSelector() as sel:  # its first line says it is pulling
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=70), "sink did not report in 70 s"
        line = proc.stdout.readline()
        if not line:  # it exited: say why
            pytest.fail(f"sink exited ({proc.wait(5)}): {proc.stderr.read()[-2000:]}")
        assert line.startswith(f"cdp-sink: jetstream:{cfg.stream}/{cfg.durable} -> "), line
        return proc

    yield start
    for p in procs:
        terminate(p)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("victim", [1, 2], ids=["node-2", "node-3"])
def test_a_nats_node_and_a_sink_killed_mid_stream_lose_nothing_and_store_nothing_twice(
    cluster: NatsCluster,
    pg_dsn: str,
    sink_procs: Callable[[JetStreamConfig], subprocess.Popen[str]],
    tmp_path: Path,
    victim: int,
) -> None:
    """kill -9 a nats node (not the boxes' MQTT node: a box on a dead node waits for it, see
    test_nats_cluster.py) and kill -9 a sink process mid-stream; the other sinks and a restarted
    one carry on. Every event is stored once, the boxes get every confirmation (their outboxes
    drain), and the gap report is empty."""
    store = f"st-{uuid.uuid4().hex[:6]}"
    n = 3000
    cfg = js_cfg(cluster, store)
    a, b = sink_procs(cfg), sink_procs(cfg)
    bs = boxes(tmp_path, cluster, store, ["d1", "d2"], n)
    try:
        assert wait_for(lambda: pg_count(pg_dsn, store) >= n // 3, 30), pg_count(pg_dsn, store)
        cluster.kill(victim)
        os.kill(a.pid, signal.SIGKILL)  # no goodbye: what it took and did not ack comes again
        a.wait(5)
        at_kill = pg_count(pg_dsn, store)
        assert at_kill < 2 * n, "too late: the stream had finished"
        # The others carry on: 300 more, or all of them when fewer were left (sinks storing a
        # fetch per transaction may be that close to the end by the time both are dead).
        more = min(at_kill + 300, 2 * n)
        assert wait_for(lambda: pg_count(pg_dsn, store) >= more, 40), "stalled"
        sink_procs(cfg)  # a worker comes back (systemd would restart it)
        assert all(up.flush(90) for _, up in bs), [up.stats() for _, up in bs]
    finally:
        close_boxes(bs)
        cluster.start_node(victim)  # leave the module's cluster whole
    assert stored(pg_dsn, store) == [("d1", n, n, 1, n), ("d2", n, n, 1, n)]
    gaps = gap_report(pg_dsn)
    mine = [(g["device"], g["stored"], g["missing"]) for g in gaps if g["store"] == store]
    assert mine == [("d1", n, 0), ("d2", n, 0)]
    # The survivor's final report (on SIGTERM) is clean JSON.
    terminate(b)
    assert b.returncode == 0


@pytest.mark.timeout(120)
def test_over_tls_only_a_sink_with_the_fleets_certificate_consumes(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A cluster whose client port wants TLS and a client certificate (as a fleet's would): a
    sink given the fleet CA and its role certificate (edge-ops' --ca/--cert/--tls-key) stores a
    box's events; one without a certificate, or without TLS at all, is refused and says so."""
    from central.pki import init_ca, issue

    pki = tmp_path / "pki"
    init_ca(pki, days=1)
    server = issue(pki, "server", hosts=["127.0.0.1"], days=1)
    cdp = issue(pki, "role", name="cdp", days=1)
    ca = pki / "ca.pem"
    c = NatsCluster(client_tls=(ca, server.cert, server.key))
    c.start()
    try:
        store = f"st-{uuid.uuid4().hex[:6]}"
        base = js_cfg(c, store)
        # Without the fleet CA the sink cannot trust the servers; with it but without a
        # certificate the servers refuse the sink. Either way it says why and stores nothing.
        for cfg, why in (
            (base, "CERTIFICATE_VERIFY_FAILED"),
            (replace(base, ca_file=ca), "BAD_CERTIFICATE"),
        ):
            refused = JetStreamSink(cfg, pg_dsn)
            try:
                assert not refused.start(wait_s=3)
                assert wait_for(lambda r=refused, w=why: w in (r.failure or ""), 15), (
                    refused.failure
                )
            finally:
                thread = refused._thread
                refused.stop()
            # Its client would try for ever: stop() ends that (no thread outlives the test).
            assert thread is not None and not thread.is_alive()
        sink = JetStreamSink(
            replace(base, ca_file=ca, cert_file=cdp.cert, key_file=cdp.key), pg_dsn
        )
        bs = None
        try:
            assert sink.start(wait_s=30), sink.failure
            bs = boxes(tmp_path, c, store, ["d1"], 200)
            assert all(up.flush(60) for _, up in bs), [up.stats() for _, up in bs]
        finally:
            if bs is not None:
                close_boxes(bs)
            sink.stop()
        assert stored(pg_dsn, store) == [("d1", 200, 200, 1, 200)]
    finally:
        c.cleanup()


# ---- one transaction per fetch ------------------------------------------------------------------
class Tap:
    """A nats client of the test's own on a loop in a thread: publishes batches into the stream
    as the nats-server's MQTT side would (with the stream's ack, so they are held before a sink
    starts), and records the confirmations the sinks publish to the boxes."""

    def __init__(self, cfg: JetStreamConfig, confirm_subject: str) -> None:
        import asyncio

        import nats

        self.confirmations: list[tuple[str, dict]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def connect() -> Any:
            nc = await nats.connect(servers=cfg.servers, connect_timeout=5)

            async def on_msg(msg: Any) -> None:
                self.confirmations.append((msg.subject, json.loads(msg.data)))

            await nc.subscribe(confirm_subject, cb=on_msg)
            await nc.flush()
            return nc

        self.nc = self._call(connect())

    def _call(self, coro: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def publish(self, msgs: list[tuple[str, bytes]]) -> None:
        async def pub() -> None:
            js = self.nc.jetstream(timeout=10)
            for subject, payload in msgs:
                await js.publish(subject, payload)

        self._call(pub())

    def stream_messages(self, stream: str) -> int:
        async def ask() -> int:
            info = await self.nc.jetstream(timeout=10).stream_info(stream)
            return int(info.state.messages)

        return int(self._call(ask()))

    def close(self) -> None:
        self._call(self.nc.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class CountingStore:
    """The real PostgreSQL store, with a record of each write (its rows' batches) and, on
    demand, a refusal of any write holding a given batch (a batch the database cannot take)."""

    def __init__(self, dsn: str, refuse_batch: str | None = None) -> None:
        self.inner = open_store(dsn)
        self.writes: list[set[str | None]] = []
        self.attempts: list[set[str | None]] = []
        self.refuse_batch = refuse_batch

    def write(self, rows: Any, rejects: Any) -> list[int]:
        batches = {r.batch_id for r in rows}
        self.attempts.append(batches)
        if self.refuse_batch is not None and self.refuse_batch in batches:
            raise RuntimeError(f"refused: a write with batch {self.refuse_batch}")
        new = self.inner.write(rows, rejects)
        self.writes.append(batches)
        return new

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def batch_msgs(store: str, device: str, n_batches: int, per_batch: int = 10,
               first: int = 1) -> list[tuple[str, bytes]]:  # fmt: skip
    """``n_batches`` of a box's batches (numbered events, batch ids ``<device>-<k>``) as the
    stream holds them: on the events subject, as the box encoded them."""
    out = []
    seq = first
    for k in range(n_batches):
        bodies = []
        for _ in range(per_batch):
            ev = make_event(AudienceSample(screen_id="s", people=1, watchers=0),
                            store_id=store, device_id=device)  # fmt: skip
            bodies.append(
                json.dumps({**json.loads(ev.to_json()), "sequence": format_sequence(seq)})
            )
            seq += 1
        payload, _ = encode_batch(f"{device}-{k}", store, device, bodies, 4096)
        out.append((subject_of(topics.events(store, device)), payload))
    return out


def confirmed(tap: Tap) -> dict[str | None, list[list[int]]]:
    """Batch id -> sequence ranges, of every confirmation received (a batch confirmed twice
    would show as a clash below: the test compares counts too)."""
    return {doc["batch_id"]: doc.get("seq", []) for _, doc in tap.confirmations}


@pytest.fixture
def tapped(cluster: NatsCluster, tmp_path: Path) -> Iterator[Callable[[JetStreamConfig, str], Tap]]:
    taps: list[Tap] = []

    def make(cfg: JetStreamConfig, store: str) -> Tap:
        # The stream and the consumer exist before anything is published: made by a sink that
        # starts and stops (nothing to pull yet), as the fleet's first sink would.
        first = JetStreamSink(cfg, tmp_path / "setup.db")
        try:
            assert first.start(wait_s=30), first.failure
        finally:
            first.stop()
        tap = Tap(cfg, f"stores.{store}.devices.*.delivered")
        taps.append(tap)
        return tap

    yield make
    for t in taps:
        t.close()


@pytest.mark.timeout(120)
def test_the_batches_of_a_fetch_are_one_transaction_stored_once_each_confirmed(
    cluster: NatsCluster, pg_dsn: str, tapped: Callable[[JetStreamConfig, str], Tap]
) -> None:
    """60 batches wait in the stream before the sink starts: its fetches (64 at most) hold
    several each, and each fetch is one write. Every event stored once, every batch confirmed
    once with its own sequences, every message acked."""
    store = f"st-{uuid.uuid4().hex[:6]}"
    cfg = js_cfg(cluster, store)
    tap = tapped(cfg, store)
    tap.publish(batch_msgs(store, "d1", 30) + batch_msgs(store, "d2", 30))
    counting = CountingStore(pg_dsn)
    sink = JetStreamSink(cfg, counting)  # type: ignore[arg-type]
    try:
        assert sink.start(wait_s=30), sink.failure
        assert wait_for(lambda: len(tap.confirmations) >= 60, 30), len(tap.confirmations)
        assert wait_for(lambda: tap.stream_messages(cfg.stream) == 0, 15, step=0.1)
        stats = sink.stats()
    finally:
        sink.stop()
    assert stored(pg_dsn, store) == [("d1", 300, 300, 1, 300), ("d2", 300, 300, 1, 300)]
    everyone = sorted(f"{d}-{k}" for d in ("d1", "d2") for k in range(30))
    assert sorted(b for w in counting.writes for b in w) == everyone  # each in one write
    assert len(counting.writes) < 60 and max(map(len, counting.writes)) > 1, counting.writes
    assert len(tap.confirmations) == 60
    assert confirmed(tap) == {f"{d}-{k}": [[10 * k + 1, 10 * k + 10]]
                              for d in ("d1", "d2") for k in range(30)}  # fmt: skip
    assert (stats["batches"], stats["stored"], stats["duplicates"]) == (60, 600, 0), stats


@pytest.mark.timeout(120)
def test_a_bad_batch_in_a_fetch_holds_back_only_itself(
    cluster: NatsCluster, pg_dsn: str, tapped: Callable[[JetStreamConfig, str], Tap]
) -> None:
    """In one fetch: good batches, one that cannot be decoded, one with a forged event, and one
    the database refuses. The undecodable one is rejected and acked without a confirmation, as
    alone; the forged event is rejected and its batch confirmed; the refused one is not acked
    (it comes again); every good batch is stored and confirmed."""
    store = f"st-{uuid.uuid4().hex[:6]}"
    cfg = js_cfg(cluster, store)
    tap = tapped(cfg, store)
    good = batch_msgs(store, "d1", 6)
    refused = batch_msgs(store, "d2", 1)
    subject = subject_of(topics.events(store, "d1"))
    forged_ev = make_event(AudienceSample(screen_id="s", people=1, watchers=0),
                           store_id="elsewhere", device_id="d1")  # fmt: skip
    forged_body = json.dumps({**json.loads(forged_ev.to_json()), "sequence": format_sequence(61)})
    forged, _ = encode_batch("forged", store, "d1", [forged_body], 4096)
    tap.publish([*good[:3], (subject, b"\x78\x00garbage"), (subject, forged), *refused, *good[3:]])
    counting = CountingStore(pg_dsn, refuse_batch="d2-0")
    sink = JetStreamSink(cfg, counting)  # type: ignore[arg-type]
    try:
        assert sink.start(wait_s=30), sink.failure
        assert wait_for(lambda: len(tap.confirmations) >= 7, 30), tap.confirmations
        # Only the refused batch stays, handed out again and again.
        assert wait_for(lambda: tap.stream_messages(cfg.stream) == 1, 15, step=0.1)
        assert wait_for(lambda: sink.redelivered >= 1, 15), sink.stats()
    finally:
        sink.stop()
    assert stored(pg_dsn, store) == [("d1", 60, 60, 1, 60)]
    # The refused batch was first tried with the others of its fetch, then alone.
    assert any({"d1-0", "d2-0"} <= w for w in counting.attempts), counting.attempts
    assert len(tap.confirmations) == 7
    assert confirmed(tap) == {**{f"d1-{k}": [[10 * k + 1, 10 * k + 10]] for k in range(6)},
                              "forged": [[61, 61]]}  # fmt: skip
    reasons = [r["reason"] for r in counting.rejects()]
    assert len(reasons) == 2, reasons
    assert any("bad zlib" in r for r in reasons) and any("does not match" in r for r in reasons)


class CommitsThenHangs(JetStreamSink):
    """A sink that stops between its commit and its acks (as one killed right there): its first
    fetch is committed, then nothing is confirmed or acked until ``release``."""

    def __init__(self, cfg: JetStreamConfig, db: str) -> None:
        super().__init__(cfg, db)
        self.committed = threading.Event()
        self.release = threading.Event()

    def handle_batches(self, batches: Any) -> Any:
        out = super().handle_batches(batches)
        if not self.committed.is_set():
            self.committed.set()
            self.release.wait(60)
        return out


@pytest.mark.timeout(120)
def test_batches_committed_but_not_acked_come_again_and_are_not_stored_twice(
    cluster: NatsCluster, pg_dsn: str, tapped: Callable[[JetStreamConfig, str], Tap]
) -> None:
    store = f"st-{uuid.uuid4().hex[:6]}"
    cfg = js_cfg(cluster, store)
    tap = tapped(cfg, store)
    tap.publish(batch_msgs(store, "d1", 20))
    a = CommitsThenHangs(cfg, pg_dsn)
    b = JetStreamSink(cfg, pg_dsn)
    try:
        assert a.start(wait_s=30), a.failure
        assert a.committed.wait(30)
        in_a = a.stats()["stored"]
        assert in_a > 0 and pg_count(pg_dsn, store) == in_a
        assert tap.confirmations == []  # committed, but neither confirmed nor acked
        assert b.start(wait_s=30), b.failure
        # After the ack wait JetStream hands a's batches to b: duplicates at the key.
        assert wait_for(lambda: tap.stream_messages(cfg.stream) == 0, 30, step=0.1)
        st = b.stats()
        assert (st["stored"], st["duplicates"]) == (200 - in_a, in_a), st
        assert b.redelivered > 0
    finally:
        a.release.set()
        a.stop()
        b.stop()
    assert stored(pg_dsn, store) == [("d1", 200, 200, 1, 200)]
    assert set(confirmed(tap)) == {f"d1-{k}" for k in range(20)}
