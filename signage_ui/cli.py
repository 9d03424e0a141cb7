"""`signage-ui`: the signage player for one screen, in its own process."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="signage-ui", description=__doc__)
    p.add_argument("--config", "-c", required=True)
    p.add_argument("--screen", required=True, help="screen id from the config")
    p.add_argument("--screenshot-dir", type=Path, help="save a PNG of every content change here")
    p.add_argument("--exit-after", type=float, help="stop cleanly after this many seconds")
    p.add_argument("--broker-host")
    p.add_argument("--broker-port", type=int)
    args = p.parse_args(argv)

    from edge_agent.config import load_or_report

    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    screens = {s.id: s for s in cfg.screens}
    if args.screen not in screens:
        print(f"{args.config}: screens: no screen {args.screen!r}", file=sys.stderr)
        return 2
    screen = screens[args.screen]
    bus = cfg.bus.model_copy(
        update={k: v for k, v in (("host", args.broker_host), ("port", args.broker_port)) if v}
    )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    # Kivy reads these at import time: no argv parsing (it would eat ours), no log files.
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
    from kivy.config import Config

    width, height = screen.width, screen.height
    if screen.orientation == "portrait" and width > height:
        width, height = height, width
    Config.set("graphics", "width", str(width))
    Config.set("graphics", "height", str(height))
    Config.set("graphics", "resizable", "0")
    Config.set("input", "mouse", "mouse,disable_multitouch")

    from signage_ui.player import PlayerApp

    PlayerApp(
        cfg, args.screen, bus=bus, screenshot_dir=args.screenshot_dir, exit_after=args.exit_after
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
