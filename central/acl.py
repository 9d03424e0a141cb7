"""Render a mosquitto ACL file for the fleet: each identity gets exactly the topics it needs.

With ``require_certificate true`` and ``use_identity_as_username true`` the broker takes a
client's username from its certificate CN (``central.pki``), so these grants cannot be claimed by
anyone without the matching key. Everything not granted is denied (mosquitto's acl_file is
deny-by-default), including anything for clients without a username.

- device ``<store>:<device>``: write its own ``events``, ``state``, ``health``, ``acks``; read
  its own ``cmd/#`` and ``delivered``, and its store's ``cmd/#``. Nothing of other devices.
- the CDP identity: read every device's ``events`` (also through ``$share/<group>/``), write
  ``delivered`` confirmations.
- the ops identity: write device and store ``cmd`` topics; read ``state``, ``acks``, ``health``.

Explicit lines per device rather than ``pattern`` lines: a pattern can substitute the whole
username (``%u``) but cannot split ``<store>:<device>`` into two topic levels.

Fleet file: one device per line, ``STORE DEVICE`` (or ``STORE,DEVICE`` or ``STORE/DEVICE``);
blank lines and ``#`` comments ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

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


def device_grants(store_id: str, device_id: str) -> list[str]:
    return [
        f"topic write {topics.events(store_id, device_id)}",
        f"topic write {topics.state(store_id, device_id)}",
        f"topic write {topics.health(store_id, device_id)}",
        f"topic write {topics.acks(store_id, device_id)}",
        # Status for ops: its certificate request, screenshots and player error reports.
        f"topic write {topics.device_base(store_id, device_id)}/csr",
        f"topic write {topics.device_base(store_id, device_id)}/screenshots/+",
        f"topic write {topics.device_base(store_id, device_id)}/screen-errors/+",
        f"topic read {topics.device_cmd(store_id, device_id, '#')}",
        f"topic read {topics.delivered(store_id, device_id)}",
        f"topic read {topics.store_cmd(store_id, '#')}",
    ]


def render_acl(
    fleet: Iterable[FleetDevice],
    *,
    cdp_identity: str = "cdp",
    ops_identity: str = "ops",
    share_group: str = "cdp",
) -> str:
    _check_role(cdp_identity, "CDP identity")
    _check_role(ops_identity, "ops identity")
    _check_role(share_group, "shared subscription group")
    any_device = topics.device_base("+", "+")
    lines = [
        "# mosquitto ACL rendered by `edge-ops acl`: deny by default, grants per certificate CN.",
        "# Needs: require_certificate true, use_identity_as_username true, acl_file <this file>.",
        "",
        "# The CDP sink: every device's events (plain and shared subscription), confirmations.",
        f"user {cdp_identity}",
        f"topic read {topics.ALL_EVENTS}",
        # mosquitto 2.0.11 checks "read" only on each delivered message (real topic); brokers
        # that also check the SUBSCRIBE filter see it as sent, $share prefix included.
        f"topic read {topics.shared(share_group, topics.ALL_EVENTS)}",
        f"topic write {any_device}/delivered",
        "",
        "# Central ops: signed commands down, device state, acks and health up.",
        f"user {ops_identity}",
        f"topic write {any_device}/cmd/#",
        "topic write stores/+/cmd/#",
        f"topic read {any_device}/state",
        f"topic read {any_device}/acks",
        f"topic read {any_device}/health",
        f"topic read {any_device}/csr",
        f"topic read {any_device}/screenshots/+",
        f"topic read {any_device}/screen-errors/+",
    ]
    for d in fleet:
        lines += ["", f"user {d.identity}", *device_grants(d.store_id, d.device_id)]
    return "\n".join(lines) + "\n"
