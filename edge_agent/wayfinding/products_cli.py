"""`edge-agent map find QUERY`: the product finder from a shell, as the kiosk will call it.

Exit 0 with JSON results, 1 when nothing matches (one line on stderr), 2 for bad input (an
empty query, a planogram file that does not validate: the row and field named).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Every `edge-agent` run builds this parser: the search (numpy, rapidfuzz) loads in the handler.
if TYPE_CHECKING:
    from edge_agent.wayfinding.product_places import MapPlaces
    from edge_agent.wayfinding.products import KnownPlaces, Planogram, Stock

PROG = "edge-agent map find"


def add_find_parser(subparsers: Any) -> None:
    """Add ``find`` to the ``map`` group's subparsers (the group is shared with the map core)."""
    p = subparsers.add_parser(
        "find", help="search the planogram by name (any language), brand, category or SKU"
    )
    p.add_argument("query")
    p.add_argument("--lang", default="en", help="language of the names shown (default en)")
    p.add_argument("--limit", type=int, default=10)
    p.add_argument(
        "--planogram",
        help="an ERP export (.csv, .json) or a planogram.db (default: the box's, with -c)",
    )
    p.add_argument("--config", "-c", help="agent.toml: the box's planogram and its slice's stock")
    p.add_argument(
        "--map",
        help="the store map in use (IMDF or plan): hits whose place it does not have are "
        "marked not routable, with the reason (with -c and no --map: the box's pushed map)",
    )
    p.add_argument("--map-version", help="the version named in reasons (default: the map's own)")
    p.add_argument(
        "--places",
        help='JSON {"version": V, "places": [unit and section ids]} of the current map: '
        "hits elsewhere are marked not routable, with the reason",
    )
    p.set_defaults(func=cmd_find)


class _SliceStock(Mapping[str, "Stock"]):
    """The slice's stock table, read for the hits only."""

    def __init__(self, profiles: Any) -> None:
        self._profiles = profiles

    def __getitem__(self, sku: str) -> Stock:
        from edge_agent.wayfinding.products import Stock

        row = self._profiles.stock(sku)
        if row is None:
            raise KeyError(sku)
        return Stock(available=bool(row["available"]), quantity=row["quantity"])

    def __iter__(self) -> Iterator[str]:
        return iter(self._profiles.stock_levels())

    def __len__(self) -> int:
        return len(self._profiles.stock_levels())


def _fail(msg: str, code: int, prog: str = PROG) -> int:
    print(f"{prog}: {msg}", file=sys.stderr)
    return code


def load_planogram(
    args: argparse.Namespace, prog: str = PROG
) -> tuple[Planogram, Mapping[str, Stock] | None] | int:
    """The planogram from ``--planogram`` or the box's (``-c``), with the slice's stock."""
    return _load(args, prog)


def _load(
    args: argparse.Namespace, prog: str = PROG
) -> tuple[Planogram, Mapping[str, Stock] | None] | int:
    from edge_agent.wayfinding.planogram_store import PlanogramStore, load_file
    from edge_agent.wayfinding.products import PlanogramError

    stock: Mapping[str, Stock] | None = None
    db: Path | None = None
    if args.config:
        from edge_agent.config import load_or_report

        cfg = load_or_report(args.config)
        if cfg is None:
            return 2
        paths = cfg.paths_resolved
        db = paths.state_dir / "planogram.db"
        try:
            from edge_agent.slice.store import ProfileSlice

            profiles = ProfileSlice(
                paths.profiles_db,
                key_path=cfg.profiles.key_file,
                store_id=cfg.store.store_id,
                cache_size=0,
                create=False,
            )
            stock = _SliceStock(profiles)
        except Exception as exc:  # no slice yet: results without stock, said once
            print(f"{prog}: no stock from the slice ({type(exc).__name__})", file=sys.stderr)
    if args.planogram:
        path = Path(args.planogram)
        if path.suffix.lower() in {".csv", ".json"}:
            try:
                return load_file(path), stock
            except PlanogramError as exc:
                return _fail(str(exc), 2, prog)
        db = path
    if db is None:
        return _fail("give --planogram FILE or -c agent.toml", 2, prog)
    if not db.exists():
        return _fail(f"{db}: no planogram (not pushed yet?)", 2, prog)
    store = PlanogramStore(db)
    try:
        planogram = store.load()
    finally:
        store.close()
    if planogram is None:
        return _fail(f"{db}: no planogram (not pushed yet?)", 2, prog)
    return planogram, stock


def _places(path: str) -> tuple[KnownPlaces, int | str | None] | str:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{path}: {exc}"
    if isinstance(doc, list):
        doc = {"places": doc}
    places = doc.get("places") if isinstance(doc, dict) else None
    if not isinstance(places, list) or not all(isinstance(p, str) for p in places):
        return f"{path}: places: expected a list of unit and section ids"
    version = doc.get("version")
    return set(places), version if isinstance(version, int | str) else None


def _map_places(args: argparse.Namespace) -> MapPlaces | int | None:
    """The map in use as known places: ``--map PATH``, else the box's pushed map (``-c``) if
    one was pushed (None: nothing to check against, hits are not marked)."""
    from edge_agent.wayfinding.cli import _load_map, map_path, map_version
    from edge_agent.wayfinding.product_places import MapPlaces

    if not args.map:
        from edge_agent.config import load_or_report

        cfg = load_or_report(args.config)
        if cfg is None:
            return 2
        if not (cfg.paths_resolved.state_dir / "map" / "current").exists():
            return None
    path = map_path(argparse.Namespace(path=args.map, config=args.config))
    if path is None:
        return 2
    venue = _load_map(path)
    if venue is None:
        return 2
    return MapPlaces(venue, map_version(path, args.map_version))


def cmd_find(args: argparse.Namespace) -> int:
    from edge_agent.wayfinding.products import ProductIndex, fold

    if not fold(args.query):
        return _fail("the query has no letters or digits", 2)
    if args.limit < 1:
        return _fail("--limit: must be at least 1", 2)
    known: KnownPlaces | None = None
    map_version: int | str | None = None
    if args.places:
        got = _places(args.places)
        if isinstance(got, str):
            return _fail(got, 2)
        known, map_version = got
    elif args.map or (args.config and not args.places):
        got_map = _map_places(args)
        if isinstance(got_map, int):
            return got_map
        if got_map is not None:
            known, map_version = got_map, got_map.version
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    planogram, stock = loaded
    index = ProductIndex.build(planogram)
    hits = index.search(
        args.query, limit=args.limit, stock=stock, known_places=known, map_version=map_version
    )
    if not hits:
        return _fail(f"nothing on planogram version {planogram.version} matches {args.query!r}", 1)
    out = {
        "query": args.query,
        "planogram_version": planogram.version,
        "map_checked": known is not None,
        "results": [h.to_json(args.lang) for h in hits],
    }
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0
