"""A damaged outbox.db (issue 14) does not stop the box: it is set aside for forensics, what can
still be read is salvaged into a new outbox, sequences are never reused, one log line says so.
Real SQLite files, damaged on disk the way cards and power cuts damage them."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from central.cdp_sink import CdpSink
from contracts.events import AudienceSample, CloudEvent, make_event
from edge_agent.config import BrokerConfig, UplinkConfig
from sync import sqlite_guard
from sync.outbox import Outbox, OutboxDamaged
from sync.uplink import Uplink
from tests.sqlite_pages import Leaf, overwrite, page_size, table_leaves, varint
from tests.watching import wait_for

REPO = Path(__file__).resolve().parents[2]
N = 400  # events accepted
DELIVERED = 10  # of which the CDP confirmed the first ones (their rows are gone)


def evs(n: int, store: str = "st1", device: str = "d1") -> list[CloudEvent]:
    return [
        make_event(
            AudienceSample(screen_id="s1", people=i % 7, watchers=0),
            store_id=store,
            device_id=device,
        )
        for i in range(n)
    ]


def filled(path: Path, store: str = "st1", device: str = "d1") -> dict[int, str]:
    """An outbox that accepted N events and delivered the first few, closed (checkpointed);
    returns what is pending, sequence -> id."""
    with Outbox(path) as ob:
        ob.append(evs(N, store, device))
        ob.mark_sent([r.id for r in ob.pending(DELIVERED, 10**9)])
        pending = {r.sequence: r.id for r in ob.pending(10**6, 10**12)}
    assert len(pending) == N - DELIVERED and max(pending) == N
    assert not sqlite_guard.sidecar(path, "-wal").exists()  # everything is in the main file
    return pending


def middle_leaf(path: Path) -> Leaf:
    leaves = table_leaves(path, "outbox")
    assert len(leaves) > 6
    return leaves[len(leaves) // 2]


# ---- how files get damaged -----------------------------------------------------------------
# Each returns the rowids that may be lost (None: any), after writing the damage.
def header(path: Path) -> set[int] | None:
    data = bytearray(path.read_bytes())
    data[:100] = bytes(range(100, 200))  # the 100-byte header, magic string included
    path.write_bytes(bytes(data))
    return set()  # the rest of the file is intact: everything can be read


def truncated(path: Path) -> set[int] | None:
    data = path.read_bytes()
    half, size = len(data) // 2, page_size(data)
    leaves = table_leaves(path, "outbox")
    path.write_bytes(data[:half])
    # Rows on pages wholly before the cut must survive; the others may not.
    return {r for lf in leaves if lf.offset + size > half for r in lf.rowids}


def not_a_database(path: Path) -> set[int] | None:
    path.write_bytes(os.urandom(path.stat().st_size))
    return None


def empty_file(path: Path) -> set[int] | None:
    path.write_bytes(b"")
    return None


def page_head(path: Path) -> set[int] | None:
    lf = middle_leaf(path)
    overwrite(path, lf.offset, 64, seed=1)  # the b-tree page header and cell pointers
    return lf.rowids


def cell_start(path: Path) -> set[int] | None:
    lf = middle_leaf(path)
    overwrite(path, lf.cells[len(lf.cells) // 2].at, 64, seed=2)  # sizes, rowid, record head
    return lf.rowids


def cell_body(path: Path) -> set[int] | None:
    lf = middle_leaf(path)
    overwrite(path, lf.cells[len(lf.cells) // 2].record + 120, 64, seed=3)  # inside the JSON
    return lf.rowids


def text_in_body(path: Path) -> set[int] | None:
    """Still UTF-8, no longer JSON: SQLite reads it without complaint, the CDP would refuse
    the whole batch that carries it, and the batch would be sent for ever."""
    lf = middle_leaf(path)
    at = lf.cells[len(lf.cells) // 2].record + 120
    data = bytearray(path.read_bytes())
    data[at : at + 64] = b"#" * 64
    path.write_bytes(bytes(data))
    return lf.rowids


DAMAGE: dict[str, Callable[[Path], set[int] | None]] = {
    "header": header,
    "truncated": truncated,
    "not_a_database": not_a_database,
    "empty_file": empty_file,
    "page_head": page_head,
    "cell_start": cell_start,
    "cell_body": cell_body,
    "text_in_body": text_in_body,
}


def recovery_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "sync.outbox" and r.levelno >= logging.WARNING
    ]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_outbox_is_set_aside_and_what_can_be_read_is_kept(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.db"
    before = filled(path)
    may_lose = DAMAGE[kind](path)
    damaged_bytes = path.read_bytes()
    caplog.set_level(logging.INFO)

    ob = Outbox(path)  # no exception, whatever the damage
    try:
        # Some damage only shows when the rows are read: the uplink's first read finds it.
        rows = ob.pending(10**6, 10**12)
        rec = ob.recovered
        assert rec is not None, f"{kind}: not noticed"
        assert ob.recoveries == 1

        # Set aside, untouched, for forensics; a new file in its place.
        aside = Path(rec["moved_to"])
        assert aside.parent == tmp_path and aside.name.startswith("outbox.db.corrupt-")
        assert aside.read_bytes() == damaged_bytes
        assert sqlite_guard.aside_sets(path) == [aside]

        # What was salvaged is exactly what was written, each event once, with its sequence.
        salvaged = {r.sequence: r.id for r in rows}
        assert len(salvaged) == len(rows) == rec["salvaged"] == ob.depth()
        assert salvaged.items() <= before.items()
        if may_lose is not None:
            assert set(before) - may_lose <= set(salvaged), "a readable row was lost"
        if kind == "header":
            assert salvaged == before and rec["lost"] == 0

        # One line says what was wrong, where the file went and how much was saved.
        lines = recovery_lines(caplog)
        assert len(lines) == 1, lines
        assert rec["reason"] in lines[0] and aside.name in lines[0]
        assert f"salvaged {len(salvaged)} event(s)" in lines[0]
        assert ob.health()["outbox_recovered"].startswith(rec["reason"])
        assert f"salvaged {len(salvaged)}" in ob.health()["outbox_recovered"]

        # Never a sequence that may have been used, even by the delivered or lost events.
        new = evs(5)
        assert ob.append(new) == 5
        fresh = [r.sequence for r in ob.pending(10**6, 10**12) if r.id in {e.id for e in new}]
        assert len(fresh) == 5 and min(fresh) > N
        assert ob.total_accepted() >= len(salvaged) + 5

        # Private, like the file it replaces should have been; SQLite's sidecars follow it.
        for p in (path, sqlite_guard.sidecar(path, "-wal"), sqlite_guard.sidecar(path, "-shm")):
            assert mode(p) == 0o600, p

        # And it works: confirmations delete, nothing is recovered twice.
        everything = [r.id for r in ob.pending(10**6, 10**12)]
        assert ob.mark_sent(everything) == len(everything)
        assert ob.depth() == 0 and ob.recoveries == 1
        assert len(recovery_lines(caplog)) == 1
    finally:
        ob.close()
    with Outbox(path) as again:  # sound now: nothing to do at the next start
        assert again.recovered is None and again.integrity_check() == "ok"
        assert again.last_sequence() == max(fresh)


def flip_priority(path: Path) -> int:
    """Damage one byte of one row so that SQLite's quick_check, the uplink's reads and the
    CDP are all happy, but deleting the row fails: its stored priority no longer matches its
    index entry ("database disk image is malformed" at every confirmation)."""
    lf = middle_leaf(path)
    cell = lf.cells[len(lf.cells) // 2]
    data = bytearray(path.read_bytes())
    head_size, at = varint(data, cell.record)
    types = []
    while at < cell.record + head_size:
        t, nxt = varint(data, at)
        types.append((t, at))
        at = nxt
    serial, where = types[3]  # sequence (rowid alias), id, type, priority, ...
    assert serial == 8  # the integer 0: an audience sample's priority
    data[where] = 9  # the integer 1, same size: the record stays well-formed
    path.write_bytes(bytes(data))
    return cell.rowid


def test_confirmations_that_cannot_delete_recover_instead_of_failing_for_ever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.db"
    before = filled(path)
    flip_priority(path)
    # What the box did before: quick_check passes, every read works, every delete fails.
    with Outbox(path, recover=False) as ob:
        assert ob.recovered is None and len(ob.pending(10**6, 10**12)) == len(before)
        with pytest.raises(sqlite3.DatabaseError, match="malformed"):
            ob.mark_sent(list(before.values()))
        with pytest.raises(sqlite3.DatabaseError, match="malformed"):
            ob.mark_sent(list(before.values()))
    caplog.set_level(logging.INFO)
    with Outbox(path) as ob:
        assert ob.recovered is None  # nothing to see at open
        assert ob.mark_sent(list(before.values())) == len(before)  # recovered, then deleted
        assert ob.recovered is not None and ob.recovered["lost"] == 0
        assert ob.recovered["salvaged"] == len(before)
        assert ob.depth() == 0
        ob.append(evs(1))
        assert ob.last_sequence() == N + 1
    assert len(recovery_lines(caplog)) == 1


def test_several_damaged_pages_lose_only_their_rows(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    before = filled(path)
    leaves = table_leaves(path, "outbox")
    hit = [leaves[len(leaves) // 4], leaves[len(leaves) // 2], leaves[3 * len(leaves) // 4]]
    for i, lf in enumerate(hit):
        overwrite(path, lf.offset, 64, seed=10 + i)
    on_hit = set().union(*(lf.rowids for lf in hit))
    with Outbox(path) as ob:
        salvaged = {r.sequence: r.id for r in ob.pending(10**6, 10**12)}
        assert ob.recovered is not None
    assert salvaged.items() <= before.items()
    assert set(before) - on_hit <= set(salvaged)


def test_an_unreadable_counter_page_never_reuses_a_delivered_sequence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path) as ob:
        ob.append(evs(N))
        ob.mark_sent([r.id for r in ob.pending(10**6, 10**12)])  # all delivered: no row left
    (meta,) = table_leaves(path, "meta")
    overwrite(path, meta.offset, 64, seed=4)
    caplog.set_level(logging.INFO)
    with Outbox(path) as ob:
        assert ob.recovered is not None and ob.recovered["sequence_read"] is False
        ob.append(evs(1))
        # Sequences 1..N reached the CDP and no row or counter says so any more.
        assert ob.last_sequence() > N
    (line,) = recovery_lines(caplog)
    assert "next_sequence unreadable" in line


def test_a_sound_file_after_kill_9_is_not_damaged(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    code = textwrap.dedent(
        f"""
        import os
        from tests.sync.test_outbox_recovery import evs
        from sync.outbox import Outbox
        ob = Outbox({str(path)!r})
        ob.append(evs(300))
        os._exit(0)  # like kill -9: no close, the WAL is left as it is
        """
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    assert sqlite_guard.sidecar(path, "-wal").stat().st_size > 0
    with Outbox(path) as ob:
        assert ob.recovered is None and ob.depth() == 300
    assert sqlite_guard.aside_sets(path) == []


def test_new_outbox_is_private_and_a_loosened_one_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    old = os.umask(0o022)  # the usual umask: SQLite alone would make the file 0644
    try:
        with Outbox(path) as ob:
            ob.append(evs(3))
            sidecars = [sqlite_guard.sidecar(path, s) for s in ("-wal", "-shm")]
            assert all(mode(p) == 0o600 for p in [path, *sidecars])
            for p in [path, *sidecars]:
                os.chmod(p, 0o644)
    finally:
        os.umask(old)
    with Outbox(path) as ob:
        assert ob.recovered is None and ob.depth() == 3
        assert all(mode(p) == 0o600 for p in [path, *sidecars])


def test_a_tool_that_only_looks_leaves_a_damaged_file_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    filled(path)
    header(path)
    with pytest.raises(OutboxDamaged, match="not a database"):
        Outbox(path, recover=False)
    exe = os.path.join(os.path.dirname(sys.executable), "edge-agent")
    out = subprocess.run([exe, "outbox", "--db", str(path)], capture_output=True, text=True)
    assert out.returncode == 1 and "not a database" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert sqlite_guard.aside_sets(path) == [] and path.exists()


def test_a_recovery_cut_short_after_the_move_is_finished_at_the_next_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    before = filled(path)
    # The new file was complete and the broken one moved aside; the rename never happened.
    os.replace(path, sqlite_guard.sidecar(path, ".new"))
    with Outbox(path) as ob:
        assert {r.sequence: r.id for r in ob.pending(10**6, 10**12)} == before
    # A new file whose build was cut short, next to the one still in use, is dropped.
    sqlite_guard.sidecar(path, ".new").write_bytes(b"half a file")
    with Outbox(path) as ob:
        assert ob.recovered is None and ob.depth() == len(before)
    assert not sqlite_guard.sidecar(path, ".new").exists()


def test_only_the_newest_forensic_copies_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    for _ in range(sqlite_guard.KEEP_ASIDE + 2):
        with Outbox(path) as ob:
            ob.append(evs(2))
        not_a_database(path)
        with Outbox(path) as ob:
            assert ob.recovered is not None
    assert len(sqlite_guard.aside_sets(path)) == sqlite_guard.KEEP_ASIDE


@pytest.mark.timeout(60)
def test_the_uplink_delivers_everything_from_an_outbox_whose_deletes_failed(
    broker, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    store, device = f"st-{tag}", f"dev-{tag}"
    path = tmp_path / "outbox.db"
    before = filled(path, store, device)
    flip_priority(path)
    sink = CdpSink(
        BrokerConfig(host=broker.host, port=broker.port), tmp_path / "cdp.db", group=f"g-{tag}"
    )
    assert sink.start(wait_s=5)
    try:
        with Outbox(path) as ob:
            up = Uplink(
                ob,
                BrokerConfig(host=broker.host, port=broker.port, keepalive=5),
                store,
                device,
                UplinkConfig(linger_s=0.02, max_batch=50),
            )
            up.start()
            try:
                assert sink.wait_for(len(before), 15), sink.stats()
                # The first confirmation found the damage; the outbox drains all the same.
                assert wait_for(lambda: ob.depth() == 0, 15), up.stats()
                assert up.alive and ob.recovered is not None and ob.recovered["lost"] == 0
                assert sink.ids() == set(before.values())
            finally:
                up.stop(flush_timeout_s=0)
    finally:
        sink.stop(end_session=True)
