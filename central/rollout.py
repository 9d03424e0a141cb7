"""A staged release rollout (``edge-ops rollout``, issue 20): a canary share of the fleet first,
then the rest, stopped on failures.

Each box gets the same signed ``release`` body (``contracts/release.py`` ``push_body``), addressed
to it alone, and the rollout waits for every box of a wave to answer with its final ack:
``release.installed`` accepted (it passed probation on the box), or refused/rolled back with the
reason. A box that does not answer within the wait counts as failed: a box that cannot say it is
well is not evidence that the release is. More failures in a wave than allowed stop the rollout
before the next wave is pushed; the boxes already updated keep the release (each one's probation
already decided for itself).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import topics
from contracts.mqtt import BrokerConfig, connect, make_client
from contracts.signing import DEFAULT_MAX_BYTES, expires_in, sign_message

ACK_FILTER = "stores/+/devices/+/acks"


@dataclass(frozen=True)
class Box:
    store: str
    device: str

    def __str__(self) -> str:
        return f"{self.store}/{self.device}"


@dataclass
class Outcome:
    box: Box
    accepted: bool | None = None  # None: no final answer (yet)
    reason: str = "no answer"
    acks: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "store": self.box.store,
            "device": self.box.device,
            "accepted": self.accepted,
            "reason": self.reason,
        }


@dataclass
class Report:
    release: str
    version: int
    waves: list[list[Outcome]] = field(default_factory=list)
    stopped: str = ""  # why the rollout stopped early; "" when every wave went out

    @property
    def ok(self) -> bool:
        return not self.stopped and all(o.accepted for w in self.waves for o in w)

    def summary(self) -> dict[str, Any]:
        done = [o for w in self.waves for o in w]
        return {
            "release": self.release,
            "version": self.version,
            "waves": [len(w) for w in self.waves],
            "installed": sum(1 for o in done if o.accepted),
            "failed": sum(1 for o in done if not o.accepted),
            "stopped": self.stopped,
        }


def waves(fleet: list[Box], canary_share: float) -> list[list[Box]]:
    """The canaries (the first ``ceil(share * n)`` boxes of the fleet list, at least one: ops
    put the stores they watch first) and the rest."""
    if not fleet:
        return []
    n = min(len(fleet), max(1, math.ceil(canary_share * len(fleet))))
    return [fleet[:n], fleet[n:]] if n < len(fleet) else [fleet]


class RolloutError(Exception):
    pass


def rollout(
    broker: BrokerConfig,
    key_pem: bytes,
    body: dict[str, Any],
    fleet: list[Box],
    version: int,
    *,
    canary_share: float = 0.1,
    max_failures: int = 0,
    wait_s: float = 900.0,
    expires_in_s: float = 3600.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = 10.0,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> Report:
    """Push ``body`` wave by wave; the report says how each box ended and why it stopped."""
    say = on_event or (lambda doc: None)
    report = Report(release=str(body.get("release", "")), version=version)
    outcomes: dict[Box, Outcome] = {}
    lock = threading.Lock()
    changed = threading.Condition(lock)
    subscribed = threading.Event()

    def on_connect(c: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not reason_code.is_failure:
            c.subscribe(ACK_FILTER, qos=1)

    def on_subscribe(c: Any, userdata: Any, mid: Any, reason_codes: Any, properties: Any) -> None:
        subscribed.set()

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        parts = msg.topic.split("/")
        try:
            ack = json.loads(msg.payload)
        except ValueError:
            return
        if len(parts) != 5 or not isinstance(ack, dict) or ack.get("version") not in (version, 0):
            return
        box = Box(parts[1], parts[3])
        with changed:
            out = outcomes.get(box)
            kind = ack.get("kind")
            if (
                out is None
                or out.accepted is not None
                or kind not in ("release", "release.installed")
            ):
                return
            out.acks.append(ack)
            # The first ack only says the push was read; a refusal there is final.
            if kind == "release.installed" or not ack.get("accepted"):
                out.accepted = bool(ack.get("accepted"))
                out.reason = str(ack.get("reason", ""))[:300]
                changed.notify_all()

    client = make_client(f"edge-ops-rollout-{os.getpid()}-{time.monotonic_ns() % 10**9}", broker)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        connect(client, broker, clean_start=True, session_expiry_s=0)
    except OSError as exc:
        raise RolloutError(f"could not connect to {broker.host}:{broker.port}: {exc}") from None
    client.loop_start()
    try:
        if not subscribed.wait(timeout_s):
            raise RolloutError(f"could not connect to {broker.host}:{broker.port}")
        plan = waves(fleet, canary_share)
        for i, wave in enumerate(plan):
            name = "canary" if i == 0 and len(plan) > 1 else f"wave {i + 1}"
            say({"wave": name, "boxes": [str(b) for b in wave]})
            with lock:
                for box in wave:
                    outcomes[box] = Outcome(box)
            for box in wave:
                message = sign_message(
                    key_pem, "release", body, box.store, box.device, version,
                    expires_in(expires_in_s),
                )  # fmt: skip
                if len(message) > max_bytes:
                    raise RolloutError(
                        f"the signed release message is {len(message):,} bytes, a box takes at "
                        f"most {max_bytes:,}: give the bundle a --url"
                    )
                info = client.publish(
                    topics.device_cmd(box.store, box.device, "release"), message, 1
                )
                info.wait_for_publish(timeout_s)
                if not info.is_published():
                    raise RolloutError("no PUBACK from the broker")
            deadline = time.monotonic() + wait_s
            with changed:
                while any(outcomes[b].accepted is None for b in wave):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    changed.wait(left)
                results = [outcomes[b] for b in wave]
                for o in results:
                    if o.accepted is None:
                        o.accepted = False
                        o.reason = f"no final ack within {wait_s:g} s"
            report.waves.append(results)
            for o in results:
                say(o.as_dict())
            failed = sum(1 for o in results if not o.accepted)
            if failed > max_failures and i + 1 < len(plan):
                report.stopped = (
                    f"{failed} of {len(wave)} boxes of the {name} failed (at most {max_failures} "
                    f"allowed): {sum(len(w) for w in plan[i + 1 :])} boxes not pushed"
                )
                break
            if failed > max_failures:
                report.stopped = f"{failed} of {len(wave)} boxes of the {name} failed"
        return report
    finally:
        client.disconnect()
        client.loop_stop()


def read_fleet(path: Path) -> list[Box]:
    """``STORE DEVICE`` per line (the same file as ``edge-ops acl``)."""
    from central.acl import parse_fleet

    return [Box(d.store_id, d.device_id) for d in parse_fleet(path.read_text(), source=str(path))]
