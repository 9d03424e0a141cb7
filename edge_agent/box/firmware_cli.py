"""`edge-agent firmware render LAYOUT`: ESPHome configs and the agent fragment from a layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("firmware", help="firmware for ESP32 nodes, from the store layout")
    fw = p.add_subparsers(dest="firmware_command", required=True)
    r = fw.add_parser(
        "render", help="render ESPHome YAML per node and agent-fragment.toml from a layout"
    )
    r.add_argument("layout", help="the store layout (TOML or YAML)")
    r.add_argument("--out", default="out/firmware", help="output directory (default out/firmware)")
    r.set_defaults(func=_cmd_render)
    c = fw.add_parser("check", help="validate a layout; exit 2 with every error")
    c.add_argument("layout")
    c.set_defaults(func=_cmd_check)


def _load(path: str):
    from edge_agent.box.layout import LayoutError, load_layout

    try:
        return load_layout(path)
    except LayoutError as exc:
        for line in exc.errors:
            print(f"{path}: {line}", file=sys.stderr)
        return None


def _cmd_check(args: argparse.Namespace) -> int:
    layout = _load(args.layout)
    if layout is None:
        return 2
    print(
        f"{args.layout}: OK ({len(layout.zones)} zones, {len(layout.beacons)} beacons, "
        f"{len(layout.scanners)} scanners, {len(layout.presence_sensors)} presence sensors)"
    )
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from edge_agent.box.firmware import render, write_rendered

    layout = _load(args.layout)
    if layout is None:
        return 2
    try:
        paths = write_rendered(render(layout, args.layout), Path(args.out))
    except OSError as exc:
        print(f"edge-agent firmware render: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0
