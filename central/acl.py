"""Render the fleet's ACL for mosquitto's dynamic security plugin: each identity gets exactly the
topics it needs, and nothing else, subscriptions included.

With ``require_certificate true`` and ``use_identity_as_username true`` the broker takes a
client's username from its certificate CN (``central.pki``), so these grants cannot be claimed by
anyone without the matching key. Everything not granted is denied: publish, delivery and
SUBSCRIBE, for every identity, and a CA-signed certificate that is not in the fleet (a box taken
out of service) gets nothing at all.

- device ``<store>:<device>``: write its own ``events``, ``state``, ``health``, ``acks``; read
  its own ``cmd/#`` and ``delivered``, and its store's ``cmd/#``. Nothing of other devices.
- the CDP identity: read every device's ``events``, subscribe ``$share/<group>/`` to them (that
  exact filter), write ``delivered`` confirmations.
- the ops identity: write device and store ``cmd`` topics; read ``state``, ``acks``, ``health``.

Why the plugin and not an ``acl_file`` (measured on mosquitto 2.0.11): the acl_file never checks a
SUBSCRIBE (every filter is granted, ``topic deny`` lines included, which act on publish and
delivery only), and a ``$share/<group>/`` member is served its turn before "read" is checked,
at delivery. So a device certificate subscribing ``$share/cdp/stores/+/devices/+/events`` joined
the CDP's group and its turns were dropped: with two such members the CDP got 13 of a store's 40
batches; the uplink recovers only by re-sending after ``confirm_timeout_s``, and with ``confirm =
"broker"`` the events are lost. The plugin checks each SUBSCRIBE filter as sent, ``$share``
prefix included: the device gets SUBACK 0x87 (Not authorized), never joins, and the CDP gets
every batch on the first send (``tests/central/test_tls_acl.py``). mosquitto 2.0 loads the
plugin's file at start only: after re-rendering, restart the broker (sessions persist).

Explicit grants per device rather than patterns: the plugin has no ``%u``, and a pattern could not
split ``<store>:<device>`` into two topic levels anyway.

Fleet file: one device per line, ``STORE DEVICE`` (or ``STORE,DEVICE`` or ``STORE/DEVICE``);
blank lines and ``#`` comments ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from contracts import topics
from contracts.certnames import device_identity
from contracts.validation import ID_PATTERN

_ID = re.compile(ID_PATTERN)
_SPLIT = re.compile(r"[\s,/]+")


class FleetError(ValueError):
    """A bad fleet file; the message names the line."""


@dataclass(frozen=True)
class FleetDevice:
    store_id: str
    device_id: str

    @property
    def identity(self) -> str:
        return device_identity(self.store_id, self.device_id)


def parse_fleet(text: str, source: str = "fleet") -> list[FleetDevice]:
    out: list[FleetDevice] = []
    seen: dict[tuple[str, str], int] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p for p in _SPLIT.split(line) if p]
        if len(parts) != 2:
            raise FleetError(f"{source} line {n}: expected 'STORE DEVICE', got {line!r}")
        for what, value in zip(("store id", "device id"), parts, strict=True):
            if not _ID.match(value):
                raise FleetError(f"{source} line {n}: {what} {value!r} does not match {ID_PATTERN}")
        key = (parts[0], parts[1])
        if key in seen:
            raise FleetError(
                f"{source} line {n}: {parts[0]} {parts[1]} already on line {seen[key]}"
            )
        seen[key] = n
        out.append(FleetDevice(*key))
    return out


def _check_role(name: str, what: str) -> None:
    if not _ID.match(name):
        raise FleetError(f"{what} {name!r} does not match {ID_PATTERN}")


@dataclass(frozen=True)
class Grant:
    """``write``: publish to ``topic``. ``read``: subscribe to ``topic`` or any filter inside it,
    and receive what is published there. ``subscribe``: subscribe to exactly ``topic`` (a
    ``$share/<group>/`` filter; its messages still need a ``read`` grant for their real topic)."""

    access: Literal["write", "read", "subscribe"]
    topic: str


def device_grants(store_id: str, device_id: str) -> list[Grant]:
    base = topics.device_base(store_id, device_id)
    return [
        Grant("write", topics.events(store_id, device_id)),
        Grant("write", topics.state(store_id, device_id)),
        Grant("write", topics.health(store_id, device_id)),
        Grant("write", topics.acks(store_id, device_id)),
        # Status for ops: its certificate request, screenshots, player error reports, what
        # each screen shows, and the store live (people per zone, open staff alerts).
        Grant("write", f"{base}/csr"),
        Grant("write", f"{base}/screenshots/+"),
        Grant("write", f"{base}/screens/+"),
        Grant("write", f"{base}/live"),
        Grant("write", f"{base}/screen-errors/+"),
        Grant("read", topics.device_cmd(store_id, device_id, "#")),
        Grant("read", topics.delivered(store_id, device_id)),
        Grant("read", topics.store_cmd(store_id, "#")),
    ]


def cdp_grants(share_group: str = "cdp") -> list[Grant]:
    return [
        Grant("read", topics.ALL_EVENTS),  # the plain subscription too (`--group ''`)
        # The only way into the share group: nobody else may subscribe to this filter.
        Grant("subscribe", topics.shared(share_group, topics.ALL_EVENTS)),
        Grant("write", topics.delivered("+", "+")),
    ]


def ops_grants() -> list[Grant]:
    any_device = topics.device_base("+", "+")
    return [
        Grant("write", f"{any_device}/cmd/#"),
        Grant("write", topics.store_cmd("+", "#")),
        *(
            Grant("read", f"{any_device}/{what}")
            for what in (
                "state",
                "acks",
                "health",
                "csr",
                "screenshots/+",
                "screen-errors/+",
                "screens/+",
            )
        ),
    ]


def fleet_grants(
    fleet: Iterable[FleetDevice],
    *,
    cdp_identity: str = "cdp",
    ops_identity: str = "ops",
    share_group: str = "cdp",
) -> dict[str, list[Grant]]:
    """Every identity (certificate CN) and its grants, the CDP and ops first."""
    _check_role(cdp_identity, "CDP identity")
    _check_role(ops_identity, "ops identity")
    _check_role(share_group, "shared subscription group")
    if cdp_identity == ops_identity:
        raise FleetError(f"the CDP and ops identities are both {cdp_identity!r}")
    out = {cdp_identity: cdp_grants(share_group), ops_identity: ops_grants()}
    for d in fleet:
        out[d.identity] = device_grants(d.store_id, d.device_id)
    return out


_DYNSEC_TYPES = {
    "write": ("publishClientSend",),
    "read": ("subscribePattern", "publishClientReceive"),
    "subscribe": ("subscribeLiteral",),
}


def render_acl(
    fleet: Iterable[FleetDevice],
    *,
    cdp_identity: str = "cdp",
    ops_identity: str = "ops",
    share_group: str = "cdp",
) -> str:
    """The dynamic security plugin's JSON (``plugin_opt_config_file``): one role per identity,
    deny by default."""
    grants = fleet_grants(
        fleet, cdp_identity=cdp_identity, ops_identity=ops_identity, share_group=share_group
    )
    default = {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    clients = [{"username": who, "roles": [{"rolename": who}]} for who in grants]
    roles = []
    for who, gs in grants.items():
        acls = [
            {"acltype": t, "topic": g.topic, "allow": True}
            for g in gs
            for t in _DYNSEC_TYPES[g.access]
        ]
        roles.append(
            f'    {{"rolename": {json.dumps(who)}, "acls": [\n'
            + ",\n".join(f"      {json.dumps(a)}" for a in acls)
            + "\n    ]}"
        )
    # JSON, one client and one grant a line (readable in a diff).
    return (
        f'{{\n  "defaultACLAccess": {json.dumps(default)},\n  "clients": [\n'
        + ",\n".join(f"    {json.dumps(c)}" for c in clients)
        + '\n  ],\n  "groups": [],\n  "roles": [\n'
        + ",\n".join(roles)
        + "\n  ]\n}\n"
    )
