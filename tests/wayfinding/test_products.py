"""Products on the map: planogram validation, ranked search that forgives typos and language,
refusal of places the map does not have, storage swapped whole, and `edge-agent map find`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.cli import main
from edge_agent.wayfinding.planogram_store import PlanogramOrderError, PlanogramStore, load_file
from edge_agent.wayfinding.products import (
    Location,
    Planogram,
    PlanogramError,
    Product,
    ProductIndex,
    Refusal,
    Stock,
    fold,
    parse_body,
    parse_csv,
    resolve_sku,
    stock_from_levels,
)

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo" / "data" / "planogram.csv"

HEADER = "sku,brand,category,name_en,name_de,level_id,unit_id,section_id,shelf,x,y,quantity\n"
ROWS = (
    "SKU-RIDGE-GTX-42,Ridgeline,Trail shoes,Ridge GTX trail shoe,Ridge GTX Trailschuh,"
    "L0,unit-aisle-4,sec-4-2,S-4-2,18.5,6,7\n"
    "SKU-BEANIE,Alpenglow,Accessories,Merino beanie,Merino-Mütze,L0,unit-aisle-1,,,5,6,0\n"
    "SKU-TENT-2P,Basecamp,Tents,Dome tent,Kuppelzelt für zwei,,,,,,,3\n"
)


def _index(text: str = HEADER + ROWS) -> ProductIndex:
    return ProductIndex.build(parse_csv(text, 1))


# ---- generated catalogues for the properties -------------------------------------------------
# Words far apart from each other (no two within two edits), as product vocabularies mostly are.
BRANDS = ["Ridgeline", "Northwind", "Alpenglow", "Basecamp", "Kestrel", "Timberline"]
TYPES_EN = ["trail shoe", "rain jacket", "backpack", "sleeping bag", "headlamp", "gloves"]
TYPES_DE = ["Trailschuh", "Regenjacke", "Rucksack", "Schlafsack", "Stirnlampe", "Handschuhe"]
COLOURS_EN = ["black", "orange", "purple", "yellow", "green"]
COLOURS_DE = ["schwarz", "orange", "violett", "gelb", "grün"]


@st.composite
def catalogues(draw: st.DrawFn) -> Planogram:
    combos = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(BRANDS) - 1),
                st.integers(0, len(TYPES_EN) - 1),
                st.integers(0, len(COLOURS_EN) - 1),
            ),
            min_size=1,
            max_size=25,
            unique=True,
        )
    )
    products = []
    for i, (b, t, c) in enumerate(combos):
        in_stock = draw(st.booleans())
        products.append(
            Product(
                sku=f"SKU-{i:04d}",
                names={
                    "en": f"{BRANDS[b]} {TYPES_EN[t]} {COLOURS_EN[c]}",
                    "de": f"{BRANDS[b]} {TYPES_DE[t]} {COLOURS_DE[c]}",
                },
                brand=BRANDS[b],
                category=TYPES_EN[t],
                location=Location("L0", f"unit-{t}", None, None, float(i), 0.0),
                quantity=5 if in_stock else 0,
            )
        )
    return Planogram(1, tuple(products))


def _one_edit(word: str, data: st.DataObject) -> str:
    i = data.draw(st.integers(0, len(word) - 1))
    op = data.draw(st.sampled_from(["sub", "del", "ins"]))
    letter = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz"))
    if op == "sub":
        return word[:i] + letter + word[i + 1 :]
    if op == "del":
        return word[:i] + word[i + 1 :]
    return word[:i] + letter + word[i:]


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(catalogues(), st.data())
def test_a_products_exact_name_in_any_language_comes_first(pg: Planogram, data: st.DataObject):
    p = data.draw(st.sampled_from(pg.products))
    lang = data.draw(st.sampled_from(sorted(p.names)))
    spelled = data.draw(st.sampled_from([str.lower, str.upper, str.title, lambda s: s]))
    hits = ProductIndex.build(pg).search(spelled(p.names[lang]))
    assert hits[0].product.sku == p.sku
    assert hits[0].match == "name"


@SETTINGS
@given(catalogues(), st.data())
def test_an_exact_sku_comes_first(pg: Planogram, data: st.DataObject):
    p = data.draw(st.sampled_from(pg.products))
    hits = ProductIndex.build(pg).search(p.sku.lower())
    assert (hits[0].product.sku, hits[0].match) == (p.sku, "sku")


@SETTINGS
@given(catalogues(), st.data())
def test_one_typo_in_a_long_word_still_finds_it_in_the_top_three(
    pg: Planogram, data: st.DataObject
):
    p = data.draw(st.sampled_from(pg.products))
    words = p.names[data.draw(st.sampled_from(sorted(p.names)))].split()
    k = data.draw(st.sampled_from([k for k, w in enumerate(words) if len(w) >= 5]))
    words[k] = _one_edit(words[k], data)
    hits = ProductIndex.build(pg).search(" ".join(words))
    assert p.sku in [h.product.sku for h in hits[:3]], [h.product.sku for h in hits]


@SETTINGS
@given(catalogues(), st.text(min_size=1, max_size=30), st.integers(1, 40))
def test_results_never_list_a_product_twice_nor_exceed_the_limit(
    pg: Planogram, query: str, limit: int
):
    skus = [h.product.sku for h in ProductIndex.build(pg).search(query, limit=limit)]
    assert len(skus) == len(set(skus)) <= limit


@SETTINGS
@given(catalogues(), st.data())
def test_results_are_ranked_by_match_then_score_then_stock(pg: Planogram, data: st.DataObject):
    query = data.draw(st.sampled_from([*BRANDS, *TYPES_EN, *TYPES_DE, "trail", "gloves orang"]))
    hits = ProductIndex.build(pg).search(query, limit=50)
    order = ["sku", "name", "brand_or_category", "prefix", "fuzzy"]
    keys = [
        (order.index(h.match), -round(h.score), not (h.stock and h.stock.available)) for h in hits
    ]
    assert keys == sorted(keys)


# ---- search, examples ----------------------------------------------------------------------
def test_accents_case_and_german_spellings_are_folded():
    ix = _index()
    assert fold("Merino-MÜTZE Größe") == "merino mutze grosse"
    assert ix.search("merino mutze")[0].product.sku == "SKU-BEANIE"
    assert ix.search("KUPPELZELT FUER ZWEI")[0].product.sku == "SKU-TENT-2P"
    assert ix.search("sku ridge-gtx 42")[0].match == "sku"


def test_a_typo_in_a_sku_still_finds_it():
    hit = _index().search("SKU-RIDGE-GTX-24")[0]
    assert (hit.product.sku, hit.match) == ("SKU-RIDGE-GTX-42", "fuzzy")


def test_prefix_beats_fuzzy_and_nothing_unrelated_is_returned():
    ix = _index()
    assert [h.match for h in ix.search("ridge gt")][:1] == ["prefix"]
    assert ix.search("zzqx vvvv") == []
    assert ix.search("  --  ") == []


def test_in_stock_first_among_equal_matches_and_the_slice_stock_wins():
    text = HEADER + (
        "SKU-A,Northwind,Jackets,Parka one,Parka eins,L0,u1,,,1,1,0\n"
        "SKU-B,Northwind,Jackets,Parka two,Parka zwei,L0,u1,,,1,1,4\n"
    )
    ix = _index(text)
    assert [h.product.sku for h in ix.search("northwind")] == ["SKU-B", "SKU-A"]
    # The slice says otherwise (fresher than the ERP export): it decides.
    slice_stock = stock_from_levels({"SKU-A": True, "SKU-B": False})
    hits = ix.search("northwind", stock=slice_stock)
    assert [h.product.sku for h in hits] == ["SKU-A", "SKU-B"]
    assert hits[0].stock == Stock(available=True)


# ---- refusal -------------------------------------------------------------------------------
def test_a_product_without_a_location_is_refused_with_the_reason():
    hit = _index().search("dome tent", known_places={"unit-aisle-4", "sec-4-2"})[0]
    assert (hit.routable, hit.reason) == (False, "no location on the planogram")


def test_a_shelf_not_on_the_current_map_is_refused_naming_it_and_the_map_version():
    ix = _index()
    hit = ix.search("ridge gtx trail shoe", known_places={"unit-aisle-4"}, map_version=7)[0]
    assert (hit.routable, hit.reason) == (False, "shelf S-4-2 is not on map version 7")
    hit = ix.search("merino beanie", known_places=lambda place: place == "unit-aisle-4")[0]
    assert (hit.routable, hit.reason) == (False, "unit unit-aisle-1 is not on the current map")
    hit = ix.search("ridge gtx trail shoe", known_places={"unit-aisle-4", "sec-4-2"})[0]
    assert (hit.routable, hit.reason) == (True, "")


def test_resolve_sku_gives_the_shelf_or_a_refusal_never_a_stale_place():
    ix = _index()
    places = {"unit-aisle-4", "sec-4-2", "unit-aisle-1"}
    loc = resolve_sku("sku:SKU-RIDGE-GTX-42", ix, places, 7)
    assert loc == Location("L0", "unit-aisle-4", "sec-4-2", "S-4-2", 18.5, 6.0)
    assert resolve_sku("sku:SKU-RIDGE-GTX-42", ix, {"unit-aisle-4"}, 8) == Refusal(
        "sku:SKU-RIDGE-GTX-42", "shelf S-4-2 is not on map version 8"
    )
    assert resolve_sku("sku:SKU-TENT-2P", ix.planogram.by_sku(), places) == Refusal(
        "sku:SKU-TENT-2P", "no location on the planogram"
    )
    assert resolve_sku("sku:NOPE", ix, places) == Refusal(
        "sku:NOPE", "no product NOPE on the planogram"
    )
    with pytest.raises(ValueError, match="expected sku:<sku>"):
        resolve_sku("screen:s1", ix, places)


# ---- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("SKU-X,B,C,Name,Name,L0,u1,,,east,1,", "line 3 (SKU-X): x: expected a number"),
        ("SKU-X,B,C,Name,Name,L0,,,,1,1,", "line 3 (SKU-X): unit_id: missing (the row has a"),
        ("SKU-X,B,C,Name,Name,,,,,,,-2", "line 3 (SKU-X): quantity: Input should be greater"),
        ("SKU-X,B,C,Name,Name,,,,,,,2.5", "line 3 (SKU-X): quantity: expected a whole number"),
        ("SKU-X,B,C,,,,,,,,,", "line 3 (SKU-X): names: Dictionary should have at least 1"),
        ("bad sku!,B,C,Name,Name,,,,,,,", "line 3 (?): sku: String should match pattern"),
        ("SKU-A,B,C,Other,Andere,,,,,,,", "line 3 (SKU-A): sku: duplicate on the planogram"),
        ("SKU-X,B,C,Name,Name,L0,u 1,,,1,1,", "line 3 (SKU-X): unit_id: String should match"),
        ("SKU-X,B,C,Name,Name,,,,,,,,extra", "line 3 (SKU-X): (row): more cells than columns"),
    ],
)
def test_csv_errors_name_the_line_and_the_column(row: str, message: str):
    text = HEADER + "SKU-A,B,C,A name,Ein Name,,,,,,,\n" + row + "\n"
    with pytest.raises(PlanogramError) as exc:
        parse_csv(text, 1)
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_csv_header_errors_name_the_column():
    with pytest.raises(PlanogramError, match=r"^line 1: aisle: unknown column$"):
        parse_csv("sku,aisle\nSKU-A,4\n", 1)
    with pytest.raises(PlanogramError, match=r"^line 1: name_English: expected name_<language"):
        parse_csv("sku,name_English\nSKU-A,x\n", 1)
    with pytest.raises(PlanogramError, match=r"^line 1: sku: missing column$"):
        parse_csv("name_en\nx\n", 1)


def test_json_errors_name_the_row_and_the_field():
    good = {"sku": "SKU-A", "names": {"en": "A"}}
    cases = [
        ({"version": 2, "products": [good, {**good, "sku": "SKU-B", "brand": 3}]}, "products[1] (SKU-B): brand: Input should be a valid string"),
        ({"version": 2, "products": [{**good, "names": {"English": "A"}}]}, "products[0] (SKU-A): names.English.[key]: String should match pattern"),
        ({"version": 2, "products": [{**good, "location": {"level_id": "L0", "unit_id": "u1", "point": [1]}}]}, "products[0] (SKU-A): location.point: List should have at least 2 items"),
        ({"version": 2, "products": [{**good, "colour": "red"}]}, "products[0] (SKU-A): colour: Extra inputs are not permitted"),
        ({"version": "2", "products": []}, "version: expected a whole number"),
        ({"version": 2, "products": [], "aisles": []}, "aisles: unknown field in a planogram"),
        ({"type": "campaigns", "version": 2, "products": []}, "type: expected 'planogram'"),
    ]  # fmt: skip
    for body, message in cases:
        with pytest.raises(PlanogramError) as exc:
            parse_body(body)
        assert str(exc.value).startswith(message), str(exc.value)


# ---- storage -------------------------------------------------------------------------------
def test_the_store_swaps_whole_planograms_in_version_order(tmp_path: Path):
    store = PlanogramStore(tmp_path / "planogram.db", store_id="nw-01")
    assert store.load() is None
    v1 = parse_csv(HEADER + ROWS, 1)
    assert store.replace(v1).products == 3
    body = {"type": "planogram", "store_id": "nw-01", "version": 2, "products": [
        {"sku": "SKU-NEW", "names": {"en": "New thing", "de": "Neues Ding"}, "location": {
            "level_id": "L0", "unit_id": "u1", "section_id": "s1", "shelf": "S-1", "point": [1, 2]}}
    ]}  # fmt: skip
    assert store.apply(body).version == 2
    assert store.apply(body).duplicate  # a redelivery changes nothing
    with pytest.raises(PlanogramOrderError, match="planogram 1 is not newer than 2"):
        store.replace(v1)
    with pytest.raises(PlanogramError, match="^store_id: planogram for store 'other'"):
        store.apply({**body, "store_id": "other", "version": 3})
    store.close()

    again = PlanogramStore(tmp_path / "planogram.db")  # what survives a restart
    pg = again.load()
    assert pg is not None and pg.version == 2
    assert pg.products == parse_body(body).products
    assert ProductIndex.build(pg).search("neues ding")[0].product.sku == "SKU-NEW"
    assert oct((tmp_path / "planogram.db").stat().st_mode & 0o777) == "0o600"
    again.close()


def test_a_failed_swap_leaves_the_old_planogram(tmp_path: Path):
    store = PlanogramStore(tmp_path / "planogram.db")
    store.replace(parse_csv(HEADER + ROWS, 1))
    p = Product("SKU-DUP", {"en": "x"}, "", "", None, None)
    # Two rows with one SKU get past no validation here: the insert fails half-way through.
    with pytest.raises(Exception, match="UNIQUE"):
        store.replace(Planogram(2, (p, p)))
    pg = store.load()
    assert pg is not None and pg.version == 1 and len(pg.products) == 3
    store.close()


def test_the_demo_planogram_loads_in_english_and_german():
    pg = load_file(DEMO)
    ridge = pg.by_sku()["SKU-RIDGE-GTX-42"]
    assert ridge.names == {"en": "Ridge GTX trail shoe", "de": "Ridge GTX Trailschuh"}
    assert ridge.location is not None and ridge.location.shelf == "S-1-2"
    assert all(set(p.names) == {"en", "de"} for p in pg.products)
    assert any(p.location is None for p in pg.products)  # the gift card: nowhere to walk to


# ---- CLI -----------------------------------------------------------------------------------
def _find(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["map", "find", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_find_prints_json_results_in_the_language_asked(capsys, tmp_path: Path):
    places = tmp_path / "places.json"
    places.write_text(json.dumps({"version": 7, "places": ["sales-floor"]}))
    code, out, _ = _find(
        capsys, "trialschuh", "--lang", "de", "--limit", "2",
        "--planogram", str(DEMO), "--places", str(places),
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out)
    first = doc["results"][0]
    assert first["sku"] == "SKU-RIDGE-GTX-42" and first["name"] == "Ridge GTX Trailschuh"
    assert first["stock"] == {"available": True, "quantity": 7}
    assert (first["routable"], first["reason"]) == (False, "shelf S-1-2 is not on map version 7")
    assert len(doc["results"]) <= 2 and doc["map_checked"] is True


def test_find_reads_the_boxs_planogram_db(capsys, tmp_path: Path):
    store = PlanogramStore(tmp_path / "planogram.db")
    store.replace(load_file(DEMO, version=5))
    store.close()
    code, out, _ = _find(capsys, "SKU-GIFT-CARD-50", "--planogram", str(tmp_path / "planogram.db"))
    doc = json.loads(out)
    assert code == 0 and doc["planogram_version"] == 5
    assert doc["results"][0]["reason"] == "no location on the planogram"


def test_find_exit_codes_for_nothing_found_and_bad_input(capsys, tmp_path: Path):
    code, out, err = _find(capsys, "qqqzzz", "--planogram", str(DEMO))
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "nothing on planogram version 0 matches 'qqqzzz'" in err
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "SKU-A,B,C,N,N,L0,u1,,,1,north,\n")
    code, _, err = _find(capsys, "n", "--planogram", str(bad))
    assert (
        code == 2
        and err.strip() == "edge-agent map find: bad.csv: line 2 (SKU-A): y: expected a number"
    )
    assert _find(capsys, "?!", "--planogram", str(DEMO))[0] == 2
    assert _find(capsys, "tent", "--planogram", str(DEMO), "--limit", "0")[0] == 2
    assert _find(capsys, "tent")[0] == 2  # no planogram given
    assert _find(capsys, "tent", "--planogram", str(tmp_path / "none.db"))[0] == 2


@pytest.mark.integration
def test_find_through_the_installed_command(tmp_path: Path):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edge_agent.cli", "map", "find", *args],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )  # fmt: skip

    ok = run("ridge gtx trail shoe", "--planogram", str(DEMO))
    assert ok.returncode == 0 and json.loads(ok.stdout)["results"][0]["sku"] == "SKU-RIDGE-GTX-42"
    none = run("qqqzzz", "--planogram", str(DEMO))
    assert none.returncode == 1 and len(none.stderr.splitlines()) == 1
    assert run("", "--planogram", str(DEMO)).returncode == 2
