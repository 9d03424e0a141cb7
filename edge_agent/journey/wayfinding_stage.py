"""Routes on the screens: the way from a screen to a campaign's place, added to its content.

``decide`` stays pure and knows nothing of maps: a campaign's ``wayfinding = {to = ...}`` is
data, and this stage turns it into the content's ``Wayfinding`` payload when the command goes
out. A box without a map, a reference the map does not know, or no route between the two sends
the card without a map (never a route on a map the box does not have). Routes are cached per
(screen, destination, language, map version, and for ``sku:`` the planogram version): the
director re-sends the same content many times a day, and a new map or planogram never serves an
old route.

A campaign may name its product rather than a place (``sku:SKU-RIDGE-GTX-42``): the way then
follows the planogram (a product moved to another shelf moves the route), and a product with no
location, or a place this map does not have, sends the card without a map, never a stale way.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from contracts.kiosk_finder import LINK_TTL_S, REF, DeepLink
from contracts.screen_protocol import Content, Playlist, Wayfinding
from edge_agent.wayfinding.graph import NavGraph, build_graph
from edge_agent.wayfinding.model import VenueMap
from edge_agent.wayfinding.product_places import MapPlaces
from edge_agent.wayfinding.products import Product
from edge_agent.wayfinding.route import NoRoute, RefError, plan_route, resolve_ref
from edge_agent.wayfinding.screen_map import PayloadTooBig, build_wayfinding

log = logging.getLogger("edge_agent")

# Screens x destinations x languages is small; this only bounds keys of past planogram versions.
MAX_CACHED = 4096


class ProductLookup(Protocol):
    """The box's planogram (``PlanogramStore``): its version and one product's row."""

    def product(self, sku: str) -> tuple[int | None, Product | None]: ...


@dataclass(frozen=True)
class LinkMaker:
    """The phone's deep link for a screen's way (contracts/kiosk_finder.py's format): the store
    API's page (``[map] link_base``), valid for LINK_TTL_S from when the card goes out."""

    base: str
    store_id: str
    now: Callable[[], float]

    def url(self, screen_id: str, to_ref: str, map_version: str, language: str) -> str | None:
        try:
            return DeepLink(
                base=self.base,
                store=self.store_id,
                map_version=map_version,
                from_ref=f"screen:{screen_id}",
                to_ref=to_ref,
                lang="de" if language.startswith("de") else "en",
                expires=int(self.now()) + LINK_TTL_S,
            ).url()
        except ValidationError:
            return None  # a place the link format cannot carry: the card goes without a code


class MapLoadError(Exception):
    """The configured map cannot be read; ``lines`` say why, one problem each."""

    def __init__(self, path: Path, lines: list[str]) -> None:
        super().__init__(f"{path}: {'; '.join(lines[:3])}")
        self.lines = lines


def load_venue(path: Path) -> tuple[VenueMap, str]:
    """A plan (.toml) or IMDF (archive or folder) as a VenueMap, with a version: the sha256 of
    the file's bytes (a folder: of its files), so an edited map is a new version."""
    from edge_agent.wayfinding.imdf import load_imdf
    from edge_agent.wayfinding.plan import PlanError, author, load_plan

    if path.suffix.lower() == ".toml":
        try:
            plan, layout = load_plan(path)
        except PlanError as exc:
            raise MapLoadError(path, exc.errors) from None
        _, result, errors, _ = author(plan, layout)
    else:
        result = load_imdf(str(path))
        errors = [str(e) for e in result.errors]
    if errors or result.venue is None:
        raise MapLoadError(path, errors or ["no map"])
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.read_bytes())
    return result.venue, h.hexdigest()[:16]


@dataclass(frozen=True)
class _Map:
    venue: VenueMap
    version: str
    graph: NavGraph


@dataclass(frozen=True)
class _Way:
    way: Wayfinding | None
    link_ref: str = ""  # how a deep link names the destination
    map_version: str = ""


_NO_WAY = _Way(None)


class ScreenWayfinder:
    """Adds the way to a campaign's place to a screen's content, from the map this box has."""

    def __init__(
        self,
        venue: VenueMap | None = None,
        version: str = "",
        products: ProductLookup | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._map: _Map | None = None
        self._cache: dict[tuple[str, str, str, str, str], _Way] = {}
        self.products = products
        self.links: LinkMaker | None = None  # set by the agent: a QR code on every way
        self.routes_built = 0
        if venue is not None:
            self.use(venue, version)

    @classmethod
    def from_path(cls, path: Path | None) -> ScreenWayfinder:
        """The configured map, or none when it cannot be read (said once: screens go on
        without maps rather than the agent not starting)."""
        if path is None:
            return cls()
        try:
            venue, version = load_venue(path)
        except (MapLoadError, OSError) as exc:
            log.error("map: %s: screens show no routes", exc)
            return cls()
        log.info("map: %s version %s", path, version)
        return cls(venue, version)

    @property
    def version(self) -> str | None:
        m = self._map
        return m.version if m is not None else None

    def snapshot(self) -> tuple[VenueMap, str, NavGraph] | None:
        """The map in use, read once (venue, version, graph): the kiosk finder routes on the
        same map as the screens, never a second copy that could lag a push."""
        m = self._map
        return None if m is None else (m.venue, m.version, m.graph)

    def use(self, venue: VenueMap, version: str) -> None:
        """Swap to another map (a push): one assignment, so a route is built on one map or the
        other, never a mix; the cache is keyed by version, old routes are never served."""
        built = _Map(venue, version, build_graph(venue))
        with self._lock:
            self._map = built
            self._cache = {k: v for k, v in self._cache.items() if k[3] == version}

    def way(self, screen_id: str, to: str, language: str) -> Wayfinding | None:
        return self._way(screen_id, to, language).way

    def _way(self, screen_id: str, to: str, language: str) -> _Way:
        m = self._map
        if m is None:
            return _NO_WAY
        sku = to[4:].strip() if to.startswith("sku:") else None
        product: Product | None = None
        pg_version = ""
        if sku is not None and self.products is not None:
            v, product = self.products.product(sku)
            pg_version = "" if v is None else str(v)
        key = (screen_id, to, language, m.version, pg_version)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        got = _NO_WAY
        try:
            start = resolve_ref(m.venue, f"screen:{screen_id}")
            resolvers = None
            if sku is not None and pg_version:
                found = {sku: product} if product is not None else {}
                resolvers = {"sku": MapPlaces(m.venue, m.version).resolver(found)}
            end = resolve_ref(m.venue, to, resolvers)
            route = plan_route(m.graph, start, end)
            way = build_wayfinding(m.venue, route, language)
            self.routes_built += 1
            # The destination as a deep link can carry it: the campaign's words, else its id.
            link_ref = to if re.fullmatch(REF, to) else end.id
            got = _Way(way, link_ref, m.version)
        except (RefError, NoRoute, PayloadTooBig) as exc:
            # Said once per key (the cache remembers the miss): the card goes without a map.
            log.warning("map %s: no way from screen %s to %r: %s", m.version, screen_id, to, exc)
        with self._lock:
            if len(self._cache) >= MAX_CACHED:  # planogram versions come and go: stay bounded
                self._cache.clear()
            self._cache[key] = got
        return got

    def attach(self, content: Content, screen_id: str, to: str | None) -> Content:
        """``content`` with the way to ``to`` from the screen (and, when the box makes phone
        links, its QR code), or as it is when there is none."""
        if to is None:
            return content
        got = self._way(screen_id, to, content.language)
        if got.way is None:
            return content
        update: dict[str, object] = {"wayfinding": got.way}
        if self.links is not None and content.qr_url is None and got.link_ref:
            # The same way on the shopper's phone: a code they can take away (never who they are).
            url = self.links.url(screen_id, got.link_ref, got.map_version, content.language)
            if url is not None:
                update["qr_url"] = url
        return content.model_copy(update=update)

    def fill(self, playlist: Playlist, screen_ids: list[str]) -> Playlist:
        """The loop with the way from each screen drawn into its "find us" items (``way_to``),
        on the map and planogram in use; ways ops sent, or a screen cannot have, are dropped."""
        items = []
        for item in playlist.items:
            ways: dict[str, Wayfinding] = {}
            if item.way_to is not None:
                for sid in screen_ids:
                    way = self.way(sid, item.way_to, item.content.language)
                    if way is not None:
                        ways[sid] = way
            items.append(item if ways == item.ways else item.model_copy(update={"ways": ways}))
        return playlist.model_copy(update={"items": tuple(items)})
