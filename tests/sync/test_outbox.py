"""The durable outbox: group commit, sequence, idempotency, thread safety, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from contracts.events import AudienceSample, CloudEvent, Conversion, make_event
from sync.outbox import PRIORITY_HIGH, PRIORITY_LOW, Outbox, format_sequence


def sample(i: int = 0) -> CloudEvent:
    return make_event(
        AudienceSample(screen_id="s1", people=i % 7, watchers=0), store_id="st1", device_id="d1"
    )


def test_append_assigns_sequence_and_keeps_json(db_path: Path) -> None:
    with Outbox(db_path) as ob:
        events = [sample(i) for i in range(5)]
        assert ob.append(events) == 5
        rows = ob.pending(100, 1_000_000)
        assert [r.id for r in rows] == [e.id for e in events]
        assert [r.sequence for r in rows] == [1, 2, 3, 4, 5]
        doc = json.loads(rows[2].body)
        assert doc["sequence"] == format_sequence(3) == "00000000000000000003"
        assert doc["id"] == events[2].id and doc["data"]["screen_id"] == "s1"
        # String order equals numeric order, as the CloudEvents sequence extension requires.
        assert format_sequence(9) < format_sequence(10)


def test_duplicate_ids_are_noops_and_consume_no_sequence(db_path: Path) -> None:
    with Outbox(db_path) as ob:
        a, b = sample(1), sample(2)
        assert ob.append([a, b]) == 2
        assert ob.append([a, b, a]) == 0
        c = sample(3)
        assert ob.append([b, c]) == 1
        assert ob.depth() == 3
        assert ob.total_accepted() == 3
        assert [r.sequence for r in ob.pending(10, 10**6)] == [1, 2, 3]


def test_sequence_and_total_survive_reopen_and_deletes(db_path: Path) -> None:
    with Outbox(db_path) as ob:
        evs = [sample(i) for i in range(4)]
        ob.append(evs)
        assert ob.mark_sent([e.id for e in evs]) == 4
        assert ob.depth() == 0
        assert ob.oldest_pending_age_s() == 0.0
    with Outbox(db_path) as ob:
        assert ob.total_accepted() == 4
        ob.append([sample(9)])
        assert ob.pending(10, 10**6)[0].sequence == 5  # never reused after deletes
        assert ob.last_sequence() == 5


def test_pending_limits_and_oversized_event(db_path: Path) -> None:
    with Outbox(db_path) as ob:
        ob.append([sample(i) for i in range(10)])
        assert len(ob.pending(3, 10**6)) == 3
        size = ob.pending(1, 10**6)[0].size
        assert len(ob.pending(100, size * 4 + 1)) == 4
        # An event bigger than max_bytes still comes out alone, so it can never block the queue.
        assert len(ob.pending(100, 1)) == 1
        assert [r.sequence for r in ob.pending(100, 10**6, after_sequence=7)] == [8, 9, 10]


def test_priority_column(db_path: Path) -> None:
    with Outbox(db_path) as ob:
        conv = make_event(Conversion(receipt_id="r1", amount=3.5), store_id="s", device_id="d")
        ob.append([conv, sample()])
        prio = {r.type.rsplit(".", 2)[-2]: r.priority for r in ob.pending(10, 10**6)}
        assert prio == {"conversion": PRIORITY_HIGH, "sample": PRIORITY_LOW}


def test_concurrent_appenders_and_reader(db_path: Path) -> None:
    with Outbox(db_path) as ob:
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                for _ in range(20):
                    ob.append([sample(i) for i in range(10)])
            except BaseException as exc:
                errors.append(exc)

        def drainer() -> None:
            try:
                for _ in range(50):
                    ob.mark_sent([r.id for r in ob.pending(7, 10**6)])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer) for _ in range(4)]
        threads.append(threading.Thread(target=drainer))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert ob.total_accepted() == 800
        seqs = [r.sequence for r in ob.pending(10_000, 10**9)]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert ob.last_sequence() == 800


def test_closed_outbox_refuses(db_path: Path) -> None:
    ob = Outbox(db_path)
    ob.close()
    ob.close()  # idempotent
    with pytest.raises(RuntimeError):
        ob.append([sample()])


CHILD = textwrap.dedent(
    """
    import sys
    from contracts.events import AudienceSample, make_event
    from sync.outbox import Outbox

    ob = Outbox(sys.argv[1])
    i = 0
    while True:
        batch = [
            make_event(AudienceSample(screen_id="s", people=i % 5, watchers=0),
                       store_id="st", device_id="d")
            for _ in range(25)
        ]
        ob.append(batch)
        # Printed only after append() returned: these ids were reported accepted.
        print(" ".join(e.id for e in batch), flush=True)
        i += 1
    """
)


@pytest.mark.timeout(30)
def test_no_loss_after_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    accepted: list[str] = []
    try:
        assert proc.stdout is not None
        while len(accepted) < 40 * 25:  # kill while it is busy committing
            line = proc.stdout.readline()
            assert line, "child died early"
            accepted.extend(line.split())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=10)
    for line in rest.splitlines():
        accepted.extend(line.split())
    assert proc.returncode == -signal.SIGKILL

    with Outbox(db) as ob:
        assert ob.integrity_check() == "ok"
        stored = {r.id for r in ob.pending(1_000_000, 10**12)}
        missing = set(accepted) - stored
        assert not missing, f"{len(missing)} accepted events lost"
        assert ob.total_accepted() == len(stored) >= len(accepted)
        seqs = [r.sequence for r in ob.pending(1_000_000, 10**12)]
        assert seqs == list(range(1, len(seqs) + 1))  # gap-free after a crash, too
