"""The local store API, served for real (`edge-agent api` in its own process on a loopback port)
and asked by a real HTTP client: the demo store's map with its ETag, its beacons (never a key),
product search, routes that are the CLI's routes, one-line 4xx for anything malformed (never a
500, whatever the query), bounded queries, a rate limit per client, and the phone's route page
that a kiosk's QR code opens, drawn in a real headless Chromium."""

from __future__ import annotations

import json
import math
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.kiosk_finder import DeepLink
from demo import scenario
from edge_agent.wayfinding.planogram_store import PlanogramStore, load_file
from testbed.broker import free_port
from testbed.procs import terminate
from tests.app.test_agent_journey import demo_config
from tests.watching import wait_for

REPO = Path(__file__).resolve().parents[2]
EXE = os.path.join(os.path.dirname(sys.executable), "edge-agent")
STORE = "store-0042"


def _write_config(tmp_path: Path) -> Path:
    """The demo store's agent.toml with its state in ``tmp_path`` and the demo planogram in it
    (as a push or an ERP import leaves it)."""
    from demo.runner import write_runtime_toml

    cfg = demo_config(tmp_path, free_port(), "bm90LXVzZWQtaGVyZQ==", camera=False)
    path = tmp_path / "store.toml"
    write_runtime_toml(cfg, path)
    store = PlanogramStore(cfg.paths_resolved.state_dir / "planogram.db", STORE)
    store.replace(load_file(scenario.PLANOGRAM, version=3))
    store.close()
    return path


class Api:
    def __init__(
        self,
        tmp_path: Path,
        *extra: str,
        scheme: str = "http",
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.cfg = _write_config(tmp_path)
        self.port = free_port()
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        self.log = open(tmp_path / f"api-{self.port}.log", "wb")  # noqa: SIM115
        args = [EXE, "api", "-c", str(self.cfg), "--port", str(self.port), *extra]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.base, timeout=10, verify=verify)

        def up() -> bool:
            try:
                return self.http.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_for(up, 30), (tmp_path / f"api-{self.port}.log").read_text()

    def close(self) -> None:
        self.http.close()
        terminate(self.proc)
        self.log.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    a = Api(tmp_path_factory.mktemp("api"), "--rate", "1000", "--burst", "1000")
    try:
        yield a
    finally:
        a.close()


def test_openapi_describes_every_endpoint(api: Api) -> None:
    doc = api.http.get("/openapi.json").json()
    assert {"/v1/map", "/v1/beacons", "/v1/products", "/v1/route"} <= set(doc["paths"])
    params = {p["name"] for p in doc["paths"]["/v1/route"]["get"]["parameters"]}
    assert {"from", "to", "lang", "accessible"} <= params


def test_the_map_comes_with_its_version_and_etag(api: Api) -> None:
    r = api.http.get("/v1/map")
    assert r.status_code == 200 and r.headers["etag"].startswith('"map-')
    body = r.json()
    assert body["store_id"] == STORE and body["version"]
    assert {"manifest.json", "unit.geojson", "opening.geojson"} <= set(body["imdf"])
    assert body["imdf"]["unit.geojson"]["type"] == "FeatureCollection"
    again = api.http.get("/v1/map", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert "set-cookie" not in r.headers


def test_beacons_give_place_and_power_never_a_key(api: Api) -> None:
    body = api.http.get("/v1/beacons").json()
    names = {b["name"] for b in body["beacons"]}
    assert names == {"entrance-door", "entrance-shelf", "womens-rack"}
    door = next(b for b in body["beacons"] if b["name"] == "entrance-door")
    assert (door["major"], door["minor"], door["level_ordinal"]) == (100, 1, 0)
    imdf_levels = api.http.get("/v1/map").json()["imdf"]["level.geojson"]["features"]
    assert door["level"] in {f["id"] for f in imdf_levels}
    assert door["measured_power"] == -59 and door["calibrated"] is True
    assert door["uuid"] == scenario.STORE_BEACON_UUID
    assert "eik" not in json.dumps(body) and "address" not in json.dumps(body)


def test_search_forgives_typos_and_languages(api: Api) -> None:
    r = api.http.get("/v1/products", params={"q": "trialschuh", "lang": "de"})
    assert r.status_code == 200, r.text
    first = r.json()["results"][0]
    assert first["sku"].startswith("SKU-RIDGE") and first["routable"] is True
    assert r.json()["planogram_version"] == 3


def test_a_route_is_the_clis_route(api: Api) -> None:
    params = {"from": "kiosk:kiosk-1", "to": "sku:SKU-RIDGE-GTX-42", "lang": "de"}
    body = api.http.get("/v1/route", params=params).json()
    cli = subprocess.run(
        [EXE, "map", "route", str(REPO / "demo" / "store-map.toml"), "--from", "kiosk:kiosk-1",
         "--to", "sku:SKU-RIDGE-GTX-42", "--lang", "de", "--planogram", str(scenario.PLANOGRAM)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    want = json.loads(cli.stdout)
    for key in ("distance_m", "walking_time_s", "levels", "steps", "path"):
        assert body[key] == want[key], key
    assert body["drawing"]["destination_level"] == body["levels"][0]["id"]
    # Upstairs, accessible: the lift, never the stairs.
    up = api.http.get(
        "/v1/route",
        params={"from": "kiosk:kiosk-1", "to": "sku:SKU-PACK-30L", "accessible": "true"},
    ).json()
    assert up["accessible"] is True and "stairs" not in up["uses"] and len(up["levels"]) == 2


@pytest.mark.parametrize(
    ("path", "params", "status", "words"),
    [
        ("/v1/route", {"from": "kiosk:kiosk-1", "to": "Aisle 99"}, 404, "Aisle 99"),
        ("/v1/route", {"from": "kiosk:kiosk-1", "to": "sku:SKU-GIFT-CARD-50"}, 404, "no location"),
        ("/v1/route", {"from": "kiosk:kiosk-1", "to": "Stock room"}, 422, "staff"),
        ("/v1/route", {"from": "kiosk:kiosk-1"}, 400, "to: Field required"),
        ("/v1/route", {"from": "<script>", "to": "x"}, 400, "from: String should match"),
        ("/v1/products", {"q": "!!!"}, 400, "no letters or digits"),
        ("/v1/products", {"q": "tent", "lang": "english"}, 400, "lang"),
        ("/v1/products", {"q": "tent", "limit": "0"}, 400, "limit"),
        ("/v1/products", {"q": "x" * 2000}, 414, "query string over"),
        ("/nowhere", {}, 404, "Not Found"),
    ],
)
def test_malformed_requests_get_a_one_line_4xx(
    api: Api, path: str, params: dict, status: int, words: str
) -> None:
    r = api.http.get(path, params=params)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in error and "\n" not in error


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(["/v1/route", "/v1/products", "/v1/map", "/v1/beacons", "/w"]),
    params=st.dictionaries(
        st.sampled_from(["from", "to", "q", "lang", "limit", "accessible", "s", "x", "v", "zz"]),
        st.text(max_size=40),
        max_size=5,
    ),
)
def test_no_query_makes_it_fail(api: Api, path: str, params: dict) -> None:
    r = api.http.get(path, params=params)
    assert r.status_code < 500, (path, params, r.text)


def test_a_body_too_big_is_refused_unread(api: Api) -> None:
    r = api.http.post("/v1/route", content=b"x" * 20_000)
    assert r.status_code == 413 and "request body over" in r.json()["error"]


def test_a_client_asking_too_fast_is_slowed_and_others_are_not(tmp_path: Path) -> None:
    a = Api(tmp_path, "--rate", "2", "--burst", "5")
    # Another phone: another source address on the loopback network.
    other = httpx.Client(
        base_url=a.base, transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10
    )
    try:
        codes = [a.http.get("/v1/beacons").status_code for _ in range(12)]
        assert codes[:5] == [200] * 5 and 429 in codes[5:]
        slow = a.http.get("/v1/beacons")
        assert slow.status_code == 429 and int(slow.headers["retry-after"]) >= 1
        assert "too many requests" in slow.json()["error"]
        assert other.get("/v1/beacons").status_code == 200
        # The bucket refills: a token is back within a second.
        assert wait_for(lambda: a.http.get("/v1/beacons").status_code == 200, 5)
    finally:
        other.close()
        a.close()


def test_a_kiosks_qr_link_opens_the_route_page_in_a_browser(api: Api) -> None:
    """The deep link the kiosk puts in its QR code (contracts/kiosk_finder.py), opened in a real
    headless Chromium: the page asks the API and draws the way, and says nothing of anyone."""
    from selenium import webdriver as selenium
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    m = api.http.get("/v1/map").json()["version"]
    link = DeepLink(
        base=f"{api.base}/w", store=STORE, map_version=m, from_ref="kiosk:kiosk-1",
        to_ref="sku:SKU-PACK-30L", lang="de", expires=int(time.time()) + 600,
    ).url()  # fmt: skip
    expired = link.replace(f"&x={link.rsplit('&x=', 1)[1]}", "&x=1000")
    assert api.http.get(expired).status_code == 410
    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=400,900",
    ):
        opts.add_argument(arg)
    driver = selenium.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(link)
        assert wait_for(lambda: driver.find_elements("css selector", "#steps li"), 15)
        title = driver.find_element("id", "title").text
        assert title.startswith("Tagesrucksack"), title
        # Two levels drawn (the pack is upstairs), the route on each, here and there marked.
        svgs = driver.find_elements("css selector", "svg")
        assert len(svgs) == 2
        assert len(driver.find_elements("css selector", "svg polyline.route")) == 2
        assert svgs[0].find_elements("css selector", "circle.here")
        assert svgs[1].find_elements("css selector", "circle.destination")
        assert "geradeaus" in driver.find_element("id", "steps").text
        assert driver.get_cookies() == []
        shot = REPO / "docs" / "phone-route.png"
        if os.environ.get("EDGE_UPDATE_DOCS"):
            driver.save_screenshot(str(shot))
        driver.get(expired)
        assert wait_for(lambda: "abgelaufen" in driver.find_element("id", "status").text, 10)
    finally:
        driver.quit()


def test_a_phones_scan_gets_a_position_near_the_beacon_it_hears_loudest(api: Api) -> None:
    beacons = {b["name"]: b for b in api.http.get("/v1/beacons").json()["beacons"]}
    door = beacons["entrance-door"]
    scan = {"entrance-door": -52.0, "entrance-shelf": -75.0, "womens-rack": -88.0}
    r = api.http.post("/v1/position", json={"scan": scan, "session": "walk-1"})
    assert r.status_code == 200, r.text
    pos = r.json()
    assert pos["method"] == "beacons" and pos["level"] == 0 and 0 < pos["confidence"] <= 1
    near = math.dist((pos["x"], pos["y"]), (door["x"], door["y"]))
    far = math.dist(
        (pos["x"], pos["y"]), (beacons["womens-rack"]["x"], beacons["womens-rack"]["y"])
    )
    assert near < far, (pos, door)
    assert pos["label"] == "Entrance"
    # Nothing heard: no position, said so, not an error.
    none = api.http.post("/v1/position", json={"scan": {"entrance-door": -200}}).json()
    assert none["method"] == "none" and none["x"] is None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"scan": {"no-such-beacon": -60}}, "no-such-beacon"),
        ({"scan": {"entrance-door": "loud"}}, "scan.entrance-door"),
        ({"scan": {"entrance-door": -60}, "session": "a b"}, "session"),
        ({"scan": {"entrance-door": -60}, "device": "x"}, "device: Extra inputs"),
        ({"scan": {f"b{i}": -60 for i in range(70)}}, "scan"),
        ([], "Input should be a valid dictionary"),
    ],
)
def test_a_malformed_scan_gets_a_one_line_400(api: Api, body: object, words: str) -> None:
    r = api.http.post("/v1/position", json=body)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"] and "\n" not in r.json()["error"]


def test_the_api_speaks_tls_with_the_stores_certificate(tmp_path: Path) -> None:
    """Where the app requires TLS: the store's server certificate from the fleet's private CA
    (`edge-ops pki issue ... server`), checked by the client against that CA."""
    from central.pki import init_ca, issue

    pki = tmp_path / "pki"
    init_ca(pki, days=2)
    made = issue(pki, "server", hosts=["127.0.0.1", "localhost"], days=2)
    a = Api(
        tmp_path, "--certfile", str(made.cert), "--keyfile", str(made.key), scheme="https",
        verify=ssl.create_default_context(cafile=str(pki / "ca.pem")),
    )  # fmt: skip
    try:
        r = a.http.get("/v1/beacons")
        assert r.status_code == 200 and r.json()["beacons"]
        # Plain HTTP to the TLS port is not served.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{a.port}/v1/beacons", timeout=3).raise_for_status()
    finally:
        a.close()
    # Half a pair is refused at start, in one line.
    bad = subprocess.run(
        [EXE, "api", "-c", str(a.cfg), "--certfile", str(made.cert)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "both --certfile and --keyfile" in bad.stderr


@pytest.mark.ui
@pytest.mark.timeout(120)
def test_a_screens_qr_code_hands_the_way_to_the_phone(
    api: Api, tmp_path: Path, kivy_env: dict[str, str], broker
) -> None:
    """The whole hand-off: the agent's wayfinder gives a screen's card its way and a QR code of
    the store API's page; the real player draws it; OpenCV reads the code off the screenshot;
    the link opens the page and the route it names is the card's route."""
    from urllib.parse import parse_qs, urlsplit

    import cv2

    from contracts import topics
    from contracts.screen_protocol import Content, ScreenCommand
    from edge_agent.journey.wayfinding_stage import LinkMaker, ScreenWayfinder, load_venue
    from tests.signage_ui.test_signage_player import load
    from tests.signage_ui.test_signage_screen import STORE as PLAYER_STORE
    from tests.signage_ui.test_signage_screen import Recorder, config, logs, player, pngs

    venue, _ = load_venue(REPO / "demo" / "store-map.toml")
    version = api.http.get("/v1/map").json()["version"]
    wf = ScreenWayfinder(venue, version)
    wf.links = LinkMaker(f"{api.base}/w", STORE, time.time)
    card = Content(
        content_id="way:pickup", title="Your order is ready", body="Counter 2", language="de",
        background="#264653", accent="#e9c46a",
    )  # fmt: skip
    shown = wf.attach(card, "screen-entrance", "Pickup")
    assert shown.wayfinding is not None and shown.qr_url is not None
    # A screen id of this test's own: a retained state another test left on the shared broker
    # must not pass for this player being online (its command would go to nobody).
    screen = f"qr-{uuid.uuid4().hex[:6]}"
    screens = [{"id": screen, "zone": "entrance", "width": 1280, "height": 720}]
    cfg = config(tmp_path, broker.port, screens)
    bus = Recorder(broker.host, broker.port)
    try:
        with player(tmp_path, kivy_env, cfg, screen) as shots:
            assert wait_for(lambda: bus.states(screen), 30), logs(tmp_path)
            bus.publish(
                topics.screen_cmd(PLAYER_STORE, screen),
                ScreenCommand(kind="show", content=shown, min_duration_s=0).to_bytes(),
            )
            assert wait_for(lambda: pngs(shots) and "way_pickup" in pngs(shots)[-1].name, 30), logs(
                tmp_path
            )
            img = load(pngs(shots)[-1])
    finally:
        bus.close()
    link, _pts, _ = cv2.QRCodeDetector().detectAndDecode(img)
    assert link == shown.qr_url
    page = api.http.get(link)
    assert page.status_code == 200 and "/w.js" in page.text
    q = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    assert (q["f"], q["l"], q["s"]) == ("screen:screen-entrance", "de", STORE)
    route = api.http.get("/v1/route", params={"from": q["f"], "to": q["t"], "lang": q["l"]})
    assert route.status_code == 200, route.text
    assert route.json()["drawing"]["destination"] == list(shown.wayfinding.destination)
