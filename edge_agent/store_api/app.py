"""The local store API (FastAPI): map, beacons, product search, routes and the phone's route page.

Read-only, no personal data, no cookies: nothing a phone sends is stored, and no answer depends
on who asks. Every refusal is a 4xx with one line ``{"error": "..."}``; rate-limited per client
address; the query string and body are bounded. OpenAPI at ``/openapi.json``, docs at ``/docs``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge_agent.store_api.data import NoMap, StoreData
from edge_agent.store_api.page import PAGE_HTML, PAGE_JS
from edge_agent.store_api.ratelimit import RateLimiter
from edge_agent.store_api.route_counts import RouteCounts

log = logging.getLogger("edge_agent")

MAX_QUERY_BYTES = 1024
MAX_CACHED_ANSWERS = 2048
MAX_BODY_BYTES = 8 * 1024
REF = r"^[A-Za-z0-9][A-Za-z0-9 _.:/()'&-]{0,119}$"
LANG = r"^[a-z]{2}$"
# What a page or script may load: only this origin (no inline script, no third party).
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"


class PositionRequest(BaseModel):
    """One scan: beacon name (as /v1/beacons gives it) -> RSSI in dBm; -200 or absent: not
    heard. ``session``: an opaque id the app makes up per walk, for smoothing; never a device id."""

    model_config = ConfigDict(extra="forbid")

    scan: dict[Annotated[str, StringConstraints(max_length=64)], float] = Field(max_length=64)
    session: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class ApiError(Exception):
    def __init__(self, status: int, line: str) -> None:
        super().__init__(line)
        self.status = status
        self.line = line


def _error(status: int, line: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": line[:300]}, status_code=status, headers=headers)


def create_app(
    data: StoreData,
    *,
    rate: float = 10.0,
    burst: int = 30,
    now: Any = time.monotonic,
    counts: RouteCounts | None = None,
    on_stop: Callable[[], None] | None = None,
) -> FastAPI:
    store_id = data.cfg.store.store_id
    limiter = RateLimiter(rate, burst)
    answers: dict[tuple[object, ...], bytes] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        # In uvicorn's graceful shutdown: after it, uvicorn re-raises the SIGTERM it caught,
        # so code after uvicorn.run() never runs under systemd.
        if on_stop is not None:
            await asyncio.to_thread(on_stop)

    app = FastAPI(
        title=f"Store API ({store_id})",
        version="1",
        description="The store's map, beacons, products and routes for the store app. "
        "Read-only; no personal data; nothing a phone sends is kept.",
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if len(request.url.query.encode()) > MAX_QUERY_BYTES:
            return _error(414, f"query string over {MAX_QUERY_BYTES} bytes")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return _error(413, f"request body over {MAX_BODY_BYTES} bytes")
        client = request.client.host if request.client else "?"
        # The unit's own liveness probe is not a phone.
        wait = 0.0 if request.url.path == "/healthz" else limiter.allow(client, now())
        if wait > 0:
            retry = str(max(1, round(wait)))
            return _error(429, "too many requests: slow down", {"Retry-After": retry})
        response: Response = await call_next(request)
        response.headers["Cache-Control"] = response.headers.get("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(ApiError)
    async def api_error(_r: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.line)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_r: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        return _error(400, f"{where or 'request'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crash(_r: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - a bug
        log.error("store api: %s: %s", type(exc).__name__, str(exc)[:200])
        return _error(500, f"internal error ({type(exc).__name__})")

    def current_map() -> Any:
        try:
            return data.map()
        except NoMap as exc:
            raise ApiError(503, str(exc)) from None

    # ---- endpoints -----------------------------------------------------------------------
    @app.get("/v1/map", summary="The store map as IMDF, with its version (ETag)")
    def get_map(request: Request) -> Response:
        m = current_map()
        if request.headers.get("if-none-match") == m.etag:
            return Response(status_code=304, headers={"ETag": m.etag})
        import json

        files = {name: json.loads(raw) for name, raw in sorted(m.files.items())}
        body = {"store_id": store_id, "version": m.version, "imdf": files}
        headers = {"ETag": m.etag, "Cache-Control": "no-cache"}
        return JSONResponse(body, headers=headers)

    @app.get("/v1/beacons", summary="Store beacons the app may position itself with")
    def get_beacons() -> dict[str, Any]:
        m = current_map()
        return {"store_id": store_id, "map_version": m.version, "beacons": data.beacons(m)}

    @app.get("/v1/products", summary="Product search: typos and languages forgiven, ranked")
    def get_products(
        q: Annotated[str, Query(min_length=1, max_length=100)],
        lang: Annotated[str, Query(pattern=LANG)] = "en",
        limit: Annotated[int, Query(ge=1, le=50)] = 10,
    ) -> JSONResponse:
        from edge_agent.wayfinding.products import fold

        if not fold(q):
            raise ApiError(400, "q: the query has no letters or digits")
        cat = data.catalogue()
        if cat is None:
            raise ApiError(503, "no planogram on this box yet")
        m = current_map()
        hits = cat.index.search(q, limit=limit, known_places=m.places, map_version=m.version)
        # Plain JSON out: FastAPI's encoder walking a big nested answer costs more than the search.
        return JSONResponse(
            {
                "query": q,
                "planogram_version": cat.version,
                "map_version": m.version,
                "results": [h.to_json(lang) for h in hits],
            }
        )

    @app.get("/v1/route", summary="The way between two places (the same engine as map route)")
    def get_route(
        from_: Annotated[str, Query(alias="from", pattern=REF)],
        to: Annotated[str, Query(pattern=REF)],
        lang: Annotated[str, Query(pattern=LANG)] = "en",
        accessible: bool = False,
    ) -> Response:
        from edge_agent.wayfinding.cli import route_json
        from edge_agent.wayfinding.route import NoRoute, RefError, Resolver, plan_route, resolve_ref
        from edge_agent.wayfinding.screen_map import PayloadTooBig, build_wayfinding

        m = current_map()
        cat = data.catalogue()
        # A rush asks for the same few products: the answer is a pure function of the map
        # and planogram versions, so it is kept (bounded) and never served across versions.
        key = (from_, to, lang, accessible, m.version, cat.version if cat else None)
        hit = answers.get(key)
        if hit is not None:
            if counts is not None:
                counts.record(to, accessible, time.time())
            return Response(hit, media_type="application/json")
        resolvers: dict[str, Resolver] = {}
        if cat is not None:
            resolvers["sku"] = m.places.resolver(cat.by_sku)
        try:
            start = resolve_ref(m.venue, from_, resolvers)
            end = resolve_ref(m.venue, to, resolvers)
        except RefError as exc:
            raise ApiError(404, str(exc)) from None
        try:
            route = plan_route(m.graph, start, end, accessible=accessible)
        except NoRoute as exc:
            raise ApiError(422, str(exc)) from None
        out = route_json(m.venue, route, lang)
        out["map_version"] = m.version
        try:
            out["drawing"] = build_wayfinding(m.venue, route, lang).model_dump(mode="json")
        except PayloadTooBig:
            out["drawing"] = None  # the steps still say the way
        body = JSONResponse(out).body
        if len(answers) >= MAX_CACHED_ANSWERS:
            answers.pop(next(iter(answers)))
        answers[key] = bytes(body)
        if counts is not None:
            # Where it was asked to, and that it was answered; never who asked or from where.
            counts.record(to, accessible, time.time())
        return Response(body, media_type="application/json")

    @app.post("/v1/position", summary="Where the phone is, from its own beacon scan")
    def post_position(body: PositionRequest) -> JSONResponse:
        """The scan is used and dropped: nothing of it, nor the answer, is kept or sent on
        (a session's last belief stays in memory for smoothing, 30 s at most)."""
        from edge_agent.positioning.scan import ScanError

        m = current_map()
        model = data.positioner(m)
        if model is None:
            raise ApiError(503, "no store beacons placed on the map to position with")
        try:
            pos = model.locate(body.scan, body.session, time.monotonic())
        except ScanError as exc:
            raise ApiError(400, str(exc)) from None
        out = pos.as_dict()
        out["map_version"] = m.version
        return JSONResponse(out)

    @app.get("/w", response_class=HTMLResponse, include_in_schema=False)
    def page(
        s: Annotated[str, Query(max_length=64)],
        x: Annotated[int, Query(ge=0)],
        v: Annotated[int, Query(ge=1, le=1)] = 1,
    ) -> HTMLResponse:
        # The route itself is fetched by the page's script from /v1/route (the link's f, t, l).
        if s != store_id:
            raise ApiError(404, f"this is store {store_id}, not {s[:64]}")
        if x < time.time():
            return HTMLResponse(PAGE_HTML.replace("{{expired}}", "expired"), status_code=410)
        return HTMLResponse(PAGE_HTML.replace("{{expired}}", ""))

    @app.get("/w.js", include_in_schema=False)
    def page_js() -> Response:
        return Response(
            PAGE_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=300"}
        )

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
