"""`edge-agent install`: units, config, users and state directories on the box."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "install",
        help="install the systemd units, config, service users and state dirs (Debian/Pi OS)",
    )
    p.add_argument("--root", default="/", help="lay out under this directory (an image, a test)")
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument("--prefix", help="the checkout with .venv (default: this venv's checkout)")
    p.add_argument("--config", "-c", help="agent.toml to install (validated; never overwrites)")
    p.add_argument("--screen", action="append", default=[], help="enable signage-ui@SCREEN")
    p.add_argument("--with-mosquitto", action="store_true", help="also the hardened local bus")
    p.add_argument(
        "--bus-nodes",
        metavar="DIR",
        help="with --with-mosquitto: the store LAN listener for ESP32 nodes, from "
        "`edge-agent firmware render LAYOUT --out OUT` (DIR = OUT/mosquitto)",
    )
    p.add_argument("--no-enable", action="store_true", help="do not run systemctl enable")
    p.set_defaults(func=_cmd_install)


def _cmd_install(args: argparse.Namespace) -> int:
    from edge_agent.box.install import InstallError, Options, apply, default_prefix, plan

    root = Path(args.root).resolve()
    opts = Options(
        root=root,
        prefix=Path(args.prefix) if args.prefix else default_prefix(),
        config=Path(args.config) if args.config else None,
        screens=tuple(args.screen),
        with_mosquitto=args.with_mosquitto,
        bus_nodes=Path(args.bus_nodes) if args.bus_nodes else None,
        enable=not args.no_enable,
    )
    try:
        actions = plan(opts)
        if args.dry_run:
            for a in actions:
                print(a.describe())
            return 0
        apply(actions, root)
    except InstallError as exc:
        print(f"edge-agent install: {exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:
        print(
            f"edge-agent install: {exc.filename}: permission denied (run as root)", file=sys.stderr
        )
        return 2
    if root == Path("/") and opts.config is None:
        print("next: put the store's config in /etc/edge-agent/agent.toml, then start the units")
    return 0
