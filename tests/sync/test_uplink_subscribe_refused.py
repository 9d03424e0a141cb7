"""A broker that refuses the uplink's ``delivered`` subscription, then grants it: the uplink asks
again and its outbox drains (issue 19: nats-server 2.9 refused it with SUBACK 0x80 while a fleet
connected at once, and those boxes re-sent every batch for ever).

A real mosquitto with its dynamic security plugin, every client anonymous in one group whose
role may publish and read the events but not subscribe to ``delivered``; the grant is added at
run time through the plugin's own control topic, as an operator would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central.cdp_sink import CdpSink
from edge_agent.config import BrokerConfig, UplinkConfig
from sync.outbox import Outbox
from sync.uplink import Uplink
from testbed.broker import Mosquitto, fleet_acl_conf
from tests.sync.test_uplink import events
from tests.watching import wait_for

pytestmark = pytest.mark.timeout(60)

CONTROL = "$CONTROL/dynamic-security/v1"


def dynsec_config() -> dict[str, object]:
    acl = [
        {"acltype": "publishClientSend", "topic": "stores/#", "priority": 0, "allow": True},
        {"acltype": "publishClientSend", "topic": f"{CONTROL}/#", "priority": 0, "allow": True},
        {"acltype": "subscribePattern", "topic": "stores/+/devices/+/events", "priority": 0,
         "allow": True},
        {"acltype": "subscribePattern", "topic": f"{CONTROL}/#", "priority": 0, "allow": True},
    ]  # fmt: skip
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": True,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [],
        "groups": [{"groupname": "anon", "roles": [{"rolename": "anon"}]}],
        "roles": [{"rolename": "anon", "acls": acl}],
        "anonymousGroup": "anon",
    }


@pytest.fixture
def strict_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    acl = tmp_path / "dynamic-security.json"
    acl.write_text(json.dumps(dynsec_config()))
    with Mosquitto(extra_conf=fleet_acl_conf(acl)) as m:
        yield m


def grant(m: Mosquitto, topic: str) -> None:
    """Allow subscribing to ``topic``, through the plugin's control topic. The plugin then
    disconnects every client of the role (this one too), so the proof that it took is what the
    test waits for next."""
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"op-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv5,
    )
    c.connect(m.host, m.port)
    c.loop_start()
    try:
        cmd = {"command": "addRoleACL", "rolename": "anon", "acltype": "subscribePattern",
               "topic": topic, "priority": 0, "allow": True}  # fmt: skip
        info = c.publish(CONTROL, json.dumps({"commands": [cmd]}), qos=1)
        info.wait_for_publish(5)
        assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


def test_a_refused_delivered_subscription_is_asked_for_again(
    strict_broker: Mosquitto, tmp_path: Path
) -> None:
    m = strict_broker
    broker = BrokerConfig(host=m.host, port=m.port, keepalive=5)
    sink = CdpSink(broker, tmp_path / "cdp.db", group=None)
    assert sink.start(wait_s=10)
    n = 200
    with Outbox(tmp_path / "outbox.db") as ob:
        ob.append(events(n, "s1", "d1"))
        up = Uplink(ob, broker, "s1", "d1", UplinkConfig(linger_s=0.01, confirm_timeout_s=1.0))
        up.start()
        try:
            assert sink.wait_for(n, 15), sink.stats()
            # Stored, but no confirmation can reach the box: it is refused the subscription, and
            # asks again on the same connection (the plugin refuses again meanwhile).
            assert wait_for(lambda: up.stats()["subscribe_refusals"] >= 2, 15), up.stats()
            assert up.stats()["connects"] == 1, up.stats()
            assert "refused" in str(up.stats()["last_error"])
            assert ob.depth() == n
            grant(m, "stores/+/devices/+/delivered")
            # Granted (the plugin also disconnects the role's clients, so the box reconnects and
            # subscribes then too): the next re-send is confirmed and the outbox drains.
            assert up.flush(20), up.stats()
        finally:
            up.stop(flush_timeout_s=0)
            sink.stop()
    assert sink.stats()["stored"] == n
