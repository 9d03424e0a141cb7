"""Chaos: kill -9 the box while it ingests and publishes, restart the broker now and then;
every accepted event reaches the CDP exactly once.

The generator (``edge-agent loadgen --uplink``, the agent's own outbox and uplink) is
deterministic in (seed, index) and resumes at the outbox's accepted count, so the expected set at
the CDP is exact: ``loadgen.ids(seed, range(count))``. CI runs ``CHAOS_KILLS`` rounds (20 by
default); ``edge-agent bench sync`` runs more.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from edge_agent.broker import Mosquitto
from edge_agent.config import BrokerConfig, UplinkConfig
from sync import loadgen
from sync.cdp_sink import CdpSink
from sync.outbox import Outbox

REPO = Path(__file__).resolve().parents[1]
KILLS = int(os.environ.get("CHAOS_KILLS", "20"))


def loadgen_cmd(db: Path, store: str, device: str, m: Mosquitto, count: int, rate: float):
    return [
        sys.executable, "-m", "edge_agent.cli", "loadgen", "--db", str(db), "--store", store,
        "--device", device, "--count", str(count), "--rate", str(rate), "--seed", "7",
        "--uplink", "--host", m.host, "--port", str(m.port), "--drain-timeout", "60",
    ]  # fmt: skip


@pytest.mark.timeout(240)
def test_kill_9_the_box_again_and_again(fresh_broker: Mosquitto, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    store, device = f"st-{tag}", f"dev-{tag}"
    count, rate = 60_000, 2000.0  # 20 rounds of <= 1.2 s cannot finish it
    rng = random.Random(tag)
    sink = CdpSink(
        BrokerConfig(host=fresh_broker.host, port=fresh_broker.port, keepalive=5),
        tmp_path / "cdp.db",
        group=f"cdp-{tag}",
    )
    assert sink.start(wait_s=5)
    db = tmp_path / "outbox.db"
    cmd = loadgen_cmd(db, store, device, fresh_broker, count, rate)
    broker_restarts = 0
    try:
        for round_ in range(KILLS):
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
            try:
                time.sleep(rng.uniform(0.3, 1.2))  # mid-ingest, mid-publish, mid-confirmation
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=10)
            if round_ % 7 == 6:  # and now and then the broker dies too
                fresh_broker.kill()
                fresh_broker.start()
                broker_restarts += 1
        with Outbox(db) as ob:
            accepted_before_last = ob.total_accepted()
            assert ob.integrity_check() == "ok"
        assert 0 < accepted_before_last < count, "the kills did not land mid-run"
        # The last run is left alone: it finishes the count and drains the outbox.
        fast = loadgen_cmd(db, store, device, fresh_broker, count, 0)
        done = subprocess.run(fast, cwd=REPO, capture_output=True, text=True, timeout=150)
        assert done.returncode == 0, done.stderr[-2000:]
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["total"] == count and summary["depth"] == 0
        assert sink.wait_for(count, 30), sink.stats()
    finally:
        sink_ids = sink.ids()
        stats = sink.stats()
        sink.stop(end_session=True)
    assert sink_ids == loadgen.ids(7, range(count))  # nothing lost, nothing invented
    assert stats["count"] == count and stats["rejected"] == 0
    # Raw duplicates only come from windows re-sent after a kill or a broker restart: at most
    # the batches in flight plus those awaiting confirmation, per interruption.
    window = (4 + UplinkConfig().max_unconfirmed_batches) * UplinkConfig().max_batch
    assert stats["duplicates"] <= (KILLS + broker_restarts) * window
    print(
        json.dumps(
            {
                "kills": KILLS,
                "broker_restarts": broker_restarts,
                "raw_duplicates": stats["duplicates"],
            }
        )
    )
