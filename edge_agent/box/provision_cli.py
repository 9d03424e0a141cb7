"""`edge-agent provision`: configure one HM-10 beacon module on a serial port from the layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "provision",
        help="configure an HM-10 beacon over serial from the store layout, verify, record",
    )
    p.add_argument("--layout", "-l", required=True, help="the store layout (TOML or YAML)")
    p.add_argument("--beacon", "-b", required=True, help="the beacon's name in the layout")
    p.add_argument("--port", "-p", required=True, help="serial device or pyserial URL")
    p.add_argument("--baud", type=int, default=9600, help="module baud rate (HM-10 default 9600)")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for each reply")
    p.add_argument("--record", help="JSON lines file to append the result to")
    p.add_argument("--config", "-c", help="agent.toml: record under its paths.state_dir")
    p.add_argument(
        "--dry-run", action="store_true", help="print the AT commands and replies; send nothing"
    )
    p.set_defaults(func=_cmd_provision)


def _record_path(args: argparse.Namespace) -> Path | None:
    from edge_agent.box.provision import RECORD_NAME

    if args.record:
        return Path(args.record)
    if args.config:
        from edge_agent.config import load_or_report

        cfg = load_or_report(args.config)
        return None if cfg is None else cfg.paths_resolved.state_dir / RECORD_NAME
    from edge_agent.box.install import STATE_DIR

    return STATE_DIR / RECORD_NAME


def _cmd_provision(args: argparse.Namespace) -> int:
    from edge_agent.box.layout import LayoutError, load_layout
    from edge_agent.box.provision import (
        AtPort,
        Hm10Target,
        ProvisionError,
        append_record,
        open_port,
        provision,
    )

    err = sys.stderr
    try:
        layout = load_layout(args.layout)
        target = Hm10Target.from_layout(layout, layout.beacon(args.beacon))
    except LayoutError as exc:
        for line in exc.errors:
            print(f"{args.layout}: {line}", file=err)
        return 2
    except ProvisionError as exc:
        print(f"edge-agent provision: {exc}", file=err)
        return 2
    if args.dry_run:
        for cmd, reply in target.sequence():
            print(f"{cmd:<18} -> {reply}")
        return 0
    record = _record_path(args)
    if record is None:
        return 2
    try:
        port = open_port(args.port, args.baud)
    except ProvisionError as exc:
        print(f"edge-agent provision: {exc}", file=err)
        return 2
    try:
        result = provision(AtPort(port, args.port, timeout=args.timeout), target)
    finally:
        port.close()
    result.store_id = layout.store.store_id
    try:
        append_record(record, result)
    except OSError as exc:
        print(f"edge-agent provision: cannot write the record {record}: {exc.strerror}", file=err)
        return 1
    if result.status != "verified":
        done = ", ".join(result.verified) or "nothing"
        print(
            f"edge-agent provision: {args.beacon}: FAILED at {result.stage}: {result.error} "
            f"(verified: {done}; record: {record})",
            file=err,
        )
        return 1
    acked = ", ".join(result.set_only)
    also = f"; {acked} acknowledged, the datasheet has no query for it" if acked else ""
    print(
        f"{args.beacon}: verified ({len(result.verified)} settings after reset{also}; module "
        f"{result.address}) in {result.duration_s:g} s; record: {record}"
    )
    return 0
