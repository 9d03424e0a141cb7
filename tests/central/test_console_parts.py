"""The console's parts without a server: password hashing, cookies and CSRF tokens, the login
limit, the chart, the CSV, the shared push path's checks and the fleet rows."""

from __future__ import annotations

import re
import sqlite3
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from central.cdp_sink import CdpSink
from central.console.accounts import AccountError, Accounts, User
from central.console.charts import Series, _nice_step, bar_chart
from central.console.config import ConfigError, load
from central.console.demo import seed
from central.console.kpis import KpiRow, csv_text, kpi_rows
from central.console.security import LoginLimiter, csrf_ok, csrf_token, sign_sid, unsign_sid
from central.fleet_status import status_row
from central.push import PushError, emergency_body, sign, time_version
from contracts.mqtt import BrokerConfig
from contracts.signing import generate_keypair, verify_message

SECRET = b"k" * 32


def test_passwords_are_scrypt_hashes_with_a_salt_each(tmp_path: Path) -> None:
    acc = Accounts(tmp_path / "accounts.db")
    try:
        acc.set_user("ada", "admin", "same password here")
        acc.set_user("bob", "viewer", "same password here")
        assert acc.check_password("ada", "same password here") == User("ada", "admin")
        assert acc.check_password("ada", "same password herE") is None
        assert acc.check_password("nobody", "same password here") is None
        with pytest.raises(AccountError, match="at least 10"):
            acc.set_user("eve", "viewer", "short")
        with pytest.raises(AccountError, match="role"):
            acc.set_user("eve", "root", "long enough password")
    finally:
        acc.close()
    rows = (
        sqlite3.connect(tmp_path / "accounts.db")
        .execute("SELECT salt, hash, params FROM users")
        .fetchall()
    )
    (salt_a, hash_a, params), (salt_b, hash_b, _) = rows
    assert salt_a != salt_b and hash_a != hash_b and params.startswith("scrypt:")
    assert b"same password" not in (tmp_path / "accounts.db").read_bytes()
    assert (tmp_path / "accounts.db").stat().st_mode & 0o777 == 0o600


def test_a_reset_password_ends_the_accounts_sessions(tmp_path: Path) -> None:
    acc = Accounts(tmp_path / "a.db")
    try:
        acc.set_user("ada", "admin", "first password")
        sid = acc.new_session("ada")
        assert acc.session(sid) == (True, acc.check_password("ada", "first password"))
        acc.set_user("ada", "operator", "second password")
        assert acc.session(sid) == (False, None)
    finally:
        acc.close()


def test_cookies_and_csrf_tokens_are_bound_to_the_secret_and_session() -> None:
    cookie = sign_sid(SECRET, "sid-1")
    assert unsign_sid(SECRET, cookie) == "sid-1"
    assert unsign_sid(b"x" * 32, cookie) is None
    assert unsign_sid(SECRET, cookie.replace("sid-1", "sid-2")) is None
    assert unsign_sid(SECRET, "no-dot") is None and unsign_sid(SECRET, None) is None
    token = csrf_token(SECRET, "sid-1")
    assert csrf_ok(SECRET, "sid-1", token)
    assert not csrf_ok(SECRET, "sid-2", token)
    assert not csrf_ok(SECRET, None, token) and not csrf_ok(SECRET, "sid-1", "")


def test_the_login_limit_counts_per_client_and_forgets_after_its_window() -> None:
    lim = LoginLimiter(limit=5, window_s=60)
    for i in range(5):
        assert lim.retry_after("a", now=100 + i) == 0
        lim.failed("a", now=100 + i)
    assert lim.retry_after("a", now=105) == 55
    assert lim.retry_after("b", now=105) == 0
    assert lim.retry_after("a", now=160.5) == 0  # the first failure left the window
    lim.succeeded("a")
    assert lim.retry_after("a", now=161) == 0


def test_the_chart_draws_a_bar_per_value_and_escapes_names() -> None:
    svg = bar_chart("OTS", ["Mon", "Tue"], [Series("<b>x</b>", [3, 10]), Series("y", [0, 7])])
    bars = re.findall(r'<rect class="bar"[^>]*data-value="([^"]+)"[^>]*height="([^"]+)"', svg)
    assert [v for v, _ in bars] == ["3", "0", "10", "7"]
    heights = [float(h) for _, h in bars]
    assert heights[2] == max(heights) and heights[1] == 0
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg
    assert [_nice_step(x) for x in (0.3, 2.5, 7, 26)] == [0.5, 5, 10, 50]
    assert bar_chart("empty", [], []).startswith("<svg")


def test_the_csv_defuses_formulas_from_box_supplied_ids() -> None:
    text = csv_text([KpiRow(date(2026, 1, 2), "store-1", "=HYPERLINK(1)", ots=3)])
    line = text.splitlines()[1]
    assert line.startswith("2026-01-02,store-1,'=HYPERLINK(1),3,")


def test_kpis_per_day_match_the_cdps_uplift(cdp_db: str) -> None:
    """On both stores: the console reads a SQLite file or the sinks' PostgreSQL alike."""
    seed(cdp_db, today=date(2026, 3, 10), days=3)
    sink = CdpSink(BrokerConfig(), cdp_db, group=None)
    tz = ZoneInfo("Europe/Berlin")
    try:
        rows = kpi_rows(sink, date(2026, 3, 8), date(2026, 3, 10), tz, store="store-0107")
        assert {r.day for r in rows} == {date(2026, 3, d) for d in (8, 9, 10)}
        assert {r.campaign for r in rows} == {"winter-jackets", "members-coffee"}
        r = rows[0]
        from central.console.kpis import day_range

        want = sink.uplift(*day_range(r.day, r.day, tz), store="store-0107")[r.campaign]
        assert r.uplift == want and r.ots > r.shown > 0
        with pytest.raises(ValueError, match="at most"):
            kpi_rows(sink, date(2026, 1, 1), date(2026, 3, 10), tz)
    finally:
        sink.stop()


def test_the_push_path_refuses_what_a_box_would(tmp_path: Path) -> None:
    pem, public = generate_keypair()
    key = tmp_path / "k.pem"
    key.write_bytes(pem)
    msg = sign(key, "command", emergency_body("Fire drill"), "s1", None, 5)
    assert verify_message(public, msg, "s1", "d1").body["title"] == "Fire drill"
    with pytest.raises(PushError, match="at most 100") as exc:
        sign(key, "command", emergency_body("x"), "s1", None, 5, max_bytes=100)
    assert exc.value.usage
    with pytest.raises(PushError, match="needs a title"):
        emergency_body("   ")
    with pytest.raises(PushError, match="at most 120"):
        emergency_body("x" * 121)
    with pytest.raises(PushError, match="signing key"):
        sign(tmp_path / "missing.pem", "command", {}, "s1", None, 1)
    assert time_version(10**12) == 10**12 + 1 and time_version(0) > 1_700_000_000


def test_a_fleet_row_names_the_first_problem() -> None:
    row = status_row(
        "s", "d", {"status": "online", "version": "1", "config_hash": "h"},
        {"ts": 100.0, "outbox_depth": 3,
         "sensors": {"content_state": "retrying", "content_version": "4",
                     "content_reason": "HTTP 503", "watchdog": "tick late"}},
        110.0, {"kind": "command", "version": 7, "accepted": False, "reason": "older version"},
    )  # fmt: skip
    assert row["content"] == "v4 retrying" and row["last_error"] == "content retrying: HTTP 503"
    assert row["last_ack"] == "command v7 refused: older version" and row["health_age_s"] == 10
    calm = status_row("s", "d", {}, {"sensors": {"watchdog": "ok", "ble": "ok"}}, 0.0)
    assert calm["last_error"] is None and calm["status"] == "unknown"


def test_a_bad_config_names_its_key(tmp_path: Path) -> None:
    p = tmp_path / "ops.toml"
    p.write_text('[console]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match="console.timezone"):
        load(p)
    p.write_text("[broker]\nprot = 1\n")
    with pytest.raises(ConfigError, match="broker.prot"):
        load(p)
    p.write_text('[cdp]\ndb = "x.db"\n')
    assert load(p).cdp.db == tmp_path / "x.db"
    p.write_text('[cdp]\ndsn = "postgresql://console@db.example.net/cdp"\n')
    assert load(p).cdp.dsn == "postgresql://console@db.example.net/cdp"
    p.write_text('[cdp]\ndsn = "db.example.net"\n')
    with pytest.raises(ConfigError, match="cdp.dsn"):
        load(p)


def test_after_login_only_a_path_of_the_console() -> None:
    from central.console.app import _safe_next

    assert _safe_next("/stores/s1?x=1") == "/stores/s1?x=1"
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "fleet"):
        assert _safe_next(evil) == "/fleet", evil


def test_audience_and_experience_kpis_per_store_and_day(cdp_db: str) -> None:
    """On both stores: camera tracks, survey answers and the boxes' time to value, ingested as
    a box's batches, read back per store and local day with the figures worked by hand."""
    from datetime import datetime, timedelta

    from central.console.kpis import experience_csv, experience_rows
    from contracts import topics
    from contracts.batch import encode_batch, publish_properties
    from contracts.events import AudienceTrack, DeviceHeartbeat, SurveyAnswer, make_event

    tz = ZoneInfo("Europe/Berlin")
    day = date(2026, 3, 9)
    noon = datetime(2026, 3, 9, 12, 0, tzinfo=tz)
    sink = CdpSink(BrokerConfig(), cdp_db, group=None)

    def send(device: str, payloads: list[tuple[object, datetime]]) -> None:
        bodies = [
            make_event(p, store_id="st-1", device_id=device, time=t).to_json()  # type: ignore[arg-type]
            for p, t in payloads
        ]
        raw, enc = encode_batch(f"b-{device}", "st-1", device, bodies, 4096)
        assert sink.handle_batch(topics.events("st-1", device), raw, publish_properties(enc))

    def beat(ttv: float, at: datetime, kpi_day: date = day) -> tuple[object, datetime]:
        hb = DeviceHeartbeat(
            version="1", uptime_s=1, outbox_depth=0, oldest_pending_s=0, disk_free_mb=1,
            kpis={"day": kpi_day.isoformat(), "time_to_value_p50_s": ttv},
        )  # fmt: skip
        return hb, at

    try:
        send("box-1", [
            (AudienceTrack(screen_id="s", dwell_s=10, attention_s=0), noon),
            (AudienceTrack(screen_id="s", dwell_s=20, attention_s=4), noon),
            (AudienceTrack(screen_id="s", dwell_s=30, attention_s=6), noon),
            # 23:30 local is still the 9th here (22:30 UTC), and 00:30 is the 10th.
            (AudienceTrack(screen_id="s", dwell_s=5, attention_s=0),
             datetime(2026, 3, 9, 23, 30, tzinfo=tz)),
            (AudienceTrack(screen_id="s", dwell_s=5, attention_s=0),
             datetime(2026, 3, 10, 0, 30, tzinfo=tz)),
            *[(SurveyAnswer(kiosk_id="k", survey="nps", score=s), noon) for s in (10, 9, 7, 3)],
            *[(SurveyAnswer(kiosk_id="k", survey="effort", score=s), noon) for s in (2, 4)],
            beat(100.0, noon), beat(120.0, noon + timedelta(hours=8)),  # the day's last: 120
            beat(999.0, noon + timedelta(days=1), date(2026, 3, 10)),
        ])  # fmt: skip
        send("box-2", [beat(200.0, noon + timedelta(hours=7))])
        [r] = experience_rows(sink, day, day, tz, store="st-1")
        assert (r.day, r.store, r.visits, r.watchers) == (day, "st-1", 4, 2)
        assert r.avg_dwell_s == pytest.approx(65 / 4) and r.avg_attention_s == 5.0
        assert (r.nps, r.nps_answers) == (25.0, 4)  # (2 promoters - 1 detractor) / 4
        assert (r.effort, r.effort_answers) == (3.0, 2)
        assert r.time_to_value_s == 160.0  # the median of the boxes' 120 and 200
        both = experience_rows(sink, day, day + timedelta(days=1), tz)
        assert [(x.day.day, x.visits, x.time_to_value_s) for x in both] == [
            (9, 4, 160.0), (10, 1, 999.0),
        ]  # fmt: skip
        assert experience_rows(sink, day, day, tz, store="elsewhere") == []
        line = experience_csv([r]).splitlines()[1]
        assert line == "2026-03-09,st-1,4,2,16.2,5.0,25,4,3.00,2,160.0"
    finally:
        sink.stop()


def test_a_campaign_is_given_the_people_in_front_of_its_screen_while_it_played(
    cdp_db: str,
) -> None:
    """On both stores: impressions on two screens and camera tracks, worked by hand. A track
    counts for each campaign on its own screen whose impression overlapped the person's stay,
    its attention spread over the stay by the share each campaign was on."""
    from datetime import datetime, timedelta

    from contracts import topics
    from contracts.batch import encode_batch, publish_properties
    from contracts.events import AudienceTrack, ContentImpression, make_event

    tz = ZoneInfo("Europe/Berlin")
    day = date(2026, 3, 9)
    t0 = datetime(2026, 3, 9, 12, 0, tzinfo=tz)
    sink = CdpSink(BrokerConfig(), cdp_db, group=None)

    def at(s: float) -> datetime:
        return t0 + timedelta(seconds=s)

    def imp(screen: str, camp: str, start: float, end: float) -> tuple[object, datetime]:
        return ContentImpression(
            impression_id=f"{screen}-{start}", screen_id=screen, content_id=f"{camp}:x",
            campaign_id=camp, variant="anonymous", start=at(start), end=at(end),
            duration_s=end - start,
        ), at(end)  # fmt: skip

    def track(screen: str, start: float, end: float, attention: float) -> tuple[object, datetime]:
        return AudienceTrack(screen_id=screen, dwell_s=end - start, attention_s=attention), at(end)

    payloads = [
        imp("s1", "boots", 0, 10), imp("s1", "coffee", 10, 20), imp("s1", "boots", 20, 30),
        imp("s2", "coffee", 0, 30),
        track("s1", 5, 15, 4.0),  # 5 s of boots, 5 s of coffee: 2 s of attention each
        track("s1", 12, 18, 0.0),  # coffee only, no attention: audience, not a watcher
        track("s1", 40, 50, 3.0),  # after every impression: nobody's
        track("s2", 25, 35, 10.0),  # 5 of its 10 s under coffee on s2
    ]  # fmt: skip
    bodies = [
        make_event(p, store_id="st-1", device_id="box-1", time=t).to_json()  # type: ignore[arg-type]
        for p, t in payloads
    ]
    raw, enc = encode_batch("b-1", "st-1", "box-1", bodies, 4096)
    try:
        assert sink.handle_batch(topics.events("st-1", "box-1"), raw, publish_properties(enc))
        rows = {r.campaign: r for r in kpi_rows(sink, day, day, tz)}
        boots, coffee = rows["boots"], rows["coffee"]
        assert (boots.ots, boots.audience, boots.watchers) == (2, 1, 1)
        assert boots.attention_s == pytest.approx(2.0)
        assert (coffee.ots, coffee.audience, coffee.watchers) == (2, 3, 2)
        assert coffee.attention_s == pytest.approx(2.0 + 5.0)
        assert coffee.attention_per_watcher_s == pytest.approx(3.5)
        line = [x for x in csv_text([coffee]).splitlines()][1]
        assert line.endswith(",3,2,7.0"), line
    finally:
        sink.stop()
