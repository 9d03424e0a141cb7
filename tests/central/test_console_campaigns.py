"""The console's Campaigns page for real: the console in its own process (the fixtures of
test_console.py), headless Chromium pasting bundles, previews drawn by the player's own
templates in a subprocess, and a push signed on the one push path that a box's real Downlink
verifies and applies with the box's own ContentStore.

EDGE_UPDATE_DOCS=1 refreshes docs/console/campaigns.png."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from contracts import topics
from contracts.signing import load_public_key, verify_message
from edge_agent.journey.campaigns import CampaignBundle
from edge_agent.journey.content_store import ContentStore
from sync.downlink import Downlink
from tests.central import test_console as base
from tests.central.test_console import (
    SHOTS,
    STORE,
    Server,
    Watch,
    _client,
    _css,
    _login,
    _password,
    _token,
)
from tests.watching import wait_for

# The console's fixtures, shared by name: the console in its own process on its own broker,
# headless Chromium, a subscriber to the store's signed commands.
console_broker = base.console_broker
server = base.server
browser = base.browser
watch = base.watch

pytestmark = pytest.mark.timeout(240)
DEVICE = "box-campaigns"

VALID: dict[str, Any] = {
    "version": 7,
    "default": [
        {
            "content_id": "welcome",
            "variant": {"title": "Welcome to Northwind", "body": "Ask us about today's offers"},
        }
    ],
    "campaigns": [
        {
            "id": "winter-boots",
            "priority": 10,
            "anonymous": {
                "template": "offer_card",
                "title": "Winter boots -20%",
                "body": "Waterproof, warm, every size in store",
                "price": 79.9,
                "was_price": 99.9,
                "badge": "-20 %",
            },
            "personalised": {
                "template": "welcome",
                "title": "Welcome back, {first_name}!",
                "body": "Your winter boots are 20% off today.",
                "background": "#fbf7f0",
                "accent": "#c8102e",
            },
        }
    ],
}
# The anonymous variant's title is longer than a card takes: the field is named, nothing sent.
BROKEN = json.loads(json.dumps(VALID))
BROKEN["campaigns"][0]["anonymous"]["title"] = "x" * 130
BROKEN_FIELD = "campaigns.campaigns.0.anonymous.title"


@dataclass
class CampaignBox:
    downlink: Downlink
    store: ContentStore
    applied: list[CampaignBundle]


@pytest.fixture(scope="module")
def campaign_box(server: Server) -> Iterator[CampaignBox]:
    """A box's real Downlink (signature, version, expiry) applying campaigns with the box's
    own ContentStore (the full validation, then an atomic replace)."""
    store = ContentStore(server.work / "box-state")
    applied: list[CampaignBundle] = []
    dl = Downlink(
        server.broker, STORE, DEVICE, load_public_key(server.public_key),
        server.work / "box-campaigns-downlink.json",
        appliers={"campaigns": lambda body: applied.append(store.replace(body))},
    )  # fmt: skip
    assert dl.start(wait_s=10)
    try:
        yield CampaignBox(dl, store, applied)
    finally:
        dl.stop()


def _paste(d: Any, doc: dict[str, Any]) -> None:
    text = json.dumps(doc, indent=2)
    d.execute_script("arguments[0].value = arguments[1];", d.find_element("id", "bundle"), text)


def _png(server: Server, d: Any, src: str) -> np.ndarray:
    """The preview as the browser's session fetches it, decoded: a real PNG or a failure."""
    cookies = {c["name"]: c["value"] for c in d.get_cookies()}
    r = httpx.get(src, cookies=cookies, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", src
    assert r.content.startswith(b"\x89PNG\r\n\x1a\n")
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_an_operator_checks_previews_and_pushes_a_campaign_bundle_a_box_applies(
    server: Server, campaign_box: CampaignBox, watch: Watch, browser: Any
) -> None:
    d = browser
    d.get(server.base + "/campaigns")
    assert wait_for(lambda: _css(d, "#login"), 10)
    d.find_element("id", "name").send_keys("otto")
    d.find_element("id", "password").send_keys(_password("otto"))
    d.find_element("id", "login").click()
    assert wait_for(lambda: _css(d, "#pushed"), 10)
    assert _css(d, f'#pushed tr[data-store="{STORE}"]')

    # A broken bundle: the field is named, no preview, no push form, nothing published.
    _paste(d, BROKEN)
    d.find_element("id", "check").click()
    assert wait_for(lambda: _css(d, "#bundle-error"), 15)
    said = d.find_element("id", "bundle-error").text
    assert BROKEN_FIELD in said and "at most 120 characters" in said, said
    assert "nothing was pushed" in said
    assert not _css(d, "#push") and not _css(d, "img.preview-img")
    # What was pasted is still there to fix.
    assert json.loads(d.find_element("id", "bundle").get_attribute("value")) == BROKEN

    # A valid one: checked, and every variant drawn by the player in both shapes.
    _paste(d, VALID)
    d.find_element("id", "check").click()
    assert wait_for(lambda: _css(d, "#bundle-ok"), 90)
    assert "valid" in d.find_element("id", "bundle-ok").text
    imgs = _css(d, "img.preview-img")
    kinds = {(i.get_attribute("data-kind"), i.get_attribute("data-shape")) for i in imgs}
    assert kinds == {(k, s) for k in ("default", "anonymous", "personalised")
                     for s in ("landscape", "portrait")}  # fmt: skip
    assert wait_for(
        lambda: all(d.execute_script("return arguments[0].naturalWidth", i) > 0 for i in imgs),
        15,
    )
    for i in imgs:
        img = _png(server, d, i.get_attribute("src"))
        h, w = img.shape[:2]
        assert (w, h) == (
            (960, 540) if i.get_attribute("data-shape") == "landscape" else (540, 960)
        )
        # Not blank: a card's words on its background (many pixels far from the commonest).
        flat = img.reshape(-1, 3).astype(int)
        colours, counts = np.unique(flat, axis=0, return_counts=True)
        background = colours[counts.argmax()]
        drawn = (np.abs(flat - background).sum(axis=1) > 60).mean()
        assert 0.01 < drawn < 0.9, (i.get_attribute("data-label"), drawn)
    # The personalised variant greets the sample shopper; the anonymous one is the offer.
    labels = [i.get_attribute("data-label") for i in imgs]
    assert "winter-boots: personalised (sample shopper Alex)" in labels
    assert watch.got.empty()  # checking sent nothing
    _shot_page(d)

    # Push: signed on the one push path, verified and applied by the box.
    from selenium.webdriver.support.ui import Select

    Select(d.find_element("id", "push-store")).select_by_value(STORE)
    d.find_element("id", "push").click()
    assert wait_for(lambda: _css(d, "#notice"), 20)
    topic, raw = watch.next()
    assert topic == topics.store_cmd(STORE, "campaigns")
    msg = verify_message(server.public_key, raw, STORE, DEVICE)
    assert msg.kind == "campaigns" and msg.body == VALID
    assert f"signed campaigns v{msg.version}" in d.find_element("id", "notice").text
    assert wait_for(lambda: campaign_box.applied, 10)
    assert campaign_box.applied[-1].version == 7
    assert campaign_box.store.bundle.campaigns[0].id == "winter-boots"
    # The page lists it per store, and Edit loads it back into the editor.
    row = d.find_element("css selector", f'#pushed tr[data-store="{STORE}"]')
    assert "v7" in row.text and "otto" in row.text and f"campaigns v{msg.version}" in row.text
    row.find_element("css selector", "a.edit").click()
    assert wait_for(lambda: _css(d, "#bundle") and d.find_element("id", "bundle").text, 10)
    assert json.loads(d.find_element("id", "bundle").get_attribute("value")) == VALID
    assert watch.got.empty()

    # The audit log has the push with who did it.
    with _client(server, "127.0.0.9") as admin:
        assert _login(admin, "ada").status_code == 303
        page = admin.get("/admin/audit").text
    assert "<td>otto</td>" in page and "signed campaigns v" in page and "bundle v7" in page


def test_a_viewer_a_forged_form_and_a_broken_bundle_push_nothing(
    server: Server, watch: Watch
) -> None:
    path = "/campaigns/push"
    good = {"store": STORE, "bundle": json.dumps(VALID)}
    with _client(server, "127.0.0.10") as op, _client(server, "127.0.0.11") as viewer:
        assert _login(op, "otto").status_code == 303
        assert _login(viewer, "vic").status_code == 303
        # No token: refused before anything is read.
        r = op.post(path, data=good)
        assert r.status_code == 403 and "CSRF check failed" in r.text
        # The viewer sees the page but may not check nor push.
        page = viewer.get("/campaigns")
        assert page.status_code == 200 and "needs the operator role" in page.text
        token = _token(page.text)
        for p in (path, "/campaigns/check"):
            r = viewer.post(p, data={**good, "csrf": token})
            assert r.status_code == 403 and "needs the operator role" in r.text, p
        # A broken bundle posted straight to push (no check step): the field named, nothing sent.
        token = _token(op.get("/campaigns").text)
        r = op.post(path, data={"csrf": token, "store": STORE, "bundle": json.dumps(BROKEN)})
        assert r.status_code == 400 and BROKEN_FIELD in r.text
        r = op.post(path, data={"csrf": token, "store": STORE, "bundle": "{not json"})
        assert r.status_code == 400 and "not JSON" in r.text
        # A preview is only for a session.
        assert httpx.get(f"{server.base}/campaigns/previews/{'0' * 32}.png").status_code == 303
        assert op.get(f"/campaigns/previews/{'0' * 32}.png").status_code == 404
        assert op.get("/campaigns/previews/..%2Faccounts.db").status_code == 404
    assert watch.got.empty()


def _shot_page(d: Any) -> None:
    if os.environ.get("EDGE_UPDATE_DOCS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        height = d.execute_script("return document.documentElement.scrollHeight")
        d.set_window_size(1360, max(700, min(int(height) + 20, 2200)))
        d.save_screenshot(str(Path(SHOTS) / "campaigns.png"))
        d.set_window_size(1360, 900)


def test_previews_are_drawn_once_per_content_and_a_stuck_player_times_out(tmp_path: Path) -> None:
    from central.console.campaigns import Previewer, PreviewError, check, previews

    shown = previews(check(json.dumps(VALID)))
    assert len(shown) == 6 and len({p.key for p in shown}) == 6
    with pytest.raises(PreviewError, match="did not draw the landscape previews in 0 s"):
        Previewer(tmp_path / "stuck", timeout_s=0.05).render(shown)
    pv = Previewer(tmp_path / "cache")
    pv.render(shown)
    assert all((pv.cache_dir / f"{p.key}.png").is_file() for p in shown)
    stamps = {p.key: (pv.cache_dir / f"{p.key}.png").stat().st_ino for p in shown}
    assert pv.render(shown) < 0.5  # all cached: no player started
    assert stamps == {p.key: (pv.cache_dir / f"{p.key}.png").stat().st_ino for p in shown}
    # A changed word is another picture.
    other = json.loads(json.dumps(VALID))
    other["campaigns"][0]["anonymous"]["title"] = "Winter boots -25%"
    changed = {p.key for p in previews(check(json.dumps(other)))} - set(stamps)
    assert len(changed) == 2  # the anonymous variant, in both shapes
    assert pv.path("../accounts") is None and pv.path(shown[0].key) is not None


def test_a_preview_draws_the_variants_photo_from_the_ops_content(tmp_path: Path) -> None:
    """A variant naming a photo by sha256 is previewed with the photo when this host's
    content directory holds it (as the screens will show it once it is pushed), and text-led
    without it (as a box without the file would)."""
    import hashlib

    import cv2
    import numpy as np

    from central.console.campaigns import Previewer, check, previews

    photo = np.zeros((360, 480, 3), np.uint8)
    photo[:] = (0, 140, 255)  # orange, BGR
    cv2.circle(photo, (240, 180), 90, (255, 255, 255), -1)
    data = cv2.imencode(".png", photo)[1].tobytes()
    sha = hashlib.sha256(data).hexdigest()
    content = tmp_path / "content"
    (content / "assets").mkdir(parents=True)
    (content / "assets" / sha).write_bytes(data)  # a box's content cache: assets/<sha256>
    bundle = json.loads(json.dumps(VALID))
    bundle["campaigns"][0]["anonymous"]["image_sha256"] = sha
    shown = [p for p in previews(check(json.dumps(bundle))) if p.kind == "anonymous"]
    assert shown and all(p.content.image_sha256 == sha for p in shown)

    def orange_share(pv: Previewer) -> float:
        pv.render(shown)
        img = cv2.imread(str(pv.cache_dir / f"{shown[0].key}.png"))
        return float(np.all(np.abs(img.astype(int) - (0, 140, 255)) < 30, axis=2).mean())

    assert orange_share(Previewer(tmp_path / "with", content_dir=content)) > 0.03
    assert orange_share(Previewer(tmp_path / "without")) < 0.002
