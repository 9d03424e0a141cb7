"""Bounded disk: the outbox drops by priority to stay under its cap and survives a full disk.

Samples go first, then normal events; conversions, impressions, offers, holdouts never go.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import AudienceSample, CloudEvent, Conversion, ZoneEntered, make_event
from sync.outbox import PRIORITY_HIGH, Outbox, OutboxFull, priority_of


def ev(kind: str, i: int) -> CloudEvent:
    payload = {
        "low": lambda: AudienceSample(screen_id="s1", people=i % 7, watchers=0),
        "normal": lambda: ZoneEntered(zone_id="z1", presence_key=f"k{i:06d}"),
        "high": lambda: Conversion(receipt_id=f"r{i:06d}", amount=float(i % 50)),
    }[kind]()
    return make_event(payload, store_id="st1", device_id="d1", time=datetime.now(UTC))


def size_of(ob: Outbox, e: CloudEvent) -> int:
    """Bytes this event takes in the outbox (what the cap counts)."""
    with Outbox(ob.path.with_name("probe.db")) as probe:
        probe.append([e])
        return probe.pending_bytes()


def test_samples_go_first_then_normal_never_conversions(tmp_path: Path) -> None:
    probe = ev("low", 0)
    unit = size_of(Outbox(tmp_path / "x.db"), probe)
    cap = unit * 30
    with Outbox(tmp_path / "ob.db", cap_bytes=cap) as ob:
        lows = [ev("low", i) for i in range(20)]
        normals = [ev("normal", i) for i in range(8)]
        ob.append(lows)
        ob.append(normals)
        assert ob.pending_bytes() <= cap and ob.drops() == {}
        highs = [ev("high", i) for i in range(10)]
        ob.append(highs)
        ids = {r.id for r in ob.pending(1000, 10**9)}
        assert {e.id for e in highs} <= ids  # never dropped
        assert {e.id for e in normals} <= ids  # samples were enough to make room
        lost = [e for e in lows if e.id not in ids]
        assert lost == lows[: len(lost)] and lost  # the oldest samples went, in order
        assert ob.drops() == {"cap:audience.sample.v1": len(lost)}
        assert ob.pending_bytes() <= cap
        # More conversions than the cap can hold: every normal and sample goes, conversions stay.
        more = [ev("high", 100 + i) for i in range(40)]
        ob.append(more)
        rows = ob.pending(1000, 10**9)
        assert all(priority_of(r.type) == PRIORITY_HIGH for r in rows)
        assert len(rows) == 50
        drops = ob.drops()
        assert drops["cap:audience.sample.v1"] == 20 and drops["cap:zone.entered.v1"] == 8
        # New samples while over the cap with conversions alone: refused themselves, counted.
        assert ob.append([ev("low", 999)]) == 0
        assert ob.drops()["cap:audience.sample.v1"] == 21


def test_pending_bytes_survive_reopen_and_follow_deletes(tmp_path: Path) -> None:
    with Outbox(tmp_path / "ob.db") as ob:
        evs = [ev("normal", i) for i in range(10)]
        ob.append(evs)
        total = ob.pending_bytes()
        ob.mark_sent([e.id for e in evs[:4]])
        left = ob.pending_bytes()
        assert 0 < left < total
    with Outbox(tmp_path / "ob.db") as ob:
        assert ob.pending_bytes() == left == sum(r.size for r in ob.pending(100, 10**9))


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["append", "send"]),
            st.lists(st.sampled_from(["low", "normal", "high"]), min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=25,
    ),
    cap_units=st.integers(min_value=3, max_value=40),
)
def test_cap_invariants(tmp_path_factory: pytest.TempPathFactory, ops, cap_units: int) -> None:
    """Whatever the mix: no high-priority event is dropped, every drop is counted, and the cap
    holds whenever the high-priority events alone fit under it."""
    d = tmp_path_factory.mktemp("cap")
    unit = size_of(Outbox(d / "x.db"), ev("normal", 0))
    cap = unit * cap_units
    n = 0
    appended: dict[str, CloudEvent] = {}
    sent: set[str] = set()
    with Outbox(d / "ob.db", cap_bytes=cap) as ob:
        for op, kinds in ops:
            if op == "append":
                batch = [ev(k, (n := n + 1)) for k in kinds]
                appended.update((e.id, e) for e in batch)
                ob.append(batch)
            else:
                rows = ob.pending(len(kinds), 10**9)
                sent.update(r.id for r in rows)
                ob.mark_sent(r.id for r in rows)
            rows = ob.pending(10_000, 10**9)
            present = {r.id for r in rows}
            high_bytes = sum(r.size for r in rows if priority_of(r.type) == PRIORITY_HIGH)
            assert ob.pending_bytes() == sum(r.size for r in rows)
            if high_bytes <= cap:
                assert ob.pending_bytes() <= cap
            dropped = set(appended) - present - sent
            assert all(priority_of(appended[i].type) < PRIORITY_HIGH for i in dropped)
            assert sum(ob.drops().values()) == len(dropped)


def test_full_disk_drops_by_priority_then_refuses_clearly(tmp_path: Path) -> None:
    """``max_file_bytes`` makes SQLite report SQLITE_FULL, as a real full disk does."""
    with Outbox(tmp_path / "ob.db", max_file_bytes=96 * 1024) as ob:
        n = 0
        while not ob.drops():  # fill with samples until the "disk" is full
            ob.append([ev("low", n + i) for i in range(50)])
            n += 50
            assert n < 100_000, "the file ceiling never hit"
        # On a full disk new samples replace the oldest ones instead of failing.
        assert set(ob.drops()) == {"disk_full:audience.sample.v1"}
        assert ob.depth() < n
        # Conversions still get in: samples make room for them.
        highs = [ev("high", i) for i in range(20)]
        assert ob.append(highs) == 20
        assert any(k.startswith("disk_full:") for k in ob.drops())
        # Fill with conversions only: then the outbox refuses, in one clear line, and keeps going.
        with pytest.raises(OutboxFull, match="disk full, 200 event"):
            for j in range(1000):
                ob.append([ev("high", 1000 + j * 200 + i) for i in range(200)])
        depth = ob.depth()
        assert ob.integrity_check() == "ok"
        rows = ob.pending(depth, 10**9)
        assert {e.id for e in highs} <= {r.id for r in rows}
        # Delivery frees space: appends work again.
        ob.mark_sent(r.id for r in rows[: depth // 2])
        assert ob.append([ev("high", 10**6)]) == 1


def test_agent_on_a_full_disk_keeps_what_matters_and_goes_on(tmp_path: Path, caplog) -> None:
    from contracts.signing import generate_keypair
    from demo import scenario
    from edge_agent.app.agent import Agent
    from edge_agent.clock import ScaledClock
    from edge_agent.sensing.ble.sources import ReplaySource
    from tests.app.test_agent_journey import demo_config

    cfg = demo_config(tmp_path, 1, generate_keypair()[1], camera=False)
    clock = ScaledClock(scenario.T0, 1.0)
    agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
    agent.outbox = agent.journal.outbox = Outbox(tmp_path / "full.db", max_file_bytes=64 * 1024)
    try:
        j = 0
        for step in (100, 10, 1):  # a disk full of conversions: nothing droppable is left
            while True:
                try:
                    agent.outbox.append([ev("high", j + i) for i in range(step)])
                except OutboxFull:
                    break
                j += step
        agent.journal.emit(Conversion(receipt_id="r-keep", amount=3.0))
        agent.journal.emit(AudienceSample(screen_id="s1", people=1, watchers=0))
        assert agent.flush_events() == 0
        assert agent.stats.events_refused_disk_full == 1
        assert "disk full" in caplog.text
        assert agent.journal.dropped() == {"refused:disk_full": 1}
        # Still full: the conversion waits in memory, the error is not repeated every flush.
        caplog.clear()
        assert agent.flush_events() == 0 and "disk full" not in caplog.text
        # The uplink delivers, space comes back: the conversion is accepted after all.
        agent.outbox.mark_sent(r.id for r in agent.outbox.pending(200, 10**9))
        assert agent.flush_events() == 1
        kept = [r for r in agent.outbox.pending(10**5, 10**9) if r.type.endswith("conversion.v1")]
        assert any('"r-keep"' in r.body for r in kept)
    finally:
        agent.outbox.close()
        agent.profiles.close()
