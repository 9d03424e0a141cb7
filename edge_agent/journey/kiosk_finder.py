"""The kiosks' product finder on the agent: a ``find`` request in, results with stock and the
way from the kiosk out (contracts/kiosk_finder.py).

The bus thread only reads and queues (paho's network thread also carries adverts and screen
states); one worker thread answers in arrival order. The search index is built in that worker,
once per planogram version (``planogram.db`` in the state directory, written by the planogram
push or an ERP import), and routes use the map the screens use (``ScreenWayfinder``), so a
kiosk never routes on a map the screens do not have. Results are checked against that map
(wayfinding/product_places.py: IMDF ids or the store's own plan ids, the point inside its unit
and shelf): a product whose place is not on it is shown with the reason and never routed to.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from contracts import topics
from contracts.kiosk_finder import (
    LINK_TTL_S,
    DeepLink,
    FinderInputError,
    FindRequest,
    FoundReply,
    FoundResult,
    FoundRoute,
    FoundStock,
    kiosk_of,
    parse_find,
)
from contracts.screen_protocol import MAX_STEPS
from edge_agent.app.bus import InStoreBus, Publisher
from edge_agent.config import AgentConfig
from edge_agent.journey.wayfinding_stage import ScreenWayfinder
from edge_agent.wayfinding.graph import NavGraph
from edge_agent.wayfinding.model import VenueMap
from edge_agent.wayfinding.planogram_store import PlanogramStore
from edge_agent.wayfinding.product_places import MapPlaces
from edge_agent.wayfinding.products import (
    Hit,
    Product,
    ProductIndex,
    Refusal,
    Stock,
    check_place,
    stock_from_levels,
)
from edge_agent.wayfinding.route import NoRoute, RefError, plan_route, resolve_ref
from edge_agent.wayfinding.screen_map import PayloadTooBig, build_wayfinding
from edge_agent.wayfinding.steps import route_steps

log = logging.getLogger("edge_agent")

# Where the phone page of issue 16 lives; `[map] link_base` in the config says otherwise.
DEFAULT_LINK_BASE = "https://store.local/w"
# Requests waiting for the worker: a kiosk sends one per search; more than this is a flood.
MAX_PENDING = 16
_BUILD, _STOP = "build", "stop"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class StockSource(Protocol):
    """The slice's stock table (ProfileSlice): availability for ranking, a row per result."""

    def stock_levels(self) -> dict[str, bool]: ...

    def stock(self, sku: str) -> dict[str, Any] | None: ...


def _clean(text: str, n: int) -> str:
    return _CONTROL.sub(" ", text).strip()[:n]


class KioskFinder:
    def __init__(
        self,
        bus: Publisher,
        store_id: str,
        wayfinder: ScreenWayfinder,
        planogram_db: Path,
        *,
        stock: StockSource | None = None,
        link_base: str = DEFAULT_LINK_BASE,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.store_id = store_id
        self.wayfinder = wayfinder
        self.planogram_db = planogram_db
        self.stock = stock
        self.link_base = link_base
        self.now = now
        self.answered = 0
        self.refused = 0
        self.index_builds = 0
        self._store: PlanogramStore | None = None
        self._index: ProductIndex | None = None
        self._places: MapPlaces | None = None
        self._levels: tuple[dict[str, bool], dict[str, Stock]] | None = None
        # (kiosk, request) to answer; BUILD to index now; STOP to end the worker.
        self._queue: queue.Queue[tuple[str, FindRequest] | str] = queue.Queue(MAX_PENDING)
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(
        cls, cfg: AgentConfig, bus: InStoreBus, wayfinder: ScreenWayfinder, stock: StockSource
    ) -> KioskFinder:
        """The agent's finder: ``planogram.db`` in the state directory, the index built when the
        bus connects (in the worker), the link base from ``[map] link_base``."""
        finder = cls(
            bus,
            cfg.store.store_id,
            wayfinder,
            cfg.paths_resolved.state_dir / "planogram.db",
            stock=stock,
            link_base=cfg.map.link_base if cfg.map else DEFAULT_LINK_BASE,
        )
        bus.on_connected(finder.start)
        return finder

    # ---- bus thread -----------------------------------------------------------------------
    def on_find(self, topic: str, raw: bytes) -> None:
        """A request from a kiosk: read, checked and queued; never answered here."""
        try:
            where = kiosk_of(topic, "find")
            if where.store != self.store_id:
                raise FinderInputError(f"topic: store {where.store!r} is not this store")
            req = parse_find(raw)
        except FinderInputError as exc:
            self._refuse(topic, str(exc))
            return
        self._ensure_worker()
        try:
            self._queue.put_nowait((where.kiosk, req))
        except queue.Full:
            self._refuse(topic, f"{MAX_PENDING} requests already waiting")

    def _refuse(self, topic: str, why: str) -> None:
        self.refused += 1
        # A flood of garbage must not flood the journal: the first ones, then one in a hundred.
        if self.refused <= 20 or self.refused % 100 == 0:
            log.warning("kiosk finder: refused on %s: %s", topic[:120], why)

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="kiosk-finder", daemon=True)
                self._worker.start()

    def start(self) -> None:
        """Build the index now rather than at the first search (off the loop, in the worker)."""
        self._ensure_worker()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_BUILD)

    def close(self) -> None:
        worker = self._worker
        if worker is not None:
            self._queue.put(_STOP)
            worker.join(5)
        if self._store is not None:
            self._store.close()

    # ---- worker ---------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job == _STOP:
                return
            try:
                if isinstance(job, str):
                    self.index()
                    continue
                kiosk, req = job
                reply = self.answer(kiosk, req)
                self.bus.publish(topics.kiosk_found(self.store_id, kiosk), reply.to_bytes())
                self.answered += 1
            except Exception as exc:  # one bad answer must not end the finder
                log.error("kiosk finder: %s: %s", type(exc).__name__, str(exc)[:200])

    def index(self) -> ProductIndex | None:
        """The index of the current planogram, rebuilt when its version changed."""
        if self._store is None:
            if not self.planogram_db.exists():
                return None
            self._store = PlanogramStore(self.planogram_db, self.store_id)
        version = self._store.version
        if version is None:
            return None
        if self._index is None or self._index.version != version:
            planogram = self._store.load()
            if planogram is None:
                return None
            t0 = time.perf_counter()
            self._index = ProductIndex.build(planogram)
            self.index_builds += 1
            log.info(
                "kiosk finder: planogram %d indexed (%d products, %.0f ms)",
                planogram.version,
                len(planogram.products),
                (time.perf_counter() - t0) * 1000,
            )
        return self._index

    def _stock_table(self) -> dict[str, Stock] | None:
        if self.stock is None:
            return None
        levels = self.stock.stock_levels()
        # The slice hands out the same dict until its stock changes: convert once per change.
        if self._levels is None or self._levels[0] is not levels:
            self._levels = (levels, stock_from_levels(levels))
        return self._levels[1]

    def _known(self, venue: VenueMap, version: str) -> MapPlaces:
        """The map in use as the planogram sees it (plan ids or IMDF ids, points checked)."""
        if self._places is None or self._places.version != version:
            self._places = MapPlaces(venue, version)
        return self._places

    def answer(self, kiosk: str, req: FindRequest) -> FoundReply:
        """The reply to one request (pure apart from reading the index and the stock)."""
        ix = self.index()
        snap = self.wayfinder.snapshot()
        if ix is None:
            return FoundReply(
                request_id=req.request_id, results=(), note="no product catalogue on this box yet"
            )
        known = self._known(snap[0], snap[1]) if snap is not None else None
        map_version = snap[1] if snap is not None else None
        hits = ix.search(
            req.query,
            limit=req.limit,
            stock=self._stock_table(),
            known_places=known,
            map_version=map_version,
        )
        if req.route_to is not None and all(h.product.sku != req.route_to for h in hits):
            # The shopper tapped a result of an earlier search: it leads, whatever this query.
            p = ix.planogram.by_sku().get(req.route_to)
            if p is not None:
                ok, why = check_place(p, known or frozenset(), map_version)
                hits = [Hit(p, 100.0, "sku", None, ok, why), *hits][: req.limit]
        results = tuple(self._result(h, req.lang) for h in hits)
        if snap is None:
            results = tuple(
                r.model_copy(update={"routable": False, "reason": "no store map on this box"})
                for r in results
            )
        target = next(
            (
                h
                for h in hits
                if h.routable and (req.route_to is None or h.product.sku == req.route_to)
            ),
            None,
        )
        route: FoundRoute | None = None
        note: str | None = None
        if snap is not None and target is not None:
            got = self._route(snap, kiosk, target.product, req.lang)
            route, note = (got, None) if isinstance(got, FoundRoute) else (None, got)
        elif not hits:
            note = "no product matches"
        return FoundReply(
            request_id=req.request_id,
            results=results,
            route=route,
            note=note,
            planogram_version=ix.version,
            map_version=map_version,
        )

    def _result(self, h: Hit, lang: str) -> FoundResult:
        stock = h.stock
        if self.stock is not None:
            row = self.stock.stock(h.product.sku)
            if row is not None:
                stock = Stock(bool(row["available"]), row["quantity"])
        return FoundResult(
            sku=h.product.sku,
            name=_clean(h.product.name(lang), 120) or h.product.sku,
            brand=_clean(h.product.brand, 64),
            stock=FoundStock(available=stock.available, quantity=stock.quantity)
            if stock is not None
            else None,
            routable=h.routable,
            reason=None if h.routable else _clean(h.reason, 160) or "not on the map",
        )

    def _route(
        self, snap: tuple[VenueMap, str, NavGraph], kiosk: str, p: Product, lang: str
    ) -> FoundRoute | str:
        """The way from the kiosk to ``p``'s shelf, or why there is none (one line)."""
        venue, version, graph = snap
        end = self._known(venue, version).locate(p)
        if isinstance(end, Refusal):
            return _clean(end.reason, 160)
        try:
            start = resolve_ref(venue, f"kiosk:{kiosk}")
            route = plan_route(graph, start, end)
            way = build_wayfinding(venue, route, lang)
        except (RefError, NoRoute, PayloadTooBig) as exc:
            return _clean(str(exc), 160)
        steps = tuple(_clean(s.text, 160) for s in route_steps(route, venue, lang)[:MAX_STEPS])
        link = DeepLink(
            base=self.link_base,
            store=self.store_id,
            map_version=version,
            from_ref=f"kiosk:{kiosk}",
            to_ref=f"sku:{p.sku}",
            lang=lang,  # type: ignore[arg-type]
            expires=int(self.now() + LINK_TTL_S),
        )
        return FoundRoute(
            sku=p.sku,
            wayfinding=way,
            distance_m=round(route.distance_m, 1),
            steps=steps,
            deep_link=link.url(),
        )
