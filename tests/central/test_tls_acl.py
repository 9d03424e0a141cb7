"""TLS with per-device certificates and the rendered ACL, on a real mosquitto.

The test makes its own CA and certificates (nothing is committed), starts mosquitto with a TLS
listener that requires a client certificate, takes the username from its CN and applies the ACL
rendered by ``central.acl`` (mosquitto's dynamic security plugin). Then: the real Uplink and
CdpSink deliver end to end over it; a device cannot publish as another device or store, nor read
another store's commands, nor join the CDP's shared subscription; clients without a certificate,
or with one from another CA, cannot connect at all.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from central import ops_cli
from central.acl import (
    FleetDevice,
    FleetError,
    Grant,
    device_grants,
    fleet_grants,
    parse_fleet,
    render_acl,
)
from central.cdp_sink import CdpSink
from central.pki import Issued, PkiError, init_ca, issue, load_ca
from contracts import topics
from contracts.events import AudienceSample, make_event
from contracts.mqtt import connect, make_client
from edge_agent.config import BrokerConfig, UplinkConfig
from sync.outbox import Outbox
from sync.uplink import Uplink
from testbed.broker import Mosquitto, dynsec_plugin, fleet_acl_conf, free_port, port_open
from testbed.procs import terminate

FLEET = "# store device\ns1 d1\ns1 d2\ns2 d1   # another store, same device id\n"


@dataclass
class Pki:
    dir: Path
    server: Issued
    cdp: Issued
    ops: Issued
    s1d1: Issued
    s1d2: Issued
    s2d1: Issued
    rogue_s1d1: Issued  # same CN as s1d1, signed by another CA
    s9d9: Issued  # signed by our CA, but not in the fleet (a box taken out of service)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    init_ca(d, days=1)
    rogue = tmp_path_factory.mktemp("rogue-pki")
    init_ca(rogue, name="edge fleet CA", days=1)  # same name, different key
    return Pki(
        dir=d,
        server=issue(d, "server", days=1),
        cdp=issue(d, "role", name="cdp", days=1),
        ops=issue(d, "role", name="ops", days=1),
        s1d1=issue(d, "device", store_id="s1", device_id="d1", days=1),
        s1d2=issue(d, "device", store_id="s1", device_id="d2", days=1),
        s2d1=issue(d, "device", store_id="s2", device_id="d1", days=1),
        rogue_s1d1=issue(rogue, "device", store_id="s1", device_id="d1", days=1),
        s9d9=issue(d, "device", store_id="s9", device_id="d9", days=1),
    )


@pytest.fixture(scope="module")
def tls_broker(pki: Pki) -> Iterator[Mosquitto]:
    acl = pki.dir / "dynamic-security.json"
    acl.write_text(render_acl(parse_fleet(FLEET)))
    # Appended after the fixture's listener line, so these apply to that (only) listener.
    conf = "\n".join(
        [
            f"cafile {pki.dir / 'ca.pem'}",
            f"certfile {pki.server.cert}",
            f"keyfile {pki.server.key}",
            "require_certificate true",
            "use_identity_as_username true",
            fleet_acl_conf(acl),
        ]
    )
    with Mosquitto(extra_conf=conf) as m:
        yield m


def bcfg(m: Mosquitto, pki: Pki, who: Issued | None, ca: Path | None = None) -> BrokerConfig:
    return BrokerConfig(
        host="127.0.0.1",
        port=m.port,
        keepalive=5,
        tls=True,
        ca_file=ca or pki.dir / "ca.pem",
        cert_file=who.cert if who else None,
        key_file=who.key if who else None,
    )


class Client:
    """A real paho client (MQTT 5, TLS) that records what it gets."""

    def __init__(self, cfg: BrokerConfig, name: str) -> None:
        self.c = make_client(f"{name}-{uuid.uuid4().hex[:6]}", cfg)
        self.c.reconnect_delay_set(30, 60)  # a refused client should not retry during a test
        self.connected = threading.Event()
        self.subacks: list[list[int]] = []
        self.messages: list[tuple[str, bytes]] = []
        self.got = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        connect(self.c, cfg, clean_start=True, session_expiry_s=0)
        self.c.loop_start()

    def _on_connect(self, c, u, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self.connected.set()

    def _on_subscribe(self, c, u, mid, reason_codes, properties) -> None:
        with self.got:
            self.subacks.append([rc.value for rc in reason_codes])
            self.got.notify_all()

    def _on_message(self, c, u, msg) -> None:
        with self.got:
            self.messages.append((msg.topic, msg.payload))
            self.got.notify_all()

    def subscribe(self, topic: str) -> int:
        n = len(self.subacks)
        self.c.subscribe(topic, qos=1)
        with self.got:
            assert self.got.wait_for(lambda: len(self.subacks) > n, 5)
            return self.subacks[n][0]

    def publish(self, topic: str, payload: bytes) -> int:
        """Returns the PUBACK reason code (MQTT 5: 0 ok, 0x87 not authorised, 0x10 no subs)."""
        codes: list[int] = []
        done = threading.Event()

        def on_publish(c, u, mid, reason_code, properties) -> None:
            codes.append(reason_code.value)
            done.set()

        self.c.on_publish = on_publish
        self.c.publish(topic, payload, qos=1)
        assert done.wait(5), "no PUBACK"
        return codes[0]

    def wait_messages(self, n: int, timeout: float = 5) -> bool:
        with self.got:
            return self.got.wait_for(lambda: len(self.messages) >= n, timeout)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def clients() -> Iterator:
    made: list[Client] = []

    def make(cfg: BrokerConfig, name: str, *, must_connect: bool = True) -> Client:
        c = Client(cfg, name)
        made.append(c)
        if must_connect:
            assert c.connected.wait(5), f"{name} could not connect"
        return c

    yield make
    for c in made:
        c.close()


# ---- the PKI and the ACL file (no broker) -----------------------------------------------
def test_pki_writes_private_keys_0600_and_proper_certificates(pki: Pki) -> None:
    ca_cert, _ = load_ca(pki.dir)
    for issued in (pki.server, pki.cdp, pki.ops, pki.s1d1, pki.s2d1):
        assert stat.S_IMODE(issued.key.stat().st_mode) == 0o600
        cert = x509.load_pem_x509_certificate(issued.cert.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn == issued.identity
        # Short-lived: the test asked for one day (plus the clock-skew backdating).
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert lifetime < dt.timedelta(days=1, minutes=10)
    assert stat.S_IMODE((pki.dir / "ca.key").stat().st_mode) == 0o600
    assert pki.s1d1.identity == "s1:d1"
    server = x509.load_pem_x509_certificate(pki.server.cert.read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    rogue = x509.load_pem_x509_certificate(pki.rogue_s1d1.cert.read_bytes())
    with pytest.raises(InvalidSignature):
        rogue.verify_directly_issued_by(ca_cert)


def test_pki_refuses_bad_input_with_a_clear_message(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(PkiError, match="already has a CA"):
        init_ca(pki.dir)
    with pytest.raises(PkiError, match="no CA in"):
        issue(tmp_path, "role", name="cdp")
    with pytest.raises(PkiError, match="device id 'a:b'"):
        issue(pki.dir, "device", store_id="s1", device_id="a:b")
    with pytest.raises(PkiError, match="needs --store and --device"):
        issue(pki.dir, "device", store_id="s1")
    with pytest.raises(PkiError, match="role name"):
        issue(pki.dir, "role", name="s1:d1")  # a role may not pose as a device
    # Dots in ids are fine and do not clobber file names.
    dotted = issue(pki.dir, "device", store_id="s.9", device_id="dev.1", days=1)
    assert dotted.cert.name == "dev.1.pem" and dotted.key.name == "dev.1.key"


def test_acl_grants_each_device_only_its_own_topics() -> None:
    grants = fleet_grants(parse_fleet(FLEET))
    assert list(grants) == ["cdp", "ops", "s1:d1", "s1:d2", "s2:d1"]
    assert grants["s1:d1"] == device_grants("s1", "d1")
    assert Grant("write", "stores/s1/devices/d1/events") in grants["s1:d1"]
    assert Grant("read", "stores/s1/cmd/#") in grants["s1:d1"]
    assert not any("s2" in g.topic or "d2" in g.topic for g in grants["s1:d1"])
    # Only the CDP may subscribe to its share group, and only by that exact filter.
    share = Grant("subscribe", "$share/cdp/stores/+/devices/+/events")
    assert [who for who, gs in grants.items() if share in gs] == ["cdp"]
    assert not any(g.topic.startswith("$") for who in grants if who != "cdp" for g in grants[who])
    assert Grant("write", "stores/+/cmd/#") in grants["ops"]
    # The plugin's file: deny by default, one role per identity, its grants and nothing else.
    doc = json.loads(render_acl(parse_fleet(FLEET)))
    assert doc["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    assert doc["clients"][2] == {"username": "s1:d1", "roles": [{"rolename": "s1:d1"}]}
    cdp = {(a["acltype"], a["topic"]) for a in doc["roles"][0]["acls"]}
    assert ("subscribeLiteral", "$share/cdp/stores/+/devices/+/events") in cdp
    assert ("publishClientReceive", "stores/+/devices/+/events") in cdp
    s1d1 = {(a["acltype"], a["topic"]) for a in doc["roles"][2]["acls"]}
    assert ("subscribePattern", "stores/s1/cmd/#") in s1d1
    assert ("publishClientReceive", "stores/s1/cmd/#") in s1d1
    assert ("publishClientSend", "stores/s1/devices/d1/events") in s1d1
    assert all(a["allow"] is True for r in doc["roles"] for a in r["acls"])
    with pytest.raises(FleetError, match="both 'cdp'"):
        fleet_grants([], ops_identity="cdp")


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("s1\n", "line 1: expected 'STORE DEVICE'"),
        ("s1 d1\n\ns1 d1 extra\n", "line 3: expected"),
        ("s1 d+1\n", "line 1: device id 'd\\+1'"),
        ("# ok\ns1 d1\ns1,d1\n", "line 3: s1 d1 already on line 2"),
        ("s#1 d1\n", "line 1: expected"),
    ],
)
def test_fleet_errors_name_the_line(text: str, msg: str) -> None:
    with pytest.raises(FleetError, match=msg):
        parse_fleet(text)


_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,10}\Z")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_parse_fleet_fuzz_only_raises_fleet_error(text: str) -> None:
    try:
        fleet = parse_fleet(text)
    except FleetError as exc:
        assert "\n" not in str(exc)
        return
    for d in fleet:  # whatever it accepts is safe to put in a topic and an ACL line
        assert not set(d.store_id + d.device_id) & set("+#/ \t\n\x00:")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_ids, _ids), max_size=12, unique=True))
def test_render_then_parse_roundtrip(pairs: list[tuple[str, str]]) -> None:
    fleet_text = "".join(f"{s} {d}\n" for s, d in pairs)
    fleet = parse_fleet(fleet_text)
    assert fleet == [FleetDevice(s, d) for s, d in pairs]
    doc = json.loads(render_acl(fleet))
    roles = {r["rolename"]: r["acls"] for r in doc["roles"]}
    assert [c["username"] for c in doc["clients"]] == [
        "cdp",
        "ops",
        *(f"{s}:{d}" for s, d in pairs),
    ]
    for s, d in pairs:
        topics_granted = {a["topic"] for a in roles[f"{s}:{d}"]}
        assert topics_granted == {g.topic for g in device_grants(s, d)}


def test_edge_ops_pki_and_acl_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = tmp_path / "pki"
    assert ops_cli.main(["pki", "init", "--dir", str(d), "--days", "2"]) == 0
    assert ops_cli.main(["pki", "init", "--dir", str(d)]) == 1  # never clobbers a CA
    assert "already has a CA" in capsys.readouterr().err
    argv = ["pki", "issue", "--dir", str(d), "device", "--store", "s1", "--device", "d1"]
    assert ops_cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["identity"] == "s1:d1" and Path(out["key"]).stat().st_mode & 0o077 == 0
    assert ops_cli.main(["pki", "issue", "--dir", str(d), "server", "--host", "broker.lan"]) == 0
    assert ops_cli.main(["pki", "issue", "--dir", str(d), "role", "--name", "cdp"]) == 0
    assert ops_cli.main(["pki", "issue", "--dir", str(d), "device", "--store", "s1"]) == 2
    assert "needs --store and --device" in capsys.readouterr().err
    fleet = tmp_path / "fleet.txt"
    fleet.write_text(FLEET)
    out_acl = tmp_path / "acl"
    assert ops_cli.main(["acl", str(fleet), "--out", str(out_acl)]) == 0
    assert {"username": "s2:d1", "roles": [{"rolename": "s2:d1"}]} in json.loads(
        out_acl.read_text()
    )["clients"]
    fleet.write_text("s1 d1\nbad\n")
    assert ops_cli.main(["acl", str(fleet)]) == 2
    assert "line 2" in capsys.readouterr().err
    assert ops_cli.main(["acl", str(tmp_path / "missing.txt")]) == 2


def test_shipped_example_acl_is_what_the_renderer_makes() -> None:
    ex = Path(__file__).resolve().parents[2] / "central" / "examples"
    fleet = parse_fleet((ex / "fleet.txt").read_text())
    assert (ex / "dynamic-security.json").read_text() == render_acl(fleet)
    conf = (ex / "mosquitto.conf").read_text()
    settings_lines = [line for line in conf.splitlines() if not line.startswith("#")]
    for key in (
        "require_certificate true",
        "use_identity_as_username true",
        "plugin_opt_config_file /etc/mosquitto/dynamic-security.json",
    ):
        assert key in settings_lines
    # An acl_file next to the plugin would grant every SUBSCRIBE of clients the plugin defers.
    assert not any(line.startswith("acl_file") for line in settings_lines)


# ---- over a real mosquitto with TLS and the ACL -----------------------------------------
@pytest.mark.timeout(30)
def test_uplink_and_cdp_sink_deliver_over_tls(tls_broker: Mosquitto, pki: Pki, tmp_path) -> None:
    sink = CdpSink(bcfg(tls_broker, pki, pki.cdp), tmp_path / "cdp.db", group="cdp")
    assert sink.start(wait_s=5), "the CDP identity could not subscribe to $share/cdp/..."
    evs = [
        make_event(
            AudienceSample(screen_id="scr", people=i % 5, watchers=i % 2),
            store_id="s1",
            device_id="d1",
        )
        for i in range(500)
    ]
    cfg = UplinkConfig(max_batch=50, linger_s=0.02)
    try:
        with Outbox(tmp_path / "outbox.db") as ob:
            ob.append(evs)
            up = Uplink(ob, bcfg(tls_broker, pki, pki.s1d1), "s1", "d1", cfg)
            up.start()
            try:
                assert sink.wait_for(500, 15), (sink.stats(), up.stats())
                # The CDP's confirmations pass the ACL too: the outbox empties.
                assert up.flush(10), up.stats()
                assert up.stats()["refused_batches"] == 0
            finally:
                up.stop(flush_timeout_s=0)
        assert sink.ids() == {e.id for e in evs}
        assert sink.stats()["rejected"] == 0
    finally:
        sink.stop(end_session=True)


@pytest.mark.timeout(30)
def test_device_cannot_publish_as_another_device_or_store(
    tls_broker: Mosquitto, pki: Pki, clients
) -> None:
    cdp = clients(bcfg(tls_broker, pki, pki.cdp), "cdp")
    assert cdp.subscribe(topics.ALL_EVENTS) == 1  # granted QoS 1
    dev = clients(bcfg(tls_broker, pki, pki.s1d1), "s1d1")
    forged = [
        topics.events("s2", "d1"),  # another store
        topics.events("s1", "d2"),  # another device of its store
        topics.state("s2", "d1"),
        topics.delivered("s1", "d1"),  # only the CDP confirms delivery
        topics.store_cmd("s1", "content"),  # only ops sends commands
    ]
    for t in forged:
        assert dev.publish(t, b'{"forged":true}') == 0x87, t  # MQTT 5 PUBACK: Not authorized
    assert dev.publish(topics.events("s1", "d1"), b"{}") == 0  # its own topic: fine
    assert cdp.wait_messages(1)
    time.sleep(0.3)  # anything forged would have arrived by now
    assert [t for t, _ in cdp.messages] == [topics.events("s1", "d1")]


@pytest.mark.timeout(30)
def test_device_cannot_read_another_stores_commands(
    tls_broker: Mosquitto, pki: Pki, clients
) -> None:
    dev = clients(bcfg(tls_broker, pki, pki.s1d1), "s1d1")
    assert dev.subscribe(topics.store_cmd("s1", "#")) == 1
    assert dev.subscribe(topics.device_cmd("s1", "d1", "+")) == 1  # what Downlink subscribes
    # Refused at SUBSCRIBE already (MQTT 5 SUBACK 0x87); what arrives is checked below too.
    wide = [
        dev.subscribe(t)
        for t in (topics.store_cmd("s2", "#"), topics.device_cmd("s1", "d2", "#"), "stores/#")
    ]
    assert wide == [0x87] * 3
    ops = clients(bcfg(tls_broker, pki, pki.ops), "ops")
    for t in (
        topics.store_cmd("s2", "content"),
        topics.device_cmd("s2", "d1", "content"),
        topics.device_cmd("s1", "d2", "content"),
        topics.store_cmd("s1", "content"),  # the only one for s1:d1
    ):
        assert ops.publish(t, b"cmd") in (0, 0x10), t
    assert dev.wait_messages(1)
    time.sleep(0.3)
    got = {t for t, _ in dev.messages}
    assert got == {topics.store_cmd("s1", "content")}, (got, wide)


@pytest.mark.timeout(60)
def test_devices_cannot_join_the_cdps_shared_subscription(
    tls_broker: Mosquitto, pki: Pki, clients, tmp_path: Path
) -> None:
    """A fleet certificate must not get into the CDP's share group: mosquitto hands each batch to
    the next member in turn and checks "read" only then, so a member without the right drops
    its turns (the uplink would have to re-send them; with confirm = "broker" they were lost)."""
    share = topics.shared("cdp", topics.ALL_EVENTS)
    rogue = clients(bcfg(tls_broker, pki, pki.s1d1), "rogue-s1d1")
    stranger = clients(bcfg(tls_broker, pki, pki.s9d9), "stranger-s9d9")
    subacks = {
        (name, t): c.subscribe(t)
        for name, c in (("s1:d1", rogue), ("s9:d9", stranger))
        for t in (share, topics.ALL_EVENTS, "#")
    }
    assert rogue.subscribe(topics.store_cmd("s1", "#")) == 1  # its own store's commands: fine
    evs = [
        make_event(
            AudienceSample(screen_id="scr", people=i % 5, watchers=0), store_id="s2", device_id="d1"
        )
        for i in range(200)
    ]
    # 40 batches of 5; no re-send can happen during the test, so a lost turn shows as a gap.
    cfg = UplinkConfig(max_batch=5, linger_s=0, confirm_timeout_s=60)
    sink = CdpSink(bcfg(tls_broker, pki, pki.cdp), tmp_path / "cdp.db", group="cdp")
    try:
        assert sink.start(wait_s=5), "the CDP identity could not subscribe to $share/cdp/..."
        with Outbox(tmp_path / "outbox.db") as ob:
            ob.append(evs)
            up = Uplink(ob, bcfg(tls_broker, pki, pki.s2d1), "s2", "d1", cfg)
            up.start()
            try:
                delivered = up.flush(15)
                stats = up.stats()
            finally:
                up.stop(flush_timeout_s=0)
        assert delivered, (stats, sink.stats(), subacks)
        assert stats["confirmed_batches"] == 40 and stats["resent_unconfirmed"] == 0, stats
        assert sink.stats()["batches"] == 40 and sink.stats()["duplicates"] == 0
        assert sink.ids() == {e.id for e in evs}
    finally:
        sink.stop(end_session=True)
    # mosquitto handles one message after another: a command published now reaches the rogue
    # after anything the batches could have brought it.
    ops = clients(bcfg(tls_broker, pki, pki.ops), "ops")
    assert ops.publish(topics.store_cmd("s1", "content"), b"end") == 0
    assert rogue.wait_messages(1)
    assert rogue.messages == [(topics.store_cmd("s1", "content"), b"end")]
    assert stranger.messages == []
    # The broker refuses the subscriptions outright (MQTT 5 SUBACK 0x87 Not authorized).
    assert subacks == dict.fromkeys(subacks, 0x87), subacks


@pytest.mark.timeout(30)
@pytest.mark.parametrize("who", ["no-cert", "other-ca", "plain-tcp"])
def test_clients_without_a_fleet_certificate_cannot_connect(
    tls_broker: Mosquitto, pki: Pki, clients, who: str
) -> None:
    if who == "plain-tcp":
        cfg = BrokerConfig(host="127.0.0.1", port=tls_broker.port, keepalive=5)
    elif who == "no-cert":
        cfg = bcfg(tls_broker, pki, None)
    else:
        cfg = bcfg(tls_broker, pki, pki.rogue_s1d1)
    c = clients(cfg, who, must_connect=False)
    assert not c.connected.wait(1.5), f"{who} got a CONNACK"
    # The broker's own client works on the same listener (so the refusal is about the cert).
    ok = clients(bcfg(tls_broker, pki, pki.s1d2), "s1d2")
    assert ok.connected.is_set()


@pytest.mark.timeout(30)
def test_shipped_example_conf_runs(pki: Pki, tmp_path: Path, clients) -> None:
    """The example mosquitto.conf, with its paths pointed at this test's PKI, really starts
    and admits a fleet device (a typo in the example would fail here, not in a store)."""
    ex = Path(__file__).resolve().parents[2] / "central" / "examples"
    acl = tmp_path / "dynamic-security.json"  # a copy: the example stays untouched
    shutil.copy(ex / "dynamic-security.json", acl)
    port = free_port()
    conf = (
        (ex / "mosquitto.conf")
        .read_text()
        .replace("/etc/mosquitto/pki/ca.pem", str(pki.dir / "ca.pem"))
        .replace("/etc/mosquitto/pki/crl.pem", str(pki.dir / "crl.pem"))
        .replace("/etc/mosquitto/pki/server.pem", str(pki.server.cert))
        .replace("/etc/mosquitto/pki/server.key", str(pki.server.key))
        .replace("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so", str(dynsec_plugin()))
        .replace("/etc/mosquitto/dynamic-security.json", str(acl))
        .replace("/var/lib/mosquitto/", f"{tmp_path}/")
        .replace("listener 8883", f"listener {port} 127.0.0.1")
    )
    settings_lines = [line for line in conf.splitlines() if not line.startswith("#")]
    assert str(port) in conf and not any("/etc/" in line for line in settings_lines)
    if os.geteuid() == 0:
        conf += "user root\n"  # as root mosquitto would drop to a user who cannot read tmp
    (tmp_path / "m.conf").write_text(conf + f"log_dest file {tmp_path}/m.log\n")
    proc = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(tmp_path / "m.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "m.log").read_text()
            time.sleep(0.02)
        box = issue(pki.dir, "device", store_id="berlin-01", device_id="screen-entrance", days=1)
        cfg = BrokerConfig(
            port=port, tls=True, ca_file=pki.dir / "ca.pem", cert_file=box.cert, key_file=box.key
        )
        dev = clients(cfg, "example-box")
        assert dev.publish(topics.events("berlin-01", "screen-entrance"), b"{}") in (0, 0x10)
        assert dev.publish(topics.events("munich-02", "screen-entrance"), b"{}") == 0x87
    finally:
        terminate(proc)


def test_edge_ops_speaks_tls_to_the_fleet_broker(
    tls_broker: Mosquitto, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture, clients
) -> None:
    """`edge-ops` against the TLS-only broker the README prescribes: with the fleet CA and the
    ops role's certificate it pushes and reads status; without them it says it could not reach
    the broker and exits 1 (never `{"devices": 0}` and 0); a half-given TLS setup is a usage error."""
    tls = ["--host", "127.0.0.1", "--port", str(tls_broker.port), "--ca", str(pki.dir / "ca.pem")]
    ops = [*tls, "--cert", str(pki.ops.cert), "--tls-key", str(pki.ops.key)]
    # A box's retained state, as s1:d1 publishes it.
    box = clients(bcfg(tls_broker, pki, pki.s1d1), "s1:d1").c
    try:
        box.publish(
            topics.device_base("s1", "d1") + "/state",
            json.dumps({"status": "online", "version": "9.9"}), qos=1, retain=True,
        ).wait_for_publish(5)  # fmt: skip
        assert ops_cli.main(["status", "--store", "s1", "--wait", "1", *ops]) == 0
        out = capsys.readouterr().out.splitlines()
        rows = [json.loads(line) for line in out if '"device"' in line]
        assert any(r["device"] == "d1" and r["version"] == "9.9" for r in rows), out
        # Signed and pushed over TLS: the box's command topic gets it.
        keys = tmp_path / "keys"
        assert ops_cli.main(["keygen", "--out", str(keys)]) == 0
        body = tmp_path / "campaigns.json"
        body.write_text(json.dumps({"version": 1, "default": []}))
        push = ["push", "campaigns", str(body), "--store", "s1", "--device", "d1", "--version", "3"]
        assert ops_cli.main([*push, "--key", str(keys / "ops_private.pem"), *ops]) == 0
        assert '"published"' in capsys.readouterr().out
        # Without the ops certificate the broker refuses the handshake: said, exit 1.
        assert ops_cli.main(["status", "--store", "s1", "--wait", "0.5", *tls]) == 1
        assert "could not reach" in capsys.readouterr().err
        sink = ["cdp-sink", "--db", str(tmp_path / "cdp.db"), "--connect-timeout", "2", *tls]
        assert ops_cli.main(sink) == 1
        assert "could not reach" in capsys.readouterr().err
        # Half a TLS setup: a usage error before anything connects.
        assert ops_cli.main(["status", *tls, "--cert", str(pki.ops.cert)]) == 2
        assert "both --cert and --tls-key" in capsys.readouterr().err
    finally:
        box.publish(topics.device_base("s1", "d1") + "/state", b"", qos=1, retain=True)
