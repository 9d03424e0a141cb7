"""`edge-agent api -c agent.toml [--host H] [--port P]`: the local store API for phones.

Its own process (and systemd unit), not a thread of the agent: a phone rush must not slow the
agent's loops, a fault in the web stack must not take presence down, and the unit can be
sandboxed read-only over the agent's state (it only reads the map and the planogram)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("api", help="serve the local store API for phones (map, products, routes)")
    p.add_argument("--config", "-c", required=True, help="the store's agent.toml")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (store network)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--rate", type=float, default=10.0, help="requests per second per client")
    p.add_argument("--burst", type=int, default=30, help="burst per client")
    p.add_argument("--certfile", help="TLS certificate (the store's), PEM")
    p.add_argument("--keyfile", help="TLS private key, PEM")
    p.add_argument(
        "--count-interval",
        type=float,
        default=60.0,
        help="seconds between sends of closed hours' route counts to the agent",
    )
    p.set_defaults(func=_cmd_api)


def _cmd_api(args: argparse.Namespace) -> int:
    import logging
    import sys

    import uvicorn

    from edge_agent.config import load_or_report
    from edge_agent.store_api.app import create_app
    from edge_agent.store_api.data import NoMap, StoreData
    from edge_agent.store_api.route_counts import RouteCounts
    from edge_agent.store_api.route_sender import RouteCountSender

    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    if bool(args.certfile) != bool(args.keyfile):
        print("edge-agent api: give both --certfile and --keyfile, or neither", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data = StoreData(cfg)
    try:
        data.map()  # said at start: a box without a map still serves, with 503 per request
    except NoMap as exc:
        print(f"edge-agent api: {exc}", file=sys.stderr)
    counts = RouteCounts()
    # Routes asked per destination per hour: the only thing phones leave, sent to the agent.
    sender = RouteCountSender(
        counts,
        cfg.bus,
        cfg.store.store_id,
        cfg.store.device_id,
        interval_s=args.count_interval,
    ).start()
    app = create_app(data, rate=args.rate, burst=args.burst, counts=counts, on_stop=sender.stop)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        ssl_certfile=args.certfile,
        ssl_keyfile=args.keyfile,
        log_level="warning",
        # Phones on shop Wi-Fi: bounded work in flight, bounded keep-alive.
        limit_concurrency=512,
        timeout_keep_alive=5,
        server_header=False,
    )
    data.close()
    return 0
