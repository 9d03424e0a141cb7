"""The agent's uplink and the CDP sink, unchanged, on a real clustered MQTT tier (nats-server).

A 3-node nats-server 2.9 cluster on loopback, JetStream on (it holds MQTT sessions and QoS 1
messages, replicated R3), an MQTT listener on every node. The real Uplink publishes through
node 1, real CdpSinks read through nodes 2 and 3, and a node is killed mid-stream.

What nats-server 2.9's MQTT listener does not do, each pinned by a test below so an upgrade
that changes it shows up: MQTT 5 (3.1.1 only, so ``BrokerConfig.protocol = "3.1.1"``), shared
subscriptions (``$share/...`` is granted but is a literal topic that matches nothing, so each
sink gets every batch and the sinks' dedup makes it exactly once per sink), and '.' or ' ' in a
topic (the client is disconnected; ids with dots cannot be used on it).
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from central.cdp_sink import CdpSink
from contracts.mqtt import make_client
from edge_agent.config import BrokerConfig, UplinkConfig
from sync.outbox import Outbox
from sync.uplink import Uplink
from testbed.nats_cluster import NatsCluster, nats_server_exe
from tests.sync.test_uplink import events
from tests.watching import wait_for

pytestmark = [
    pytest.mark.skipif(
        nats_server_exe() is None,
        reason="nats-server not installed (scripts/bootstrap.sh installs it)",
    ),
]


def test_protocol_knob_picks_mqtt_311_and_names_a_bad_value() -> None:
    assert make_client("x", BrokerConfig(protocol="3.1.1")).protocol == mqtt.MQTTv311
    assert make_client("x", BrokerConfig()).protocol == mqtt.MQTTv5
    with pytest.raises(ValidationError, match="protocol"):
        BrokerConfig.model_validate({"protocol": "4"})


def bcfg(c: NatsCluster, node: int) -> BrokerConfig:
    return BrokerConfig(host=c.host, port=c.nodes[node].mqtt_port, keepalive=5, protocol="3.1.1")


def stored_ids(sink: CdpSink, store: str) -> set[str]:
    """This test's events only: a sink subscribes to every store, and the cluster is shared."""
    with sqlite3.connect(sink.db_path) as db:
        return {r[0] for r in db.execute("SELECT id FROM events WHERE store_id = ?", (store,))}


def wait_stored(sink: CdpSink, store: str, n: int, timeout: float) -> bool:
    """Until ``n`` of this test's events are stored. Not ``sink.wait_for``: that counts every
    store, and nats 2.9 can redeliver a previous test's batches late (after its node restart)."""
    return wait_for(lambda: len(stored_ids(sink, store)) >= n, timeout, step=0.05)


def drop_session(c: NatsCluster, node: int, client_id: str) -> None:
    """End a persistent MQTT 3.1.1 session (a clean-session connect), so its JetStream
    consumer stops holding messages for the next test."""
    done = threading.Event()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    client.on_connect = lambda *a: done.set()
    try:
        client.connect(c.host, c.nodes[node].mqtt_port, keepalive=5)
    except OSError:
        return
    client.loop_start()
    done.wait(5)
    client.disconnect()
    client.loop_stop()


class Probe:
    """A bare paho client for the protocol checks; records connects, SUBACKs and messages."""

    def __init__(self, port: int, protocol: int = mqtt.MQTTv311) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"probe-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
            reconnect_on_failure=False,
        )
        self.connects: list[str] = []
        self.disconnects = 0
        self.messages: list[tuple[str, bytes]] = []
        self.suback = threading.Event()
        self.connected = threading.Event()
        self.dropped = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = lambda *a: self.suback.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _on_connect(self, c, userdata, flags, reason_code, properties) -> None:
        self.connects.append(str(reason_code))
        if not reason_code.is_failure:
            self.connected.set()

    def _on_disconnect(self, c, userdata, flags, reason_code, properties) -> None:
        self.disconnects += 1
        self.dropped.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.timeout(60)
def test_what_nats_29_mqtt_supports(cluster: NatsCluster) -> None:
    """QoS 1 across nodes works; MQTT 5, $share and dots in topics do not (pinned here)."""
    n1, n2 = cluster.nodes[0].mqtt_port, cluster.nodes[1].mqtt_port
    tag = uuid.uuid4().hex[:8]
    v5 = Probe(n1, protocol=mqtt.MQTTv5)
    assert v5.dropped.wait(5) and not v5.connected.is_set(), "nats now speaks MQTT 5?"
    v5.close()

    plain, shared, pub = Probe(n2), Probe(n2), Probe(n1)
    try:
        for p in (plain, shared, pub):
            assert p.connected.wait(10), p.connects
        plain.client.subscribe(f"t{tag}/+/x", qos=1)
        shared.client.subscribe(f"$share/g/t{tag}/+/x", qos=1)
        assert plain.suback.wait(5) and shared.suback.wait(5)
        for i in range(5):
            info = pub.client.publish(f"t{tag}/{i}/x", b"m%d" % i, qos=1)
            info.wait_for_publish(10)
            assert info.is_published()
        deadline = time.monotonic() + 10
        while len(plain.messages) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(p for _, p in plain.messages) == [b"m%d" % i for i in range(5)]
        time.sleep(0.5)
        assert shared.messages == [], "nats now supports shared subscriptions?"

        pub.client.publish(f"t{tag}/a.b/x", b"dot", qos=1)
        assert pub.dropped.wait(5), "a '.' in a topic no longer drops the client?"
        time.sleep(0.3)
        assert b"dot" not in [p for _, p in plain.messages]
    finally:
        for p in (plain, shared, pub):
            p.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("victim", [2, 0], ids=["sink-node-3", "uplink-node-1"])
def test_uplink_on_node1_sinks_on_nodes_2_and_3_survive_a_node_kill(
    cluster: NatsCluster, tmp_path: Path, victim: int
) -> None:
    """kill -9 one node mid-stream, keep accepting events: no accepted event is lost.

    Node 3 (victim 2): its sink is cut off and JetStream loses a replica. The sink fails over
    to a surviving node (node 2) under the same client id and resumes its session there: the
    session and its backlog live in R3 JetStream streams, not in the dead node. Node 1
    (victim 0): the uplink's own node, with batches in flight and PUBACKed but unconfirmed; it
    comes back after a while, the uplink reconnects and re-sends what the CDP has not
    confirmed.

    Not tested because it does not hold on nats-server 2.9.10: a subscriber that waits for
    its *own* node to restart and reconnects there often misses the messages published while
    the node was down (1,280 and 1,740 of 2,000 missing in two trials, still missing 40 s
    later). The uplink's end-to-end confirmation covers its own ``delivered`` subscription
    (unconfirmed batches are re-sent); a CDP sink must reconnect to a surviving node."""
    tag = uuid.uuid4().hex[:8]
    store, device = f"st-{tag}", f"dev-{tag}"
    # No shared subscriptions on nats 2.9: each sink subscribes plainly and gets every batch.
    sinks = [
        CdpSink(bcfg(cluster, 1), tmp_path / "cdp2.db", group=None),
        CdpSink(bcfg(cluster, 2), tmp_path / "cdp3.db", group=None),
    ]
    for s in sinks:
        assert s.start(wait_s=10), "sink did not subscribe"
    total = 2000
    evs = events(total, store, device)
    ucfg = UplinkConfig(max_batch=20, linger_s=0.02, confirm_timeout_s=5)
    with Outbox(tmp_path / "outbox.db") as ob:
        ob.append(evs[:1200])
        up = Uplink(ob, bcfg(cluster, 0), store, device, ucfg, max_inflight_batches=2)
        up.start()
        try:
            assert wait_stored(sinks[1], store, 200, 20), (sinks[1].stats(), up.stats())
            cluster.kill(victim)
            assert len(stored_ids(sinks[0], store)) < 1200, "too late: stream already finished"
            if victim == 2:
                # Same database, so the same client id: the session resumes on node 2.
                sinks[1].stop()
                sinks[1] = CdpSink(bcfg(cluster, 1), tmp_path / "cdp3.db", group=None)
                assert sinks[1].start(wait_s=20), "no failover for the sink of node 3"
            ob.append(evs[1200:])  # the agent keeps accepting meanwhile
            if victim == 0:
                time.sleep(1.0)  # the uplink's node stays down a while
                assert len(stored_ids(sinks[0], store)) < total
                cluster.start_node(victim)
            for s in sinks:
                assert wait_stored(s, store, total, 40), (s.stats(), up.stats())
            assert up.flush(15), up.stats()
            up_stats = up.stats()
            got = [stored_ids(s, store) for s in sinks]
            stats = [s.stats() for s in sinks]
        finally:
            up.stop(flush_timeout_s=0)
            for s in sinks:
                s.stop()
            cluster.start_node(victim)  # leave the module's cluster whole
            for s in sinks:
                drop_session(cluster, 1, s.client_id)
            drop_session(cluster, 1, up.client_id)
    assert up_stats["connects"] >= (2 if victim == 0 else 1), up_stats
    assert up_stats["depth"] == 0
    want = {e.id for e in evs}
    # Every accepted event at each sink, stored once (the event id is the PRIMARY KEY); raw
    # duplicates (re-sends around the kill) were absorbed by the dedup.
    for ids, st in zip(got, stats, strict=True):
        assert ids == want
        assert st["rejected"] == 0, st
