"""ESP32 nodes on the in-store bus, against a real mosquitto started with the box's shipped
mosquitto.conf and the node listener `edge-agent firmware render` writes (passwords and ACL).

The node side is a paho client speaking MQTT 3.1.1 with the credentials the render generated,
as ESPHome does; the agent side is the agent's own InStoreBus on the loopback listener, routed
with a catch-all for the store's topics, to see what must never arrive."""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from contracts import topics
from contracts.mqtt import BrokerConfig, port_open
from edge_agent.app.bus import InStoreBus
from edge_agent.box.bus_auth import LOG_TOPIC, BusAuthWatch
from edge_agent.box.bus_tls import Pem, new_ca, server_cert_problem
from edge_agent.box.firmware_cli import bus_certificates, update_secrets
from edge_agent.box.layout import LayoutError, parse_layout
from edge_agent.box.node_bus import (
    CA_SECRET,
    bus_nodes,
    check_passwd_line,
    fill_secrets,
    mqtt_password_secret,
    node_passwords,
    passwd_line,
    render_acl,
    render_broker,
)
from edge_agent.cli import main
from testbed.broker import Mosquitto, free_port

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "firmware_configs" / "demo-store.layout.toml"
SHIPPED_CONF = ROOT / "systemd" / "mosquitto.conf"
STORE = "store-0042"
SCANNER, RADAR = "node-womens-1", "mmwave-entrance"
WAIT_S = 10.0


def demo_data() -> dict:
    return tomllib.loads(EXAMPLE.read_text())


def wait_for(cond, timeout: float = WAIT_S, what: str = "condition") -> None:
    """Poll a condition (the broker and paho run in other threads and processes)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _once(text: str, old: str, new: str) -> str:
    # The shipped file is edited for the test in exactly these places: if one of them moves,
    # this fails instead of testing a different config.
    assert text.count(old) == 1, f"{old!r} is not in the config exactly once"
    return text.replace(old, new)


@dataclass
class StoreBroker(Mosquitto):
    """The box's mosquitto: systemd/mosquitto.conf as shipped, with the loopback port, state and
    include directory moved into this test's temp dir, and the rendered node listener on a
    second loopback port standing in for the store LAN interface."""

    include_dir: Path = field(default_factory=Path)
    lan_port: int = field(default_factory=free_port)

    def _write_conf(self) -> None:
        conf = SHIPPED_CONF.read_text()
        conf = _once(conf, "listener 1883 127.0.0.1", f"listener {self.port} 127.0.0.1")
        conf = _once(conf, "/var/lib/mosquitto/", f"{self.workdir}/")
        conf = _once(
            conf, "include_dir /etc/edge-agent/mosquitto.d", f"include_dir {self.include_dir}"
        )
        conf = _once(conf, "log_dest stderr", f"log_dest file {self.workdir}/mosquitto.log")
        if os.geteuid() == 0:
            conf += "user root\n"  # as root mosquitto drops to a user who cannot read tmp
        self.conf_path.write_text(conf)


@dataclass
class Seen:
    """What the agent's bus received, by topic."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, topic: str, payload: bytes) -> None:
        with self.lock:
            self.messages.append((topic, payload))

    def topics(self) -> set[str]:
        with self.lock:
            return {t for t, _ in self.messages}

    def payloads(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p in self.messages if t == topic]


@dataclass
class StoreBus:
    broker: StoreBroker
    secrets: dict[str, object]
    seen: Seen
    auth: BusAuthWatch
    agent: InStoreBus


def start_store_broker(tmp_path: Path) -> tuple[StoreBroker, dict[str, object]]:
    """Render the demo layout as an installer does (the box's files pointed at ``tmp_path``) and
    start the box's mosquitto with them; the broker (started) and the generated secrets."""
    layout_path = tmp_path / "store.layout.toml"
    text = EXAMPLE.read_text()
    text = _once(text, 'listen_interface = "eth0"', 'listen_address = "192.0.2.10"')
    # Nodes here dial the loopback address: the box's certificate is issued for what they dial.
    text = _once(text, 'host = "edge-box-0042.local"', 'host = "127.0.0.1"')
    layout_path.write_text(text)
    out = tmp_path / "fw"
    include = out / "mosquitto"
    assert main(["firmware", "render", str(layout_path), "--out", str(out),
                 "--broker-dir", str(include)]) == 0  # fmt: skip
    secrets = yaml.safe_load((out / "secrets.yaml").read_text())
    broker = StoreBroker(include_dir=include)
    nodes_conf = include / "nodes.conf"
    nodes_conf.write_text(
        _once(
            nodes_conf.read_text(),
            "listener 8883 192.0.2.10",
            f"listener {broker.lan_port} 127.0.0.1",
        )
    )
    CA_CERT[broker.lan_port] = out / "bus-ca.crt"
    broker.start()
    try:
        wait_for(lambda: port_open("127.0.0.1", broker.lan_port), what="the node listener")
    except BaseException:
        broker.cleanup()
        raise
    return broker, secrets


CA_CERT: dict[int, Path] = {}  # the store's bus CA by the broker's LAN port


@pytest.fixture
def store_bus(tmp_path: Path) -> Iterator[StoreBus]:
    broker, secrets = start_store_broker(tmp_path)
    bus = None
    try:
        seen, auth = Seen(), BusAuthWatch()
        bus = InStoreBus(BrokerConfig(port=broker.port), f"agent-{STORE}-box-1")
        # Everything of the store (the agent's routes for adverts and mmWave are parts of it:
        # overlapping filters would deliver each message once per filter), and the broker's
        # notices as the agent routes them (app/agent.py _route_bus).
        bus.route("instore/#", seen.on_message)
        bus.route(LOG_TOPIC, auth.on_log, qos=0)
        bus.start()
        assert bus.subscribed.wait(WAIT_S), "the agent's bus did not subscribe"
        yield StoreBus(broker, secrets, seen, auth, bus)
    finally:
        if bus is not None:
            bus.stop()
        broker.cleanup()


class Node:
    """An ESP32 node as the broker sees it: MQTT 3.1.1 with a username and password."""

    def __init__(self, port: int, username: str | None, password: str | None,
                 client_id: str = "", host: str = "127.0.0.1", tls: bool = True) -> None:  # fmt: skip
        self.rc: int | None = None
        self.reason = ""
        self.answered = threading.Event()
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"esp32-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        if username is not None:
            self.c.username_pw_set(username, password)
        if tls and port in CA_CERT:
            # As ESPHome's certificate_authority: the store's bus CA, and the host checked.
            self.c.tls_set(ca_certs=str(CA_CERT[port]))
        self.c.on_connect = self._on_connect
        self.c.connect(host, port)
        self.c.loop_start()

    def _on_connect(self, c, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        # paho reports a 3.1.1 CONNACK in MQTT 5 terms: return code 5 (not authorised) is
        # 135 "Not authorized".
        self.rc = reason_code.value
        self.reason = str(reason_code)
        if reason_code.is_failure:
            # paho would try again every second or two (as ESPHome does); once is enough
            # here, and keeps the broker's count of refusals exact.
            c.disconnect()
        self.answered.set()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT_S)  # PUBACK: the broker has it (and dropped it, if denied)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def nodes() -> Iterator:
    made: list[Node] = []

    def make(*args, **kwargs) -> Node:  # noqa: ANN002, ANN003
        node = Node(*args, **kwargs)
        made.append(node)
        assert node.answered.wait(WAIT_S), "no CONNACK"
        return node

    yield make
    for node in made:
        node.close()


def password(sb: StoreBus, node: str) -> str:
    value = sb.secrets[mqtt_password_secret(node)]
    assert isinstance(value, str)
    return value


# ---- a real broker --------------------------------------------------------------------------
def test_a_node_publishes_its_own_topics_and_the_agent_gets_them(store_bus: StoreBus, nodes):
    scanner = nodes(store_bus.broker.lan_port, SCANNER, password(store_bus, SCANNER))
    radar = nodes(store_bus.broker.lan_port, RADAR, password(store_bus, RADAR))
    assert scanner.rc == 0 and radar.rc == 0
    advert = b'{"address":"C0:FF:EE:00:64:01","rssi":-61,"receiver":"node-womens-1"}'
    scanner.publish(topics.scanner_adverts(STORE, SCANNER), advert)
    scanner.publish(topics.node_status(STORE, SCANNER), b"online", retain=True)
    radar.publish(topics.mmwave(STORE, "entrance", RADAR), b"ON", retain=True)
    seen = store_bus.seen
    wait_for(
        lambda: (
            {
                topics.scanner_adverts(STORE, SCANNER),
                topics.mmwave(STORE, "entrance", RADAR),
                topics.node_status(STORE, SCANNER),
            }
            <= seen.topics()
        ),
        what="the nodes' messages at the agent",
    )
    assert seen.payloads(topics.scanner_adverts(STORE, SCANNER)) == [advert]
    assert seen.payloads(topics.mmwave(STORE, "entrance", RADAR)) == [b"ON"]
    # Logged in: nothing was refused.
    assert store_bus.auth.health() == {"bus_nodes_refused": "0"}


def test_a_node_cannot_publish_another_nodes_or_the_agents_topics(store_bus: StoreBus, nodes):
    scanner = nodes(store_bus.broker.lan_port, SCANNER, password(store_bus, SCANNER))
    radar = nodes(store_bus.broker.lan_port, RADAR, password(store_bus, RADAR))
    forbidden = {
        scanner: [
            topics.scanner_adverts(STORE, "node-entrance-1"),  # another scanner
            topics.mmwave(STORE, "entrance", RADAR),  # the radar's
            topics.screen_cmd(STORE, "screen-entrance"),  # the agent's to the player
            topics.emergency(STORE),
            topics.alerts(STORE, "a1"),
            topics.node_status(STORE, RADAR),
            topics.scanner_adverts("store-0043", SCANNER),  # its own id, another store
        ],
        radar: [
            topics.mmwave(STORE, "womens", RADAR),  # its own id, a zone it is not in
            topics.scanner_adverts(STORE, SCANNER),
            topics.zone_occupancy(STORE, "entrance"),
        ],
    }
    for node, denied in forbidden.items():
        for topic in denied:
            node.publish(topic, b"forged", retain=True)
    # Each node's own topic last: once both arrive, whatever came before them from the same
    # client has been routed too (mosquitto keeps one client's messages in order).
    scanner.publish(topics.scanner_adverts(STORE, SCANNER), b"{}")
    radar.publish(topics.mmwave(STORE, "entrance", RADAR), b"OFF")
    seen = store_bus.seen
    wait_for(
        lambda: (
            {topics.scanner_adverts(STORE, SCANNER), topics.mmwave(STORE, "entrance", RADAR)}
            <= seen.topics()
        ),
        what="the nodes' own messages",
    )
    assert seen.topics() == {
        topics.scanner_adverts(STORE, SCANNER),
        topics.mmwave(STORE, "entrance", RADAR),
    }
    assert all(p != b"forged" for _, p in seen.messages)


def test_wrong_credentials_are_refused_and_counted(store_bus: StoreBus, nodes):
    lan = store_bus.broker.lan_port
    good = password(store_bus, SCANNER)
    attempts = [
        (SCANNER, good[:-1] + ("x" if good[-1] != "x" else "y")),  # a wrong password
        (SCANNER, password(store_bus, RADAR)),  # another node's password
        ("node-nobody", good),  # a user the store does not have
        (None, None),  # no credentials at all
    ]
    for i, (user, pw) in enumerate(attempts, 1):
        node = nodes(lan, user, pw)
        assert (node.rc, node.reason) == (135, "Not authorized"), f"attempt {i}: {node.reason}"
        wait_for(lambda i=i: store_bus.auth.refused == i, what=f"refusal {i} counted")
    assert store_bus.auth.health() == {
        "bus_nodes_refused": str(len(attempts)),
        "bus_nodes_refused_last_from": "127.0.0.1",
    }
    # The loopback listener is as it was: the agent and players connect without credentials.
    anonymous = nodes(store_bus.broker.port, None, None)
    assert anonymous.rc == 0
    assert store_bus.auth.refused == len(attempts)


def test_a_node_cannot_take_over_the_agents_session(store_bus: StoreBus, nodes):
    """Client ids are one namespace across listeners; on the nodes' listener the client id is
    the username, so a node sending the agent's id does not disconnect the agent."""
    scanner = nodes(
        store_bus.broker.lan_port,
        SCANNER,
        password(store_bus, SCANNER),
        client_id=f"agent-{STORE}-box-1",
    )
    assert scanner.rc == 0
    scanner.publish(topics.scanner_adverts(STORE, SCANNER), b"{}")
    wait_for(lambda: topics.scanner_adverts(STORE, SCANNER) in store_bus.seen.topics())
    assert store_bus.agent.is_connected()
    log = (store_bus.broker.workdir / "mosquitto.log").read_text()
    assert "already connected" not in log


# ---- credentials, files and layout (no broker) ----------------------------------------------
@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="no mosquitto_passwd")
def test_our_reading_of_the_passwd_format_is_mosquitto_passwds(tmp_path: Path):
    plain = tmp_path / "pw"
    plain.write_text("node-a:s3cret-Value_1\n")
    # -U hashes a plaintext file in place: the password never goes on a command line.
    subprocess.run(["mosquitto_passwd", "-U", str(plain)], check=True, timeout=30)
    theirs = plain.read_text().strip()
    assert theirs.startswith("node-a:$7$")
    assert check_passwd_line(theirs, "s3cret-Value_1")
    assert not check_passwd_line(theirs, "s3cret-Value_2")
    ours = passwd_line("node-a", "s3cret-Value_1")
    assert re.fullmatch(r"node-a:\$7\$1000\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", ours)
    assert check_passwd_line(ours, "s3cret-Value_1")
    # Same credentials, same line (an unchanged store rewrites nothing); another user, another
    # salt even with the same password.
    assert passwd_line("node-a", "s3cret-Value_1") == ours
    assert passwd_line("node-b", "s3cret-Value_1").split("$")[3] != ours.split("$")[3]


def test_secrets_are_generated_once_kept_and_private(tmp_path: Path):
    layout = parse_layout(demo_data())
    path = tmp_path / "secrets.yaml"
    path.write_text('# the installer\'s\nwifi_ssid: "store"\nwifi_password: "12345678"\n')
    os.chmod(path, 0o644)
    first, generated = update_secrets(path, layout)
    assert generated == [
        "node_womens_1_mqtt_password",
        "node_womens_1_ota_password",
        "mmwave_entrance_mqtt_password",
        "mmwave_entrance_ota_password",
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("# the installer's\nwifi_ssid:")  # appended, never rewritten
    values = [first[name] for name in generated]
    assert len(set(values)) == 4 and all(len(str(v)) == 32 for v in values)
    again, none = update_secrets(path, layout)
    assert none == [] and again == first and path.read_text() == text
    # The passwd file holds a hash of each node's own password, never the password.
    server, _ca = bus_certificates(tmp_path, layout)
    passwd = render_broker(layout, first, server=server)["nodes.passwd"]
    for line, node in zip(passwd.splitlines(), ("node-womens-1", "mmwave-entrance"), strict=True):
        assert line.startswith(f"{node}:$7$")
        assert check_passwd_line(line, str(first[mqtt_password_secret(node)]))
        assert str(first[mqtt_password_secret(node)]) not in passwd


def test_rendered_configs_hold_no_secret_and_the_layout_none_either(tmp_path: Path):
    out = tmp_path / "fw"
    assert main(["firmware", "render", str(EXAMPLE), "--out", str(out)]) == 0
    secrets = yaml.safe_load((out / "secrets.yaml").read_text())
    # Everything but secrets.yaml and the bus CA's key may be shared (the layout is in version
    # control). The CA's certificate is a secret entry only because ESPHome takes it that way.
    private = {"secrets.yaml", "bus-ca.key", "nodes-server.key"}
    shared = [p for p in out.rglob("*") if p.is_file() and p.name not in private]
    shared.append(EXAMPLE)
    for name, value in secrets.items():
        if name != CA_SECRET:
            assert all(value not in p.read_text() for p in shared), name
    assert secrets[CA_SECRET] == (out / "bus-ca.crt").read_text()
    # The CA's key stays beside the secrets: never in the box's broker files, never 0644.
    ca_key = (out / "bus-ca.key").read_text()
    assert all(
        ca_key not in p.read_text()
        for p in out.rglob("*")
        if p.is_file() and p.name != "bus-ca.key"
    )
    for private_file in ("mosquitto/nodes.passwd", "mosquitto/nodes-server.key", "bus-ca.key"):
        assert stat.S_IMODE((out / private_file).stat().st_mode) == 0o600, private_file


def test_fill_secrets_never_replaces_and_a_missing_one_is_named():
    layout = parse_layout(demo_data())
    have = {"node_womens_1_mqtt_password": "kept"}
    new = fill_secrets(layout, have, make=lambda: "fresh")
    assert "node_womens_1_mqtt_password" not in new and len(new) == 3
    with pytest.raises(ValueError, match="mmwave_entrance_mqtt_password: missing"):
        node_passwords(layout, have)


def test_acl_grants_each_node_its_own_topics_only():
    layout = parse_layout(demo_data())
    acl = render_acl(layout)
    grants = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert grants == [
        f"user {SCANNER}",
        f"topic write {topics.scanner_adverts(STORE, SCANNER)}",
        f"topic write {topics.node_status(STORE, SCANNER)}",
        f"user {RADAR}",
        f"topic write {topics.mmwave(STORE, 'entrance', RADAR)}",
        f"topic write {topics.node_status(STORE, RADAR)}",
    ]
    assert [n.id for n in bus_nodes(layout)] == [SCANNER, RADAR]  # the UART scanner is not one


@pytest.mark.parametrize(
    "bus, expected",
    [
        ({"host": "box.local"}, "bus.listen_interface: required when host 'box.local' is a name"),
        (
            {"host": "box.local", "listen_interface": "eth0", "listen_address": "10.0.0.2"},
            "bus.listen_address: give listen_interface or listen_address, not both",
        ),
        ({"host": "box.local", "listen_address": "127.0.0.1"}, "is not a store LAN address"),
        ({"host": "10.0.0.2", "listen_address": "0.0.0.0"}, "is not a store LAN address"),
        ({"host": "box .local", "listen_interface": "eth0"}, "bus.host: String should match"),
    ],
)
def test_the_bus_listener_is_refused_when_it_could_take_loopback(bus: dict, expected: str):
    data = demo_data()
    data["bus"] = bus
    with pytest.raises(LayoutError) as exc:
        parse_layout(data)
    assert any(expected in line for line in exc.value.errors), exc.value.errors


def test_an_ip_host_is_its_own_listen_address_and_node_ids_keep_off_the_boxs_clients():
    data = demo_data()
    data["bus"] = {"host": "192.168.50.2"}
    listener = render_broker(parse_layout(data), {"node_womens_1_mqtt_password": "a",
                                                  "mmwave_entrance_mqtt_password": "b"})  # fmt: skip
    assert "listener 1883 192.168.50.2\n" in listener["nodes.conf"]
    data["presence_sensors"][0]["id"] = "agent-store-0042-box-1"
    with pytest.raises(LayoutError) as exc:
        parse_layout(data)
    assert exc.value.errors[0].startswith("presence_sensors[0].id: 'agent-store-0042-box-1'")


# ---- TLS on the nodes' listener ---------------------------------------------------------------
MQTT_CONNECT_311 = bytes.fromhex("101000044d5154540402003c000474657374")  # client id "test"


def test_the_nodes_listener_speaks_tls_only(store_bus: StoreBus, nodes):
    """A node trusting the store's bus CA gets in over TLS (the tests above); one speaking
    plain MQTT gets no CONNACK, its password never read; one dialing a name the box's
    certificate is not for refuses the box itself (ESPHome checks the name:
    skip_cert_cn_check false)."""
    lan = store_bus.broker.lan_port
    with socket.create_connection(("127.0.0.1", lan), timeout=WAIT_S) as plain:
        plain.sendall(MQTT_CONNECT_311)
        got = b""
        try:
            while chunk := plain.recv(64):
                got += chunk
        except ConnectionResetError:
            pass  # what mosquitto does to a handshake that is not TLS
        assert not got.startswith(b"\x20"), got  # closed without a CONNACK
    with pytest.raises(ssl.SSLCertVerificationError, match="localhost"):
        Node(lan, SCANNER, password(store_bus, SCANNER), host="localhost")
    assert nodes(lan, SCANNER, password(store_bus, SCANNER)).rc == 0


def test_renders_keep_the_ca_and_a_new_host_gets_a_new_certificate(tmp_path: Path, capsys):
    """The CA is the nodes' trust anchor: made once, kept by every render. The box's
    certificate is kept while it does for the bus host, and issued again by the same CA when
    the host changes (the nodes, trusting the CA, keep working)."""
    out = tmp_path / "fw"
    layout = tmp_path / "store.layout.toml"
    layout.write_text(EXAMPLE.read_text())
    assert main(["firmware", "render", str(layout), "--out", str(out)]) == 0
    ca, cert = (
        (out / "bus-ca.crt").read_text(),
        (out / "mosquitto" / "nodes-server.crt").read_text(),
    )
    assert "made the store's bus CA" in capsys.readouterr().out
    assert main(["firmware", "render", str(layout), "--out", str(out)]) == 0
    assert (out / "bus-ca.crt").read_text() == ca
    assert (out / "mosquitto" / "nodes-server.crt").read_text() == cert
    layout.write_text(EXAMPLE.read_text().replace("edge-box-0042.local", "box-42.store.lan"))
    assert main(["firmware", "render", str(layout), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "issued for edge-box-0042.local, not box-42.store.lan" in said, said
    new = (out / "mosquitto" / "nodes-server.crt").read_text()
    assert new != cert and (out / "bus-ca.crt").read_text() == ca
    server = Pem((out / "mosquitto" / "nodes-server.key").read_text(), new)
    ca_pem = Pem((out / "bus-ca.key").read_text(), ca)
    assert server_cert_problem(server, ca_pem, "box-42.store.lan") is None
    # A certificate of another store's CA is not kept.
    other = new_ca("store-0043")
    assert "not signed by the store's bus CA" in str(
        server_cert_problem(server, other, "box-42.store.lan")
    )


def test_a_ca_entry_that_is_not_the_ca_is_named(tmp_path: Path, capsys):
    out = tmp_path / "fw"
    assert main(["firmware", "render", str(EXAMPLE), "--out", str(out)]) == 0
    (out / "bus-ca.key").unlink()
    (out / "bus-ca.crt").unlink()  # the CA lost: a new one would strand the flashed nodes
    assert main(["firmware", "render", str(EXAMPLE), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bus_ca_certificate is not the store's bus CA" in err[0], err
