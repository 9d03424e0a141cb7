"""The box's wire tools: ``edge-agent outbox`` (depth of an outbox file) and ``edge-agent loadgen``
(synthetic journey events into an outbox, optionally uplinked).

  edge-agent loadgen --rate R --count N (-c store.toml | --db PATH --store S --device D)
                     [--seed K] [--uplink [--host H --port P]] [--drain-timeout S]

With ``-c``, the store, device, outbox path and central broker come from the agent's config
(run it while the agent is stopped: one writer per outbox). ``--uplink`` also runs the uplink and,
once every event is accepted, waits until the CDP has confirmed them all. Prints one JSON line.
Exit codes: 0 done, 1 not drained in time, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    o = sub.add_parser("outbox", help="show an outbox's depth, oldest pending age and sequence")
    o.add_argument("--db", required=True)
    o.set_defaults(func=cmd_outbox)

    p = sub.add_parser("loadgen", help="append synthetic journey events (and uplink them)")
    p.add_argument("--rate", type=float, default=1000.0, help="events/s; 0 = as fast as possible")
    p.add_argument("--count", type=int, required=True, help="events in the whole run")
    p.add_argument("--config", "-c", help="take store, device, outbox and broker from this config")
    p.add_argument("--db", help="outbox file (without -c)")
    p.add_argument("--store", help="store id (without -c)")
    p.add_argument("--device", help="device id (without -c)")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="same seed, same events: runs resume (default: the device's own, from store/device)",
    )
    p.add_argument("--uplink", action="store_true", help="also publish to the central broker")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--drain-timeout", type=float, default=120.0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_agent.config import BrokerConfig, ConfigError, UplinkConfig, load_config
    from sync.loadgen import device_seed, generate
    from sync.outbox import Outbox

    if args.count < 0 or args.rate < 0:
        print("loadgen: --count and --rate must not be negative", file=sys.stderr)
        return 2
    if args.config:
        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            print(f"loadgen: {exc}", file=sys.stderr)
            return 2
        store, device = cfg.store.store_id, cfg.store.device_id
        db = cfg.paths_resolved.outbox_db
        broker, up_cfg = cfg.central, cfg.uplink
    else:
        missing = [f"--{k}" for k in ("db", "store", "device") if not getattr(args, k)]
        if missing:
            print(f"loadgen: {', '.join(missing)} required without --config", file=sys.stderr)
            return 2
        store, device, db = args.store, args.device, Path(args.db)
        broker = BrokerConfig(host=args.host, port=args.port)
        up_cfg = UplinkConfig(linger_s=0.05)
    with Outbox(db) as ob:
        uplink = None
        if args.uplink:
            from sync.uplink import Uplink

            uplink = Uplink(ob, broker, store, device, up_cfg, client_id=f"loadgen-{device}")
            uplink.start()
        try:
            res = generate(
                ob, store_id=store, device_id=device, count=args.count, rate=args.rate,
                seed=args.seed if args.seed is not None else device_seed(store, device),
            )  # fmt: skip
            out = {
                "accepted": res.accepted,
                "total": res.total,
                "seconds": round(res.seconds, 3),
                "events_per_s": round(res.rate, 1),
            }
            drained = True
            if uplink is not None:
                t0 = time.monotonic()
                drained = uplink.flush(args.drain_timeout)
                out |= {
                    "drained": drained,
                    "drain_s": round(time.monotonic() - t0, 3),
                    "depth": ob.depth(),
                    **{k: uplink.stats()[k] for k in ("publish_attempts", "resent_unconfirmed")},
                }
            print(json.dumps(out), flush=True)
            return 0 if drained else 1
        finally:
            if uplink is not None:
                uplink.stop(flush_timeout_s=0)


def cmd_outbox(args: argparse.Namespace) -> int:
    from sync.outbox import Outbox, OutboxDamaged

    if not Path(args.db).exists():
        print(f"{args.db}: no such file", file=sys.stderr)
        return 1
    try:
        # A tool that only looks: a damaged file is the agent's to set aside, not ours.
        ob = Outbox(args.db, recover=False)
    except OutboxDamaged as exc:
        print(exc, file=sys.stderr)
        return 1
    with ob:
        print(
            json.dumps(
                {
                    "depth": ob.depth(),
                    "oldest_pending_s": round(ob.oldest_pending_age_s(), 3),
                    "total_accepted": ob.total_accepted(),
                    "last_sequence": ob.last_sequence(),
                }
            )
        )
    return 0
