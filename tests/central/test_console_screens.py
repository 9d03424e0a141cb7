"""The console and a store's real screens: `edge-agent run` and a Kivy player (`signage-ui`, a
real window on Xvfb) on the console's broker, driven from headless Chromium. The box relays what
its player shows (``screens/<screen>``); the console asks the player for a screenshot, broadcasts
an emergency to the whole fleet and clears it, and sees the player obey each time.

The Campaigns page's dry run asks the box's own decision code (``edge-agent campaigns dry-run``)
about the screen as the box reports it (zone, personal limit).

EDGE_UPDATE_DOCS=1 refreshes docs/console/store-screens.png, fleet-emergency.png and
campaigns-dry-run.png."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from central.console.demo import STORES
from contracts import topics
from contracts.mqtt import connect, make_client
from testbed.display import kivy_env
from testbed.procs import terminate
from tests.app.test_agent_process import write_config
from tests.central import test_console as base
from tests.central.test_console import SHOTS, STORE, Server, _css, _password, _shot
from tests.watching import wait_for

console_broker = base.console_broker
server = base.server
browser = base.browser

pytestmark = [pytest.mark.ui, pytest.mark.timeout(300)]
DEVICE = "box-screens"
SCREEN = "screen-entrance"  # the demo box's one screen


@dataclass
class StoreBox:
    agent: subprocess.Popen[bytes]
    player: subprocess.Popen[bytes]
    logs: Path
    states: list[dict[str, Any]]  # the player's retained states on the in-store bus

    def tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}"
            for p in sorted(self.logs.glob("*.log"))
        )


class BusStates:
    """The player's own state messages on the in-store bus (what the console must agree with)."""

    def __init__(self, server: Server) -> None:
        self.got: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.client = make_client(f"t-states-{uuid.uuid4().hex[:6]}", server.broker)
        ready = threading.Event()
        self.client.on_connect = lambda c, *a: c.subscribe(topics.screen_state(STORE, SCREEN), 1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = lambda c, u, m: self._add(m.payload)
        connect(self.client, server.broker, clean_start=True, session_expiry_s=0)
        self.client.loop_start()
        assert ready.wait(10)

    def _add(self, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
        except ValueError:
            return
        with self._lock:
            self.got.append(doc)

    def last(self) -> dict[str, Any]:
        with self._lock:
            return self.got[-1] if self.got else {}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def store_box(
    server: Server, xvfb_display: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[StoreBox, BusStates]]:
    """The demo store's box as it runs in a store: the agent (its central link and in-store bus
    both on the console's broker, trusting the console's signing key) and the player of its
    screen in a real window."""
    tmp_path = tmp_path_factory.mktemp("store-box")
    cfg = write_config(tmp_path, server.broker.port, DEVICE, speed=1)
    text = cfg.read_text()
    text = text.replace(
        text[text.index('ops_public_key = "') : text.index("\n", text.index('ops_public_key = "'))],
        f'ops_public_key = "{server.public_key}"',
    )
    # No camera: the test is about the screen (a demo camera would only cost CPU here).
    text = text.replace("[camera]\nenabled = true", "[camera]\nenabled = false")
    # A heartbeat (its retained health: what the box applied) every 2 s, not 30.
    text = text.replace("heartbeat_s = 30", "heartbeat_s = 2")
    cfg.write_text(text)
    bin_dir = os.path.dirname(sys.executable)
    states = BusStates(server)
    with open(tmp_path / "agent.log", "wb") as a_log, open(tmp_path / "player.log", "wb") as p_log:
        agent = subprocess.Popen(
            [os.path.join(bin_dir, "edge-agent"), "run", "-c", str(cfg)],
            stdout=a_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        player = subprocess.Popen(
            [os.path.join(bin_dir, "signage-ui"), "--config", str(cfg), "--screen", SCREEN],
            env=kivy_env(xvfb_display, tmp_path / "kivy-home"),
            stdout=p_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield StoreBox(agent, player, tmp_path, states.got), states
        finally:
            terminate(player)
            terminate(agent)
            states.close()


def _login(d: Any, server: Server, name: str) -> None:
    d.get(server.base + "/fleet")
    if _css(d, "#logout"):  # the module's browser may still be logged in from another test
        d.find_element("id", "logout").click()
    assert wait_for(lambda: _css(d, "#login"), 10)
    d.find_element("id", "name").send_keys(name)
    d.find_element("id", "password").send_keys(_password(name))
    d.find_element("id", "login").click()
    assert wait_for(lambda: _css(d, "#boxes"), 10)


def _screen_row(d: Any) -> dict[str, str] | None:
    """The live screen's row on the store page as the browser shows it now, or None."""
    rows = _css(d, f'#screens tr[data-screen="{SCREEN}"][data-device="{DEVICE}"]')
    if not rows:
        return None
    r = rows[0]
    return {k: r.get_attribute(f"data-{k}") or "" for k in ("mode", "emergency", "obeys")} | {
        "text": r.text
    }


def _jpeg(d: Any, src: str) -> np.ndarray:
    """The screenshot as the browser's session fetches it, decoded."""
    cookies = {c["name"]: c["value"] for c in d.get_cookies()}
    r = httpx.get(src, cookies=cookies, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def _red_share(img: np.ndarray) -> float:
    """Share of pixels near the emergency's background (#b00020; the box's default)."""
    b, g, r = (img[..., i].astype(int) for i in range(3))
    return float(((r > 120) & (g < 60) & (b < 80)).mean())


def _settled(cond: Any) -> Any:
    """``cond`` as a wait_for condition that is False, not an error, when the page went away
    under it (the store page reloads itself while a screenshot is awaited)."""
    from selenium.common.exceptions import StaleElementReferenceException

    def check() -> bool:
        try:
            return bool(cond())
        except StaleElementReferenceException:
            return False

    return check


def _reload_until(d: Any, url: str, cond: Any, timeout: float) -> bool:
    def check() -> bool:
        d.get(url)
        return bool(cond())

    return wait_for(_settled(check), timeout, step=0.5)


def _wait_listed(d: Any, server: Server, box: StoreBox) -> None:
    """Until the store page lists the live screen online (the player up, its box relaying)."""

    def listed() -> bool:
        # Online and showing something (a mode): the player has drawn its first item.
        row = _screen_row(d)
        return row is not None and "online" in row["text"] and bool(row["mode"])

    assert _reload_until(d, f"{server.base}/stores/{STORE}", listed, 120), box.tail()


# A breakfast offer in the morning only, with priority over the boots.
BREAKFAST = {
    "id": "breakfast", "priority": 20, "dayparts": ["07:00-10:00"], "zones": ["entrance"],
    "anonymous": {"template": "offer_card", "title": "Coffee and croissant 3.50",
                  "body": "Until ten, at the café"},
}  # fmt: skip


def _dry_run(d: Any, bundle: dict[str, Any], at: str) -> dict[str, tuple[str, str, str]]:
    """Check ``bundle`` for the store at ``at``; the dry run's rows by audience."""
    from selenium.webdriver.support.ui import Select

    Select(d.find_element("id", "store")).select_by_value(STORE)
    d.execute_script(
        "arguments[0].value = arguments[1]; arguments[2].value = arguments[3];",
        d.find_element("id", "bundle"), json.dumps(bundle, indent=2),
        d.find_element("id", "at"), at,
    )  # fmt: skip
    d.find_element("id", "check").click()
    assert wait_for(lambda: _css(d, "#dry-run") or _css(d, "#dry-error"), 90)
    assert not _css(d, "#dry-error"), d.find_element("id", "dry-error").text
    rows = _css(d, f'#dry-run tr[data-screen="{SCREEN}"]')
    return {
        r.get_attribute("data-audience"): (
            r.get_attribute("data-content"),
            r.get_attribute("data-variant"),
            r.text,
        )
        for r in rows
    }


def test_a_dry_run_says_what_each_screen_would_show_by_the_box_s_own_decision(
    server: Server, store_box: tuple[StoreBox, BusStates], browser: Any
) -> None:
    from tests.central.test_console_campaigns import VALID

    box, _ = store_box
    d = browser
    _login(d, server, "otto")
    _wait_listed(d, server, box)
    d.get(server.base + "/campaigns")
    bundle = {**VALID, "campaigns": [*VALID["campaigns"], BREAKFAST]}
    day = "2026-12-07"  # a Monday
    morning = _dry_run(d, bundle, f"{day}T08:30")
    assert set(morning) == {
        "nobody there", "one passer-by", "the sample shopper (Alex, consented)", "a crowd (4 people)"
    }  # fmt: skip
    assert morning["nobody there"][:2] == ("welcome", "default")
    assert morning["one passer-by"][:2] == ("breakfast:anonymous", "anonymous")
    assert morning["a crowd (4 people)"][:2] == ("breakfast:anonymous", "anonymous")
    # Higher priority wins on the box, for a shopper too: breakfast's anonymous card.
    alex = morning["the sample shopper (Alex, consented)"]
    assert alex[:2] == ("breakfast:anonymous", "anonymous")
    # In the afternoon the breakfast's daypart is over: the boots, and the reason why.
    afternoon = _dry_run(d, bundle, f"{day}T15:00")
    passer_by = afternoon["one passer-by"]
    assert passer_by[:2] == ("winter-boots:anonymous", "anonymous")
    assert "breakfast:lost:schedule" in passer_by[2]
    alex = afternoon["the sample shopper (Alex, consented)"]
    assert alex[:2] == ("winter-boots:personalised", "personalised")
    assert "Welcome back, Alex!" in alex[2]
    if os.environ.get("EDGE_UPDATE_DOCS"):  # the dry run's part of the (long) page
        d.set_window_size(1360, 2400)
        d.find_element("id", "dry-run-section").screenshot(str(SHOTS / "campaigns-dry-run.png"))
        d.set_window_size(1360, 900)


def test_an_operator_sees_a_running_player_obey_a_fleet_emergency_and_its_clear(
    server: Server, store_box: tuple[StoreBox, BusStates], browser: Any
) -> None:
    box, bus = store_box
    d = browser
    _login(d, server, "otto")
    store_url = f"{server.base}/stores/{STORE}"

    # The player came up and its box relayed what it shows: the store page lists the screen.
    _wait_listed(d, server, box)
    d.get(store_url)
    row = _screen_row(d)
    assert row is not None and row["emergency"] == "no"

    # A screenshot on request: the box's command to the player, the player's JPEG relayed.
    d.find_element("id", f"shoot-{SCREEN}").click()
    assert wait_for(lambda: _css(d, f"#shot-{SCREEN}") or d.refresh(), 60, step=0.5), box.tail()
    src = d.find_element("id", f"shot-{SCREEN}").get_attribute("src")
    img = _jpeg(d, src)
    assert img.shape[0] > 50 and img.shape[1] > 50, img.shape
    assert float(img.std()) > 1.0, box.tail()  # a drawn screen, not a blank frame
    # Without a session the picture is not served.
    assert httpx.get(src, timeout=10, follow_redirects=False).status_code == 303

    # The whole fleet: the confirmation names how many stores, boxes and screens it reaches.
    d.get(server.base + "/fleet")
    d.find_element("id", "fe-title").send_keys("Fire alarm: please leave the store")
    d.find_element("id", "fe-body").send_keys("Use the nearest exit. Staff will guide you.")
    d.find_element("id", "fe-start").click()
    assert wait_for(lambda: _css(d, "#reach"), 10)
    assert d.find_element("id", "n-stores").text == str(len(STORES))
    assert int(d.find_element("id", "n-screens").text) >= 1
    assert all(s in d.find_element("id", "reach").text for s in STORES)
    _shot(d, "fleet-emergency")
    assert bus.last().get("mode") != "override"  # the confirmation step sent nothing
    d.find_element("id", "confirm").click()
    assert wait_for(lambda: _css(d, "#notice"), 30), d.page_source[-2000:]
    n = len(STORES)
    assert f"Fleet emergency sent to {n} of {n} stores" in d.find_element("id", "notice").text

    # The player obeys (its own state on the bus), and the console says so per screen.
    assert wait_for(lambda: bus.last().get("mode") == "override", 30), box.tail()
    assert bus.last()["content_id"] == "emergency"
    # The box's retained health lists what it applied: the emergency's command version too.
    version = int(re.search(r"command v(\d+)", d.find_element("id", "notice").text)[1])  # type: ignore[index]

    def applied() -> bool:
        d.get(store_url)
        cells = _css(d, f'#boxes tr[data-device="{DEVICE}"] td.applied')
        return bool(cells) and f"command v{version}" in cells[0].text

    assert wait_for(_settled(applied), 30, step=0.5), box.tail()

    def obeying(emergency: str) -> bool:
        row = _screen_row(d)
        return row is not None and row["emergency"] == emergency and row["obeys"] == "yes"

    assert _reload_until(d, store_url, lambda: obeying("yes"), 30), box.tail()
    assert "shows the emergency" in (_screen_row(d) or {})["text"]
    # A fresh screenshot shows it on the glass: the emergency's red, where the first had none.
    d.find_element("id", f"shoot-{SCREEN}").click()

    def new_shot() -> bool:
        got = _css(d, f"#shot-{SCREEN}")
        if not got or got[0].get_attribute("src") == src:
            d.refresh()
            return False
        return True

    assert wait_for(_settled(new_shot), 60, step=0.5), box.tail()
    during = _jpeg(d, d.find_element("id", f"shot-{SCREEN}").get_attribute("src"))
    assert _red_share(during) > 0.5 and _red_share(img) < 0.2, (_red_share(during), _red_share(img))
    d.get(store_url)  # from the top (the request's answer scrolls to the screen's row)
    _shot(d, "store-screens")
    d.get(server.base + "/fleet")
    live = d.find_element("css selector", f'#store-screens tr[data-store="{STORE}"]')
    assert int(live.get_attribute("data-showing") or 0) >= 1

    # Cleared from the store page: the player goes back to its content, the console sees it.
    d.get(store_url)
    d.find_element("id", "em-clear").click()
    assert wait_for(lambda: _css(d, "#confirm"), 10)
    d.find_element("id", "confirm").click()
    assert wait_for(lambda: _css(d, "#notice"), 30)
    assert wait_for(lambda: bus.last().get("mode") not in (None, "override"), 30), box.tail()
    assert _reload_until(d, store_url, lambda: obeying("no"), 30), box.tail()
    assert "normal content" in (_screen_row(d) or {})["text"]


def test_a_fleet_emergency_needs_the_operator_role_and_the_session_s_token(
    server: Server,
) -> None:
    """A viewer, a form without the CSRF token, an empty title and a screenshot of a screen no
    box reports: each said, nothing published to any store."""
    from tests.central.test_console import _client, _token
    from tests.central.test_console import _login as http_login

    got: queue.Queue[str] = queue.Queue()
    sub = make_client(f"t-all-cmds-{uuid.uuid4().hex[:6]}", server.broker)
    ready = threading.Event()
    sub.on_connect = lambda c, *a: c.subscribe("stores/+/cmd/#", 1)
    sub.on_subscribe = lambda *a: ready.set()
    sub.on_message = lambda c, u, m: got.put(m.topic)
    connect(sub, server.broker, clean_start=True, session_expiry_s=0)
    sub.loop_start()
    assert ready.wait(10)
    form = {"step": "send", "action": "emergency", "title": "FORGED"}
    try:
        with _client(server, "127.0.0.8") as op, _client(server, "127.0.0.9") as viewer:
            assert http_login(op, "otto").status_code == 303
            assert http_login(viewer, "vic").status_code == 303
            r = op.post("/fleet/emergency", data=form)
            assert r.status_code == 403 and "CSRF check failed" in r.text
            vtoken = _token(viewer.get("/fleet").text)
            r = viewer.post("/fleet/emergency", data={**form, "csrf": vtoken})
            assert r.status_code == 403 and "needs the operator role" in r.text
            assert "Broadcasting an emergency needs the operator role" in viewer.get("/fleet").text
            token = _token(op.get("/fleet").text)
            r = op.post("/fleet/emergency", data={**form, "title": "  ", "csrf": token})
            assert r.status_code == 400 and "an emergency needs a title" in r.text
            r = op.post(f"/stores/{STORE}/screenshot", data={"screen": "nope", "csrf": token})
            assert r.status_code == 400 and "reports a screen &#39;nope&#39;" in r.text
            # The confirmation step of a real one sends nothing either.
            r = op.post("/fleet/emergency", data={**form, "step": "confirm", "csrf": token})
            assert r.status_code == 200 and 'id="confirm"' in r.text
        # Whatever would have been published is in by the time a fresh publish round-trips.
        probe = f"stores/probe-{uuid.uuid4().hex[:6]}/cmd/command"
        sub.publish(probe, b"probe", qos=1).wait_for_publish(10)
        assert got.get(timeout=10) == probe
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_the_kpi_page_reads_watchers_dwell_attention_nps_effort_and_time_to_value(
    server: Server, browser: Any
) -> None:
    """The demo CDP's camera tracks, survey answers and boxes' heartbeats, as the page's table,
    chart and CSV show them: the same figures as ``experience_rows`` reads from the CDP."""
    import csv
    import io
    from datetime import date
    from zoneinfo import ZoneInfo

    from central.cdp_sink import CdpSink
    from central.console.kpis import experience_rows
    from contracts.mqtt import BrokerConfig

    d = browser
    _login(d, server, "vic")
    d.get(f"{server.base}/kpis?store={STORE}")
    assert wait_for(lambda: _css(d, "#chart-watchers svg"), 10)
    table = [
        [td.text for td in tr.find_elements("css selector", "td")]
        for tr in _css(d, "#experience tbody tr[data-day]")
    ]
    assert len(table) == 7  # a week of one store
    sink = CdpSink(BrokerConfig(), server.work / "cdp.db", group=None)
    try:
        want = experience_rows(
            sink, date.fromisoformat(table[0][0]), date.fromisoformat(table[-1][0]),
            ZoneInfo("Europe/Berlin"), store=STORE,
        )  # fmt: skip
    finally:
        sink.stop()
    assert [(r[0], int(r[2]), int(r[3])) for r in table] == [
        (w.day.isoformat(), w.visits, w.watchers) for w in want
    ]
    for row, w in zip(table, want, strict=True):
        assert w.avg_dwell_s is not None and row[4] == f"{w.avg_dwell_s:.1f} s"
        assert w.nps is not None and row[6].startswith(f"{w.nps:+.0f} (n={w.nps_answers})")
        assert w.effort is not None and row[7].startswith(f"{w.effort:.2f}")
        assert w.time_to_value_s is not None and row[8] == f"{w.time_to_value_s:.0f} s"
    # One bar per day (one store): each the table's watchers of its day.
    bars = _css(d, "#chart-watchers rect.bar")
    assert [b.get_attribute("data-value") for b in bars] == [r[3] for r in table]
    _shot(d, "kpis-experience")
    d.find_element("id", "csv-experience").click()
    files: list[Path] = []
    assert wait_for(lambda: files.extend(d.downloads.glob("experience_*.csv")) or files, 15)
    assert wait_for(lambda: not list(d.downloads.glob("*.crdownload")), 10)
    rows = list(csv.DictReader(io.StringIO(files[0].read_text())))
    assert [(r["day"], r["watchers"], r["nps_answers"]) for r in rows] == [
        (w.day.isoformat(), str(w.watchers), str(w.nps_answers)) for w in want
    ]


class Occupancy:
    """The agent's own retained occupancy on the in-store bus: what the kiosks show."""

    def __init__(self, server: Server) -> None:
        self.people: dict[str, int] = {}
        self.client = make_client(f"t-occ-{uuid.uuid4().hex[:6]}", server.broker)
        ready = threading.Event()
        self.client.on_connect = lambda c, *a: c.subscribe(topics.zone_occupancy(STORE), 1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = lambda c, u, m: self.people.update(
            {m.topic.split("/")[3]: json.loads(m.payload)["people"]} if m.payload else {}
        )
        connect(self.client, server.broker, clean_start=True, session_expiry_s=0)
        self.client.loop_start()
        assert ready.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_store_page_shows_people_per_zone_and_the_staff_alert_of_a_dark_screen(
    server: Server, store_box: tuple[StoreBox, BusStates], browser: Any
) -> None:
    """Last in this module: it stops the player."""
    box, _ = store_box
    d = browser
    _login(d, server, "vic")  # reading the store live needs no more than the viewer role
    store_url = f"{server.base}/stores/{STORE}"
    occ = Occupancy(server)
    try:
        # People per zone as the console shows them are the agent's counts on the bus.
        def same() -> bool:
            d.get(store_url)
            shown = {
                r.get_attribute("data-zone"): int(r.get_attribute("data-people") or -1)
                for r in _css(d, "#zones tbody tr[data-zone]")
            }
            return set(shown) == {"entrance", "womens"} and shown == occ.people

        assert wait_for(same, 60, step=0.5), box.tail()
    finally:
        occ.close()
    assert not _css(d, '#alerts tr[data-kind="screen_offline"]')
    # The player stops: its box raises a staff alert for the kiosks, and ops see it too.
    terminate(box.player)

    def alert() -> bool:
        d.get(store_url)
        rows = _css(d, '#alerts tr[data-kind="screen_offline"]')
        return bool(rows) and f"Screen {SCREEN} is offline" in rows[0].text

    assert wait_for(alert, 60, step=0.5), box.tail()
    row = _screen_row(d)
    assert row is not None and "offline" in row["text"]
    _shot(d, "store-live")
