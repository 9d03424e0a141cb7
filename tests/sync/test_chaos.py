"""Chaos: kill -9 the box while it ingests and publishes, restart the broker now and then;
every accepted event reaches the CDP exactly once (``bench/chaos.py`` does the work; CI runs
``CHAOS_KILLS`` rounds: 14 by default, two full cycles of a broker restart every 7th kill, 20 with
``EDGE_SOAK=1``; ``edge-agent bench chaos`` runs 100)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest

from bench.chaos import run_chaos
from testbed.broker import Mosquitto
from tests.soak import SOAK

KILLS = int(os.environ.get("CHAOS_KILLS", "20" if SOAK else "14"))


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_kill_9_the_box_again_and_again(fresh_broker: Mosquitto, tmp_path: Path) -> None:
    r = run_chaos(fresh_broker, tmp_path, kills=KILLS)
    print(json.dumps(asdict(r)))
    assert r.outbox_integrity == "ok"
    assert 0 < r.accepted_before_last_run < r.count, "the kills did not land mid-run"
    assert r.last_run_ok
    assert r.exact, "the CDP does not hold exactly the accepted events"  # nothing lost/invented
    assert r.stored == r.count and r.rejected == 0
    assert r.broker_restarts == KILLS // 7
    # Raw duplicates only come from windows re-sent after a kill or a broker restart.
    assert r.raw_duplicates <= r.duplicate_bound
