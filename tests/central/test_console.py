"""The ops console served for real (`edge-ops console` in its own process, uvicorn on a loopback
port) against a real mosquitto, a CDP store seeded through the sink's own ingest, and a box's
real sync parts (its Uplink's retained status, its Downlink verifying signed commands with the
box's own command checks): driven by headless Chromium and by an HTTP client.

EDGE_UPDATE_DOCS=1 refreshes the screenshots in docs/console/."""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.console.demo import STORES, seed
from contracts import topics
from contracts.mqtt import BrokerConfig, connect, make_client
from contracts.signing import load_public_key, verify_message
from edge_agent.config import UplinkConfig
from edge_agent.downlink.commands import emergency_command, parse_command
from sync.downlink import Downlink
from sync.outbox import Outbox
from sync.uplink import Uplink
from testbed.broker import Mosquitto, free_port
from testbed.procs import terminate
from tests.watching import wait_for

REPO = Path(__file__).resolve().parents[2]
EXE = os.path.join(os.path.dirname(sys.executable), "edge-ops")
STORE = "store-0042"  # a demo store; the live box joins it
LIVE = "box-live"
USERS = {"ada": "admin", "otto": "operator", "vic": "viewer"}
PASSWORD = "correct horse battery"
SHOTS = REPO / "docs" / "console"


def _password(name: str) -> str:
    return f"{PASSWORD} {name}"


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[bytes]
    work: Path
    public_key: str
    broker: BrokerConfig


class Watch:
    """Every signed command published for the store, in order (a subscriber of central ops'
    own: it sees what the boxes would be sent)."""

    def __init__(self, broker: BrokerConfig) -> None:
        self.got: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = make_client(f"t-watch-{uuid.uuid4().hex[:6]}", broker)
        ready = threading.Event()
        self.client.on_connect = lambda c, *a: c.subscribe(topics.store_cmd(STORE), qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = lambda c, u, m: self.got.put((m.topic, bytes(m.payload)))
        connect(self.client, broker, clean_start=True, session_expiry_s=0)
        self.client.loop_start()
        assert ready.wait(10)

    def next(self, timeout: float = 10.0) -> tuple[str, bytes]:
        return self.got.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def console_broker() -> Iterator[Mosquitto]:
    """The module's tests share one console, so they share its broker too."""
    with Mosquitto() as m:
        yield m


@pytest.fixture(scope="module")
def server(console_broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    broker = console_broker
    work = tmp_path_factory.mktemp("console")
    keys = work / "keys"
    out = subprocess.run([EXE, "keygen", "--out", str(keys)], capture_output=True, check=True)
    public_key = out.stdout.decode().strip()
    seed(work / "cdp.db")
    (work / "ops.toml").write_text(
        f'[console]\nstate_dir = "state"\ntimezone = "Europe/Berlin"\n'
        f'[cdp]\ndb = "cdp.db"\n'
        f'[broker]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'[signing]\nkey = "keys/ops_private.pem"\n'
    )
    for name, role in USERS.items():
        r = subprocess.run(
            [EXE, "console", "add-user", name, "--role", role, "--config", str(work / "ops.toml")],
            input=_password(name).encode() + b"\n", capture_output=True,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    port = free_port()
    proc = subprocess.Popen(
        [EXE, "console", "--config", str(work / "ops.toml"), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None  # died: stop waiting, the assert says why

    try:
        assert wait_for(up, 30) and proc.poll() is None, proc.stderr and proc.stderr.read()
        b = BrokerConfig(host=broker.host, port=broker.port)
        yield Server(base, proc, work, public_key, b)
    finally:
        terminate(proc)


@dataclass
class Box:
    """The live box's real sync parts: retained status up, signed commands down (checked by
    the box's own rules, the emergency turned into the screens' retained override)."""

    uplink: Uplink
    downlink: Downlink
    outbox: Outbox
    shown: list[dict[str, Any]]


@pytest.fixture(scope="module")
def box(server: Server) -> Iterator[Box]:
    ob = Outbox(server.work / "box-outbox.db")
    up = Uplink(ob, server.broker, STORE, LIVE, UplinkConfig(linger_s=0), config_hash="cfg-7f3a")
    up.start()
    health = {
        "ts": time.time(), "version": "0.1.0", "outbox_depth": 0,
        "sensors": {"content_state": "installed", "content_version": "12", "watchdog": "ok"},
    }  # fmt: skip
    # False until the uplink is connected; retained, so publishing it again is harmless.
    assert wait_for(lambda: up.publish_health(health), 10)
    shown: list[dict[str, Any]] = []

    def apply_command(body: dict[str, Any]) -> None:
        cmd = parse_command(body, ["screen-entrance"])
        shown.append(emergency_command(cmd).model_dump(mode="json"))

    dl = Downlink(
        server.broker, STORE, LIVE, load_public_key(server.public_key),
        server.work / "box-downlink.json", appliers={"command": apply_command},
    )  # fmt: skip
    assert dl.start(wait_s=10)
    try:
        yield Box(up, dl, ob, shown)
    finally:
        dl.stop()
        up.stop(flush_timeout_s=0)
        ob.close()


@pytest.fixture
def watch(server: Server) -> Iterator[Watch]:
    w = Watch(server.broker)
    try:
        yield w
    finally:
        w.close()


def _client(server: Server, address: str = "127.0.0.1") -> httpx.Client:
    return httpx.Client(
        base_url=server.base, timeout=10, follow_redirects=False,
        transport=httpx.HTTPTransport(local_address=address),
    )  # fmt: skip


def _token(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:400]
    return m.group(1)


def _login(c: httpx.Client, name: str, password: str | None = None) -> httpx.Response:
    token = _token(c.get("/login").text)
    return c.post(
        "/login",
        data={"csrf": token, "name": name, "password": password or _password(name), "next": "/"},
    )


# ---- without a browser -------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_health_is_open_and_everything_else_needs_a_session(server: Server) -> None:
    with _client(server) as c:
        assert c.get("/healthz").text == "ok"
        for path in ("/", "/fleet", f"/stores/{STORE}", "/kpis", "/kpis.csv", "/admin/audit"):
            r = c.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
        css = c.get("/static/console.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        # A forged cookie is no session.
        c.cookies.set("ops_session", "abc.def")
        assert c.get("/fleet").status_code == 303
        r = c.get("/login")
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none'


@pytest.mark.timeout(60)
def test_wrong_passwords_are_said_counted_and_slowed_per_client(server: Server) -> None:
    with _client(server, "127.0.0.2") as c, _client(server, "127.0.0.3") as other:
        said = []
        for _ in range(5):
            r = _login(c, "otto", "not the password")
            assert r.status_code == 401 and c.get("/fleet").status_code == 303
            said.append(re.search(r'id="login-error"[^>]*>([^<]+)<', r.text).group(1))  # type: ignore[union-attr]
        assert said[0] == "Wrong name or password. 4 more attempts this minute."
        assert said[4] == "Wrong name or password."
        # The sixth try is refused before the password is even looked at: the right one too.
        r = _login(c, "otto")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "Too many failed logins from your address. Try again in" in r.text
        assert c.get("/fleet").status_code == 303
        # Another address is not slowed by this one.
        assert _login(other, "otto").status_code == 303
        assert other.get("/fleet").status_code == 200
    # An unknown name gets the same words as a wrong password (no user enumeration).
    with _client(server, "127.0.0.7") as third:
        r = _login(third, "nobody-here", "whatever-password")
        assert r.status_code == 401 and "Wrong name or password. 4 more" in r.text


@pytest.mark.timeout(90)
def test_a_forged_form_and_a_viewer_change_nothing(server: Server, box: Box, watch: Watch) -> None:
    path = f"/stores/{STORE}/emergency"
    forged = {"step": "send", "action": "emergency", "title": "FORGED"}
    with _client(server, "127.0.0.4") as op, _client(server, "127.0.0.5") as viewer:
        assert _login(op, "otto").status_code == 303
        assert _login(viewer, "vic").status_code == 303
        # Another site's form: the operator's cookie, no token (or the viewer's token).
        r = op.post(path, data=forged)
        assert (
            r.status_code == 403
            and "CSRF check failed" in r.text
            and "nothing was changed" in r.text
        )
        viewer_token = _token(viewer.get(f"/stores/{STORE}").text)
        assert op.post(path, data={**forged, "csrf": viewer_token}).status_code == 403
        # The viewer, with a valid token of her own: not her role.
        r = viewer.post(path, data={**forged, "csrf": viewer_token})
        assert r.status_code == 403 and "needs the operator role" in r.text
        assert (
            "Broadcasting an emergency needs the operator role"
            in viewer.get(f"/stores/{STORE}").text
        )
        assert viewer.get("/admin/audit").status_code == 403
        # Nothing went out: the first command the store gets is the legitimate one after.
        token = _token(op.get(f"/stores/{STORE}").text)
        r = op.post(path, data={"csrf": token, "step": "send", "action": "emergency",
                                "title": "Legit drill", "body": ""})  # fmt: skip
        assert r.status_code == 303 and r.headers["location"].startswith(f"/stores/{STORE}?done=")
        assert "signed command v" in op.get(r.headers["location"]).text
    _, raw = watch.next()
    msg = verify_message(server.public_key, raw, STORE, LIVE)
    assert msg.body["title"] == "Legit drill" and msg.body["reason"] == "console: otto"
    assert watch.got.empty()
    with _client(server, "127.0.0.6") as admin:
        assert _login(admin, "ada").status_code == 303
        page = admin.get("/admin/audit").text
    assert page.count("refused: CSRF token missing or wrong") >= 2
    assert re.search(r"<td>vic</td>.*?<td>emergency</td>.*?needs the operator role", page, re.S)
    assert re.search(
        r"<td>otto</td>.*?<td>emergency</td>.*?title &#39;Legit drill&#39;", page, re.S
    )


@pytest.mark.timeout(60)
def test_the_emergency_cli_signs_on_the_same_path(server: Server, watch: Watch) -> None:
    key = server.work / "keys" / "ops_private.pem"
    b = server.broker
    r = subprocess.run(
        [EXE, "emergency", "--store", STORE, "--title", "Store closing early", "--key", str(key),
         "--host", b.host, "--port", str(b.port)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["published"] == topics.store_cmd(STORE, "command")
    _, raw = watch.next()
    assert (
        verify_message(server.public_key, raw, STORE, LIVE).body["title"] == "Store closing early"
    )
    bad = subprocess.run(
        [EXE, "emergency", "--store", STORE, "--title", " ", "--key", str(key)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert bad.returncode == 2 and "an emergency needs a title" in bad.stderr


# ---- in a real browser -------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver as selenium
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    if not Path("/usr/bin/chromedriver").exists():
        pytest.skip("chromium-driver is not installed (apt install chromium chromium-driver)")
    downloads = tmp_path_factory.mktemp("downloads")
    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1360,900", "--hide-scrollbars"):  # fmt: skip
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    driver = selenium.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, name: str) -> None:
    if os.environ.get("EDGE_UPDATE_DOCS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1360, max(700, min(int(height) + 20, 1800)))
        driver.save_screenshot(str(SHOTS / f"{name}.png"))
        driver.set_window_size(1360, 900)


def _css(driver: Any, sel: str) -> list[Any]:
    return driver.find_elements("css selector", sel)


@pytest.mark.timeout(180)
def test_an_operator_logs_in_sees_the_fleet_and_broadcasts_an_emergency_a_box_applies(
    server: Server, box: Box, watch: Watch, browser: Any
) -> None:
    d = browser
    d.get(server.base + "/fleet")
    assert wait_for(lambda: _css(d, "#login"), 10)  # sent to the login page
    _shot(d, "login")
    d.find_element("id", "name").send_keys("otto")
    d.find_element("id", "password").send_keys("wrong password!")
    d.find_element("id", "login").click()
    assert wait_for(lambda: _css(d, "#login-error"), 10)
    assert d.find_element("id", "login-error").text.startswith("Wrong name or password.")
    d.find_element("id", "password").send_keys(_password("otto"))
    d.find_element("id", "login").click()
    assert wait_for(lambda: _css(d, "#boxes"), 10)
    assert d.current_url.endswith("/fleet") and d.find_element("id", "whoami").text == "otto"

    # The fleet: six demo boxes from the CDP's heartbeats and the live one from its retained
    # status, once the console's watcher has it.
    def rows() -> dict[str, Any]:
        return {
            f"{r.get_attribute('data-store')}/{r.get_attribute('data-device')}": r
            for r in _css(d, "#boxes tbody tr[data-store]")
        }

    assert wait_for(lambda: f"{STORE}/{LIVE}" in rows() or d.refresh(), 15)
    got = rows()
    assert len(got) == 7 and d.find_element("id", "n-boxes").text == "7"
    live = got[f"{STORE}/{LIVE}"]
    assert live.get_attribute("data-status") == "online" and "cfg-7f3a"[:10] in live.text
    assert "v12 installed" in live.text
    silent = got["store-0311/box-outdoor"]
    assert silent.get_attribute("data-status") == "silent" and "240" in silent.text
    assert "content failed: asset 3f2a" in got["store-0107/box-coffee"].text
    _shot(d, "fleet")
    # Filters.
    from selenium.webdriver.support.ui import Select

    Select(d.find_element("id", "f-state")).select_by_value("silent")
    d.find_element("id", "apply").click()
    assert wait_for(lambda: "state=silent" in d.current_url, 10)
    assert list(rows()) == ["store-0311/box-outdoor"]
    d.get(server.base + "/fleet")

    # The store page, then the emergency: form, confirmation, signed push.
    d.find_element("link text", STORE).click()
    assert wait_for(lambda: _css(d, "#store-name"), 10)
    assert set(rows()) == {f"{STORE}/box-entrance", f"{STORE}/box-shoes", f"{STORE}/{LIVE}"}
    d.find_element("id", "em-title").send_keys("Please leave by the nearest exit")
    d.find_element("id", "em-body").send_keys("Staff will guide you.")
    _shot(d, "store")
    d.find_element("id", "em-start").click()
    assert wait_for(lambda: _css(d, "#preview"), 10)
    assert "Please leave by the nearest exit" in d.find_element("id", "preview").text
    assert watch.got.empty()  # the confirmation step sent nothing
    _shot(d, "confirm")
    d.find_element("id", "confirm").click()
    assert wait_for(lambda: _css(d, "#notice"), 15)
    topic, raw = watch.next()
    assert topic == topics.store_cmd(STORE, "command")
    msg = verify_message(server.public_key, raw, STORE, LIVE)
    assert msg.body == {
        "command": "emergency", "title": "Please leave by the nearest exit",
        "body": "Staff will guide you.", "reason": "console: otto",
    }  # fmt: skip
    assert f"command v{msg.version}" in d.find_element("id", "notice").text
    # The box verified it, applied it and acked; the store page says so.
    assert wait_for(lambda: box.shown, 10)
    assert box.shown[-1]["kind"] == "override"
    assert box.shown[-1]["content"]["title"] == "Please leave by the nearest exit"

    def acked(text: str) -> bool:
        d.refresh()
        return text in rows()[f"{STORE}/{LIVE}"].text

    assert wait_for(lambda: acked(f"command v{msg.version} applied"), 15, step=0.3)
    _shot(d, "store-after-push")
    # Clear it, confirmed the same way.
    d.find_element("id", "em-clear").click()
    assert wait_for(lambda: _css(d, "#confirm"), 10)
    d.find_element("id", "confirm").click()
    assert wait_for(lambda: _css(d, "#notice"), 15)
    _, raw = watch.next()
    cleared = verify_message(server.public_key, raw, STORE, LIVE)
    assert cleared.body["command"] == "clear_emergency" and cleared.version > msg.version
    assert wait_for(lambda: len(box.shown) >= 2 and box.shown[-1]["kind"] == "clear_override", 10)


@pytest.mark.timeout(120)
def test_the_kpi_chart_and_csv_say_what_the_cdp_says(server: Server, browser: Any) -> None:
    from central.cdp_sink import CdpSink
    from central.console.kpis import kpi_rows

    d = browser
    d.get(server.base + "/fleet")
    if _css(d, "#logout"):  # still logged in from another test: log out by the form
        d.find_element("id", "logout").click()
    assert wait_for(lambda: _css(d, "#login"), 10)
    d.find_element("id", "name").send_keys("ada")
    d.find_element("id", "password").send_keys(_password("ada"))
    d.find_element("id", "login").click()
    assert wait_for(lambda: _css(d, "#boxes"), 10)
    d.get(server.base + f"/kpis?store={STORE}")
    assert wait_for(lambda: _css(d, "#chart-ots svg"), 10)
    table = [
        [td.text for td in tr.find_elements("css selector", "td")]
        for tr in _css(d, "#kpis tbody tr")
    ]
    assert len(table) == 7 * 2  # a week, two campaigns at store-0042
    # A bar of the chart is the table's OTS of that campaign and day.
    bars = _css(d, "#chart-ots rect.bar")
    assert len(bars) == 7 * 2
    last = bars[-1]
    campaign, value = last.get_attribute("data-series"), last.get_attribute("data-value")
    day_rows = [r for r in table if r[2] == campaign]
    assert value == day_rows[-1][3]
    # The uplift column is the CDP's figure for that store and day.
    sink = CdpSink(BrokerConfig(), server.work / "cdp.db", group=None)
    try:
        from datetime import date
        from zoneinfo import ZoneInfo

        first = date.fromisoformat(table[0][0])
        want = kpi_rows(sink, first, date.fromisoformat(table[-1][0]), ZoneInfo("Europe/Berlin"),
                        store=STORE)  # fmt: skip
    finally:
        sink.stop()
    assert [r[-1] for r in table] == [w.uplift_text() for w in want]
    assert any("pts (95% CI" in r[-1] for r in table)
    _shot(d, "kpis")
    # The CSV download: the same rows.
    d.find_element("id", "csv").click()
    files: list[Path] = []
    assert wait_for(lambda: files.extend(d.downloads.glob("kpis_*.csv")) or files, 15)
    assert wait_for(lambda: not list(d.downloads.glob("*.crdownload")), 10)
    rows = list(csv.DictReader(io.StringIO(files[0].read_text())))
    assert [(r["day"], r["campaign"], r["ots"]) for r in rows] == [
        (t[0], t[2], t[3]) for t in table
    ]
    assert {r["store"] for r in rows} == {STORE}
    # The audit page (admin): the operator's push, with who and what.
    d.get(server.base + "/admin/audit")
    assert wait_for(lambda: _css(d, "#audit"), 10)
    first = _css(d, "#audit tbody tr")[0].text  # newest first: this login
    assert "ada" in first and "login" in first and "role admin" in first
    _shot(d, "audit")


@pytest.mark.timeout(90)
def test_demo_mode_is_one_command_with_a_one_time_admin_password(
    broker: Any, tmp_path: Path
) -> None:
    """A newcomer's first run: a seeded fleet, an admin whose password is printed once, the
    pages there; and nothing left behind when it stops."""
    cfg = tmp_path / "ops.toml"
    cfg.write_text(f'[broker]\nhost = "{broker.host}"\nport = {broker.port}\n')
    port = free_port()
    proc = subprocess.Popen(
        [EXE, "console", "--demo", "--config", str(cfg), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        m = re.match(r"demo admin: name admin, password (\S+)$", first.strip())
        assert m, first
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_for(up, 30)
        with httpx.Client(base_url=base, timeout=10) as c:
            assert _login(c, "admin", m.group(1)).status_code == 303
            fleet = c.get("/fleet").text
            # The demo's six boxes (the shared test broker may hold other tests' boxes too).
            shown = set(re.findall(r'data-store="([^"]+)" data-device="([^"]+)"', fleet))
            assert {(s, d) for s, ds in STORES.items() for d in ds} <= shown
            assert "Demo fleet: 3 stores" in fleet
            # Certificate days from the heartbeats; the demo box past two thirds stands out.
            assert '<th class="num">Cert days</th>' in fleet
            assert '<td class="num bad">21</td>' in fleet and "fewest certificate days" in fleet
            assert "pts (95% CI" in c.get("/kpis").text
            work = re.search(r"events seeded in (\S+);", fleet).group(1)  # type: ignore[union-attr]
            assert Path(work, "cdp.db").is_file()
            assert (Path(work) / "ops_private.pem").stat().st_mode & 0o777 == 0o600
    finally:
        terminate(proc)
    assert not Path(work).exists()
