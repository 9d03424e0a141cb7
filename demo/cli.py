"""``edge-agent demo``: the embedded demo store, end to end (demo/runner.py)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from demo.runner import run_demo

    return run_demo(
        out_dir=args.out,
        duration_s=args.duration,
        headless=args.headless,
        speed=args.speed,
        broker=args.broker,
    )


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the embedded demo store end to end")
    demo.add_argument("--out", default="out")
    demo.add_argument("--duration", type=float, default=None, help="scenario seconds to play")
    demo.add_argument(
        "--headless", action="store_true", help="draw the player on a private Xvfb display"
    )
    demo.add_argument("--speed", type=float, default=4.0, help="replay speed (default 4x)")
    demo.add_argument("--broker", help="HOST:PORT of a running broker instead of a private one")
    demo.set_defaults(func=run)
