"""Journey KPIs per store, campaign and day from the CDP store, for the console's page and CSV.

Counts come from the events the sink stored (``CdpSink.campaign_events``); the holdout uplift of
each day is the CDP's own figure (``CdpSink.uplift`` over that local day, Newcombe's interval
from ``contracts/uplift.py``), so the console, ``edge-ops uplift`` and the box's KPIs agree.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

from central.cdp_sink import CdpSink
from contracts.uplift import Uplift, points

MAX_DAYS = 62  # a page, not a data warehouse: two months at most per request


@dataclass
class KpiRow:
    day: date
    store: str
    campaign: str
    ots: int = 0  # opportunities to see: impressions of the campaign actually shown
    seconds: float = 0.0  # time on screen of those impressions
    shown: int = 0  # offers shown to someone in front of the screen (offer.shown)
    conversions: int = 0  # conversions attributed to the campaign (last touch)
    revenue: float = 0.0
    uplift: Uplift | None = None

    def uplift_text(self) -> str:
        return "-" if self.uplift is None else self.uplift.describe()

    def uplift_points(self) -> str:
        d = self.uplift.difference if self.uplift is not None else None
        return "" if d is None else points(d)


def day_range(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Local midnight of ``first`` to the midnight after ``last`` (not + 24 h: DST days)."""
    return (
        datetime.combine(first, clock_time(), tz),
        datetime.combine(last + timedelta(days=1), clock_time(), tz),
    )


def kpi_rows(
    sink: CdpSink,
    first: date,
    last: date,
    tz: ZoneInfo,
    *,
    store: str | None = None,
    campaign: str | None = None,
) -> list[KpiRow]:
    """One row per (day, store, campaign) with any impression, offer or conversion."""
    if (last - first).days >= MAX_DAYS:
        raise ValueError(f"at most {MAX_DAYS} days at a time")
    if last < first:
        raise ValueError("the last day is before the first")
    since, until = day_range(first, last, tz)
    rows: dict[tuple[date, str, str], KpiRow] = {}
    for st, t, kind, camp, seconds, amount in sink.campaign_events(since, until, store):
        if campaign and camp != campaign:
            continue
        day = datetime.fromisoformat(t).astimezone(tz).date()
        r = rows.setdefault((day, st, camp), KpiRow(day, st, camp))
        if kind == "impression":
            r.ots += 1
            r.seconds += seconds
        elif kind == "shown":
            r.shown += 1
        else:
            r.conversions += 1
            r.revenue += amount
    # The uplift of each (store, day) from the CDP's counting of distinct shoppers.
    for day, st in sorted({(d, s) for d, s, _ in rows}):
        lo, hi = day_range(day, day, tz)
        for camp, u in sink.uplift(lo, hi, store=st).items():
            if (day, st, camp) in rows:
                rows[(day, st, camp)].uplift = u
    return [rows[k] for k in sorted(rows)]


def csv_text(rows: list[KpiRow]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        [
            "day", "store", "campaign", "ots", "seconds_on_screen", "offers_shown",
            "conversions", "revenue", "exposed_shoppers", "exposed_converted",
            "holdout_shoppers", "holdout_converted", "uplift", "uplift_ci_low", "uplift_ci_high",
        ]
    )  # fmt: skip

    def num(v: float | None) -> str:
        return "" if v is None else f"{v:.4f}"

    for r in rows:
        u = r.uplift
        w.writerow(
            [
                r.day.isoformat(), _cell(r.store), _cell(r.campaign), r.ots, f"{r.seconds:.1f}",
                r.shown, r.conversions, f"{r.revenue:.2f}",
                u.exposed_shoppers if u else "", u.exposed_conversions if u else "",
                u.holdout_shoppers if u else "", u.holdout_conversions if u else "",
                num(u.difference if u else None), num(u.ci_low if u else None),
                num(u.ci_high if u else None),
            ]
        )  # fmt: skip
    return out.getvalue()


def _cell(text: str) -> str:
    """A spreadsheet opens a cell starting with = + - @ as a formula: a campaign id from a box
    must not run one on an analyst's machine (CSV injection), so it gets a leading quote."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
