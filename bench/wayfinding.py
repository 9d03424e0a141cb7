"""Wayfinding: IMDF import of a generated 500-unit, 3-level venue, and routes on a 5,000-node
graph, A* with a heap against a naive Dijkstra (no heap: the next node by scanning all of them),
side by side on the same start/goal pairs.

Both searches must find the same length for every pair before any time counts. A route here is
what `edge-agent map route` does after loading: attach start and goal to what they see in their
rooms, search, unwind; steps are timed on top for the A* routes.
"""

from __future__ import annotations

import datetime as dt
import math
import platform
import random
import statistics
import time
from typing import Any

from edge_agent.wayfinding.graph import build_graph
from edge_agent.wayfinding.imdf import parse_imdf
from edge_agent.wayfinding.plan import parse_plan, plan_to_imdf
from edge_agent.wayfinding.route import NoRoute, Place, naive_dijkstra, plan_route
from edge_agent.wayfinding.steps import route_steps
from testbed.venues import grid_plan

CONNECTORS = (("stairs", 0, 0), ("lift", 5, 6), ("escalator", 9, 3))


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _imdf(levels: int, rows: int, cols: int, shelves: float) -> dict[str, bytes]:
    plan = grid_plan(
        levels=levels,
        rows=rows,
        cols=cols,
        seed=11,
        door_keep=0.85,
        shelf_share=shelves,
        connectors=CONNECTORS,
    )
    files, _, problems = plan_to_imdf(parse_plan(plan))
    assert not problems, problems
    return files


def run(quick: bool) -> dict[str, Any]:
    # 1. Import: 3 levels of 12 x 14 rooms = 495 rooms + 9 stair/lift/escalator units.
    files = _imdf(3, 12, 14, 0.3)
    size_mb = sum(len(b) for b in files.values()) / 1e6
    import_s = []
    for _ in range(2 if quick else 5):
        t0 = time.perf_counter()
        result = parse_imdf(files)
        import_s.append(time.perf_counter() - t0)
    assert result.ok, result.errors[:3]
    assert result.venue is not None
    units = len(result.venue.units)
    t0 = time.perf_counter()
    build_graph(result.venue)
    small_graph_s = time.perf_counter() - t0

    # 2. Routes: 3 levels of 17 x 18 rooms, a shelf in each: about 5,000 nodes.
    big = parse_imdf(_imdf(3, 17, 18, 1.0))
    assert big.ok and big.venue is not None
    t0 = time.perf_counter()
    graph = build_graph(big.venue)
    graph_s = time.perf_counter() - t0
    rooms = sorted(u for u, s in graph.spaces.items() if s.unit.category == "room")
    rng = random.Random(5)

    def somewhere() -> Place:
        u = graph.spaces[rng.choice(rooms)].unit
        x0, y0, x1, y1 = u.polygon.bounds
        xy = (rng.uniform(x0 + 0.2, x1 - 0.2), rng.uniform(y0 + 0.2, y1 - 0.2))
        return Place("point", u.id, u.level_id, xy, {"en": u.id})

    pairs = [(somewhere(), somewhere()) for _ in range(60 if quick else 400)]
    naive_every = 20 if quick else 40  # the naive search takes seconds: a sample of the pairs
    astar_ms: list[float] = []
    steps_ms: list[float] = []
    naive_ms: list[float] = []
    astar_same_ms: list[float] = []
    levels_changed = unreachable = 0
    for a, b in pairs:
        t0 = time.perf_counter()
        try:
            r = plan_route(graph, a, b)
        except NoRoute:
            # Some rooms lost all their doors (door_keep): refused, and timed like the rest.
            astar_ms.append((time.perf_counter() - t0) * 1000)
            unreachable += 1
            continue
        t1 = time.perf_counter()
        route_steps(r, big.venue, "en")
        t2 = time.perf_counter()
        astar_ms.append((t1 - t0) * 1000)
        steps_ms.append((t2 - t0) * 1000)
        levels_changed += len(r.levels) > 1
        if len(steps_ms) % naive_every == 1:
            t0 = time.perf_counter()
            n = plan_route(graph, a, b, search=naive_dijkstra)
            naive_ms.append((time.perf_counter() - t0) * 1000)
            astar_same_ms.append(astar_ms[-1])
            # Same answer first: a faster search that finds a longer way is not faster.
            assert math.isclose(n.cost, r.cost, rel_tol=1e-9), (n.cost, r.cost)

    astar_p95, naive_p95 = _pct(astar_ms, 0.95), _pct(naive_ms, 0.95)
    return {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "import": {
            "units": units,
            "levels": len(result.venue.levels),
            "openings": len(result.venue.openings),
            "files_mb": round(size_mb, 2),
            "median_s": round(statistics.median(import_s), 3),
            "max_s": round(max(import_s), 3),
            "target_s": 2.0,
            "graph_build_s": round(small_graph_s, 3),
        },
        "route": {
            "nodes": len(graph.nodes),
            "edges": graph.edge_count,
            "graph_build_s": round(graph_s, 2),
            "pairs": len(pairs),
            "multi_level_share": round(levels_changed / len(pairs), 2),
            "unreachable": unreachable,
            "astar_p50_ms": round(_pct(astar_ms, 0.5), 3),
            "astar_p95_ms": round(astar_p95, 3),
            "astar_p99_ms": round(_pct(astar_ms, 0.99), 3),
            "astar_plus_steps_p95_ms": round(_pct(steps_ms, 0.95), 3),
            "naive_pairs": len(naive_ms),
            "naive_p50_ms": round(_pct(naive_ms, 0.5), 1),
            "naive_p95_ms": round(naive_p95, 1),
            "astar_p95_ms_same_pairs": round(_pct(astar_same_ms, 0.95), 3),
            "ratio_p95": round(naive_p95 / astar_p95, 1),
            "target_p95_ms": 5.0,
        },
    }
