"""Generated store plans for wayfinding tests and the bench: grid-like venues of any size.

Each level is a grid of square rooms; neighbouring rooms share a door in the middle of their
wall (some doors left out, at random), some rooms hold a shelf (an obstacle the route must go
round), and a few grid cells are stairs, escalators or lifts through every level. The result is
a plan dict (edge_agent/wayfinding/plan.py), so it goes through the same validation and IMDF
writing as a hand-made plan.
"""

from __future__ import annotations

import random
from typing import Any


def grid_plan(
    levels: int = 2,
    rows: int = 3,
    cols: int = 4,
    room_m: float = 6.0,
    seed: int = 0,
    door_keep: float = 1.0,
    shelf_share: float = 0.0,
    connectors: tuple[tuple[str, int, int], ...] = (("stairs", 0, 0), ("lift", 0, 1)),
) -> dict[str, Any]:
    rng = random.Random(seed)
    w, h = cols * room_m, rows * room_m
    plan: dict[str, Any] = {
        "venue": {"name": f"grid {levels}x{rows}x{cols} #{seed}", "origin": [13.4, 52.5]},
        "levels": [
            {"id": f"L{z}", "ordinal": z, "name": f"Level {z}", "rect": [0, 0, w, h]}
            for z in range(levels)
        ],
        "areas": [],
        "shelves": [],
        "doors": [],
        "connectors": [],
    }
    vertical = {(r, c): kind for kind, r, c in connectors}
    for kind, r, c in connectors:
        x0, y0 = c * room_m, r * room_m
        plan["connectors"].append(
            {
                "id": f"{kind}-{r}-{c}",
                "kind": kind,
                "levels": [f"L{z}" for z in range(levels)],
                "name": f"{kind} {r}/{c}",
                "rect": [x0, y0, x0 + room_m, y0 + room_m],
            }
        )
    for z in range(levels):
        for r in range(rows):
            for c in range(cols):
                x0, y0 = c * room_m, r * room_m
                if (r, c) not in vertical:
                    plan["areas"].append(
                        {
                            "id": f"r{z}-{r}-{c}",
                            "level": f"L{z}",
                            "name": f"Room {z}-{r}-{c}",
                            "category": "room",
                            "rect": [x0, y0, x0 + room_m, y0 + room_m],
                        }
                    )
                    if rng.random() < shelf_share:
                        # A shelf across the middle, leaving a passage at both ends.
                        m = room_m
                        plan["shelves"].append(
                            {
                                "id": f"s{z}-{r}-{c}",
                                "level": f"L{z}",
                                "rect": [x0 + 0.3 * m, y0 + 0.45 * m, x0 + 0.7 * m, y0 + 0.55 * m],
                            }
                        )
                mid = room_m / 2
                # Doors to the right and upper neighbours; connector cells always get theirs.
                for dr, dc in ((0, 1), (1, 0)):
                    rr, cc = r + dr, c + dc
                    if rr >= rows or cc >= cols:
                        continue
                    must = (r, c) in vertical or (rr, cc) in vertical
                    if not must and rng.random() > door_keep:
                        continue
                    if dc:
                        xw = x0 + room_m
                        line = [[xw, y0 + mid - 0.6], [xw, y0 + mid + 0.6]]
                    else:
                        yw = y0 + room_m
                        line = [[x0 + mid - 0.6, yw], [x0 + mid + 0.6, yw]]
                    plan["doors"].append(
                        {"id": f"d{z}-{r}-{c}-{dr}{dc}", "level": f"L{z}", "line": line}
                    )
    return plan
