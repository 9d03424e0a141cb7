"""The CDP store's contract, run against both implementations (``cdp_db``: a SQLite file and a
fresh database on a real PostgreSQL): through the sink's own ingest path (``handle_batch``), as a
box's batches arrive, without a broker."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from central.cdp_sink import CdpSink
from central.cdp_store import SqliteStore, open_store
from central.ops_cli import main
from contracts import topics
from contracts.batch import encode_batch, publish_properties
from contracts.events import (
    AudienceSample,
    CloudEvent,
    Conversion,
    DeviceHeartbeat,
    make_event,
    receipt_event_id,
)
from edge_agent.config import BrokerConfig
from sync.loadgen import generate
from sync.outbox import Outbox, format_sequence
from tests.central.test_uplift import DAY, store_day

pytestmark = pytest.mark.timeout(60)


def sink_of(db: str) -> CdpSink:
    return CdpSink(BrokerConfig(), db)  # not started: handle_batch is its ingest path


def send(sink: CdpSink, store: str, device: str, bodies: list[str], batch: str = "b") -> None:
    payload, enc = encode_batch(batch, store, device, bodies, 1000)
    assert sink.handle_batch(topics.events(store, device), payload, publish_properties(enc))


def numbered(evs: list[CloudEvent], first: int = 1) -> list[str]:
    """Bodies as a box's outbox sends them: with its sequence."""
    return [
        json.dumps({**json.loads(e.to_json()), "sequence": format_sequence(n)})
        for n, e in enumerate(evs, start=first)
    ]


def samples(n: int, store: str, device: str) -> list[CloudEvent]:
    return [
        make_event(
            AudienceSample(screen_id="s", people=1, watchers=0), store_id=store, device_id=device
        )
        for _ in range(n)
    ]


def test_the_same_id_from_two_devices_is_two_events(cdp_db: str, tmp_path: Path) -> None:
    """Issue 19: loadgen's default seed gives every device the same ids, and a CDP keyed on the
    id alone dropped d2's events as duplicates (and confirmed them to d2)."""
    sink = sink_of(cdp_db)
    try:
        for device in ("d1", "d2"):
            with Outbox(tmp_path / f"{device}.db") as ob:
                generate(ob, store_id="s1", device_id=device, count=300, rate=0)
                rows = ob.pending(1000, 10**9)
            send(sink, "s1", device, [r.body for r in rows])
            send(sink, "s1", device, [r.body for r in rows[:50]])  # a re-send: duplicates
        st = sink.stats()
        assert (st["stored"], st["duplicates"]) == (600, 100)
        assert sink.store.count() == 600 and len(sink.ids()) == 300  # same ids, two devices
        assert [(g["device"], g["stored"], g["missing"]) for g in sink.gaps()] == [
            ("d1", 300, 0),
            ("d2", 300, 0),
        ]
    finally:
        sink.stop()


def test_a_receipts_conversion_is_one_event_per_store(cdp_db: str) -> None:
    """Every box that hears a till reports the receipt under the id derived from it: the CDP keeps
    one conversion, and each box's sequence of it counts as received."""
    sink = sink_of(cdp_db)

    def conversion(
        device: str, event_id: str, receipt: str = "R-1", store: str = "s1"
    ) -> CloudEvent:
        pay = Conversion(receipt_id=receipt, amount=20.0, till="till-1", profile_id="p1")
        return make_event(pay, store_id=store, device_id=device, event_id=event_id)

    rid = receipt_event_id("s1", "till-1", "R-1")
    try:
        a = [*samples(2, "s1", "a"), conversion("a", rid)]
        b = [*samples(1, "s1", "b"), conversion("b", rid)]
        send(sink, "s1", "a", numbered(a))
        send(sink, "s1", "b", numbered(b))
        # Store s2 has its own till-1 and receipt R-1: its id is another (the store is in it).
        c = [conversion("c", receipt_event_id("s2", "till-1", "R-1"), store="s2")]
        payload, enc = encode_batch("b", "s2", "c", [e.to_json() for e in c], 1000)
        sink.handle_batch(topics.events("s2", "c"), payload, publish_properties(enc))
        # An id merely on a conversion, not derived from its receipt, is an ordinary, per device one.
        odd = "0190f0f0-0000-7000-8000-000000000001"
        send(sink, "s1", "a", numbered([conversion("a", odd, "R-2")], first=4))
        send(sink, "s1", "b", numbered([conversion("b", odd, "R-2")], first=3))
        assert sink.store.count() == 2 + 1 + 1 + 1 + 2
        assert sink.stats()["duplicates"] == 1  # box b's copy of R-1
        gaps = {g["device"]: g for g in sink.gaps()}
        assert {d: (g["last"], g["missing"]) for d, g in gaps.items()} == {"a": (4, 0), "b": (3, 0)}
    finally:
        sink.stop()


def test_batches_handled_together_are_one_write_each_as_if_alone(
    cdp_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``handle_batches`` (a JetStream fetch): one write for them all, yet each batch confirmed
    as ``handle_batch`` would; one that cannot be decoded, or of a foreign topic, is rejected
    alone; a batch twice in one call, and all of them again (a fetch redelivered after a commit
    whose acks were lost), are duplicates at the key and confirmed again."""
    sink = sink_of(cdp_db)
    writes: list[int] = []
    write = sink.store.write

    def counted(rows: Any, rejects: Any) -> list[int]:
        writes.append(len(rows))
        return write(rows, rejects)

    monkeypatch.setattr(sink.store, "write", counted)
    try:
        ta, tb = topics.events("s1", "a"), topics.events("s1", "b")
        pa, _ = encode_batch("ba", "s1", "a", numbered(samples(3, "s1", "a")), 10**6)
        pb, _ = encode_batch("bb", "s1", "b", numbered(samples(2, "s1", "b")), 10**6)
        batches = [(ta, pa), (ta, b"\x78\x00garbage"), (tb, pb), ("other/topic", b"{}"), (ta, pa)]
        expect = [("ba", [], [1, 2, 3]), None, ("bb", [], [1, 2]), None, ("ba", [], [1, 2, 3])]
        assert sink.handle_batches(batches) == expect
        assert writes == [8]
        st = sink.stats()
        assert (st["batches"], st["received"], st["stored"], st["duplicates"], st["rejected"]) == (
            5, 8, 5, 3, 2,
        )  # fmt: skip
        assert sink.handle_batches(batches) == expect
        assert writes == [8, 8]
        st = sink.stats()
        assert (st["stored"], st["duplicates"], st["rejected"]) == (5, 11, 4)
        assert sink.store.count() == 5
        gaps = {g["device"]: (g["stored"], g["missing"]) for g in sink.gaps()}
        assert gaps == {"a": (3, 0), "b": (2, 0)}
        reasons = [r["reason"] for r in sink.rejects()]
        assert sum("bad zlib" in r for r in reasons) == 2
        assert sum("unexpected topic" in r for r in reasons) == 2
    finally:
        sink.stop()


def test_a_lone_surrogate_is_rejected_alone_and_never_holds_the_batch_back(cdp_db: str) -> None:
    """JSON may spell a lone surrogate ("\\ud800"): valid JSON, not storable text. Stored, it
    failed the write of its whole batch, which came again for ever; now that event is rejected
    (kept, spelled out) and the rest of the batch stored and confirmed."""
    sink = sink_of(cdp_db)
    try:
        good = numbered(samples(2, "s1", "d1"))
        bad = json.loads(numbered(samples(1, "s1", "d1"), first=3)[0])
        bad["data"]["screen_id"] = "s\ud800"  # raw text: json.dumps writes the escape
        evil_id = json.loads(numbered(samples(1, "s1", "d1"), first=4)[0])
        evil_id["id"] = "id-\udfff"
        bodies = [*good, json.dumps(bad), json.dumps(evil_id)]
        assert "\\ud800" in bodies[2]
        payload, enc = encode_batch("b\ud800", "s1", "d1", bodies, 10**6)
        done = sink.handle_batch(topics.events("s1", "d1"), payload, publish_properties(enc))
        assert done is not None and done[2] == [1, 2, 3, 4]  # all four dealt with: confirmed
        st = sink.stats()
        assert (st["stored"], st["rejected"]) == (2, 2)
        reasons = [r["reason"] for r in sink.rejects()]
        assert sum("lone surrogate" in r for r in reasons) == 2, reasons
        assert sink.store.count() == 2
    finally:
        sink.stop()


def test_gaps_over_the_store(cdp_db: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sink = sink_of(cdp_db)
    try:
        evs = samples(40, "s1", "d1")
        bodies = numbered(evs)
        keep = [b for n, b in enumerate(bodies, start=1) if n not in (1, 2, 17, 30, 31, 32)]
        send(sink, "s1", "d1", keep[:20])
        send(sink, "s1", "d1", keep[20:])
        [gap] = sink.gaps()
        assert gap == {
            "store": "s1", "device": "d1", "first": 3, "last": 40, "stored": 34, "missing": 6,
            "ranges": [[1, 2], [17, 17], [30, 32]],
        }  # fmt: skip
    finally:
        sink.stop()
    assert main(["cdp-gaps", "--db", cdp_db]) == 0
    assert json.loads(capsys.readouterr().out)["ranges"] == [[1, 2], [17, 17], [30, 32]]


def test_kpis_and_heartbeats_read_the_same_on_both(cdp_db: str, tmp_path: Path) -> None:
    """The console's reads (the uplift itself: tests/central/test_uplift.py, on both stores)."""
    sink = sink_of(cdp_db)
    try:
        hb = DeviceHeartbeat(
            version="1.0", uptime_s=5, outbox_depth=0, oldest_pending_s=0, disk_free_mb=9
        )
        beats = [
            make_event(hb.model_copy(update={"uptime_s": h}), store_id="st-1", device_id="box-1",
                       time=DAY + timedelta(hours=h))
            for h in (1, 3, 2)
        ]  # fmt: skip
        with Outbox(tmp_path / "ob.db") as ob:
            ob.append([*store_day(), *beats])
            rows = ob.pending(10_000, 10**9)
        send(sink, "st-1", "box-1", [r.body for r in rows])
        kpis = sink.campaign_events()
        # Offers shown (14) and conversions attributed to a campaign (6; not "R-none").
        assert len(kpis) == 20
        times = [datetime.fromisoformat(k[1]) for k in kpis]
        assert times == sorted(times)
        assert {k[2] for k in kpis} == {"shown", "conversion"}
        assert sum(k[5] for k in kpis) == 59.0 * 6
        assert len(sink.campaign_events(since=DAY + timedelta(hours=4), store="st-1")) == 7
        assert sink.campaign_events(store="elsewhere") == []
        [(store, device, t, data)] = sink.latest_heartbeats()
        assert (store, device, data["uptime_s"]) == ("st-1", "box-1", 3)
        assert datetime.fromisoformat(t) == DAY + timedelta(hours=3)
    finally:
        sink.stop()


def test_rejects_are_kept_even_with_nul_bytes(cdp_db: str) -> None:
    sink = sink_of(cdp_db)
    try:
        good = samples(1, "s1", "d1")[0]
        doc = {
            "batch_id": "b\x00",
            "events": [json.loads(good.to_json()), {"id": "x\x00y", "junk": "\x00"}],
        }
        topic = topics.events("s1", "d1")
        sink.handle_batch(topic, json.dumps(doc).encode())
        sink.handle_batch(topic, b"\x78\x00garbage")
        assert sink.store.count() == 1
        reasons = [r["reason"] for r in sink.rejects()]
        assert len(reasons) == 2 and any("bad zlib" in r for r in reasons)
    finally:
        sink.stop()


def test_a_nul_inside_an_event_is_stored(cdp_db: str) -> None:
    """jsonb cannot hold U+0000: the PostgreSQL store keeps the event with U+FFFD instead of
    failing the batch forever."""
    sink = sink_of(cdp_db)
    try:
        ev = make_event(Conversion(receipt_id="R\x00", amount=1.0), store_id="s1", device_id="d1")
        send(sink, "s1", "d1", [ev.to_json()])
        assert sink.store.count() == 1 and sink.ids() == {ev.id}
    finally:
        sink.stop()


def test_sinks_writing_one_store_at_once_store_each_event_once(cdp_db: str) -> None:
    """Overlapping batches from several threads (one sink each on PostgreSQL; on SQLite the
    file's lock serialises them): every event once, no deadlock, each write committed."""
    if cdp_db.startswith("postgresql"):
        sinks = [sink_of(cdp_db) for _ in range(3)]
    else:
        sinks = [sink_of(cdp_db)] * 3
    bodies = numbered(samples(600, "s1", "d1"))
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            for i in range(0, 600, 50):
                j = (i + 150 * k) % 600  # each thread starts elsewhere: overlaps in flight
                send(sinks[k], "s1", "d1", bodies[j : j + 50], batch=f"b{k}-{i}")
        except BaseException as exc:  # noqa: BLE001 (reported by the test thread)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert not errors, errors
        assert sinks[0].store.count() == 600
        assert sum(s.stats()["stored"] for s in {id(s): s for s in sinks}.values()) == 600
        [gap] = sinks[0].gaps()
        assert (gap["stored"], gap["missing"]) == (600, 0)
    finally:
        for s in {id(s): s for s in sinks}.values():
            s.stop()


def test_a_sqlite_file_from_before_the_device_key_is_migrated(tmp_path: Path) -> None:
    """A CDP file of the old schema (id alone as key, no sequences or shared ids) opens, keeps
    its events, and from then on takes another device's event with the same id."""
    path = tmp_path / "old.db"
    ev = samples(1, "s1", "d1")[0]
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE events (id TEXT PRIMARY KEY, store_id TEXT NOT NULL, device_id TEXT NOT"
        " NULL, sequence TEXT, type TEXT NOT NULL, time TEXT NOT NULL, batch_id TEXT,"
        " received_at REAL NOT NULL, body TEXT NOT NULL)"
    )
    body = json.dumps({**json.loads(ev.to_json()), "sequence": format_sequence(1)})
    db.execute(
        "INSERT INTO events VALUES (?, 's1', 'd1', ?, ?, ?, 'b', 0, ?)",
        (ev.id, format_sequence(1), ev.type, ev.time.isoformat(), body),
    )
    db.commit()
    db.close()
    sink = sink_of(str(path))
    try:
        assert sink.count() == 1 and [g["stored"] for g in sink.gaps()] == [1]
        twin = make_event(
            AudienceSample(screen_id="s", people=1, watchers=0),
            store_id="s1", device_id="d2", event_id=ev.id,
        )  # fmt: skip
        send(sink, "s1", "d2", [twin.to_json()])
        assert sink.store.count() == 2
    finally:
        sink.stop()
    assert isinstance(open_store(path), SqliteStore)


def test_postgres_days_are_partitions_made_on_demand(pg_dsn: str) -> None:
    import psycopg

    sink = sink_of(pg_dsn)
    try:
        days = [datetime(2026, 3, d, 23, 59, tzinfo=UTC) for d in (1, 2, 2, 5)]
        evs = [
            make_event(
                AudienceSample(screen_id="s", people=1, watchers=0),
                store_id="s1",
                device_id="d1",
                time=t,
            )
            for t in days
        ]
        send(sink, "s1", "d1", numbered(evs))
        # A time with an offset lands on its UTC day: 00:30+02:00 on the 6th is the 5th in UTC.
        late = make_event(
            AudienceSample(screen_id="s", people=1, watchers=0), store_id="s1", device_id="d1",
            time=datetime(2026, 3, 6, 0, 30, tzinfo=UTC) + timedelta(hours=-2),
        )  # fmt: skip
        send(sink, "s1", "d1", numbered([late], first=5))
    finally:
        sink.stop()
    with psycopg.connect(pg_dsn) as conn:
        parts = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'cdp.events'::regclass ORDER BY 1"
        ).fetchall()
        assert [p[0] for p in parts] == ["events_20260301", "events_20260302", "events_20260305"]
        per_day = conn.execute(
            "SELECT tableoid::regclass::text, count(*) FROM cdp.events GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert per_day == [
            ("cdp.events_20260301", 1),
            ("cdp.events_20260302", 2),
            ("cdp.events_20260305", 2),
        ]


def test_a_day_dropped_while_a_sink_runs_is_made_again(pg_dsn: str) -> None:
    """Ops retire old days by dropping their partitions; a late event of such a day still lands."""
    import psycopg

    sink = sink_of(pg_dsn)
    try:
        t = datetime(2026, 2, 1, 12, tzinfo=UTC)
        first, late = (
            make_event(AudienceSample(screen_id="s", people=1, watchers=0), store_id="s1",
                       device_id="d1", time=t)
            for _ in range(2)
        )  # fmt: skip
        send(sink, "s1", "d1", [first.to_json()])
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE cdp.events_20260201")
        send(sink, "s1", "d1", [late.to_json()])
        assert sink.ids() == {late.id}
    finally:
        sink.stop()


def test_edge_ops_says_so_when_the_store_cannot_be_reached(capsys: pytest.CaptureFixture) -> None:
    """A sink or a report against a PostgreSQL that is not there: one line and exit 1, before
    anything connects to a broker (nothing listens on port 1)."""
    dsn = "postgresql://cdp:secret@127.0.0.1:1/cdp"
    assert main(["cdp-sink", "--db", dsn, "--connect-timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert "cannot open the CDP store" in err and "secret" not in err
    assert main(["cdp-gaps", "--db", dsn]) == 1
    assert main(["uplift", "--db", dsn]) == 1
    assert "cannot open the CDP store" in capsys.readouterr().err


def test_a_reader_checks_the_schema_is_there(pg_dsn: str) -> None:
    from central.cdp_store import PostgresStore

    reader = PostgresStore(pg_dsn, create=False)
    try:
        with pytest.raises(LookupError, match="no sink has written"):
            reader.check()
        sink_of(pg_dsn).stop()  # a sink creates the schema
        reader.check()
    finally:
        reader.close()


def test_logs_read_by_store_device_time_and_cursor(
    cdp_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`device.log.v1` records come back in arrival order, filtered by store, device and their
    own time; a cursor gives what arrived after it (``edge-ops logs --follow``)."""
    from contracts.events import DeviceLog

    t0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)

    def rec(i: int, device: str, **kw: object) -> CloudEvent:
        log = DeviceLog(level="warning", logger="edge_agent", message=f"m{i}", **kw)  # type: ignore[arg-type]
        return make_event(log, store_id="s1", device_id=device, time=t0 + timedelta(minutes=i))

    sink = sink_of(cdp_db)
    try:
        send(sink, "s1", "d1", numbered([rec(0, "d1"), rec(1, "d1", count=3)]), batch="b1")
        send(sink, "s1", "d2", numbered([rec(2, "d2")]), batch="b2")
        send(sink, "s2", "d1", numbered([rec(3, "d1")]), batch="b3")  # another store
        send(sink, "s1", "d1", numbered(samples(2, "s1", "d1"), first=3), batch="b4")  # not logs
        send(sink, "s1", "d1", numbered([rec(4, "d1")], first=5), batch="b5")
        st = sink.store
        msgs = [r.data["message"] for r in st.logs("s1")]
        assert msgs == ["m0", "m1", "m2", "m4"]
        assert [r.data["message"] for r in st.logs("s1", "d2")] == ["m2"]
        since = (t0 + timedelta(minutes=1)).isoformat()
        assert [r.data["message"] for r in st.logs("s1", "d1", since)] == ["m1", "m4"]
        latest = st.logs("s1", limit=2)  # the latest two, still oldest first
        assert [r.data["message"] for r in latest] == ["m2", "m4"]
        first = st.logs("s1", limit=4)[0]
        after = st.logs("s1", after=(first.received_at, first.id))
        assert [r.data["message"] for r in after] == ["m1", "m2", "m4"]
        assert st.logs("s1", after=(after[-1].received_at, after[-1].id)) == []
        assert after[0].data["count"] == 3 and after[0].time.startswith("2026-05-04T10:01")
    finally:
        sink.stop()
    assert main(["logs", "--store", "s1", "--device", "d1", "--db", cdp_db]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert "s1/d1 WARNING edge_agent: m1 (x3" in lines[1]
    assert main(["logs", "--store", "s1", "--since", "yesterday", "--db", cdp_db]) == 2


def table_rows(db: str, table: str) -> int:
    if db.startswith("postgresql"):
        import psycopg

        with psycopg.connect(db) as conn:
            return int(conn.execute(f"SELECT count(*) FROM cdp.{table}").fetchone()[0])  # type: ignore[index]
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_sequences_are_compacted_into_runs_and_the_gap_report_stays_true(cdp_db: str) -> None:
    """One row per event in ``sequences`` for ever was the issue; compacted, a device costs a
    row per run of consecutive sequences, and late or duplicate arrivals still count right."""
    sink = sink_of(cdp_db)
    try:
        bodies = numbered(samples(300, "s1", "d1"))
        holes = {1, 2, 17, 30, 31, 32}
        keep = [b for n, b in enumerate(bodies, start=1) if n not in holes and n <= 250]
        for i in range(0, len(keep), 40):
            send(sink, "s1", "d1", keep[i : i + 40], batch=f"b{i}")
        before = sink.gaps()
        assert table_rows(cdp_db, "sequences") == 244
        assert sink.store.compact_sequences() == 244
        assert table_rows(cdp_db, "sequences") == 0
        assert table_rows(cdp_db, "sequence_ranges") == 3  # 3-16, 18-29, 33-250
        assert sink.gaps() == before
        assert before[0]["missing"] == 6 and before[0]["stored"] == 244
        # After the compaction: a re-sent batch (duplicates of compacted sequences), the late
        # event 17 filling a hole, and new ones; the sink compacts by itself when it is due.
        send(sink, "s1", "d1", keep[:40], batch="again")
        send(sink, "s1", "d1", [bodies[16], *bodies[250:]], batch="late")
        [gap] = sink.gaps()
        assert (gap["first"], gap["last"], gap["stored"], gap["missing"]) == (3, 300, 295, 5)
        assert gap["ranges"] == [[1, 2], [30, 32]]
        sink.compact_every_s = 0.0
        sink._next_compact = 0.0
        send(sink, "s1", "d1", [bodies[0]], batch="first")
        assert table_rows(cdp_db, "sequences") == 0
        assert table_rows(cdp_db, "sequence_ranges") == 3  # 1, 3-29, 33-300
        [gap] = sink.gaps()
        assert (gap["first"], gap["stored"], gap["missing"], gap["ranges"]) == (
            1, 296, 4, [[2, 2], [30, 32]],
        )  # fmt: skip
    finally:
        sink.stop()
