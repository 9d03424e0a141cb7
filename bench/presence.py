"""Presence: throughput of the tracker and flapping versus the naive threshold, side by side.

The naive baseline is what many BLE presence setups do: "present while the last RSSI is above
the threshold". Both see the same noisy traces (gaussian noise plus deep fades, shoppers
standing right at the threshold); we count enter/leave flips and observations per second.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import random
import time

from edge_agent.sensing.presence import DwellTick, PresenceTracker


def _traces(n_devices: int, samples: int, seed: int = 1) -> list[tuple[str, float, float]]:
    rng = random.Random(seed)
    out = []
    for d in range(n_devices):
        level = rng.uniform(-74, -64)  # hovering around the -70 dBm threshold
        for i in range(samples):
            fade = -12.0 if rng.random() < 0.05 else 0.0
            out.append((f"dev{d}", i * 0.2, level + rng.gauss(0, 4) + fade))
    out.sort(key=lambda x: x[1])
    return out


def _naive(trace: list[tuple[str, float, float]], threshold: float = -70.0) -> int:
    state: dict[str, bool] = {}
    flips = 0
    for key, _ts, rssi in trace:
        now = rssi >= threshold
        if state.get(key, False) != now:
            flips += 1
        state[key] = now
    return flips


def _ours(trace: list[tuple[str, float, float]]) -> int:
    t = PresenceTracker(enter_rssi=-70, leave_rssi=-80, ema_alpha=0.3)
    flips = 0
    for key, ts, rssi in trace:
        flips += sum(1 for c in t.observe(key, rssi, ts) if not isinstance(c, DwellTick))
    return flips


def run(quick: bool) -> dict:
    n_dev, samples = (20, 300) if quick else (200, 3000)
    trace = _traces(n_dev, samples)
    t0 = time.perf_counter()
    naive_flips = _naive(trace)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    our_flips = _ours(trace)
    t_ours = time.perf_counter() - t0
    return {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()} x{os.cpu_count()}, {platform.python_implementation()} {platform.python_version()}",
        "observations": len(trace),
        "devices": n_dev,
        "naive_flips": naive_flips,
        "ours_flips": our_flips,
        "flip_ratio_naive_over_ours": round(naive_flips / max(1, our_flips), 1),
        "naive_obs_per_s": round(len(trace) / t_naive),
        "ours_obs_per_s": round(len(trace) / t_ours),
    }
