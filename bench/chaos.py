"""Chaos (issue 4): kill -9 the box again and again while it ingests and publishes, and now and
then the broker too; every accepted event must reach the CDP exactly once.

The box is ``edge-agent loadgen --uplink`` (the agent's own outbox and uplink) in a child
process. Its events are deterministic in (seed, index) and a restarted run resumes at the
outbox's accepted count, so the CDP must end up with exactly ``loadgen.ids(seed, range(count))``.
``tests/sync/test_chaos.py`` runs 20 kills in CI; ``edge-agent bench chaos`` runs 100.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from central.cdp_sink import CdpSink
from edge_agent.config import BrokerConfig, UplinkConfig
from sync import loadgen
from sync.outbox import Outbox
from testbed.broker import Mosquitto

REPO = Path(__file__).resolve().parents[1]
SEED = 7


@dataclass
class ChaosResult:
    kills: int
    broker_restarts: int
    count: int
    accepted_before_last_run: int
    exact: bool  # the CDP holds exactly the expected ids
    stored: int
    rejected: int
    raw_duplicates: int
    duplicate_bound: int  # in-flight plus unconfirmed window per interruption
    last_run_ok: bool
    outbox_integrity: str
    seconds: float


def loadgen_cmd(db: Path, store: str, device: str, m: Mosquitto, count: int, rate: float):
    return [
        sys.executable, "-m", "edge_agent.cli", "loadgen", "--db", str(db), "--store", store,
        "--device", device, "--count", str(count), "--rate", str(rate), "--seed", str(SEED),
        "--uplink", "--host", m.host, "--port", str(m.port), "--drain-timeout", "120",
    ]  # fmt: skip


def run_chaos(m: Mosquitto, workdir: Path, *, kills: int, broker_every: int = 7) -> ChaosResult:
    tag = uuid.uuid4().hex[:8]
    store, device = f"st-{tag}", f"dev-{tag}"
    rate = 2000.0
    count = int(kills * 1.2 * rate) + 20_000  # the kills can never finish it
    rng = random.Random(tag)
    t0 = time.monotonic()
    sink = CdpSink(
        BrokerConfig(host=m.host, port=m.port, keepalive=5), workdir / "cdp.db", group=f"c-{tag}"
    )
    sink.start(wait_s=5)
    db = workdir / "outbox.db"
    cmd = loadgen_cmd(db, store, device, m, count, rate)
    restarts = 0
    try:
        for round_ in range(kills):
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL)
            try:
                time.sleep(rng.uniform(0.3, 1.2))  # mid-ingest, mid-publish, mid-confirmation
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
            if broker_every and round_ % broker_every == broker_every - 1:
                m.kill()  # and now and then the broker dies too
                m.start()
                restarts += 1
        with Outbox(db) as ob:
            accepted = ob.total_accepted()
            integrity = ob.integrity_check()
        # The last run is left alone, as fast as it goes: it finishes the count and drains.
        done = subprocess.run(
            loadgen_cmd(db, store, device, m, count, 0),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        last_ok = done.returncode == 0
        sink.wait_for(count, 60)
    finally:
        ids = sink.ids()
        stats = sink.stats()
        sink.stop(end_session=True)
    window = (4 + UplinkConfig().max_unconfirmed_batches) * UplinkConfig().max_batch
    return ChaosResult(
        kills=kills,
        broker_restarts=restarts,
        count=count,
        accepted_before_last_run=accepted,
        exact=ids == loadgen.ids(SEED, range(count)),
        stored=stats["count"],
        rejected=stats["rejected"],
        raw_duplicates=stats["duplicates"],
        duplicate_bound=(kills + restarts) * window,
        last_run_ok=last_ok,
        outbox_integrity=integrity,
        seconds=round(time.monotonic() - t0, 1),
    )


def run(quick: bool) -> dict[str, Any]:
    kills = 20 if quick else 100
    with tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmp, Mosquitto() as m:
        result = run_chaos(m, Path(tmp), kills=kills)
    return {
        "bench": "chaos",
        "quick": quick,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        **asdict(result),
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
