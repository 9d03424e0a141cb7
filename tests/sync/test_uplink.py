"""Uplink + CDP sink over a real mosquitto: every accepted event reaches the CDP exactly once."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from central.cdp_sink import MAX_DECODED_BYTES, BatchError, CdpSink, decode_batch
from contracts import topics
from contracts.batch import (
    decode_confirmation,
    encode_batch,
    encode_confirmation,
    publish_properties,
    seq_ranges,
)
from contracts.events import AudienceSample, CloudEvent, make_event
from contracts.mqtt import connect, make_client
from edge_agent.config import BrokerConfig, UplinkConfig
from sync.outbox import Outbox, format_sequence
from sync.uplink import ClockOffset, Uplink
from testbed.broker import Mosquitto
from tests.watching import wait_for

REPO = Path(__file__).resolve().parents[2]


def events(n: int, store: str, device: str) -> list[CloudEvent]:
    return [
        make_event(
            AudienceSample(screen_id="scr", people=i % 9, watchers=i % 3),
            store_id=store,
            device_id=device,
        )
        for i in range(n)
    ]


def cfg(**kw: object) -> UplinkConfig:
    base: dict[str, object] = {"max_batch": 200, "max_batch_bytes": 128_000, "linger_s": 0.02}
    base.update(kw)
    return UplinkConfig.model_validate(base)


def bcfg(m: Mosquitto) -> BrokerConfig:
    return BrokerConfig(host=m.host, port=m.port, keepalive=5)


@pytest.fixture
def ids() -> tuple[str, str, str]:
    """Unique store, device and sink group per test: the session broker is shared."""
    tag = uuid.uuid4().hex[:8]
    return f"st-{tag}", f"dev-{tag}", f"cdp-{tag}"


@pytest.fixture
def sink_factory(tmp_path: Path) -> Iterator:
    sinks: list[CdpSink] = []

    def make(m: Mosquitto, group: str, name: str = "cdp.db") -> CdpSink:
        sink = CdpSink(bcfg(m), tmp_path / name, group=group)
        assert sink.start(wait_s=5), "sink did not subscribe"
        sinks.append(sink)
        return sink

    yield make
    for s in sinks:
        s.stop(end_session=True)


# ---- batch encoding (no broker) ----------------------------------------------------------
def test_batch_roundtrip_plain_and_zlib() -> None:
    bodies = [e.to_json() for e in events(50, "s", "d")]
    small, enc_small = encode_batch("b1", "s", "d", bodies[:1], compress_over=100_000)
    big, enc_big = encode_batch("b2", "s", "d", bodies, compress_over=1000)
    assert (enc_small, enc_big) == ("identity", "zlib")
    assert len(big) < len(b"".join(b.encode() for b in bodies)) / 3
    for payload, enc, n in ((small, enc_small, 1), (big, enc_big, 50)):
        with_props = decode_batch(payload, publish_properties(enc))
        sniffed = decode_batch(payload, None)  # MQTT 3.1.1: no properties, sniff
        assert with_props == sniffed
        assert with_props["device"] == "d" and len(with_props["events"]) == n
        assert [json.dumps(e, sort_keys=True) for e in with_props["events"]] == [
            json.dumps(json.loads(b), sort_keys=True) for b in bodies[:n]
        ]


def test_decode_batch_refuses_garbage_and_bombs() -> None:
    for bad in (b"", b"\x00\x01", b"{not json", b"[1,2]", b'{"events": 3}'):
        with pytest.raises(BatchError):
            decode_batch(bad)
    bomb = zlib.compress(b"{" + b" " * (MAX_DECODED_BYTES + 10) + b"}")
    with pytest.raises(BatchError, match="over"):
        decode_batch(bomb, publish_properties("zlib"))
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("encoding", "brotli")]
    with pytest.raises(BatchError, match="unknown encoding"):
        decode_batch(b"{}", props)


def test_sink_rejects_invalid_events_and_foreign_sources(tmp_path: Path) -> None:
    sink = CdpSink(BrokerConfig(), tmp_path / "cdp.db")  # not started: handle_batch directly
    good = events(2, "s1", "d1")
    forged = events(1, "s2", "d9")[0]  # claims another store: must not be stored
    doc = {
        "batch_id": "b",
        "events": [json.loads(e.to_json()) for e in [*good, forged]]
        + [{"id": "x"}, "junk", {**json.loads(good[0].to_json()), "type": "retail.instore.nope"}],
    }
    topic = topics.events("s1", "d1")
    sink.handle_batch(topic, json.dumps(doc).encode())
    sink.handle_batch(topic, json.dumps(doc).encode())  # redelivery: duplicates only
    sink.handle_batch(topic, b"\x78garbage")
    sink.handle_batch("other/topic", b"{}")
    st = sink.stats()
    assert sink.ids() == {e.id for e in good}
    assert (st["stored"], st["duplicates"], st["rejected"]) == (2, 2, 2 * 4 + 2)
    assert st["received"] == 2 * 6 and st["batches"] == 4
    reasons = [r["reason"] for r in sink.rejects()]
    assert any("does not match topic" in r for r in reasons)
    assert any("unknown event type" in r for r in reasons)
    assert any("bad zlib" in r for r in reasons)
    assert any("unexpected topic" in r for r in reasons)
    sink.stop()


# ---- over the real broker ----------------------------------------------------------------
@pytest.mark.timeout(30)
def test_2000_events_delivered_exactly_once(broker, ids, sink_factory, tmp_path: Path) -> None:
    store, device, group = ids
    sink = sink_factory(broker, group)
    state_msgs: list[dict] = []
    watcher = make_client(f"w-{group}", bcfg(broker))
    got_state = threading.Condition()

    def on_message(c, u, msg) -> None:
        with got_state:
            state_msgs.append(json.loads(msg.payload))
            got_state.notify_all()

    watcher.on_message = on_message
    watcher.on_connect = lambda c, *a: c.subscribe(topics.state(store, device), qos=1)
    connect(watcher, bcfg(broker), clean_start=True, session_expiry_s=0)
    watcher.loop_start()

    with Outbox(tmp_path / "outbox.db") as ob:
        evs = events(2000, store, device)
        for i in range(0, 2000, 250):  # appended while the uplink runs, like the agent does
            ob.append(evs[i : i + 250])
            if i == 0:
                up = Uplink(
                    ob, bcfg(broker), store, device, cfg(), version="9.9.9", config_hash="c0ffee"
                )
                up.start()
        assert sink.wait_for(2000, 15), sink.stats()
        assert up.flush(10)
        stats = up.stats()
        assert sink.ids() == {e.id for e in evs}
        assert ob.depth() == 0
        assert stats["published_events"] == 2000 and stats["connected"]
        assert stats["published_batches"] >= 10  # bounded by max_batch=200
        s = sink.stats()
        assert s["stored"] == 2000 and s["rejected"] == 0
        with got_state:
            assert got_state.wait_for(lambda: state_msgs, 5)
        assert state_msgs[0] == {
            "status": "online",
            "version": "9.9.9",
            "device": device,
            "config_hash": "c0ffee",
        }
        up.stop(flush_timeout_s=2)
        with got_state:
            assert got_state.wait_for(lambda: state_msgs[-1]["status"] == "offline", 5)
    # Per device, the CDP can order by the sequence extension.
    seqs = sorted(int(s) for s in _sink_column(sink, "sequence"))
    assert seqs == list(range(1, 2001))
    watcher.disconnect()
    watcher.loop_stop()


def _sink_column(sink: CdpSink, col: str) -> list[str]:
    return _sink_column_path(sink.db_path, col)


@pytest.mark.timeout(30)
def test_no_subscriber_means_events_are_held(
    fresh_broker, ids, sink_factory, tmp_path: Path
) -> None:
    """PUBACK 'No matching subscribers' must not delete: nobody would ever get those events.

    A broker of its own: persistent sessions left by other tests would count as subscribers.
    """
    store, device, group = ids
    with Outbox(tmp_path / "outbox.db") as ob:
        evs = events(30, store, device)
        ob.append(evs)
        up = Uplink(ob, bcfg(fresh_broker), store, device, cfg())
        refused = threading.Event()
        up.start()
        try:
            deadline = time.monotonic() + 5
            while not refused.is_set() and time.monotonic() < deadline:
                refused.wait(0.05)
                if up.stats()["refused_batches"] > 0:
                    refused.set()
            assert refused.is_set()
            assert ob.depth() == 30
            sink = sink_factory(fresh_broker, group)  # a consumer appears: the held batch goes out
            assert sink.wait_for(30, 15)
            assert up.flush(5)
        finally:
            up.stop(flush_timeout_s=0)


@pytest.mark.timeout(40)
def test_broker_kill_9_mid_stream_loses_nothing(
    fresh_broker: Mosquitto, ids, sink_factory, tmp_path: Path
) -> None:
    store, device, group = ids
    sink = sink_factory(fresh_broker, group)
    # The broker autosaves sessions every second: make sure the sink's subscription is on disk,
    # as it would be on a production broker, before the plug is pulled.
    _wait_for_persisted(fresh_broker, time.time())
    with Outbox(tmp_path / "outbox.db") as ob:
        evs = events(4000, store, device)
        ob.append(evs[:3000])
        # Small batches, one in flight: the kill lands mid-stream, not after the end.
        up = Uplink(
            ob, bcfg(fresh_broker), store, device, cfg(max_batch=10), max_inflight_batches=1
        )
        up.start()
        try:
            assert sink.wait_for(200, 10)
            fresh_broker.kill()
            assert sink.count() < 3000, "too late: stream already finished"
            ob.append(evs[3000:])  # the agent keeps accepting while the broker is down
            fresh_broker.start()
            assert sink.wait_for(4000, 25), (sink.stats(), up.stats())
            assert up.flush(10), up.stats()
        finally:
            up.stop(flush_timeout_s=0)
    assert sink.ids() == {e.id for e in evs}
    assert sink.count() == 4000
    assert up.stats()["connects"] >= 2


@pytest.mark.timeout(30)
def test_rows_deleted_only_after_puback(
    fresh_broker: Mosquitto, ids, sink_factory, tmp_path: Path
) -> None:
    """A frozen broker (SIGSTOP) takes the bytes but sends no PUBACK: nothing may be deleted."""
    store, device, group = ids
    sink = sink_factory(fresh_broker, group)
    with Outbox(tmp_path / "outbox.db") as ob:
        up = Uplink(ob, bcfg(fresh_broker), store, device, cfg(max_batch=10))
        up.start()
        try:
            ob.append(events(5, store, device))
            assert sink.wait_for(5, 10) and up.flush(5)
            assert fresh_broker.proc is not None
            fresh_broker.proc.send_signal(signal.SIGSTOP)
            try:
                evs = events(100, store, device)
                ob.append(evs)
                assert wait_for(lambda: up.stats()["inflight_batches"] == 4, 5), up.stats()
                assert ob.depth() == 100  # sent, not acknowledged: all still on disk
                assert up.stats()["published_events"] == 5
            finally:
                fresh_broker.proc.send_signal(signal.SIGCONT)
            assert sink.wait_for(105, 10)
            assert up.flush(5)
        finally:
            up.stop(flush_timeout_s=0)


def _wait_for_persisted(m: Mosquitto, after: float, timeout: float = 5.0) -> None:
    db = m.workdir / "mosquitto.db"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists() and db.stat().st_mtime > after + 0.05:
            return
        time.sleep(0.05)  # polling a file the broker writes; there is no event to wait on
    raise AssertionError("broker did not persist its state")


UPLINK_CHILD = textwrap.dedent(
    """
    import sys, threading
    from edge_agent.config import BrokerConfig, UplinkConfig
    from sync.outbox import Outbox
    from sync.uplink import Uplink

    db, host, port, store, device = sys.argv[1:6]
    ob = Outbox(db)
    up = Uplink(ob, BrokerConfig(host=host, port=int(port)), store, device,
                UplinkConfig(max_batch=20, linger_s=0), max_inflight_batches=1)
    up.start()
    print("started", flush=True)
    threading.Event().wait()
    """
)


@pytest.mark.timeout(40)
def test_uplink_kill_9_then_new_uplink_finishes(broker, ids, sink_factory, tmp_path: Path) -> None:
    store, device, group = ids
    sink = sink_factory(broker, group)
    db = tmp_path / "outbox.db"
    evs = events(2000, store, device)
    with Outbox(db) as ob:
        ob.append(evs)
    proc = subprocess.Popen(
        [sys.executable, "-c", UPLINK_CHILD, str(db), broker.host, str(broker.port), store, device],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert sink.wait_for(300, 15)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    delivered_by_child = sink.count()
    assert delivered_by_child < 2000, "too late: child finished before the kill"

    with Outbox(db) as ob:
        assert ob.integrity_check() == "ok"
        # Only rows not yet confirmed by the CDP remain: at most one in flight plus the window
        # of PUBACKed batches waiting for their confirmation.
        window = 20 * (1 + UplinkConfig().max_unconfirmed_batches)
        assert 0 < ob.depth() <= 2000 - delivered_by_child + window
        up = Uplink(ob, bcfg(broker), store, device, cfg())
        up.start()
        try:
            assert sink.wait_for(2000, 15), sink.stats()
            assert up.flush(10)
        finally:
            up.stop(flush_timeout_s=0)
        assert ob.depth() == 0
    assert sink.ids() == {e.id for e in evs}
    assert sink.count() == 2000  # exactly once at the CDP; duplicates were absorbed


@pytest.mark.timeout(30)
def test_cdp_sink_cli_runs_until_sigterm(broker, ids, tmp_path: Path) -> None:
    store, device, group = ids
    db = tmp_path / "cli-cdp.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "central.ops_cli",
            "cdp-sink",
            "--host",
            broker.host,
            "--port",
            str(broker.port),
            "--db",
            str(db),
            "--group",
            group,
            "--report-s",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("cdp-sink:")  # printed once subscribed
        with Outbox(tmp_path / "outbox.db") as ob:
            evs = events(50, store, device)
            ob.append(evs)
            up = Uplink(ob, bcfg(broker), store, device, cfg())
            up.start()
            try:
                assert up.flush(10)
            finally:
                up.stop(flush_timeout_s=0)
        assert wait_for(lambda: len(_sink_column_path(db, "id")) == 50, 10)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0
    final = json.loads(out.strip().splitlines()[-1])
    assert final["count"] == 50 and final["stored"] == 50


def _sink_column_path(db: Path, col: str) -> list[str]:
    import sqlite3

    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute(f"SELECT {col} FROM events")]


# ---- end-to-end confirmation by the CDP -------------------------------------------------
def test_confirmation_codec_refuses_anything_else() -> None:
    assert decode_confirmation(encode_confirmation("b1", ["a", "b"], 5.5)) == (
        "b1",
        ["a", "b"],
        5.5,
        [],
    )
    assert decode_confirmation(encode_confirmation(None, [])) == (None, [], None, [])
    got = decode_confirmation(encode_confirmation("b2", [], 1.0, seq_ranges([7, 3, 4, 5, 9])))
    assert got == ("b2", [], 1.0, [(3, 5), (7, 7), (9, 9)])
    assert decode_confirmation(b'{"ids": [], "t": NaN}')[2] is None  # a clock must be finite
    assert decode_confirmation(b'{"ids": [], "t": true}')[2] is None
    for bad in (
        b"", b"\xff", b"[]", b'{"ids": "a"}', b'{"ids": [1]}', b"{" * 10, b"{}",
        b'{"seq": [[5, 3]]}', b'{"seq": [[1]]}', b'{"seq": [[-1, 2]]}', b'{"seq": [[true, 2]]}',
        b'{"seq": "1-5"}',
    ):  # fmt: skip
        with pytest.raises(ValueError):
            decode_confirmation(bad)


@given(st.lists(st.integers(0, 10**6), max_size=300))
def test_sequence_ranges_cover_exactly_what_was_dealt_with(seqs: list[int]) -> None:
    ranges = seq_ranges(seqs)
    covered = {n for a, b in ranges for n in range(a, b + 1)}
    assert covered == set(seqs)
    # Merged: no two ranges touch or overlap, in order.
    assert all(b[0] > a[1] + 1 for a, b in zip(ranges, ranges[1:], strict=False))


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_confirmation_decoder_fuzz(payload: bytes) -> None:
    try:
        bid, got, t, ranges = decode_confirmation(payload)
    except ValueError:
        return
    assert bid is None or isinstance(bid, str)
    assert t is None or math.isfinite(t)
    assert all(isinstance(i, str) for i in got)
    assert all(0 <= a <= b for a, b in ranges)


def test_sink_confirms_every_event_it_dealt_with(tmp_path: Path) -> None:
    sink = CdpSink(BrokerConfig(), tmp_path / "cdp.db")  # not started: handle_batch directly
    try:
        good = events(3, "s", "d")
        foreign = events(1, "other", "d")  # refused (wrong source) but dealt with: confirm it
        bodies = [e.to_json() for e in good + foreign]
        payload, enc = encode_batch("b1", "s", "d", bodies, compress_over=10**6)
        topic = topics.events("s", "d")
        assert sink.handle_batch(topic, payload, publish_properties(enc)) == (
            "b1",
            [e.id for e in good + foreign],
            [],
        )
        # Again: all duplicates now, and still confirmed so the device can let go.
        assert sink.handle_batch(topic, payload, publish_properties(enc)) == (
            "b1",
            [e.id for e in good + foreign],
            [],
        )
        assert sink.count() == 3
        # Events the box's outbox numbered are confirmed by their sequences (ranges on the wire).
        numbered = [
            json.dumps({**json.loads(e.to_json()), "sequence": format_sequence(n)})
            for n, e in enumerate(events(4, "s", "d"), start=41)
        ]
        payload, enc = encode_batch("b2", "s", "d", numbered, compress_over=10**6)
        assert sink.handle_batch(topic, payload, publish_properties(enc)) == (
            "b2", [], [41, 42, 43, 44],
        )  # fmt: skip
        assert seq_ranges([41, 42, 43, 44]) == [[41, 44]]
        assert sink.handle_batch(topic, b"garbage") is None
        assert sink.handle_batch("not/an/events/topic", payload) is None
    finally:
        sink.stop()


def plain_subscriber(m: Mosquitto, topic: str):
    """A subscriber that is not a CDP (it never confirms), ready once its SUBACK is in."""
    seen: list[bytes] = []
    subscribed = threading.Event()
    c = make_client(f"plain-{uuid.uuid4().hex[:8]}", bcfg(m))
    c.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = lambda c, u, msg: seen.append(msg.payload)
    connect(c, bcfg(m), clean_start=True, session_expiry_s=0)
    c.loop_start()
    assert subscribed.wait(5), "plain subscriber did not subscribe"
    return c, seen


@pytest.mark.timeout(40)
def test_a_puback_alone_deletes_nothing(fresh_broker: Mosquitto, ids, sink_factory, tmp_path):
    """The broker accepts (a plain subscriber exists) but no CDP stores: rows stay, are re-sent."""
    store, device, group = ids
    watcher, seen = plain_subscriber(fresh_broker, topics.events(store, device))
    try:
        with Outbox(tmp_path / "outbox.db") as ob:
            evs = events(50, store, device)
            ob.append(evs)
            up = Uplink(ob, bcfg(fresh_broker), store, device, cfg(confirm_timeout_s=1.0))
            up.start()
            try:
                assert wait_for(lambda: up.stats()["resent_unconfirmed"] >= 1, 10), up.stats()
                s = up.stats()
                assert s["published_batches"] >= 1 and s["refused_batches"] == 0
                assert ob.depth() == 50 and s["published_events"] == 0
                assert wait_for(lambda: len(seen) >= 2, 5)  # the same batch went out again
                sink = sink_factory(fresh_broker, group)  # a CDP appears: confirmed, deleted
                assert up.flush(10), up.stats()
                assert sink.ids() == {e.id for e in evs}
                assert up.stats()["published_events"] == 50
            finally:
                up.stop(flush_timeout_s=0)
    finally:
        watcher.disconnect()
        watcher.loop_stop()


def test_confirm_by_broker_deletes_on_puback(fresh_broker: Mosquitto, ids, tmp_path) -> None:
    store, device, _ = ids
    watcher, seen = plain_subscriber(fresh_broker, topics.events(store, device))
    try:
        with Outbox(tmp_path / "outbox.db") as ob:
            ob.append(events(20, store, device))
            up = Uplink(ob, bcfg(fresh_broker), store, device, cfg(confirm="broker"))
            up.start()
            try:
                assert up.flush(10), up.stats()
                assert up.stats()["published_events"] == 20
            finally:
                up.stop(flush_timeout_s=0)
    finally:
        watcher.disconnect()
        watcher.loop_stop()


@pytest.mark.timeout(90)
def test_broker_killed_again_and_again_loses_nothing(
    fresh_broker: Mosquitto, ids, sink_factory, tmp_path: Path
) -> None:
    """Chaos, bounded for CI: kill -9 the broker three times mid-stream, appending meanwhile."""
    store, device, group = ids
    sink = sink_factory(fresh_broker, group)
    _wait_for_persisted(fresh_broker, time.time())
    evs = events(3000, store, device)
    with Outbox(tmp_path / "outbox.db") as ob:
        ob.append(evs[:1000])
        up = Uplink(
            ob,
            bcfg(fresh_broker),
            store,
            device,
            cfg(max_batch=10, confirm_timeout_s=2.0),
            max_inflight_batches=2,
        )
        up.start()
        try:
            for round_ in range(3):
                assert sink.wait_for(100 + round_ * 900, 20), (sink.stats(), up.stats())
                fresh_broker.kill()
                ob.append(evs[1000 * (round_ + 1) : 1000 * (round_ + 2)])
                fresh_broker.start()
            assert sink.wait_for(3000, 40), (sink.stats(), up.stats())
            assert up.flush(20), up.stats()
        finally:
            up.stop(flush_timeout_s=0)
    assert sink.ids() == {e.id for e in evs}
    assert sink.count() == 3000
    s = sink.stats()
    # Raw duplicates come only from re-sent windows, never from a wholesale replay.
    assert s["duplicates"] <= 3 * (2 + 64) * 10, s


def test_clock_offset_takes_the_sample_with_the_shortest_round_trip() -> None:
    c = ClockOffset()
    assert c.estimate() is None
    # The box is 2 s behind; the round trips are 0.4 s, 0.02 s and 1 s (a queued one).
    c.add(sent=100.0, cdp_time=102.35, got=100.4)  # true offset 2 s, seen as 2.15
    c.add(sent=200.0, cdp_time=202.01, got=200.02)
    c.add(sent=300.0, cdp_time=302.9, got=301.0)
    c.add(sent=400.0, cdp_time=0.0, got=399.0)  # clock went backwards meanwhile: ignored
    off, err = c.estimate()  # type: ignore[misc]
    assert off == pytest.approx(2.0) and err == pytest.approx(0.01)


@pytest.mark.timeout(30)
def test_health_is_retained_birth_names_the_config_and_clock_offset_is_measured(
    broker, ids, sink_factory, tmp_path: Path
) -> None:
    store, device, group = ids
    sink_factory(broker, group)
    got: dict[str, dict] = {}
    arrived = threading.Event()

    def on_message(c, u, m) -> None:
        got[m.topic.rsplit("/", 1)[1]] = json.loads(m.payload)
        if {"state", "health"} <= set(got):
            arrived.set()

    with Outbox(tmp_path / "outbox.db") as ob:
        ob.append(events(300, store, device))
        up = Uplink(ob, bcfg(broker), store, device, cfg(max_batch=20), config_hash="abc123")
        up.start()
        try:
            assert up.flush(10), up.stats()
            assert up.publish_health({"outbox_depth": 0, "sensors": {"ble": "ok"}})
            offset = up.clock_offset()
            assert offset is not None
            # Same machine, same clock: the offset is zero within its uncertainty (+ slack).
            assert abs(offset[0]) <= offset[1] + 0.05, offset
        finally:
            up.stop(flush_timeout_s=0)
    # A late subscriber still sees the latest state and health: both are retained.
    watcher = make_client(f"late-{device}", bcfg(broker))
    watcher.on_message = on_message
    watcher.on_connect = lambda c, *a: c.subscribe(f"stores/{store}/devices/{device}/+", qos=1)
    connect(watcher, bcfg(broker), clean_start=True, session_expiry_s=0)
    watcher.loop_start()
    try:
        assert arrived.wait(5), got
        assert got["health"] == {"outbox_depth": 0, "sensors": {"ble": "ok"}}
        assert got["state"]["status"] == "offline"  # the goodbye replaced the birth
    finally:
        watcher.disconnect()
        watcher.loop_stop()


def test_confirmations_cost_a_small_fraction_of_the_uplink(tmp_path: Path) -> None:
    """2,000 journey events in the outbox's batches, compressed as the uplink sends them, and the
    CDP's confirmations of them: ranges of sequences, not 2,000 ids (issue 19: the id lists
    were 78,817 B for a 69,755 B uplink)."""
    from sync.loadgen import generate

    with Outbox(tmp_path / "o.db") as ob:
        generate(ob, store_id="s", device_id="d", count=2000, rate=0)
        rows = ob.pending(2000, 10**9)
    sink = CdpSink(BrokerConfig(), tmp_path / "cdp.db")
    up = down = old = 0
    try:
        for i in range(0, len(rows), 500):
            batch = rows[i : i + 500]
            payload, enc = encode_batch(f"b{i}", "s", "d", [r.body for r in batch], 4096)
            up += len(payload)
            got = sink.handle_batch(topics.events("s", "d"), payload, publish_properties(enc))
            assert got is not None
            bid, ids, seqs = got
            assert sorted(seqs) == [r.sequence for r in batch] and ids == []
            down += len(encode_confirmation(bid, ids, time.time(), seq_ranges(seqs)))
            old += len(encode_confirmation(bid, [r.id for r in batch], time.time()))
    finally:
        sink.stop()
    print(f"uplink {up} B, confirmations {down} B (as id lists: {old} B)")
    assert down < 0.10 * up < old


def slow_cdp(m: Mosquitto, store: str, device: str, delay_s: float):
    """A CDP that confirms every batch copy it gets, ``delay_s`` late: a central tier under load.
    Returns the client and how many copies of each batch it got."""
    copies: dict[str, int] = {}
    subscribed = threading.Event()
    c = make_client(f"slow-cdp-{uuid.uuid4().hex[:8]}", bcfg(m))

    def confirm(batch_id: str, ids: list[str]) -> None:
        c.publish(topics.delivered(store, device), encode_confirmation(batch_id, ids), qos=1)

    def on_message(c, userdata, msg) -> None:
        doc = decode_batch(msg.payload, msg.properties)
        copies[doc["batch_id"]] = copies.get(doc["batch_id"], 0) + 1
        ids = [e["id"] for e in doc["events"]]
        timer = threading.Timer(delay_s, confirm, (doc["batch_id"], ids))
        timer.daemon = True
        timer.start()

    c.on_connect = lambda c, *a: c.subscribe(topics.events(store, device), qos=1)
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = on_message
    connect(c, bcfg(m), clean_start=True, session_expiry_s=0)
    c.loop_start()
    assert subscribed.wait(5), "slow CDP did not subscribe"
    return c, copies


@pytest.mark.timeout(90)
def test_a_slow_cdp_is_not_buried_in_resends(broker: Mosquitto, tmp_path: Path) -> None:
    """Confirmations come 2 s late while the configured timeout is 0.5 s. A fixed timer (max =
    floor) sends every batch again and again; the adaptive one learns the round trip after the
    first few. Same stream for both, side by side; nothing lost either way."""
    resent = {}
    for name, max_s in (("fixed", 0.5), ("adaptive", 600.0)):
        tag = uuid.uuid4().hex[:8]
        store, device = f"st-{tag}", f"dev-{tag}"
        cdp, copies = slow_cdp(broker, store, device, delay_s=2.0)
        try:
            with Outbox(tmp_path / f"{name}.db") as ob:
                up = Uplink(
                    ob,
                    bcfg(broker),
                    store,
                    device,
                    cfg(max_batch=10, confirm_timeout_s=0.5, confirm_timeout_max_s=max_s),
                )
                up.start()
                try:
                    sent: list[str] = []
                    for _ in range(20):  # a batch every 0.3 s for 6 s
                        evs = events(10, store, device)
                        sent += [e.id for e in evs]
                        ob.append(evs)
                        time.sleep(0.3)  # the stream's own pace, not a wait for a condition
                    assert up.flush(60), up.stats()
                    assert ob.depth() == 0
                    resent[name] = up.stats()["resent_unconfirmed"]
                    if name == "adaptive":
                        assert up.stats()["confirm_timeout_s"] > 2.0, up.stats()
                finally:
                    up.stop(flush_timeout_s=0)
            assert len(copies) >= 20  # every batch reached the CDP
        finally:
            cdp.disconnect()
            cdp.loop_stop()
    assert resent["fixed"] >= 40, resent  # ~3 re-sends per batch
    assert resent["adaptive"] * 3 <= resent["fixed"], resent
