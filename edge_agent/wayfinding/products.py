"""Products on the map: the planogram (SKU -> place on the map), a search that forgives typos
and language, and the refusal of a place the current map no longer has.

Pure logic, no I/O: the planogram comes in as text (an ERP's CSV or JSON export, or a downlink
body of kind ``planogram``) and leaves as an index; storage is ``planogram_store.py``.

JSON (export or downlink body)::

    {"type"?: "planogram", "store_id"?: S, "version": N, "products": [
      {"sku": "SKU-RIDGE-GTX-42", "names": {"en": "Ridge GTX trail shoe", "de": "..."},
       "brand": "Ridgeline", "category": "Trail shoes", "quantity"?: 12,
       "location"?: {"level_id": L, "unit_id": U, "section_id"?: S, "shelf"?: "S-4-2",
                     "point": [x, y]}}]}

CSV: one row per SKU with the columns ``sku, brand, category, name_<lang>..., level_id,
unit_id, section_id, shelf, x, y, quantity`` (empty cells are absent values; a row with no
``unit_id`` has no location), read by ``contracts/planogram_csv.py`` (``edge-ops`` reads it
too). Every error is one line naming the row and the field.

Search ranks exact SKU > exact name > exact brand or category > prefix > fuzzy, in stock first
among equal scores. Fuzzy matching is per word (rapidfuzz over the planogram's vocabulary of
words, numpy to add up each product's best word scores): matching whole names against 50,000
SKUs costs 5-100 ms per query, the vocabulary of a catalogue's words is a few thousand entries.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from contracts.planogram_csv import (
    LANG,
    SKU_PATTERN,
    PlanogramCsvError,
    csv_column,
    read_rows,
    sku_of,
)
from contracts.validation import first_error

PLACE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"  # IMDF ids are UUIDs; layouts use slugs

Sku = Annotated[str, StringConstraints(pattern=SKU_PATTERN)]
PlaceId = Annotated[str, StringConstraints(pattern=PLACE_ID)]
Lang = Annotated[str, StringConstraints(pattern=LANG)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Short = Annotated[str, StringConstraints(max_length=64)]

# Ranking tiers, best first in the output (higher is better).
TIER_SKU, TIER_NAME, TIER_BRAND, TIER_PREFIX, TIER_FUZZY = 5, 4, 3, 2, 1
MATCH = {
    TIER_SKU: "sku",
    TIER_NAME: "name",
    TIER_BRAND: "brand_or_category",
    TIER_PREFIX: "prefix",
    TIER_FUZZY: "fuzzy",
}
# Word similarity (rapidfuzz's normalised Indel, 0-100) a query word needs to count as that
# word: one substitution in a 5-letter word scores 80, an insertion or a deletion about 89.
WORD_CUTOFF = 75.0
# Shorter query words get no edit at all (a 3-letter word one edit away is another word), only
# exact and prefix matches.
MIN_FUZZY_WORD = 4
PREFIX_WORD_SCORE = 90.0  # "gor" typed so far matches "gore": the last word is usually unfinished
FUZZY_MIN_SCORE = 60.0  # below this a product shares too little with the query to be shown
RERANK = 64  # fuzzy candidates scored again on their whole names
PREFIX_KEYS_CAP = 256  # a one-letter query must not walk the whole catalogue
PREFIX_PRODUCTS_CAP = 2000


class PlanogramError(ValueError):
    """A refused planogram; the message is one line naming the row and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LocationRow(_Strict):
    level_id: PlaceId
    unit_id: PlaceId
    section_id: PlaceId | None = None
    shelf: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    # [x, y] in the map's metres (JSON has no tuples; a strict tuple would refuse every list).
    point: Annotated[list[float], Field(min_length=2, max_length=2)]


class PlanogramRow(_Strict):
    sku: Sku
    names: dict[Lang, Text] = Field(min_length=1)
    brand: Short = ""
    category: Short = ""
    location: LocationRow | None = None
    # What the ERP export says is on hand; the slice's stock table, fresher, wins when it has
    # the SKU.
    quantity: int | None = Field(None, ge=0)


@dataclass(frozen=True)
class Location:
    """Where a SKU is: a point on a level, in a unit (and a section and shelf of it)."""

    level_id: str
    unit_id: str
    section_id: str | None
    shelf: str | None
    x: float
    y: float

    def to_json(self) -> dict[str, Any]:
        return {
            "level_id": self.level_id,
            "unit_id": self.unit_id,
            "section_id": self.section_id,
            "shelf": self.shelf,
            "point": [self.x, self.y],
        }


@dataclass(frozen=True)
class Product:
    sku: str
    names: Mapping[str, str]
    brand: str
    category: str
    location: Location | None
    quantity: int | None

    def name(self, lang: str) -> str:
        """The name in ``lang`` ("de-AT" falls back to "de"), else English, else any."""
        for key in (lang, lang.split("-", 1)[0], "en"):
            if key in self.names:
                return self.names[key]
        return next(iter(self.names.values()))


@dataclass(frozen=True)
class Planogram:
    version: int
    products: tuple[Product, ...]
    digest: str = ""  # of the validated content: the same push again changes nothing

    def by_sku(self) -> dict[str, Product]:
        return {p.sku: p for p in self.products}


@dataclass(frozen=True)
class Stock:
    available: bool
    quantity: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"available": self.available, "quantity": self.quantity}


@dataclass(frozen=True)
class Refusal:
    """No route: why, in one line a shopper-facing screen or a log can show."""

    ref: str
    reason: str


@dataclass(frozen=True)
class Hit:
    product: Product
    score: float
    match: str  # "sku" | "name" | "brand_or_category" | "prefix" | "fuzzy"
    stock: Stock | None
    routable: bool
    reason: str  # "" when routable

    def to_json(self, lang: str) -> dict[str, Any]:
        p = self.product
        return {
            "sku": p.sku,
            "name": p.name(lang),
            "brand": p.brand,
            "category": p.category,
            "location": p.location.to_json() if p.location else None,
            "stock": self.stock.to_json() if self.stock else None,
            "score": round(self.score, 1),
            "match": self.match,
            "routable": self.routable,
            "reason": self.reason,
        }


KnownPlaces = Callable[[str], bool] | set[str] | frozenset[str]


@runtime_checkable
class MapCheck(Protocol):
    """Known places that can also check a location's geometry against the map (levels, and
    the point inside its unit and shelf): product_places.MapPlaces."""

    def __call__(self, place: str) -> bool: ...

    def misplaced(self, loc: Location) -> str: ...


# ---- parsing ---------------------------------------------------------------------------------
def _product(row: PlanogramRow) -> Product:
    loc = row.location
    return Product(
        sku=row.sku,
        names=dict(row.names),
        brand=row.brand,
        category=row.category,
        location=None
        if loc is None
        else Location(loc.level_id, loc.unit_id, loc.section_id, loc.shelf, *loc.point),
        quantity=row.quantity,
    )


def parse_rows(
    rows: Iterable[Any], version: int, where: Callable[[int], str] | None = None
) -> Planogram:
    """Validate every row (all or nothing); ``where(i)`` names row ``i`` in messages."""
    name = where or (lambda i: f"products[{i}]")
    out: list[Product] = []
    seen: set[str] = set()
    h = hashlib.sha256(str(version).encode())
    for i, raw in enumerate(rows):
        try:
            row = PlanogramRow.model_validate(raw)
        except ValidationError as exc:
            raise PlanogramError(
                f"{name(i)} ({sku_of(raw)}): {first_error(exc, '(row)')}"
            ) from None
        if row.sku in seen:
            raise PlanogramError(f"{name(i)} ({row.sku}): sku: duplicate on the planogram")
        seen.add(row.sku)
        h.update(row.model_dump_json().encode())
        out.append(_product(row))
    return Planogram(version=version, products=tuple(out), digest=h.hexdigest())


def parse_body(body: Any, version: int | None = None) -> Planogram:
    """A JSON export or a downlink body (see the module docstring)."""
    if isinstance(body, list):
        if version is None:
            raise PlanogramError("version: missing (a bare list of products carries none)")
        return parse_rows(body, version)
    if not isinstance(body, dict):
        raise PlanogramError("(root): expected a JSON object or a list of products")
    unknown = sorted(set(body) - {"type", "store_id", "version", "products"})
    if unknown:
        raise PlanogramError(f"{unknown[0]}: unknown field in a planogram")
    if body.get("type", "planogram") != "planogram":
        raise PlanogramError("type: expected 'planogram'")
    v = body.get("version", version)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise PlanogramError("version: expected a whole number >= 0")
    products = body.get("products")
    if not isinstance(products, list):
        raise PlanogramError("products: expected a list")
    return parse_rows(products, v)


def parse_csv(text: str, version: int) -> Planogram:
    """An ERP's CSV export; the version comes from the push (a CSV carries none)."""
    try:
        rows, lines = read_rows(text)
    except PlanogramCsvError as exc:
        raise PlanogramError(str(exc)) from None
    try:
        return parse_rows(rows, version, where=lambda i: f"line {lines[i]}")
    except PlanogramError as exc:
        # Name the CSV column, not the model's field ("x", not "location.point.0").
        head, _, rest = str(exc).partition("): ")
        path, _, msg = rest.partition(": ")
        raise PlanogramError(f"{head}): {csv_column(path)}: {msg}") from None


def parse_export(text: str, fmt: Literal["csv", "json"], version: int | None = None) -> Planogram:
    if fmt == "csv":
        return parse_csv(text, version if version is not None else 0)
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanogramError(f"line {exc.lineno}: (json): {exc.msg}") from None
    return parse_body(body, version)


# ---- normalising -----------------------------------------------------------------------------
_NON_WORD = re.compile(r"[^0-9a-z]+")
_UMLAUT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue"})


def fold(text: str) -> str:
    """Case- and accent-free words separated by one space: "Bergschuh GTX®, Größe 42" ->
    "bergschuh gtx grosse 42" (casefold makes ß "ss"; NFKD splits é into e + accent)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_WORD.sub(" ", plain).strip()


def _word_forms(text: str) -> set[str]:
    """The folded words of ``text``, plus the ae/oe/ue spelling of a word with an umlaut: a
    German keyboard-less shopper types "Schuhe fuer Kinder", the accent fold alone gives "fur"."""
    words = set(fold(text).split())
    low = text.casefold()
    if any(u in low for u in "äöü"):
        words |= set(fold(low.translate(_UMLAUT)).split())
    return words


# ---- index -----------------------------------------------------------------------------------
@dataclass
class _Scored:
    idx: int
    tier: int
    score: float


@dataclass
class ProductIndex:
    """Built once per planogram version (off the hot path); searched on every keystroke."""

    planogram: Planogram
    _sku: dict[str, int] = field(default_factory=dict)
    _skus: list[str] = field(default_factory=list)
    _exact: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    _keys: list[str] = field(default_factory=list)  # sorted, for prefixes
    _key_products: dict[str, list[int]] = field(default_factory=dict)
    _vocab: list[str] = field(default_factory=list)
    _postings: list[np.ndarray] = field(default_factory=list)
    _names: list[tuple[str, ...]] = field(default_factory=list)

    @classmethod
    def build(cls, planogram: Planogram) -> ProductIndex:
        ix = cls(planogram)
        words: dict[str, list[int]] = {}
        for i, p in enumerate(planogram.products):
            sku = fold(p.sku)
            ix._sku.setdefault(_compact(p.sku), i)
            ix._skus.append(_compact(p.sku))
            names = tuple(dict.fromkeys(fold(n) for n in p.names.values()))
            ix._names.append(names)
            keys = [(n, TIER_NAME) for n in names]
            keys += [(fold(t), TIER_BRAND) for t in (p.brand, p.category) if t.strip()]
            for key, tier in keys:
                if not key:
                    continue
                ix._exact.setdefault(key, []).append((i, tier))
                ix._key_products.setdefault(key, []).append(i)
            ix._key_products.setdefault(sku, []).append(i)
            forms: set[str] = set()
            for text in (*p.names.values(), p.brand, p.category):
                forms |= _word_forms(text)
            for w in forms:
                words.setdefault(w, []).append(i)
        # A product listed under the same key twice (same name in two languages) counts once.
        ix._key_products = {k: list(dict.fromkeys(v)) for k, v in ix._key_products.items()}
        ix._keys = sorted(ix._key_products)
        ix._vocab = sorted(words)  # sorted: the word being typed is found by bisection
        ix._postings = [np.asarray(words[w], dtype=np.int32) for w in ix._vocab]
        return ix

    @property
    def version(self) -> int:
        return self.planogram.version

    def search(
        self,
        query: str,
        *,
        limit: int = 10,
        stock: Mapping[str, Stock] | None = None,
        known_places: KnownPlaces | None = None,
        map_version: int | str | None = None,
    ) -> list[Hit]:
        """Ranked hits for ``query``; ``known_places`` (the current map's unit and section ids)
        marks each hit routable or not with the reason. Without it nothing is checked against a
        map and every located hit is routable: callers that draw routes must pass it."""
        q = fold(query)
        if not q or limit <= 0:
            return []
        best: dict[int, _Scored] = {}

        def offer(i: int, tier: int, score: float) -> None:
            cur = best.get(i)
            if cur is None or (tier, score) > (cur.tier, cur.score):
                best[i] = _Scored(i, tier, score)

        sku_q = _compact(query)
        i = self._sku.get(sku_q)
        if i is not None:
            offer(i, TIER_SKU, 100.0)
        for i, tier in self._exact.get(q, ()):
            offer(i, tier, 100.0)
        self._prefix(q, offer)
        self._fuzzy(q, offer, limit)
        if len(query.split()) == 1 and any(c.isdigit() for c in sku_q) and len(sku_q) >= 6:
            self._fuzzy_sku(sku_q, offer, limit)

        products = self.planogram.products
        stock_of = {s.idx: _stock(products[s.idx], stock) for s in best.values()}

        def rank(s: _Scored) -> tuple[int, int, bool, str]:
            st = stock_of[s.idx]
            # Whole points: 91.3 and 90.8 are the same match to a shopper, so stock decides.
            return (
                -s.tier,
                -round(s.score),
                not (st is not None and st.available),
                products[s.idx].sku,
            )

        hits = []
        for s in sorted(best.values(), key=rank)[:limit]:
            p = products[s.idx]
            routable, reason = check_place(p, known_places, map_version)
            hits.append(Hit(p, s.score, MATCH[s.tier], stock_of[s.idx], routable, reason))
        return hits

    def _prefix(self, q: str, offer: Callable[[int, int, float], None]) -> None:
        start = bisect.bisect_left(self._keys, q)
        given = 0
        for key in self._keys[start : start + PREFIX_KEYS_CAP]:
            if not key.startswith(q):
                break
            if key == q:
                continue  # already an exact match
            # The shorter the completion, the closer to what was typed.
            score = 100.0 * len(q) / len(key)
            for i in self._key_products[key]:
                offer(i, TIER_PREFIX, score)
            given += len(self._key_products[key])
            if given >= PREFIX_PRODUCTS_CAP:
                break

    def _fuzzy(self, q: str, offer: Callable[[int, int, float], None], limit: int) -> None:
        qwords = list(dict.fromkeys(q.split()))
        n = len(self.planogram.products)
        if not n or not self._vocab:
            return
        # rapidfuzz only once somebody searches: the agent loads planograms at start for
        # routes and stock, and most boxes never run a search (about 2 MB of a box's memory).
        from rapidfuzz import fuzz, process

        total = np.zeros(n, dtype=np.float32)
        counted = 0
        for k, w in enumerate(qwords):
            word_best = np.zeros(n, dtype=np.float32)
            matched = False
            if len(w) >= MIN_FUZZY_WORD:
                for _, score, vi in process.extract(
                    w,
                    self._vocab,
                    scorer=fuzz.ratio,
                    processor=None,
                    limit=None,
                    score_cutoff=WORD_CUTOFF,
                ):
                    post = self._postings[vi]
                    word_best[post] = np.maximum(word_best[post], score)
                    matched = True
            if k == len(qwords) - 1 or len(w) < MIN_FUZZY_WORD:
                # Short words and the word being typed: exact or as the start of a word.
                vi = bisect.bisect_left(self._vocab, w)
                stop = min(len(self._vocab), vi + PREFIX_KEYS_CAP)
                while vi < stop and self._vocab[vi].startswith(w):
                    score = 100.0 if self._vocab[vi] == w else PREFIX_WORD_SCORE
                    post = self._postings[vi]
                    word_best[post] = np.maximum(word_best[post], score)
                    matched = True
                    vi += 1
            if matched:
                total += word_best
                counted += 1
        if not counted:
            return
        # A query word that matches nothing in the catalogue ("the", a typo beyond repair)
        # does not sink every product; but it still counts, so a product matching all the
        # query's words outranks one that matches some.
        total /= max(counted, len(qwords) - 1)
        cand = np.flatnonzero(total >= FUZZY_MIN_SCORE)
        if cand.size > RERANK:
            cand = cand[np.argpartition(-total[cand], RERANK - 1)[:RERANK]]
        for i in cand.tolist():
            # The word scores find candidates; the whole name separates "trail shoe" from
            # "trail shoe gaiters".
            whole = max(fuzz.ratio(q, nm) for nm in self._names[i])
            offer(i, TIER_FUZZY, 0.8 * float(total[i]) + 0.2 * whole)

    def _fuzzy_sku(self, q: str, offer: Callable[[int, int, float], None], limit: int) -> None:
        # One or two slips in a SKU typed from a shelf label; bounded edit distance takes
        # rapidfuzz's fast path for small distances.
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein

        for _, dist, i in process.extract(
            q,
            self._skus,
            scorer=Levenshtein.distance,
            processor=None,
            limit=limit,
            score_cutoff=2,
        ):
            offer(i, TIER_FUZZY, 100.0 * (1 - dist / max(len(q), 1)))


def _compact(sku: str) -> str:
    """A SKU as people type it from a label: "sku ridge-gtx 42" finds SKU-RIDGE-GTX-42."""
    return fold(sku).replace(" ", "")


def _stock(p: Product, stock: Mapping[str, Stock] | None) -> Stock | None:
    if stock is not None:
        s = stock.get(p.sku)
        if s is not None:
            return s
    if p.quantity is not None:
        return Stock(available=p.quantity > 0, quantity=p.quantity)
    return None


def stock_from_levels(levels: Mapping[str, bool]) -> dict[str, Stock]:
    """The slice's ``stock_levels()`` (SKU -> available) as the search's stock table."""
    return {sku: Stock(available=bool(a)) for sku, a in levels.items()}


# ---- refusal ---------------------------------------------------------------------------------
def _known(known_places: KnownPlaces, place: str) -> bool:
    return known_places(place) if callable(known_places) else place in known_places


def check_place(
    product: Product, known_places: KnownPlaces | None, map_version: int | str | None = None
) -> tuple[bool, str]:
    """(routable, reason): a product without a location, or whose unit or section is not on
    the current map, is never routed to (the shelf may have moved; a stale route walks the
    shopper to the wrong place)."""
    loc = product.location
    if loc is None:
        return False, "no location on the planogram"
    if known_places is None:
        return True, ""
    on_map = f"map version {map_version}" if map_version is not None else "the current map"
    if not _known(known_places, loc.unit_id):
        return False, f"unit {loc.unit_id} is not on {on_map}"
    if loc.section_id is not None and not _known(known_places, loc.section_id):
        return False, f"shelf {loc.shelf or loc.section_id} is not on {on_map}"
    if isinstance(known_places, MapCheck):
        why = known_places.misplaced(loc)
        if why:
            return False, why
    return True, ""


def resolve_sku(
    ref: str,
    products: Mapping[str, Product] | ProductIndex,
    known_places: KnownPlaces,
    map_version: int | str | None = None,
) -> Location | Refusal:
    """A route end given as ``sku:<sku>``: the shelf's location, or why there is no route.
    ``ValueError`` for a reference that is not ``sku:...`` (the caller's input is wrong)."""
    if not ref.startswith("sku:") or not ref[4:].strip():
        raise ValueError(f"{ref[:80]!r}: expected sku:<sku>")
    sku = ref[4:].strip()
    table = products.planogram.by_sku() if isinstance(products, ProductIndex) else products
    p = table.get(sku)
    if p is None:
        return Refusal(ref, f"no product {sku[:64]} on the planogram")
    routable, reason = check_place(p, known_places, map_version)
    if not routable or p.location is None:
        return Refusal(ref, reason)
    return p.location
