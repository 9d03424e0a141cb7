"""The one signed push path of central ops: ``edge-ops push``, ``edge-ops emergency`` and the ops
console all sign here and publish here, so a push from the browser is byte for byte what the CLI
would have sent (same signing, same size check, same topic, same ack rules).

The signing key is read from its file on the ops host at each push and never leaves it; an
encrypted key (``edge-ops keygen --encrypt``) is opened with its passphrase, asked on the
terminal for the CLI, unlocked in the browser for the console.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import topics
from contracts.mqtt import BrokerConfig, connect, make_client
from contracts.signing import (
    DEFAULT_MAX_BYTES,
    expires_in,
    is_encrypted,
    load_private_key,
    sign_message,
)


class PushError(Exception):
    """A push that was not sent or not acknowledged; ``usage`` when the input was at fault (the
    CLI's exit 2) rather than the broker or the box (exit 1)."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass
class PushResult:
    topic: str
    kind: str
    version: int
    # The box's final ack when one was awaited (``accepted``, ``reason``, ...), else None.
    ack: dict[str, Any] | None = None
    progress: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> bool | None:
        return None if self.ack is None else bool(self.ack.get("accepted"))


HINTS = {"profiles": " (use push-slice: it splits a snapshot into signed parts)"}


def _read_key(key_path: Path) -> bytes | Ed25519PrivateKey:
    """The key file's PEM; an encrypted one opened with a passphrase asked on the terminal (the
    console unlocks its key once, in the browser: central/console/signer.py)."""
    try:
        pem = key_path.read_bytes()
    except OSError as exc:
        raise PushError(f"signing key {key_path}: {exc.strerror or exc}") from None
    if not is_encrypted(pem):
        return pem
    if not sys.stdin.isatty():
        raise PushError(
            f"signing key {key_path} is encrypted: run from a terminal to give its passphrase"
        )
    try:
        return load_private_key(pem, getpass.getpass(f"passphrase for {key_path}: ").encode())
    except ValueError as exc:
        raise PushError(f"signing key {key_path}: {exc}") from None


def sign(
    key_path: Path | Ed25519PrivateKey,
    kind: str,
    body: dict[str, Any],
    store: str,
    device: str | None,
    version: int,
    *,
    expires_in_s: float = 3600.0,
    max_bytes: int | None = None,
    what: str = "the body",
) -> bytes:
    """The signed message, or PushError(usage) when it is over the boxes' limit: a box would
    refuse it unread, so it is never sent."""
    key = _read_key(key_path) if isinstance(key_path, Path) else key_path
    try:
        message = sign_message(key, kind, body, store, device, version, expires_in(expires_in_s))
    except ValueError as exc:
        raise PushError(f"{what}: {exc}", usage=True) from None
    limit = max_bytes or DEFAULT_MAX_BYTES
    if len(message) > limit:
        raise PushError(
            f"{what}: the signed {kind} message is {len(message):,} bytes, a box takes"
            f" at most {limit:,} (downlink.max_message_bytes){HINTS.get(kind, '')}",
            usage=True,
        )
    return message


def publish(
    broker: BrokerConfig,
    message: bytes,
    kind: str,
    store: str,
    device: str | None,
    version: int,
    *,
    body: dict[str, Any] | None = None,
    timeout_s: float = 10.0,
    wait_ack_s: float | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> PushResult:
    """Publish one signed message (QoS 1, waits for the PUBACK) and, with ``wait_ack_s``, wait
    for the box's final ack. Raises PushError when the broker or the box does not answer."""
    topic = topics.device_cmd(store, device, kind) if device else topics.store_cmd(store, kind)
    result = PushResult(topic=topic, kind=kind, version=version)
    client = make_client(f"edge-ops-{os.getpid()}-{time.monotonic_ns() % 10**9}", broker)
    connected = threading.Event()
    acked = threading.Event()
    ack_topic = topics.acks(store, device or "+")

    def on_connect(c: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not reason_code.is_failure:
            if wait_ack_s is not None:
                c.subscribe(ack_topic, qos=1)
            else:
                connected.set()

    def on_subscribe(c: Any, userdata: Any, mid: Any, reason_codes: Any, properties: Any) -> None:
        connected.set()

    # A content push is done when the box says its assets are installed, not when it read the
    # manifest: wait for that second ack (a refused manifest ends it at the first).
    # A release likewise when it has passed probation on the box, or was refused or rolled back.
    final_kind = {"content": "content.installed", "release": "release.installed"}.get(kind, kind)
    # The install's ack names the playlist's version (what the screens will play).
    playlist = (body or {}).get("playlist") if kind == "content" else None
    final_version = playlist.get("version") if isinstance(playlist, dict) else version

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        try:
            ack = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(ack, dict):
            return
        got_kind, got_version = ack.get("kind"), ack.get("version")
        wanted = final_version if got_kind == final_kind != kind else version
        if got_version not in (wanted, 0) or got_kind not in (kind, final_kind):
            return
        if acked.is_set():
            return  # the result is in (an install can beat its first ack): nothing after it
        if got_kind == final_kind or not ack.get("accepted"):
            result.ack = {"topic": msg.topic, **ack}
            acked.set()
        else:  # accepted, installing
            step = {"topic": msg.topic, **ack}
            result.progress.append(step)
            if on_progress is not None:
                on_progress(step)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    # Clean session: a push is a one-shot client, it must not leave a session behind.
    try:
        connect(client, broker, clean_start=True, session_expiry_s=0)
    except OSError as exc:
        raise PushError(f"could not connect to {broker.host}:{broker.port}: {exc}") from None
    client.loop_start()
    try:
        if not connected.wait(timeout_s):
            raise PushError(f"could not connect to {broker.host}:{broker.port}")
        info = client.publish(topic, message, qos=1)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise PushError("no PUBACK from the broker")
        if wait_ack_s is not None and not acked.wait(wait_ack_s):
            raise PushError("no ack from the device")
        return result
    finally:
        client.disconnect()
        client.loop_stop()


def push(
    broker: BrokerConfig,
    key_path: Path | Ed25519PrivateKey,
    kind: str,
    body: dict[str, Any],
    store: str,
    device: str | None,
    version: int,
    *,
    expires_in_s: float = 3600.0,
    max_bytes: int | None = None,
    timeout_s: float = 10.0,
    wait_ack_s: float | None = None,
) -> PushResult:
    """Sign and publish: what the console calls (the CLI calls the two halves, to keep its
    own progress lines)."""
    message = sign(
        key_path, kind, body, store, device, version,
        expires_in_s=expires_in_s, max_bytes=max_bytes,
    )  # fmt: skip
    return publish(
        broker, message, kind, store, device, version,
        body=body, timeout_s=timeout_s, wait_ack_s=wait_ack_s,
    )  # fmt: skip


def emergency_body(title: str, body: str = "", *, reason: str = "") -> dict[str, Any]:
    """The ``command`` body that puts an emergency on every screen of a store (the box checks it
    with ``edge_agent/downlink/commands.py``; the same limits are checked here first so a form
    gets a clear message instead of a refusal in an ack)."""
    title, body = title.strip(), body.strip()
    if not title:
        raise PushError("an emergency needs a title", usage=True)
    if len(title) > 120 or len(body) > 500 or len(reason) > 200:
        raise PushError("title at most 120 characters, message at most 500", usage=True)
    doc: dict[str, Any] = {"command": "emergency", "title": title, "body": body}
    if reason:
        doc["reason"] = reason
    return doc


def clear_emergency_body(*, reason: str = "") -> dict[str, Any]:
    doc: dict[str, Any] = {"command": "clear_emergency"}
    if reason:
        doc["reason"] = reason[:200]
    return doc


def time_version(last: int = 0) -> int:
    """A command version that only goes up without asking the boxes: seconds since the epoch,
    or one more than the last this host used. (A box refuses a version <= the last it applied
    per kind, so hand-numbered CLI pushes of commands after a console push need --version
    $(date +%s) too.)"""
    return max(int(time.time()), last + 1)
