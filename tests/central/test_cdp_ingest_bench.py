"""``edge-agent bench cdp-ingest --quick``: both ways of storing run and store every event once.
Figures are not asserted (the machine is shared)."""

from __future__ import annotations

import pytest

from bench.cdp_ingest import FETCH, PER_BATCH, run
from testbed.postgres import missing_binaries

pytestmark = pytest.mark.skipif(missing_binaries() is not None, reason=str(missing_binaries()))


@pytest.mark.timeout(120)
def test_cdp_ingest_bench_stores_every_event_once_both_ways() -> None:
    out = run(quick=True)
    rounds, per_round = out["rounds"], out["events_per_round"]
    # The warm-up fetch, then every round's events once per way.
    assert out["stored"] == FETCH * PER_BATCH + rounds * 2 * per_round, out
    for mode in ("per_batch", "per_fetch"):
        assert out[mode]["sink_cpu_us_per_event"] > 0 and out[mode]["events_per_s"] > 0, out
    assert out["cpu_ratio"] is not None
