"""ESP32 nodes on the in-store bus: their credentials, and the box's store LAN listener for them.

Pure: from a ``StoreLayout`` and the node secrets (a mapping, read and written by
``firmware_cli``), it renders what the box's mosquitto needs to let the nodes in, and no more:

- ``nodes.conf``: a listener on the store LAN (bound by interface or address, from the layout's
  ``[bus]``) with ``allow_anonymous false``, the password file and the ACL below. It is included
  by the box's ``mosquitto.conf`` (``include_dir``) after the loopback listener of the agent and
  players, and ``per_listener_settings true`` keeps that one as it was: anonymous, no ACL.
- ``nodes.passwd``: one ``user:$7$...`` line per node (PBKDF2-SHA512, the format mosquitto 2.0
  reads and ``mosquitto_passwd`` writes; see ``passwd_line``).
- ``nodes.acl``: each node may write its own advert or mmWave topic and its own status topic
  (ESPHome's birth/last-will), nothing else; no node may read anything.

Credentials: a node's MQTT username is its layout id; its MQTT and OTA passwords are ESPHome
secrets named after it (``mqtt_password_secret``, ``ota_password_secret``), generated once by
``fill_secrets`` into the ``secrets.yaml`` beside the rendered configs and kept on every later
render (a node flashed with them keeps working). The layout names nodes, never passwords: it is
shared with installers and kept in version control, the secrets file is not.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from contracts import topics
from edge_agent.box.layout import StoreLayout

NODES_CONF = "nodes.conf"
NODES_ACL = "nodes.acl"
NODES_PASSWD = "nodes.passwd"
NODES_CERT = "nodes-server.crt"  # with [bus] tls: the box's certificate and key for the nodes
NODES_KEY = "nodes-server.key"
# The ESPHome secret holding the store's bus CA certificate: the nodes' certificate_authority.
CA_SECRET = "bus_ca_certificate"
# Where `edge-agent install --with-mosquitto` puts them; the box's mosquitto.conf includes it.
BROKER_DIR = "/etc/edge-agent/mosquitto.d"

# mosquitto_passwd's default is 101. Every CONNECT pays this once (about 2 ms on a Pi 4 at
# 1000); the passwords are random 192-bit tokens, so the stretching is not what keeps them safe.
PBKDF2_ITERATIONS = 1000
_SALT_BYTES = 12  # what mosquitto_passwd uses


@dataclass(frozen=True)
class BusNode:
    """An ESP32 node that publishes on the in-store bus, and the only topics it may write."""

    id: str
    kind: str  # "scanner" | "mmwave"
    topics: tuple[str, ...]

    @property
    def username(self) -> str:
        return self.id


def bus_nodes(layout: StoreLayout) -> list[BusNode]:
    """Every node that joins the bus over Wi-Fi: MQTT scanners and mmWave sensors."""
    store = layout.store.store_id
    nodes = [
        BusNode(
            s.id,
            "scanner",
            (topics.scanner_adverts(store, s.id), topics.node_status(store, s.id)),
        )
        for s in layout.scanners
        if s.output == "mqtt"
    ]
    nodes += [
        BusNode(
            p.id,
            "mmwave",
            (topics.mmwave(store, p.zone, p.id), topics.node_status(store, p.id)),
        )
        for p in layout.presence_sensors
    ]
    return nodes


def _secret_base(node_id: str) -> str:
    # ESPHome secret names are YAML keys; node ids are [a-z0-9-] (layout.NODE_PATTERN), so this
    # is one-to-one ("_" is not allowed in a node id).
    return node_id.replace("-", "_")


def mqtt_password_secret(node_id: str) -> str:
    return f"{_secret_base(node_id)}_mqtt_password"


def ota_password_secret(node_id: str) -> str:
    return f"{_secret_base(node_id)}_ota_password"


def node_secret_names(layout: StoreLayout) -> list[str]:
    return [
        name
        for n in bus_nodes(layout)
        for name in (mqtt_password_secret(n.id), ota_password_secret(n.id))
    ]


def new_password() -> str:
    """32 URL-safe characters (192 random bits): no quoting trouble in YAML, C++ or MQTT."""
    return secrets.token_urlsafe(24)


def fill_secrets(
    layout: StoreLayout, have: Mapping[str, object], make: Callable[[], str] = new_password
) -> dict[str, str]:
    """The node secrets this layout needs that ``have`` lacks, freshly generated. Entries
    already there are never replaced: the node was flashed with them."""
    return {name: make() for name in node_secret_names(layout) if name not in have}


def node_passwords(layout: StoreLayout, have: Mapping[str, object]) -> dict[str, str]:
    """username -> MQTT password for every bus node; a missing or non-string entry is an error
    that names it (the passwd file must never hold a password the node does not have)."""
    out = {}
    for n in bus_nodes(layout):
        name = mqtt_password_secret(n.id)
        value = have.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"secrets: {name}: missing or not a string")
        out[n.username] = value
    return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def passwd_line(
    username: str, password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """``username:$7$<iterations>$<salt>$<hash>``: mosquitto 2.0's PBKDF2-SHA512 entry.

    Written here rather than by ``mosquitto_passwd`` (which Debian ships in the mosquitto
    package): ``mosquitto_passwd -b`` takes the password on its command line, readable by every
    local user in /proc, and a render on an installer's laptop needs no mosquitto at all.
    ``tests/box/test_node_bus.py`` checks our entries against a real mosquitto and our reading of
    the format against ``mosquitto_passwd``'s own output.

    Without ``salt``, the salt is derived from username and password: the same credentials give
    the same line, so a second render or install of an unchanged store changes no file. Salts
    still differ per user (the username is in it), which is what a salt is for.
    """
    if ":" in username or "\n" in username + password:
        raise ValueError(f"{username!r}: no ':' in a username, no line break in either")
    if salt is None:
        seed = hashlib.sha512(f"edge-agent node salt\0{username}\0{password}".encode()).digest()
        salt = seed[:_SALT_BYTES]
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, dklen=64)
    return f"{username}:$7${iterations}${_b64(salt)}${_b64(digest)}"


def check_passwd_line(line: str, password: str) -> bool:
    """Does ``password`` match this ``$7$`` entry (ours or mosquitto_passwd's)?"""
    _user, _, entry = line.strip().partition(":")
    parts = entry.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    salt, want = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]), dklen=len(want))
    return secrets.compare_digest(got, want)


def render_passwd(layout: StoreLayout, have: Mapping[str, object]) -> str:
    return "".join(f"{passwd_line(u, p)}\n" for u, p in node_passwords(layout, have).items())


def render_acl(layout: StoreLayout) -> str:
    """mosquitto ``acl_file`` lines: per node, ``topic write`` for its own topics only.

    Explicit per-user grants rather than one ``pattern ... %u`` line: an mmWave topic carries
    its zone, and a pattern could only grant every zone (``zones/+/mmwave/%u``); here a sensor
    moved to another zone in the layout loses its old topic at the next render.

    No ``read`` grant: a node hears nothing. (An acl_file grants every SUBSCRIBE and checks
    "read" at delivery, central/acl.py; nothing is delivered to a node, and the agent's bus uses
    no ``$share`` group a node could join.)
    """
    store = layout.store.store_id
    out = [
        f"# mosquitto ACL for the ESP32 nodes of store {store} on the store LAN listener.",
        "# Generated by `edge-agent firmware render`; edit the layout, not this file.",
        "# A node may publish its own topics only; anything else it sends is dropped.",
    ]
    for n in bus_nodes(layout):
        out += ["", f"user {n.username}", *(f"topic write {t}" for t in n.topics)]
    return "\n".join(out) + "\n"


def render_listener(layout: StoreLayout, broker_dir: str = BROKER_DIR) -> str:
    """The store LAN listener, included after the loopback one (``per_listener_settings true``
    in the box's mosquitto.conf makes each setting below apply to this listener only)."""
    assert layout.bus is not None  # the layout requires [bus] with any bus node
    bus = layout.bus
    if bus.listen_interface is not None:
        # SO_BINDTODEVICE: this port on the LAN interface only, whatever address DHCP gives it,
        # beside the loopback listener on the same port.
        bind = [f"listener {bus.port}", f"bind_interface {bus.listen_interface}"]
    else:
        bind = [f"listener {bus.port} {bus.bind_address}"]
    return "\n".join(
        [
            f"# Store LAN listener for the ESP32 nodes of store {layout.store.store_id}.",
            "# Generated by `edge-agent firmware render`; edit the layout, not this file.",
            *bind,
            # Every client here is a node with its own password; refusals are logged
            # ("not authorised") and the agent counts them from $SYS/broker/log/N.
            "allow_anonymous false",
            f"password_file {broker_dir}/{NODES_PASSWD}",
            f"acl_file {broker_dir}/{NODES_ACL}",
            # A node's client id is its username, so a node cannot take over the session of
            # another client (the agent's, a player's) by sending that client's id.
            "use_username_as_clientid true",
            *(
                [
                    # The store's own bus CA signed this (bus_tls.py); nodes carry the CA.
                    f"certfile {broker_dir}/{NODES_CERT}",
                    f"keyfile {broker_dir}/{NODES_KEY}",
                    "tls_version tlsv1.2",
                ]
                if bus.tls
                else []
            ),
            "",
        ]
    )


def render_broker(
    layout: StoreLayout,
    have: Mapping[str, object],
    broker_dir: str = BROKER_DIR,
    server: tuple[str, str] | None = None,
) -> dict[str, str]:
    """The mosquitto files for the box, by name (empty when no node joins the bus): listener,
    ACL and passwords, and with ``[bus] tls`` the server certificate and key (``server``, PEM
    cert and key, from ``bus_tls.server_cert``)."""
    if not bus_nodes(layout):
        return {}
    files = {
        NODES_CONF: render_listener(layout, broker_dir),
        NODES_ACL: render_acl(layout),
        NODES_PASSWD: render_passwd(layout, have),
    }
    assert layout.bus is not None
    if layout.bus.tls:
        if server is None:
            raise ValueError("[bus] tls: no server certificate to serve the nodes with")
        files[NODES_CERT], files[NODES_KEY] = server
    return files
