"""`edge-agent map check|author|route|render`: the store map from a shell.

PATH is an IMDF archive (.zip), an IMDF folder, or a store plan (.toml, authored in memory).
Exit codes: 0 fine (warnings included), 1 no route (one line on stderr saying why), 2 a map or
plan with errors (every error on stderr, each naming its feature or key).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI builds every parser on each call: import the map code lazily
    from edge_agent.wayfinding.imdf import ImportResult
    from edge_agent.wayfinding.model import VenueMap
    from edge_agent.wayfinding.route import Place, Route


def add_map_parsers(m: Any) -> None:
    """Add the map core's commands to the ``map`` group's subparsers (shared with ``map find``)."""

    c = m.add_parser("check", help="validate an IMDF archive/folder or a store plan")
    c.add_argument("path")
    c.set_defaults(func=_cmd_check)

    a = m.add_parser("author", help="write IMDF from a store plan (TOML)")
    a.add_argument("plan")
    a.add_argument("--out", required=True, help="a folder, or FILE.zip for an archive")
    a.set_defaults(func=_cmd_author)

    for name, helptext in (
        ("route", "the way between two places as JSON"),
        ("render", "draw the plan and the way as PNG"),
    ):
        r = m.add_parser(name, help=helptext)
        r.add_argument(
            "path", nargs="?", help="the map (default with -c: the box's pushed map in use)"
        )
        r.add_argument(
            "--from",
            dest="src",
            required=True,
            help="feature id, name, screen:ID, kiosk:ID, sku:SKU",
        )
        r.add_argument("--to", dest="dst", required=True)
        r.add_argument("--accessible", action="store_true", help="no stairs, no escalators")
        r.add_argument("--lang", default="en", help="the shopper's language (en, de)")
        add_planogram_args(r)
        if name == "render":
            r.add_argument("--out", required=True, help="FILE.png")
            r.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT (default 1280x720)")
            r.set_defaults(func=_cmd_render)
        else:
            r.set_defaults(func=_cmd_route)


def add_planogram_args(p: Any) -> None:
    """Where ``sku:`` references and ``map find`` take their products and map version from."""
    p.add_argument("--planogram", help="for sku:SKU: an ERP export (.csv, .json) or a planogram.db")
    p.add_argument("--config", "-c", help="agent.toml: the box's planogram, stock and pushed map")
    p.add_argument(
        "--map-version",
        help="the version to name in refusals (default: a pushed map's own, else a digest)",
    )


def map_version(path: str, given: str | None) -> int | str:
    """The version a refusal names: given, a pushed map's (its folder), else the first 8 hex
    of the map files' sha256 (two different local maps never share one)."""
    import hashlib

    from edge_agent.wayfinding.map_store import version_of

    if given:
        return int(given) if given.isdigit() else given
    p = Path(path)
    v = version_of(p) if p.is_dir() else None
    if v is not None:
        return v
    h = hashlib.sha256()
    try:
        for f in sorted(p.iterdir()) if p.is_dir() else [p]:
            if f.is_file():
                h.update(f.name.encode() + b"\0" + f.read_bytes())
    except OSError:
        pass
    return h.hexdigest()[:8]


def map_path(args: argparse.Namespace) -> str | None:
    """PATH, or with -c the box's map in use (``<state_dir>/map/current``)."""
    if getattr(args, "path", None):
        return str(args.path)
    if getattr(args, "config", None):
        from edge_agent.config import load_or_report

        cfg = load_or_report(args.config)
        if cfg is None:
            return None
        current = cfg.paths_resolved.state_dir / "map" / "current"
        if not current.exists():
            print(f"edge-agent map: {current}: no map pushed to this box yet", file=sys.stderr)
            return None
        return str(current)
    print("edge-agent map: give the map PATH or -c agent.toml", file=sys.stderr)
    return None


def _import(path: str) -> tuple[ImportResult, list[str], list[str]]:
    """(ImportResult, plan errors): a plan is authored in memory first."""
    from edge_agent.wayfinding.imdf import ImportResult, load_imdf

    if path.lower().endswith(".toml"):
        from edge_agent.wayfinding.plan import PlanError, author, load_plan

        try:
            plan, layout = load_plan(path)
        except PlanError as exc:
            return ImportResult(None), exc.errors, []
        _, result, errors, warnings = author(plan, layout)
        return result, errors, warnings
    result = load_imdf(path)
    return result, [str(e) for e in result.errors], [str(w) for w in result.warnings]


def _load_map(path: str) -> VenueMap | None:
    result, errors, _ = _import(path)
    if errors or result.venue is None:
        for line in errors or ["no map"]:
            print(f"{path}: {line}", file=sys.stderr)
        return None
    return result.venue


def _cmd_check(args: argparse.Namespace) -> int:
    result, errors, warnings = _import(args.path)
    counts = ", ".join(f"{n} {t}" for t, n in sorted(result.counts.items()))
    for w in warnings:
        print(f"{args.path}: warning: {w}", file=sys.stderr)
    for e in errors:
        print(f"{args.path}: error: {e}", file=sys.stderr)
    print(f"{args.path}: {counts or 'no features'}")
    if errors:
        print(f"{args.path}: {len(errors)} error(s), {len(warnings)} warning(s)")
        return 2
    print(f"{args.path}: OK ({len(warnings)} warning(s))")
    return 0


def _cmd_author(args: argparse.Namespace) -> int:
    import zipfile

    from contracts.files import atomic_write
    from edge_agent.wayfinding.plan import PlanError, author, load_plan

    try:
        plan, layout = load_plan(args.plan)
    except PlanError as exc:
        for line in exc.errors:
            print(f"{args.plan}: {line}", file=sys.stderr)
        return 2
    files, _, errors, warnings = author(plan, layout)
    for w in warnings:
        print(f"{args.plan}: warning: {w}", file=sys.stderr)
    if errors:
        for e in errors:
            print(f"{args.plan}: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        if out.suffix.lower() == ".zip":
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".zip.tmp")
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, data in sorted(files.items()):
                    # A fixed date: the same plan gives the same archive, byte for byte.
                    zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
            tmp.replace(out)
        else:
            out.mkdir(parents=True, exist_ok=True)
            for name, data in sorted(files.items()):
                atomic_write(out / name, data)
    except OSError as exc:
        print(f"edge-agent map author: {exc.filename or out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"{out}: {len(files)} files")
    return 0


def _route(args: argparse.Namespace) -> tuple[int, VenueMap | None, Route | None]:
    from edge_agent.wayfinding.graph import build_graph
    from edge_agent.wayfinding.route import NoRoute, RefError, Resolver, plan_route, resolve_ref

    path = map_path(args)
    if path is None:
        return 2, None, None
    venue = _load_map(path)
    if venue is None:
        return 2, None, None
    resolvers: dict[str, Resolver] = {}
    if any(ref.startswith("sku:") for ref in (args.src, args.dst)):
        from edge_agent.wayfinding.product_places import MapPlaces
        from edge_agent.wayfinding.products_cli import load_planogram

        loaded = load_planogram(args, "edge-agent map")
        if isinstance(loaded, int):
            return loaded, None, None
        places = MapPlaces(venue, map_version(path, args.map_version))
        resolvers["sku"] = places.resolver(loaded[0].by_sku())
    try:
        start = resolve_ref(venue, args.src, resolvers)
        end = resolve_ref(venue, args.dst, resolvers)
        route = plan_route(build_graph(venue), start, end, accessible=args.accessible)
    except (RefError, NoRoute) as exc:
        print(f"edge-agent map: {exc}", file=sys.stderr)
        return 1, venue, None
    return 0, venue, route


def route_json(venue: VenueMap, route: Route, language: str) -> dict[str, Any]:
    from edge_agent.wayfinding.model import label
    from edge_agent.wayfinding.steps import route_steps

    def place(p: Place) -> dict[str, Any]:
        return {
            "kind": p.kind,
            "id": p.id,
            "name": label(p.name, language, p.id),
            "level": p.level_id,
        }

    levels = [
        {
            "id": lid,
            "ordinal": venue.levels[lid].ordinal,
            "name": label(venue.levels[lid].name, language, lid),
        }
        for lid in route.levels
    ]
    ordinal = {lid: venue.levels[lid].ordinal for lid in venue.levels}
    return {
        "from": place(route.start),
        "to": place(route.end),
        "distance_m": round(route.distance_m, 1),
        "walking_time_s": round(route.walking_time_s),
        "accessible": route.accessible,
        "levels": levels,
        "uses": route.uses,
        "language": language,
        "steps": [s.to_json() for s in route_steps(route, venue, language)],
        "path": [[round(w.x, 2), round(w.y, 2), ordinal[w.level_id]] for w in route.waypoints],
    }


def _cmd_route(args: argparse.Namespace) -> int:
    code, venue, route = _route(args)
    if route is None or venue is None:
        return code
    print(json.dumps(route_json(venue, route, args.lang), ensure_ascii=False, indent=2))
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
        if not (160 <= w <= 7680 and 120 <= h <= 4320):
            raise ValueError
    except ValueError:
        print(f"edge-agent map render: --size {args.size!r} is not WIDTHxHEIGHT", file=sys.stderr)
        return 2
    code, venue, route = _route(args)
    if route is None or venue is None:
        return code
    import cv2

    from edge_agent.wayfinding.render import render

    canvas = render(venue, route, args.lang, (w, h))
    ok, png = cv2.imencode(".png", canvas.image)
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(png.tobytes())
    except OSError as exc:
        print(f"edge-agent map render: {out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(out)
    return 0 if ok else 1
