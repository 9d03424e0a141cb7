"""Holdout uplift at the CDP: events in through the sink's ingest path into its store (a SQLite
file and a PostgreSQL database, the same tests on both), exposed against held-out shoppers per
campaign out through `edge-ops uplift`."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from central.cdp_sink import CdpSink
from central.ops_cli import main
from contracts import topics
from contracts.batch import encode_batch, publish_properties
from contracts.events import CloudEvent, Conversion, HoldoutAssigned, OfferShown, make_event
from contracts.uplift import uplift
from edge_agent.config import BrokerConfig
from sync.outbox import Outbox

REPO = Path(__file__).resolve().parents[2]
# 10:00 in Paris on 20 November 2026; the late events below are past midnight in Paris.
DAY = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def shown(campaign: str, pid: str | None, at: datetime) -> OfferShown:
    return OfferShown(
        screen_id="s1",
        campaign_id=campaign,
        content_id=f"{campaign}:personalised",
        variant="personalised" if pid else "anonymous",
        profile_id=pid,
    )


def held(campaign: str, pid: str | None) -> HoldoutAssigned:
    return HoldoutAssigned(campaign_id=campaign, screen_id="s1", profile_id=pid)


def bought(receipt: str, pid: str | None, campaign: str | None, group: str | None) -> Conversion:
    return Conversion(
        receipt_id=receipt,
        profile_id=pid,
        amount=59.0,
        attributed_campaign_id=campaign,
        touches=1 if campaign else 0,
        group=group,  # type: ignore[arg-type]
    )


def store_day(store: str = "st-1", device: str = "box-1") -> list[CloudEvent]:
    """One store day of a campaign with a holdout: what a box's journal would send."""
    out: list[tuple[object, datetime]] = []
    t = DAY
    for i in range(10):  # ten exposed shoppers; two of them see the offer twice
        out.append((shown("winback", f"e{i}", t), t + timedelta(minutes=i)))
    out += [(shown("winback", "e0", t), t + timedelta(hours=1))]
    out += [(shown("winback", "e1", t), t + timedelta(hours=2))]
    # Shown to a crowd or to a shopper without analytics consent: no one to count.
    out += [(shown("winback", None, t), t + timedelta(hours=1))]
    for i in range(5):  # five held out, h0 twice
        out.append((held("winback", f"h{i}"), t + timedelta(minutes=30 + i)))
    out += [(held("winback", "h0"), t + timedelta(hours=3))]
    out += [(held("winback", None), t + timedelta(hours=3))]  # no analytics consent
    # e9 was held out in the morning, then the holdout share went down and they saw it.
    out += [(held("winback", "e9"), t - timedelta(minutes=5))]
    # Conversions: three exposed shoppers (e0 twice), one held out, and the ones that do not
    # count: anonymous, and a receipt no offer preceded.
    for n, pid in enumerate(["e0", "e1", "e2", "e0"]):
        out.append((bought(f"R-{n}", pid, "winback", "exposed"), t + timedelta(hours=4, minutes=n)))
    out += [(bought("R-h0", "h0", "winback", "holdout"), t + timedelta(hours=5))]
    out += [(bought("R-anon", None, "winback", "exposed"), t + timedelta(hours=5))]
    out += [(bought("R-none", "e3", None, None), t + timedelta(hours=5))]
    # Another campaign, shown but nobody held out yet.
    out += [(shown("coffee", "e5", t), t + timedelta(hours=6))]
    # Late in the evening in UTC, already the 21st in Paris: a new holdout shopper.
    out += [(held("winback", "h-late"), DAY.replace(hour=23, minute=30))]
    return [make_event(p, store_id=store, device_id=device, time=at) for p, at in out]  # type: ignore[arg-type]


def ingest(db: Path | str, events: list[CloudEvent], store: str, device: str, tmp: Path) -> None:
    """Through the outbox and a batch, as the uplink sends them, into the sink's database."""
    sink = CdpSink(BrokerConfig(), db)  # not started: handle_batch is its ingest path
    before = sink.count()
    try:
        with Outbox(tmp / f"outbox-{store}-{device}.db") as ob:
            ob.append(events)
            rows = ob.pending(10_000, 10**9)
        for part in (rows[: len(rows) // 2], rows[len(rows) // 2 :], rows[:5]):  # + redelivery
            payload, enc = encode_batch("b", store, device, [r.body for r in part], 10**9)
            sink.handle_batch(topics.events(store, device), payload, publish_properties(enc))
        assert sink.count() == before + len(events)  # each once, redelivery or not
    finally:
        sink.stop()


@pytest.fixture
def cdp(cdp_db: str, tmp_path: Path) -> str:
    """The store day in the CDP store, once on SQLite and once on PostgreSQL: same figures."""
    ingest(cdp_db, store_day(), "st-1", "box-1", tmp_path)
    return cdp_db


def test_distinct_shoppers_and_converters_per_group(cdp: Path) -> None:
    sink = CdpSink(BrokerConfig(), cdp)
    try:
        day = sink.uplift(DAY.replace(hour=0), DAY.replace(hour=0) + timedelta(days=1))
        everything = sink.uplift()
    finally:
        sink.stop()
    assert list(day) == ["coffee", "winback"]
    w = day["winback"]
    # e0..e9 exposed (e9 too: they saw it); h0..h4 and h-late held out; e0, e1, e2 and h0 bought.
    assert (w.exposed_shoppers, w.exposed_conversions) == (10, 3)
    assert (w.holdout_shoppers, w.holdout_conversions) == (6, 1)
    assert w == uplift(3, 10, 1, 6)
    assert everything["winback"] == w
    c = day["coffee"]
    assert (c.exposed_shoppers, c.holdout_shoppers) == (1, 0) and not c.enough_data


def test_a_range_a_store_day_in_its_time_zone_and_a_store(cdp: Path, tmp_path: Path) -> None:
    # Another store runs the same campaign: its shoppers count only when asked for all stores.
    other = [make_event(held("winback", "x1"), store_id="st-2", device_id="box-9", time=DAY)]
    ingest(cdp, other, "st-2", "box-9", tmp_path)
    sink = CdpSink(BrokerConfig(), cdp)
    try:
        paris_day = sink.uplift(
            datetime.fromisoformat("2026-11-20T00:00+01:00"),
            datetime.fromisoformat("2026-11-21T00:00+01:00"),
            store="st-1",
        )
        all_stores = sink.uplift(store=None)
        morning = sink.uplift(until=DAY + timedelta(minutes=32), store="st-1")
        nothing = sink.uplift(since=DAY + timedelta(days=2))
    finally:
        sink.stop()
    assert paris_day["winback"].holdout_shoppers == 5  # h-late was past midnight in Paris
    assert all_stores["winback"].holdout_shoppers == 7  # + h-late + st-2's shopper
    # Until 09:32 UTC: e0..e9 shown, h0 and h1 held out (at :30 and :31), no purchase yet.
    assert morning["winback"] == uplift(0, 10, 0, 2)
    assert nothing == {}


def test_edge_ops_uplift_prints_a_table_per_campaign(cdp: Path, capsys) -> None:
    args = ["uplift", "--db", str(cdp), "--day", "2026-11-20", "--tz", "Europe/Paris"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "campaign", "exposed", "conv", "rate", "holdout", "conv", "rate", "uplift", "(95%", "CI)",
    ]  # fmt: skip
    coffee, winback = lines[1], lines[2]
    expected = uplift(3, 10, 1, 5)
    assert winback.split()[:7] == ["winback", "10", "3", "30.0%", "5", "1", "20.0%"]
    assert winback.endswith(expected.describe()) and "+10.0 pts (95% CI" in winback
    assert coffee.split()[:7] == ["coffee", "1", "0", "0.0%", "0", "0", "-"]
    assert coffee.endswith("not enough data (no holdout shoppers)")


def test_edge_ops_uplift_json_from_a_separate_process(cdp: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "central.ops_cli", "uplift", "--db", str(cdp),
         "--since", "2026-11-20", "--until", "2026-11-21", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = {r["campaign"]: r for r in map(json.loads, out.stdout.splitlines())}
    w = rows["winback"]
    expected = uplift(3, 10, 1, 6)
    assert w["uplift"] == round(expected.difference, 4) == 0.1333
    assert (w["uplift_ci_low"], w["uplift_ci_high"]) == (
        round(expected.ci_low, 4),
        round(expected.ci_high, 4),
    )
    assert w["summary"] == expected.describe()
    assert rows["coffee"]["uplift"] is None
    assert rows["coffee"]["summary"] == "not enough data (no holdout shoppers)"


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--day", "20/11/2026"], "expected YYYY-MM-DD"),
        (["--day", "2026-11-20", "--since", "2026-11-19"], "not both"),
        (["--since", "2026-11-21", "--until", "2026-11-20"], "--until must be after --since"),
        (["--tz", "Mars/Olympus"], "not a time zone"),
    ],
)
def test_edge_ops_uplift_refuses_a_bad_range(cdp: Path, capsys, extra, said) -> None:
    assert main(["uplift", "--db", str(cdp), *extra]) == 2
    assert said in capsys.readouterr().err


def test_edge_ops_uplift_without_a_database_says_so(tmp_path: Path, capsys) -> None:
    assert main(["uplift", "--db", str(tmp_path / "none.db")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()  # and did not create one
