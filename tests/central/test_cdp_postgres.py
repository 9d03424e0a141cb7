"""Several CDP sinks in one shared subscription, over a real mosquitto, into a real PostgreSQL.

Issue 19: two sinks on ``$share/cdp``, each with its own SQLite file, each reported the other's
events as missing. With the PostgreSQL store both write into one schema: one gap report, the
truth, whichever sink got which batch; and a sink SIGKILLed mid-stream loses nothing and stores
nothing twice.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from central.cdp_sink import CdpSink
from central.ops_cli import main
from edge_agent.config import BrokerConfig, UplinkConfig
from sync.loadgen import SEED_DEFAULT, ids
from testbed.broker import Mosquitto
from testbed.procs import terminate
from tests.central.fleet_boxes import close_boxes, gap_report, start_boxes
from tests.watching import wait_for

REPO = Path(__file__).resolve().parents[2]


def bcfg(m: Mosquitto) -> BrokerConfig:
    return BrokerConfig(host=m.host, port=m.port, keepalive=5)


def uplink_cfg() -> UplinkConfig:
    # Small batches so a kill lands mid-stream; a short confirmation timeout so what a killed
    # sink took and never confirmed is sent again soon (the production default is 15 s).
    return UplinkConfig(max_batch=50, linger_s=0.01, confirm_timeout_s=2.0)


def pg_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return int(conn.execute("SELECT count(*) FROM cdp.events").fetchone()[0])


def boxes(tmp_path: Path, broker: Mosquitto, store: str, devices: list[str], n: int) -> list:
    """Boxes with ``n`` loadgen events each in their outbox, and their real uplinks started.
    The default seed on purpose: every device makes the same ids (issue 19's collision)."""
    return start_boxes(tmp_path, bcfg(broker), store, devices, n, uplink_cfg())


@pytest.mark.timeout(90)
def test_two_sinks_with_their_own_sqlite_files_report_wrong_gaps(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """The bug, reproduced: each file holds only its sink's share, so each gap report names the
    other sink's events as missing, though together they hold every one."""
    store = f"st-{uuid.uuid4().hex[:6]}"
    sinks = [CdpSink(bcfg(broker), tmp_path / f"cdp-{k}.db", group="cdp") for k in "ab"]
    bs: list = []
    try:
        for s in sinks:
            assert s.start(wait_s=5)
        bs = boxes(tmp_path, broker, store, ["d1"], 1000)
        assert all(up.flush(30) for _, up in bs), [up.stats() for _, up in bs]
        reports = [s.gaps() for s in sinks]
    finally:
        close_boxes(bs)
        for s in sinks:
            s.stop(end_session=True)
    missing = [sum(g["missing"] for g in r) for r in reports]
    stored = [sum(g["stored"] for g in r) for r in reports]
    assert all(m > 0 for m in missing), reports  # each file: "missing" what the other has
    assert sum(stored) == 1000  # yet nothing is missing at all


@pytest.mark.timeout(90)
def test_two_sinks_sharing_postgres_give_one_true_gap_report(
    broker: Mosquitto, pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    store = f"st-{uuid.uuid4().hex[:6]}"
    sinks = [CdpSink(bcfg(broker), pg_dsn, group="cdp") for _ in range(2)]
    bs: list = []
    try:
        for s in sinks:
            assert s.start(wait_s=5)
        bs = boxes(tmp_path, broker, store, ["d1", "d2"], 1000)
        assert all(up.flush(30) for _, up in bs), [up.stats() for _, up in bs]
        shares = [s.stats()["stored"] for s in sinks]
        reports = [s.gaps() for s in sinks]
    finally:
        close_boxes(bs)
        for s in sinks:
            s.stop()
    assert all(n > 0 for n in shares) and sum(shares) == 2000, shares  # both did work
    truth = [(g["device"], g["first"], g["last"], g["stored"], g["missing"]) for g in reports[0]]
    assert truth == [("d1", 1, 1000, 1000, 0), ("d2", 1, 1000, 1000, 0)]
    assert reports[0] == reports[1]  # one store, one report, whichever sink is asked
    assert main(["cdp-gaps", "--db", pg_dsn]) == 0
    printed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert printed == reports[0]
    assert pg_count(pg_dsn) == 2000  # the same ids on two devices: two events each


# ---- sinks as processes ------------------------------------------------------------------------
@pytest.fixture
def sink_procs(broker: Mosquitto, pg_dsn: str) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    """``edge-ops cdp-sink --db <dsn>`` processes, each ready (subscribed) when returned; every
    one still running is stopped at the end."""
    procs: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "central.ops_cli", "cdp-sink", "--db", pg_dsn,
             "--host", broker.host, "--port", str(broker.port), "--group", "cdp",
             "--report-s", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO,
        )  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:  # its first line says it is subscribed
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=20), "sink did not report in 20 s"
        line = proc.stdout.readline()
        assert line.startswith("cdp-sink: $share/cdp/"), line
        assert "***" not in line and pg_dsn.rsplit("/", 1)[1] in line
        return proc

    yield start
    for p in procs:
        terminate(p)


@pytest.mark.timeout(120)
def test_a_sink_killed_mid_stream_loses_nothing_and_stores_nothing_twice(
    broker: Mosquitto, pg_dsn: str, sink_procs: Callable[[], subprocess.Popen[str]], tmp_path: Path
) -> None:
    store = f"st-{uuid.uuid4().hex[:6]}"
    n = 3000
    a, b = sink_procs(), sink_procs()
    bs = boxes(tmp_path, broker, store, ["d1", "d2"], n)
    t0 = time.monotonic()
    try:
        assert wait_for(lambda: pg_count(pg_dsn) >= n // 2, 30), pg_count(pg_dsn)
        os.kill(a.pid, signal.SIGKILL)  # no goodbye: its in-flight batches are never confirmed
        a.wait(5)
        at_kill = pg_count(pg_dsn)
        assert at_kill < 2 * n, "too late: the stream had finished"
        # b carries on alone for a while, then a worker comes back (systemd would restart it).
        assert wait_for(lambda: pg_count(pg_dsn) >= at_kill + 500, 30)
        sink_procs()
        assert all(up.flush(60) for _, up in bs), [up.stats() for _, up in bs]
        resent = sum(up.stats()["resent_unconfirmed"] for _, up in bs)
    finally:
        close_boxes(bs)
    elapsed = time.monotonic() - t0
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT device_id, count(*), count(DISTINCT id), min(sequence), max(sequence)"
            " FROM cdp.events WHERE store_id = %s GROUP BY device_id ORDER BY device_id",
            (store,),
        ).fetchall()
        stored_ids = {
            r[0] for r in conn.execute("SELECT id FROM cdp.events WHERE device_id = 'd1'")
        }
    # Each device: every one of its n events exactly once (the key is (store, device, id)).
    assert rows == [("d1", n, n, 1, n), ("d2", n, n, 1, n)]
    assert stored_ids == ids(SEED_DEFAULT, range(n))
    gaps = gap_report(pg_dsn)
    assert [(g["device"], g["stored"], g["missing"]) for g in gaps] == [("d1", n, 0), ("d2", n, 0)]
    print(f"{2 * n} events, sink killed at {at_kill}: {elapsed:.1f} s, {resent} batches re-sent")
    # The survivor's final report (on SIGTERM) is clean JSON: it saw duplicates, stored none twice.
    terminate(b)
    assert b.returncode == 0
