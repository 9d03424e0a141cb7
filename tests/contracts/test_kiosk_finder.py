"""The product finder's wire (contracts/kiosk_finder.py): strict, bounded, one-line refusals,
and the deep link read back field by field."""

from __future__ import annotations

import json

import pytest

from contracts.kiosk_finder import (
    DeepLink,
    FinderInputError,
    kiosk_of,
    parse_deep_link,
    parse_find,
    parse_found,
)
from tests.app.test_hostile_input import CORPUS

LINK = DeepLink(
    base="https://store.local/w",
    store="store-0042",
    map_version="a13a0c4556551496",
    from_ref="kiosk:kiosk-1",
    to_ref="sku:SKU-RIDGE-GTX-42",
    lang="de",
    expires=1_800_000_000,
)


def test_the_deep_link_is_what_the_readme_says_and_reads_back() -> None:
    url = LINK.url()
    assert url == (
        "https://store.local/w?v=1&s=store-0042&m=a13a0c4556551496"
        "&f=kiosk:kiosk-1&t=sku:SKU-RIDGE-GTX-42&l=de&x=1800000000"
    )
    assert parse_deep_link(url) == LINK


@pytest.mark.parametrize(
    "url, why",
    [
        ("https://store.local/w", "expected <base>?"),
        (LINK.url().replace("v=1", "v=2"), "v: expected 1"),
        (LINK.url() + "&p=cdp-p-1003", "unknown parameter 'p'"),
        (LINK.url() + "&s=other", "s given twice"),
        (LINK.url().replace("sku:", "sku%3A"), "expected <base>?"),
        (LINK.url().replace("x=1800000000", "x=soon"), "x: expected Unix seconds"),
        (LINK.url().replace("https://store.local", "javascript:alert(1)//"), "base"),
        (LINK.url().replace("l=de", "l=fr"), "lang"),
        (LINK.url() + "#frag", "expected <base>?"),
        ("https://a/w?" + "&".join(["v=1"] * 400), "characters, over 600"),
    ],
)
def test_a_bad_link_is_refused_in_one_line(url: str, why: str) -> None:
    with pytest.raises(FinderInputError) as err:
        parse_deep_link(url)
    assert why in str(err.value) and "\n" not in str(err.value)


def test_requests_are_bounded() -> None:
    req = parse_find(b'{"request_id": "r1", "query": "Trailschuh", "lang": "de"}')
    assert (req.limit, req.route_to) == (6, None)
    for bad, why in (
        (b'{"request_id": "r1", "query": "x", "limit": 13}', "limit"),
        (b'{"request_id": "r1", "query": ""}', "query"),
        (b'{"request_id": "r 1", "query": "x"}', "request_id"),
        (b'{"request_id": "r1", "query": "a\\nb"}', "query"),
        (b'{"request_id": "r1", "query": "x", "extra": 1}', "extra"),
        (b"[]", "expected a JSON object"),
        (b'{"request_id": "r1", "query": "x", "limit": NaN}', "not JSON"),
    ):
        with pytest.raises(FinderInputError, match=why):
            parse_find(bad)
    for what, raw in CORPUS.items():
        with pytest.raises(FinderInputError) as err:
            parse_find(raw)
        assert "\n" not in str(err.value), what


def _reply(**over: object) -> bytes:
    body: dict[str, object] = {
        "request_id": "r1",
        "results": [{"sku": "SKU-1", "name": "Tent", "routable": False, "reason": "no location"}],
    }
    body.update(over)
    return json.dumps(body).encode()


def test_replies_are_checked_whole() -> None:
    assert parse_found(_reply()).results[0].reason == "no location"
    bad_results = [{"sku": "SKU-1", "name": "Tent", "routable": False}]
    with pytest.raises(FinderInputError, match="reason: required"):
        parse_found(_reply(results=bad_results))
    with pytest.raises(FinderInputError, match="results"):
        parse_found(_reply(results=[bad_results[0]] * 13))
    for what, raw in CORPUS.items():
        with pytest.raises(FinderInputError) as err:
            parse_found(raw)
        assert "\n" not in str(err.value), what


def test_kiosk_topics() -> None:
    assert kiosk_of("instore/s1/kiosks/kiosk-1/find", "find").kiosk == "kiosk-1"
    for bad in ("instore/s1/kiosks/+/find", "instore/s1/kiosks/k/found", "x/s1/kiosks/k/find"):
        with pytest.raises(FinderInputError):
            kiosk_of(bad, "find")


def test_a_route_must_lead_to_a_routable_result() -> None:
    from contracts.screen_protocol import Wayfinding, WayLevel

    way = Wayfinding(
        levels=(WayLevel(id="L0", shapes=(), route=((0.0, 0.0), (3.0, 4.0))),),
        here=(0.0, 0.0),
        here_level="L0",
        facing_deg=0.0,
        destination=(3.0, 4.0),
        destination_level="L0",
        destination_label="Tent",
        distance_m=5.0,
        walking_time_s=4,
        steps=(),
    )
    link = LINK.model_copy(update={"to_ref": "sku:SKU-1"}).url()
    route = {"sku": "SKU-1", "wayfinding": way.model_dump(), "distance_m": 5.0, "steps": []}
    ok = json.loads(_reply(route={**route, "deep_link": link}, results=[]))
    ok["results"] = [{"sku": "SKU-1", "name": "Tent", "routable": True}]
    assert parse_found(json.dumps(ok).encode()).route is not None
    with pytest.raises(FinderInputError, match="route: SKU-1 is not a routable result"):
        parse_found(_reply(route={**route, "deep_link": link}))
    with pytest.raises(FinderInputError, match="deep_link: leads to sku:SKU-RIDGE-GTX-42"):
        parse_found(json.dumps({**ok, "route": {**route, "deep_link": LINK.url()}}).encode())
