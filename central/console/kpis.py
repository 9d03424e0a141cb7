"""Journey KPIs per store, campaign and day from the CDP store, for the console's page and CSV.

Audience per campaign: a camera track (``audience.track``: one person in front of a screen, its
dwell ending at the event's time) counts for every campaign whose impression played on that
screen while the person stood there: the campaign's *audience*, its *watchers* (those with any
attention) and its *attention* (the person's attention in the share of their dwell the campaign
was on the glass: attention is not timed within a track, so it is spread evenly over it).

Audience and experience KPIs are also per store and day (the tracks, and the surveys, which
name no campaign): from camera tracks (``audience.track``: one per person who stood in front of a
screen) the visits, the watchers (tracks with any attention), the mean dwell and the mean
attention of watchers, as the box's own KPIs count them; NPS (% promoters 9-10 minus %
detractors 0-6) and the mean customer effort score (1-7) from kiosk survey answers
(``survey.answer``); time to value (store entry to a shopper's first offer or purchase) is
the box's own median of the day from its last heartbeat of that day (the per-shopper times stay
on the box), the median over the store's boxes.

Counts come from the events the sink stored (``CdpSink.campaign_events``); the holdout uplift of
each day is the CDP's own figure (``CdpSink.uplift`` over that local day, Newcombe's interval
from ``contracts/uplift.py``), so the console, ``edge-ops uplift`` and the box's KPIs agree.
"""

from __future__ import annotations

import csv
import io
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from statistics import median
from typing import Any
from zoneinfo import ZoneInfo

from central.cdp_sink import CdpSink
from central.console.charts import Series
from contracts.uplift import Uplift, points

MAX_DAYS = 62  # a page, not a data warehouse: two months at most per request
# A screen plays one item at a time, so impressions end in the order they start; this much
# slack covers a crossfade and the clocks of a box.
SLACK_S = 60.0


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
    audience: int = 0  # camera tracks in front of a screen while the campaign played on it
    watchers: int = 0  # of them, with any attention
    attention_s: float = 0.0  # their attention while it played (spread evenly over a track)

    @property
    def attention_per_watcher_s(self) -> float | None:
        return self.attention_s / self.watchers if self.watchers else None

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
    played: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
    for st, t, kind, camp, seconds, amount, screen in sink.campaign_events(since, until, store):
        if campaign and camp != campaign:
            continue
        end = datetime.fromisoformat(t)
        day = end.astimezone(tz).date()
        r = rows.setdefault((day, st, camp), KpiRow(day, st, camp))
        if kind == "impression":
            r.ots += 1
            r.seconds += seconds
            if screen is not None:
                e = end.timestamp()
                played.setdefault((st, screen), []).append((e - seconds, e, camp))
        elif kind == "shown":
            r.shown += 1
        else:
            r.conversions += 1
            r.revenue += amount
    _audience(sink, rows, played, since, until, tz, store)
    # The uplift of each (store, day) from the CDP's counting of distinct shoppers.
    for day, st in sorted({(d, s) for d, s, _ in rows}):
        lo, hi = day_range(day, day, tz)
        for camp, u in sink.uplift(lo, hi, store=st).items():
            if (day, st, camp) in rows:
                rows[(day, st, camp)].uplift = u
    return [rows[k] for k in sorted(rows)]


def campaigns_seen(
    spans: list[tuple[float, float, str]], starts: list[float], a: float, b: float
) -> dict[str, float]:
    """Seconds of ``[a, b]`` each campaign was on one screen: ``spans`` its impressions
    (start, end, campaign) sorted by start (one item at a time on a screen), ``starts`` their
    starts."""
    seen: dict[str, float] = {}
    i = bisect_left(starts, b) - 1  # the last impression that began before the track ended
    while i >= 0:
        s0, s1, camp = spans[i]
        overlap = min(b, s1) - max(a, s0)
        if overlap > 0:
            seen[camp] = seen.get(camp, 0.0) + overlap
        elif s1 <= a - SLACK_S:
            break  # this item, and every one before it, ended before the person came
        i -= 1
    return seen


def _audience(
    sink: CdpSink,
    rows: dict[tuple[date, str, str], KpiRow],
    played: dict[tuple[str, str], list[tuple[float, float, str]]],
    since: datetime,
    until: datetime,
    tz: ZoneInfo,
    store: str | None,
) -> None:
    """Each camera track to the campaigns that played on its screen while the person stood
    there (the track's day), into ``rows``."""
    index = {}
    for key, spans in played.items():
        spans.sort()
        index[key] = (spans, [sp[0] for sp in spans])
    for e in sink.experience_events(since, until, store):
        if e.kind != "track" or e.screen is None or (e.store, e.screen) not in index:
            continue
        end = datetime.fromisoformat(e.time)
        b = end.timestamp()
        dwell = e.dwell_s or 0.0
        spans, starts = index[(e.store, e.screen)]
        day = end.astimezone(tz).date()
        for camp, overlap in campaigns_seen(spans, starts, b - dwell, b).items():
            r = rows.setdefault((day, e.store, camp), KpiRow(day, e.store, camp))
            r.audience += 1
            if (e.attention_s or 0.0) > 0 and dwell > 0:
                r.watchers += 1
                r.attention_s += e.attention_s * min(1.0, overlap / dwell)  # type: ignore[operator]


def csv_text(rows: list[KpiRow]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        [
            "day", "store", "campaign", "ots", "seconds_on_screen", "offers_shown",
            "conversions", "revenue", "exposed_shoppers", "exposed_converted",
            "holdout_shoppers", "holdout_converted", "uplift", "uplift_ci_low", "uplift_ci_high",
            "audience", "watchers", "attention_s",
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
                num(u.ci_high if u else None), r.audience, r.watchers, f"{r.attention_s:.1f}",
            ]
        )  # fmt: skip
    return out.getvalue()


def _cell(text: str) -> str:
    """A spreadsheet opens a cell starting with = + - @ as a formula: a campaign id from a box
    must not run one on an analyst's machine (CSV injection), so it gets a leading quote."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@dataclass
class ExperienceKpi:
    day: date
    store: str
    visits: int = 0  # camera tracks: people who stood in front of a screen
    watchers: int = 0  # of whom looked at it (any attention)
    dwell_total_s: float = 0.0
    attention_total_s: float = 0.0  # of watchers
    nps_promoters: int = 0
    nps_detractors: int = 0
    nps_answers: int = 0
    effort_total: float = 0.0
    effort_answers: int = 0
    ttv_by_box: dict[str, float] | None = None

    @property
    def avg_dwell_s(self) -> float | None:
        return self.dwell_total_s / self.visits if self.visits else None

    @property
    def avg_attention_s(self) -> float | None:
        return self.attention_total_s / self.watchers if self.watchers else None

    @property
    def nps(self) -> float | None:
        n = self.nps_answers
        return 100.0 * (self.nps_promoters - self.nps_detractors) / n if n else None

    @property
    def effort(self) -> float | None:
        return self.effort_total / self.effort_answers if self.effort_answers else None

    @property
    def time_to_value_s(self) -> float | None:
        got = list((self.ttv_by_box or {}).values())
        return median(got) if got else None


def experience_rows(
    sink: CdpSink, first: date, last: date, tz: ZoneInfo, *, store: str | None = None
) -> list[ExperienceKpi]:
    """One row per (day, store) with any track, survey answer or time to value."""
    if (last - first).days >= MAX_DAYS:
        raise ValueError(f"at most {MAX_DAYS} days at a time")
    since, until = day_range(first, last, tz)
    # The box's KPI day runs in its store's zone: a day's last heartbeat may come after
    # midnight here. A day's margin each side, then only KPI days in the range count.
    rows: dict[tuple[date, str], ExperienceKpi] = {}

    def row(day: date, st: str) -> ExperienceKpi:
        return rows.setdefault((day, st), ExperienceKpi(day, st))

    for e in sink.experience_events(since - timedelta(days=1), until + timedelta(days=1), store):
        if e.kind == "heartbeat":
            if e.kpi_day is None or e.ttv_p50_s is None:
                continue
            try:
                day = date.fromisoformat(e.kpi_day)
            except ValueError:
                continue
            if first <= day <= last:
                r = row(day, e.store)
                r.ttv_by_box = {**(r.ttv_by_box or {}), e.device: e.ttv_p50_s}  # the last wins
            continue
        day = datetime.fromisoformat(e.time).astimezone(tz).date()
        if not first <= day <= last:
            continue
        r = row(day, e.store)
        if e.kind == "track":
            r.visits += 1
            r.dwell_total_s += e.dwell_s or 0.0
            if (e.attention_s or 0.0) > 0:
                r.watchers += 1
                r.attention_total_s += e.attention_s or 0.0
        elif e.survey == "nps" and e.score is not None:
            r.nps_answers += 1
            r.nps_promoters += e.score >= 9
            r.nps_detractors += e.score <= 6
        elif e.survey == "effort" and e.score is not None:
            r.effort_answers += 1
            r.effort_total += e.score
    return [rows[k] for k in sorted(rows)]


def experience_csv(rows: list[ExperienceKpi]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        [
            "day", "store", "visits", "watchers", "avg_dwell_s", "avg_attention_s", "nps",
            "nps_answers", "effort", "effort_answers", "time_to_value_s",
        ]
    )  # fmt: skip

    def num(v: float | None, digits: int = 1) -> str:
        return "" if v is None else f"{v:.{digits}f}"

    for r in rows:
        w.writerow(
            [
                r.day.isoformat(), _cell(r.store), r.visits, r.watchers, num(r.avg_dwell_s),
                num(r.avg_attention_s), num(r.nps, 0), r.nps_answers, num(r.effort, 2),
                r.effort_answers, num(r.time_to_value_s),
            ]
        )  # fmt: skip
    return out.getvalue()


def daily_series(rows: Sequence[Any], days: list[date], by: str, value: str) -> list[Series]:
    """One chart series per ``by`` (a campaign, a store): the sum of ``value`` on each day."""
    names = sorted({getattr(r, by) for r in rows})
    totals: dict[tuple[str, date], float] = {}
    for r in rows:
        key = (getattr(r, by), r.day)
        totals[key] = totals.get(key, 0.0) + float(getattr(r, value))
    return [Series(n, [totals.get((n, d), 0.0) for d in days]) for n in names]
