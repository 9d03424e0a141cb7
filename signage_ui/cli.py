"""`signage-ui`: the signage player for one screen, or (`--kiosk`) a staff kiosk, each in its own
process; `--bench` measures the player (JSON on stdout)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _kivy_window(width: int, height: int) -> None:
    # Kivy reads these at import time: no argv parsing (it would eat ours), no log files.
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
    # Kivy makes its home with exists-then-mkdir: two players starting together on one home
    # (a boot, a test) crash with FileExistsError. Making it first, race-free, avoids that.
    home = os.environ.get("KIVY_HOME")
    if home:
        os.makedirs(os.path.join(home, "mods"), mode=0o700, exist_ok=True)
    from kivy.config import Config

    Config.set("graphics", "width", str(width))
    Config.set("graphics", "height", str(height))
    Config.set("graphics", "resizable", "0")
    # A mouse click is one touch (kiosk screens), no red multitouch dots.
    Config.set("input", "mouse", "mouse,disable_multitouch")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="signage-ui", description=__doc__)
    p.add_argument("--config", "-c", help="the box's TOML config (store, screens, bus, paths)")
    p.add_argument("--screen", help="screen id from the config (the player)")
    p.add_argument("--kiosk", action="store_true", help="run the staff kiosk instead")
    p.add_argument("--kiosk-id", default="kiosk-1", help="this kiosk's id (survey answers)")
    p.add_argument("--size", default="1024x600", help="kiosk window size, WxH")
    p.add_argument("--bench", action="store_true", help="measure the player; JSON on stdout")
    p.add_argument("--quick", action="store_true", help="with --bench: a short run")
    p.add_argument("--content-dir", type=Path, help="content cache (default: paths.content_dir)")
    p.add_argument("--screenshot-dir", type=Path, help="save a PNG of every content change here")
    p.add_argument("--exit-after", type=float, help="stop cleanly after this many seconds")
    p.add_argument("--broker-host")
    p.add_argument("--broker-port", type=int)
    args = p.parse_args(argv)

    if args.bench:
        from bench.ui import run

        print(json.dumps({"bench": "ui", **run(quick=args.quick)}, indent=2))
        return 0
    if not args.config:
        p.error("--config is required")

    from edge_agent.config import load_or_report

    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    bus = cfg.bus.model_copy(
        update={k: v for k, v in (("host", args.broker_host), ("port", args.broker_port)) if v}
    )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    if args.kiosk:
        try:
            width, height = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            print(f"--size: {args.size!r} is not WxH (e.g. 1024x600)", file=sys.stderr)
            return 2
        _kivy_window(width, height)
        from signage_ui.kiosk import KioskApp

        KioskApp(
            cfg,
            args.kiosk_id,
            bus=bus,
            screenshot_dir=args.screenshot_dir,
            exit_after=args.exit_after,
        ).run()
        return 0

    if not args.screen:
        p.error("--screen is required (or --kiosk)")
    screens = {s.id: s for s in cfg.screens}
    if args.screen not in screens:
        print(f"{args.config}: screens: no screen {args.screen!r}", file=sys.stderr)
        return 2
    screen = screens[args.screen]
    width, height = screen.width, screen.height
    if screen.orientation == "portrait" and width > height:
        width, height = height, width
    _kivy_window(width, height)
    from signage_ui.player import PlayerApp

    PlayerApp(
        cfg,
        args.screen,
        bus=bus,
        screenshot_dir=args.screenshot_dir,
        exit_after=args.exit_after,
        content_dir=args.content_dir,
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
