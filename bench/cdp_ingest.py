"""CPU per event of the CDP sink's ingest into PostgreSQL (issue 19), without nats or boxes.

``edge-agent bench cdp-ingest [--quick]``: the fleet bench's batches (10 audience samples each,
numbered, one store per batch), decoded, validated and stored by ``CdpIngest`` into the
testbed's PostgreSQL in two ways, alternated over rounds: ``per_batch``, one ``handle_batch``
(one transaction) per batch, as a sink on MQTT stores; ``per_fetch``, ``handle_batches`` over
64 batches at once, as a JetStream sink stores a fetch. Reported per event: the sink's CPU
(``time.process_time`` of this process) and PostgreSQL's (its processes' CPU from /proc), the
best round of each. CPU seconds, not events/s: they hold on a machine shared with other work,
where a wall-clock rate does not.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from bench.procstat import tree_cpu_s

FETCH = 64  # JetStreamConfig.fetch_batch
PER_BATCH = 10  # events per batch, as the fleet bench's boxes send them


def _batches(tag: str, n: int) -> list[tuple[str, bytes]]:
    from contracts import topics
    from contracts.batch import DEFAULT_COMPRESS_OVER, encode_batch
    from contracts.events import AudienceSample, make_event
    from sync.outbox import format_sequence

    out = []
    for i in range(n):
        store = f"{tag}-s{i:05d}"
        now = datetime.now(UTC)
        bodies = []
        for k in range(PER_BATCH):
            ev = make_event(AudienceSample(screen_id="s", people=1, watchers=0),
                            store_id=store, device_id="box-1", time=now)  # fmt: skip
            bodies.append(
                json.dumps({**json.loads(ev.to_json()), "sequence": format_sequence(k + 1)})
            )
        payload, _ = encode_batch(f"b{i}", store, "box-1", bodies, DEFAULT_COMPRESS_OVER)
        out.append((topics.events(store, "box-1"), payload))
    return out


def run(quick: bool) -> dict[str, Any]:
    from central.cdp_sink import CdpIngest
    from testbed.postgres import Postgres, missing_binaries

    if missing_binaries():
        return {"error": f"PostgreSQL: {missing_binaries()}"}
    n_batches, rounds = (128, 2) if quick else (768, 3)
    best: dict[str, dict[str, float]] = {}
    with Postgres() as pg:
        ingest = CdpIngest(pg.create_database())
        try:
            ingest.handle_batches(_batches("warm", FETCH))  # connection, partition, imports
            for r in range(rounds):
                for mode in ("per_batch", "per_fetch"):
                    data = _batches(f"{mode}-{r}", n_batches)
                    c0, p0, w0 = time.process_time(), tree_cpu_s(pg.proc.pid), time.monotonic()
                    if mode == "per_batch":
                        for topic, payload in data:
                            ingest.handle_batch(topic, payload)
                    else:
                        for k in range(0, len(data), FETCH):
                            ingest.handle_batches(data[k : k + FETCH])
                    c1, p1, w1 = time.process_time(), tree_cpu_s(pg.proc.pid), time.monotonic()
                    n = n_batches * PER_BATCH
                    got = {
                        "sink_cpu_us_per_event": round(1e6 * (c1 - c0) / n, 1),
                        "postgres_cpu_us_per_event": round(1e6 * (p1 - p0) / n, 1),
                        "events_per_s": round(n / (w1 - w0), 1),
                    }
                    mine = best.get(mode)
                    if mine is None or got["sink_cpu_us_per_event"] < mine["sink_cpu_us_per_event"]:
                        best[mode] = got
            stored = ingest.stats()["stored"]
        finally:
            ingest.store.close()
    one, fetch = best["per_batch"], best["per_fetch"]
    total_one = one["sink_cpu_us_per_event"] + one["postgres_cpu_us_per_event"]
    total_fetch = fetch["sink_cpu_us_per_event"] + fetch["postgres_cpu_us_per_event"]
    return {
        "quick": quick,
        "events_per_round": n_batches * PER_BATCH,
        "rounds": rounds,
        "stored": stored,
        "per_batch": one,
        "per_fetch": fetch,
        "cpu_ratio": round(total_one / total_fetch, 2) if total_fetch else None,
    }
