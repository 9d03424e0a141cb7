"""`edge-agent`: run the agent, check config, decode adverts, check the box, benchmark, demo."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

# Command groups that live beside their code: each module has `register(subparsers)`, which must
# stay cheap (import heavy things inside the handlers), because every invocation builds them all.
COMMAND_MODULES: list[str] = [
    "edge_agent.journey.campaigns_cli",
    "sync.cli",
    # The demo is a whole store with its headquarters (box, player, CDP sink): launched from
    # here, it lives apart so that the box never imports the central side.
    "demo.cli",
    "edge_agent.box.provision_cli",
    "edge_agent.box.firmware_cli",
    "edge_agent.sensing.ble.cli",
    "edge_agent.slice.cli",
    "edge_agent.box.install_cli",
    # The client certificate by hand (the way back for an expired one): `edge-agent cert ...`.
    "edge_agent.box.cert_cli",
    # Over-the-air releases (issue 20): `edge-agent release status|install|pre-start|supervise`.
    "edge_agent.box.release_cli",
    "edge_agent.store_api.cli",
    # Positioning from phone scans (issue 16): `edge-agent position eval|locate`.
    "edge_agent.positioning.cli",
]

BENCHES = {
    "ble": "bench.ble",
    "ble_decode": "bench.ble_decode",
    "camera": "bench.camera",
    "outbox": "bench.outbox",
    "sync": "bench.sync",
    "chaos": "bench.chaos",
    "ui": "bench.ui",
    "presence": "bench.presence",
    "decide": "bench.decide",
    "profiles": "bench.profiles",
    "box": "bench.box",
    "wayfinding": "bench.wayfinding",
    "product-search": "bench.product_search",
    "wayfinding-e2e": "bench.wayfinding_e2e",
    "store-api": "bench.store_api",
    "zone-to-frame": "bench.zone_to_frame",
    "position": "bench.position",
    # Issue 19: simulated stores through a nats cluster into PostgreSQL, 1/2/4 JetStream sinks.
    "fleet": "bench.fleet",
    # The sink's CPU per event into PostgreSQL: a transaction per batch or per fetch.
    "cdp-ingest": "bench.cdp_ingest",
}


def _cmd_config_check(args: argparse.Namespace) -> int:
    from edge_agent.config import load_for_agent

    if load_for_agent(args.file) is None:
        return 2
    print(f"{args.file}: OK")
    return 0


def _cmd_ble_decode(args: argparse.Namespace) -> int:
    from edge_agent.sensing.ble.decode_cli import run_decode

    return run_decode(sys.stdin, sys.stdout)


def _cmd_bench(args: argparse.Namespace) -> int:
    names = list(BENCHES) if args.name == "all" else [args.name]
    for name in names:
        try:
            mod = importlib.import_module(BENCHES[name])
        except ModuleNotFoundError as exc:
            print(json.dumps({"bench": name, "error": f"not available: {exc}"}))
            continue
        extra: dict[str, object] = {}
        if args.searches is not None and name == "wayfinding-e2e":
            extra["frames"] = args.searches
        if name == "fleet":
            extra["stores"] = args.stores
            extra["per_store"] = args.per_store
        if args.walk is not None and name == "ble":
            extra["walk"] = args.walk
        if args.seed is not None and name == "ble":
            extra["seed"] = args.seed
        if args.baseline is not None and name == "box":
            extra["baseline"] = args.baseline
        try:
            result = mod.run(quick=args.quick, **extra)
        except (OSError, ValueError) as exc:
            if "walk" not in extra:
                raise
            # A walk file that cannot be read or used: one line, as for a bad config.
            why = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) else str(exc)
            print(f"edge-agent bench ble: {why}", file=sys.stderr)
            return 2
        print(json.dumps({"bench": name, **result}, indent=2))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from edge_agent.config import load_for_agent

    # Refuse a broken config (or a missing trace) before importing or starting anything else.
    if load_for_agent(args.config) is None:
        return 2
    from edge_agent.app.main import run_agent_cli
    from edge_agent.box.logs import setup_logging

    setup_logging()  # JSON lines under journald / when piped, text on a terminal
    return run_agent_cli(args.config)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from edge_agent.box.doctor import run_doctor

    return run_doctor(args.config)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-agent", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the agent")
    run.add_argument("--config", "-c", required=True)
    run.set_defaults(func=_cmd_run)

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    check = cfg_sub.add_parser("check", help="validate a config file; exit 2 with every error")
    check.add_argument("file")
    check.set_defaults(func=_cmd_config_check)

    ble = sub.add_parser("ble", help="BLE tools")
    ble_sub = ble.add_subparsers(dest="ble_command", required=True)
    dec = ble_sub.add_parser("decode", help="decode one bleak-shaped JSON advert from stdin")
    dec.set_defaults(func=_cmd_ble_decode)

    doc = sub.add_parser("doctor", help="check this box: OK/WARN/FAIL table")
    doc.add_argument("--config", "-c")
    doc.set_defaults(func=_cmd_doctor)

    bench = sub.add_parser("bench", help="benchmarks, printed as JSON")
    bench.add_argument("name", choices=[*BENCHES, "all"])
    bench.add_argument("--quick", action="store_true", help="small sizes, for smoke runs")
    bench.add_argument(
        "--searches",
        type=int,
        metavar="N",
        help="wayfinding-e2e: searches to the kiosk's first frame (default 200, 20 with --quick)",
    )
    bench.add_argument(
        "--baseline",
        metavar="REF",
        help="box: measure this git commit too, interleaved in the same run, with ratios",
    )
    bench.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="ble: the simulated store's seed, radio and camera alike (11, the reported one)",
    )
    bench.add_argument(
        "--stores", type=int, metavar="N", help="fleet: simulated stores (2000; 100 with --quick)"
    )
    bench.add_argument(
        "--per-store",
        type=int,
        metavar="N",
        help="fleet: events each store sends per phase (20)",
    )
    bench.add_argument(
        "--walk",
        metavar="FILE",
        help="ble: score the pipelines on a recorded walk (state_dir/walks/*.jsonl) instead",
    )
    bench.set_defaults(func=_cmd_bench)

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)

    # `edge-agent map ...`: wayfinding, one group shared by its parts; each adds its own commands.
    map_group = sub.add_parser("map", help="store map, routes and the product finder")
    map_sub = map_group.add_subparsers(dest="map_command", required=True)
    # Map core: `map check|author|route|render` (edge_agent/wayfinding/cli.py).
    from edge_agent.wayfinding.cli import add_map_parsers

    add_map_parsers(map_sub)
    # Product finder: `map find` (edge_agent/wayfinding/products_cli.py).
    from edge_agent.wayfinding.products_cli import add_find_parser

    add_find_parser(map_sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
