"""Signed downlink over a real mosquitto: applied once, acked, replays and forgeries refused."""

from __future__ import annotations

import base64
import json
import os
import queue
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import topics
from contracts.mqtt import connect, make_client
from contracts.signing import expires_in, generate_keypair, load_public_key, sign_message
from edge_agent.config import BrokerConfig
from sync.downlink import Downlink, DownlinkResult, VersionState

PRIV, PUB_B64 = generate_keypair()
OTHER_PRIV, _ = generate_keypair()
REPO = Path(__file__).resolve().parents[2]


def msg(
    kind: str = "campaigns",
    version: int = 1,
    store: str = "s1",
    device: str | None = "d1",
    body: dict | None = None,
    key: bytes = PRIV,
) -> bytes:
    return sign_message(key, kind, body or {"v": version}, store, device, version, expires_in(600))


class Recorder:
    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []
        self.results: queue.Queue[DownlinkResult] = queue.Queue()
        self.fail = False

    def apply(self, body: dict[str, Any]) -> None:
        if self.fail:
            raise RuntimeError("disk full")
        self.applied.append(body)

    def next(self, timeout: float = 5.0) -> DownlinkResult:
        return self.results.get(timeout=timeout)


def make_downlink(
    state: Path, rec: Recorder, broker: BrokerConfig | None = None, store="s1", device="d1"
) -> Downlink:
    return Downlink(
        broker or BrokerConfig(),
        store,
        device,
        load_public_key(PUB_B64),
        state,
        appliers={"campaigns": rec.apply, "config": rec.apply},
        on_result=rec.results.put,
    )


# ---- handle() without a broker -----------------------------------------------------------
def test_version_rules_and_state_persistence(tmp_path: Path) -> None:
    state = tmp_path / "state" / "downlink.json"
    rec = Recorder()
    dl = make_downlink(state, rec)
    t_dev = topics.device_cmd("s1", "d1", "campaigns")
    v2 = msg(version=2)
    assert dl.handle(t_dev, v2).accepted
    r = dl.handle(t_dev, v2)
    assert not r.accepted and r.reason == "replayed version 2 <= applied 2"
    r = dl.handle(t_dev, msg(version=1))
    assert not r.accepted and r.reason.startswith("older version 1")
    # Versions are per kind.
    assert dl.handle(topics.store_cmd("s1", "config"), msg("config", 1, device=None)).accepted
    assert json.loads(state.read_text()) == {"versions": {"campaigns": 2, "config": 1}}
    # A restart keeps refusing the replay.
    dl2 = make_downlink(state, rec)
    assert not dl2.handle(t_dev, v2).accepted
    assert dl2.handle(t_dev, msg(version=3)).accepted
    assert [b["v"] for b in rec.applied] == [2, 1, 3]
    assert not list(state.parent.glob(".downlink-*"))  # no temp files left behind


def test_failing_applier_records_nothing(tmp_path: Path) -> None:
    rec = Recorder()
    dl = make_downlink(tmp_path / "s.json", rec)
    t = topics.device_cmd("s1", "d1", "campaigns")
    rec.fail = True
    r = dl.handle(t, msg(version=5))
    assert not r.accepted and r.reason == "apply failed: RuntimeError: disk full"
    assert dl.state.get("campaigns") == 0
    rec.fail = False
    assert dl.handle(t, msg(version=5)).accepted  # same version, now it works


def test_kind_topic_mismatch_unknown_kind_and_garbage(tmp_path: Path) -> None:
    rec = Recorder()
    dl = make_downlink(tmp_path / "s.json", rec)
    r = dl.handle(topics.device_cmd("s1", "d1", "config"), msg("campaigns", 1))
    assert not r.accepted and "sent on" in r.reason
    r = dl.handle(topics.device_cmd("s1", "d1", "profiles"), msg("profiles", 1))
    assert not r.accepted and r.reason == "no applier for 'profiles'"
    for junk in (b"", b"\x00" * 10, b"{}", b'{"payload": 1, "sig": 2, "key_id": 3}'):
        r = dl.handle(topics.device_cmd("s1", "d1", "campaigns"), junk)
        assert not r.accepted and r.version == 0 and r.kind == "campaigns"
    assert rec.applied == []


def test_corrupt_state_file_refuses_to_start(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    state.write_text("{not json")
    with pytest.raises(RuntimeError, match="unreadable downlink state"):
        VersionState(state)


# ---- over the real broker ----------------------------------------------------------------
@pytest.fixture
def ops(broker) -> Iterator[tuple[Any, queue.Queue]]:
    """An ops client that publishes raw messages and collects acks from every device."""
    acks: queue.Queue[dict] = queue.Queue()
    ready = threading.Event()
    c = make_client(f"ops-{uuid.uuid4().hex[:8]}", BrokerConfig(host=broker.host, port=broker.port))
    c.on_connect = lambda cl, *a: cl.subscribe("stores/+/devices/+/acks", qos=1)
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = lambda cl, u, m: acks.put({"topic": m.topic, **json.loads(m.payload)})
    connect(
        c, BrokerConfig(host=broker.host, port=broker.port), clean_start=True, session_expiry_s=0
    )
    c.loop_start()
    assert ready.wait(5)

    def publish(topic: str, payload: bytes) -> None:
        info = c.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        assert info.is_published()

    yield publish, acks
    c.disconnect()
    c.loop_stop()


@pytest.mark.timeout(30)
def test_push_over_broker(broker, ops, tmp_path: Path) -> None:
    publish, acks = ops
    store, device = f"s-{uuid.uuid4().hex[:6]}", "d1"
    rec = Recorder()
    dl = make_downlink(
        tmp_path / "state.json",
        rec,
        BrokerConfig(host=broker.host, port=broker.port),
        store,
        device,
    )
    assert dl.start(wait_s=5)
    t_dev = topics.device_cmd(store, device, "campaigns")
    t_store = topics.store_cmd(store, "campaigns")
    try:
        v1 = msg(version=1, store=store, body={"campaigns": ["c1"]})
        publish(t_dev, v1)
        r = rec.next()
        assert r.accepted and r.version == 1 and rec.applied == [{"campaigns": ["c1"]}]
        ack = acks.get(timeout=5)
        assert ack["topic"] == topics.acks(store, device)
        assert {k: ack[k] for k in ("kind", "version", "accepted", "reason")} == {
            "kind": "campaigns",
            "version": 1,
            "accepted": True,
            "reason": "applied",
        }

        publish(t_dev, v1)  # replay
        r = rec.next()
        assert not r.accepted and r.reason.startswith("replayed version 1")
        assert acks.get(timeout=5)["accepted"] is False

        publish(t_store, msg(version=3, store=store, device=None))  # store-wide
        assert rec.next().accepted
        publish(t_dev, msg(version=2, store=store))  # older than 3
        assert rec.next().reason.startswith("older version 2")

        env = json.loads(msg(version=9, store=store))
        unsigned = json.dumps({k: v for k, v in env.items() if k != "sig"}).encode()
        publish(t_dev, unsigned)
        assert rec.next().reason.startswith("unsigned")
        publish(t_dev, msg(version=9, store=store, key=OTHER_PRIV))
        assert rec.next().reason.startswith("wrong key")
        forged = json.loads(msg(version=9, store=store, key=OTHER_PRIV))
        forged["key_id"] = env["key_id"]
        publish(t_dev, json.dumps(forged).encode())
        assert rec.next().reason == "bad signature"
        tampered = dict(env)
        doc = json.loads(base64.b64decode(env["payload"]))
        doc["body"] = {"campaigns": ["evil"]}
        tampered["payload"] = base64.b64encode(json.dumps(doc).encode()).decode()
        publish(t_dev, json.dumps(tampered).encode())
        assert rec.next().reason == "bad signature"

        # Signed for another store but sent on ours: refused. Sent on the other store's topic:
        # never even delivered to us.
        publish(t_dev, msg(version=10, store="elsewhere"))
        assert rec.next().reason.startswith("addressed to another store")
        publish(topics.store_cmd("elsewhere", "campaigns"), msg(version=11, store="elsewhere"))
        publish(t_dev, b"sentinel")
        assert rec.next().reason == "not JSON"  # the sentinel, nothing in between
        assert rec.results.empty()

        assert len(rec.applied) == 2  # v1 and v3 only
        assert dl.stats()["versions"] == {"campaigns": 3}
    finally:
        dl.stop()


@pytest.mark.timeout(30)
def test_ops_cli_keygen_and_push_wait_ack(broker, tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "central.ops_cli"]
    out = subprocess.run(
        [*exe, "keygen", "--out", str(tmp_path / "keys")],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    pub = out.stdout.strip()
    key = tmp_path / "keys" / "ops_private.pem"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    store = f"s-{uuid.uuid4().hex[:6]}"
    rec = Recorder()
    dl = Downlink(
        BrokerConfig(host=broker.host, port=broker.port),
        store,
        "d1",
        load_public_key(pub),
        tmp_path / "state.json",
        appliers={"campaigns": rec.apply},
        on_result=rec.results.put,
    )
    assert dl.start(wait_s=5)
    body = tmp_path / "bundle.json"
    body.write_text(json.dumps({"campaigns": [{"id": "c9"}]}))
    try:
        cmd = [
            *exe,
            "push",
            "campaigns",
            str(body),
            "--store",
            store,
            "--device",
            "d1",
            "--version",
            "4",
            "--key",
            str(key),
            "--host",
            broker.host,
            "--port",
            str(broker.port),
            "--wait-ack",
            "10",
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=20)
        assert res.returncode == 0, res.stderr
        ack = json.loads(res.stdout.strip().splitlines()[-1])
        assert ack["accepted"] is True and ack["version"] == 4
        assert rec.applied == [{"campaigns": [{"id": "c9"}]}]
        again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=20)
        assert again.returncode == 1
        assert "replayed" in json.loads(again.stdout.strip().splitlines()[-1])["reason"]
    finally:
        dl.stop()


@pytest.mark.timeout(60)
def test_an_ack_of_its_own_before_the_downlink_starts_is_sent_once_connected(
    broker, tmp_path: Path
) -> None:
    # A content install resumed at start can finish before the downlink has started: its
    # "content.installed" ack must still reach ops (it was lost on a loaded CI machine).
    store, device = f"s-{uuid.uuid4().hex[:6]}", "d1"
    cfg = BrokerConfig(host=broker.host, port=broker.port)
    acks: queue.Queue[dict] = queue.Queue()
    ready = threading.Event()
    c = make_client(f"ops-{uuid.uuid4().hex[:8]}", cfg)
    c.on_connect = lambda cl, *a: cl.subscribe(topics.acks(store, device), qos=1)
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = lambda cl, u, m: acks.put(json.loads(m.payload))
    connect(c, cfg, clean_start=True, session_expiry_s=0)
    c.loop_start()
    dl = make_downlink(tmp_path / "state.json", Recorder(), cfg, store, device)
    try:
        assert ready.wait(10)
        doc = {"kind": "content.installed", "version": 11, "accepted": True}
        # A caller that keeps its result on disk is told "not now"; a later ack waits.
        assert not dl.publish_ack({**doc, "kind": "release.installed"})
        assert dl.publish_ack(doc, defer=True)
        assert dl.start(wait_s=10)
        ack = acks.get(timeout=10)
        assert (ack["kind"], ack["version"], ack["accepted"]) == ("content.installed", 11, True)
        with pytest.raises(queue.Empty):
            acks.get(timeout=1)  # once, and not the refused one
    finally:
        dl.stop()
        c.disconnect()
        c.loop_stop()
