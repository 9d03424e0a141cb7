"""The journey's memory (journey/memory.py) and the touches boxes share (journey/touch_share.py):
real SQLite files, a restart modelled by a second engine on the same file, hostile peers."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.screen_protocol import Content
from demo import scenario
from edge_agent.journey.attribution import AttributionBook, Touch
from edge_agent.journey.campaigns import CampaignBundle
from edge_agent.journey.decide import Decision
from edge_agent.journey.engine import JourneyEngine
from edge_agent.journey.memory import JourneyMemory
from edge_agent.journey.touch_share import TouchMessageError, decode, encode

NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def engine() -> JourneyEngine:
    return JourneyEngine(CampaignBundle.model_validate(scenario.CAMPAIGNS_V1), 3600.0)


def offer(campaign: str, profile: str | None) -> Decision:
    content = Content(
        content_id=f"{campaign}:x", campaign_id=campaign, variant="anonymous", title="t"
    )
    return Decision(content, campaign, "anonymous", profile, 10.0)


def restarted(path: Path, at: datetime) -> tuple[JourneyEngine, JourneyMemory]:
    e, m = engine(), JourneyMemory(path)
    m.load_into(e, at.timestamp(), at)
    return e, m


def test_caps_touches_and_kpis_come_back_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "journey.db"
    e, m = restarted(path, NOON)
    ts = NOON.timestamp()
    e.shown("screen-1", offer("trail-shoes", "alice"), ts, NOON, event_id="ev-1")
    e.shown("screen-1", offer("members-coffee", None), ts + 5, NOON, event_id="ev-2")
    e.kpis.audience(3, 1)
    m.apply(e.drain_changes(), e.kpis)
    m.close()

    later = NOON + timedelta(minutes=10)
    e2, m2 = restarted(path, later)
    assert e2.caps.shopper_today("trail-shoes", "alice", later) == 1
    assert e2.caps.screen_this_hour("members-coffee", "screen-1", later) == 1
    r = e2.conversion(later.timestamp(), "alice", later)
    assert r.last_campaign_id == "trail-shoes" and r.group == "exposed"
    snap = e2.kpis.snapshot()
    assert snap["offers_shown"] == 2 and snap["opportunities_to_see"] == 3
    assert snap["campaigns"]["trail-shoes"]["exposed_conversions"] == 1
    # Loading is not a change to write back; the conversion is (the KPIs are saved at once).
    assert [type(c).__name__ for c in e2.drain_changes()] == ["Converted"]
    m2.close()


def test_windows_expire_what_is_saved(tmp_path: Path) -> None:
    path = tmp_path / "journey.db"
    e, m = restarted(path, NOON)
    e.shown("screen-1", offer("trail-shoes", "alice"), NOON.timestamp(), NOON, event_id="ev-1")
    m.apply(e.drain_changes(), e.kpis)
    m.close()
    # Two hours later (window one hour), the touch is gone; the day's cap still holds.
    two_h = NOON + timedelta(hours=2)
    e2, m2 = restarted(path, two_h)
    assert len(e2.book) == 0 and m2.counts()["touches"] == 0
    assert e2.caps.shopper_today("trail-shoes", "alice", two_h) == 1
    m2.close()
    # The next day: nothing caps, nothing is attributed, the KPIs start from zero.
    tomorrow = NOON + timedelta(days=1)
    e3, m3 = restarted(path, tomorrow)
    assert len(e3.caps) == 0 and e3.kpis.snapshot()["offers_shown"] == 0
    assert not any(m3.counts().values())
    m3.close()


def test_a_withdrawn_consent_leaves_no_row(tmp_path: Path) -> None:
    path = tmp_path / "journey.db"
    e, m = restarted(path, NOON)
    e.shown("screen-1", offer("trail-shoes", "alice"), NOON.timestamp(), NOON, event_id="ev-1")
    m.apply(e.drain_changes(), e.kpis)
    e.forget("alice")
    m.apply(e.drain_changes(), e.kpis)
    m.close()
    db = sqlite3.connect(path)
    dump = "\n".join(db.iterdump())
    assert "alice" not in dump
    assert db.execute("PRAGMA secure_delete").fetchone() is not None


def test_a_damaged_file_is_set_aside_and_the_journey_goes_on(tmp_path: Path, caplog) -> None:
    path = tmp_path / "journey.db"
    path.write_bytes(b"this is not a database" * 300)
    e, m = restarted(path, NOON)
    e.shown("screen-1", offer("trail-shoes", "alice"), NOON.timestamp(), NOON, event_id="ev-1")
    m.apply(e.drain_changes(), e.kpis)
    assert m.counts()["touches"] == 1
    assert [r.message for r in caplog.records if "damaged" in r.message]
    assert list(tmp_path.glob("journey.db.corrupt-*"))
    m.close()


def test_a_failing_write_is_said_once_and_the_engine_keeps_counting(tmp_path: Path, caplog) -> None:
    path = tmp_path / "journey.db"
    e, m = restarted(path, NOON)
    pages = m._db.execute("PRAGMA page_count").fetchone()[0]
    m._db.execute(f"PRAGMA max_page_count = {pages}")  # a full disk, as SQLite sees it
    for i in range(200):
        who = f"p{i}-" + "x" * 40
        e.shown("s1", offer("trail-shoes", who), NOON.timestamp() + i, NOON, event_id=f"e{i}")
        m.apply(e.drain_changes(), e.kpis)
    assert m.write_errors > 100
    assert len([r for r in caplog.records if "cannot save" in r.message]) == 1
    assert e.caps.shopper_today("trail-shoes", "p199-" + "x" * 40, NOON) == 1  # in memory
    m.close()


def test_receipts_counted_before_a_restart_stay_duplicates(tmp_path: Path) -> None:
    from edge_agent.sensing.pos import ReceiptDeduper

    path = tmp_path / "journey.db"
    m = JourneyMemory(path)
    m.mark_receipts(["R-1", "R-2"], NOON.date())
    m.close()
    m2 = JourneyMemory(path)
    got: list[str] = []
    dedupe = ReceiptDeduper(lambda r: got.append(r.receipt))
    dedupe.remember(m2.receipts_seen())
    line = '{"receipt": "%s", "ts": "2026-11-20T12:00:00+00:00", "till": "t1", "total": 1,'
    line += ' "items": [{"sku": "S", "amount": 1}]}'
    for rid in ("R-1", "R-3", "R-2"):
        dedupe.feed(line % rid)
    assert got == ["R-3"] and dedupe.duplicates == 2
    # Two days later they are forgotten (a till resends within hours, not days).
    m2.prune(0, NOON.date() + timedelta(days=2))
    assert m2.receipts_seen() == []
    m2.close()


# ---- touches between boxes ------------------------------------------------------------------


def test_peer_touches_merge_in_time_order_and_count_once() -> None:
    b = AttributionBook(3600)
    mine = Touch(200, "shoes", "s-a", "alice", "exposed", "e2")
    assert b.add(mine)
    peer = [Touch(100, "coffee", "s-b", "alice", "exposed", "e1", "box-b")]
    e = engine()
    e.book = b
    assert e.add_peer_touches(peer) == 1
    assert e.add_peer_touches(peer) == 0  # heard again in the peer's retained window
    a = b.attribute(300, "alice")
    assert (a.first.campaign_id, a.last.campaign_id, a.touches) == ("coffee", "shoes", 2)


def test_touches_round_trip_on_the_wire() -> None:
    ts = [
        Touch(1.5, "shoes", "s-a", "alice", "exposed", "e1"),
        Touch(2.0, "coffee", "s-a", None, "holdout", "e2"),
    ]
    back = decode(encode(ts).encode(), "box-a")
    assert [(t.ts, t.campaign_id, t.profile_id, t.group, t.origin) for t in back] == [
        (1.5, "shoes", "alice", "exposed", "box-a"),
        (2.0, "coffee", None, "holdout", "box-a"),
    ]


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"touches": {}}',
        b'{"touches": [{"ts": -1, "campaign_id": "c", "screen_id": "s", "event_id": "e"}]}',
        b'{"touches": [{"ts": 1, "campaign_id": "c", "screen_id": "s/../x", "event_id": "e"}]}',
        b'{"touches": [], "extra": 1}',
        b'{"touches": [' + b"[" * 200 + b"]" * 200 + b"]}",
    ],
)
def test_hostile_peer_messages_are_refused_with_one_line(payload: bytes) -> None:
    with pytest.raises(TouchMessageError) as exc:
        decode(payload, "box-b")
    assert "\n" not in str(exc.value)


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_random_bytes_are_touches_or_one_line_refusal(payload: bytes) -> None:
    try:
        got = decode(payload, "box-b")
    except TouchMessageError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert all(isinstance(t, Touch) and t.origin == "box-b" for t in got)
