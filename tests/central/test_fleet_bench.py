"""``edge-agent bench fleet``, bounded (issue 19): simulated stores through a real 3-node nats
cluster into a real PostgreSQL, 1, 2 and 4 JetStream sinks, then a sink and a nats node killed.
CI runs 50 stores with 1 and 4 sinks (4 compete for the stream harder than 2 do, and the kill
phase runs 4); ``EDGE_SOAK=1`` runs 500 with 1, 2 and 4 (the full 2,000 is the benchmark's own
run, BENCHMARKS.md). Figures are not asserted (the machine is shared); what must hold is."""

from __future__ import annotations

import pytest

from bench.fleet import run
from testbed.nats_cluster import nats_server_exe
from testbed.postgres import missing_binaries
from tests.soak import SOAK

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(
        nats_server_exe() is None,
        reason="nats-server not installed (scripts/bootstrap.sh installs it)",
    ),
    pytest.mark.skipif(missing_binaries() is not None, reason=str(missing_binaries())),
]

FULL = SOAK


@pytest.mark.timeout(900 if FULL else 240)
def test_fleet_bench_loses_nothing_and_stores_nothing_twice() -> None:
    stores, per_store = (500, 20) if FULL else (50, 10)
    sink_counts = (1, 2, 4) if FULL else (1, 4)
    out = run(quick=True, stores=stores, per_store=per_store, sink_counts=sink_counts)
    assert out["postgres"] is True
    assert out["connected"] == stores
    # Per sink count a live and a drain phase, then the kill phase with the most sinks.
    assert out["sinks"] == [n for n in sink_counts for _ in (0, 1)] + [4], out["sinks"]
    assert (out["lost"], out["duplicates_stored"], out["gaps_missing"]) == (0, 0, 0), out
    phases = out["phases"]
    assert all(p["boxes_drained"] and p["stored"] == stores * per_store for p in phases), phases
    # The last phase really killed a sink and a node while events were still coming.
    killed = phases[-1]["killed_sink_and_node"]
    assert killed is not None and killed["at_stored"] < stores * per_store, phases[-1]
    for key in ("events_per_s", "latency_ms_p50", "latency_ms_p99", "sink_scaling_ratio"):
        assert isinstance(out[key], float) and out[key] > 0, (key, out[key])
