"""`edge-agent ble calibrate`: measure a receiver's RSSI at 1 m with a reference beacon.

The installer holds (or places) a known beacon 1 m in front of the screen's receiver and runs::

    edge-agent ble calibrate -c agent.toml --beacon entrance-door --source serial:/dev/ttyUSB0
    edge-agent ble calibrate --uuid f7826da6-... --major 100 --minor 1 \\
        --source replay:capture.jsonl --out ble-calibration.json

It collects ``--samples`` adverts of that beacon (iBeacon identity) heard by ``--receiver``
(``local`` for the box's radio, else the scanner node's id), writes their median to the
calibration file and prints one JSON line. Run it again with ``--at-m 3`` at 3 m to fit the
path-loss exponent too. Nothing about the beacon's address is printed or written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.sensing.presence import CALIBRATION_FILE as DEFAULT_FILE


@dataclass
class Target:
    uuid: str  # 32 lowercase hex digits, no dashes
    major: int
    minor: int
    name: str


@dataclass
class Collector:
    """The advert callback of a calibration run: keeps RSSI of the target beacon only."""

    target: Target
    receiver: str
    want: int
    rssi: list[float] = field(default_factory=list)
    other_receivers: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, advert: Any) -> None:
        from edge_agent.sensing.ble.decode import decode_advert

        if len(self.rssi) >= self.want:
            return  # a replay runs on until the wait notices: keep exactly what was asked
        for frame in decode_advert(advert).frames:
            if frame.format != "ibeacon":
                continue
            f = frame.fields
            if (str(f["uuid"]).replace("-", ""), f["major"], f["minor"]) != (
                self.target.uuid,
                self.target.major,
                self.target.minor,
            ):
                continue
            if advert.receiver != self.receiver:
                self.other_receivers += 1
                continue
            self.rssi.append(float(advert.rssi))
            if len(self.rssi) >= self.want:
                self.done.set()


def _fail(msg: str, code: int = 1) -> int:
    print(f"edge-agent ble calibrate: {msg}", file=sys.stderr)
    return code


def _target(args: argparse.Namespace, cfg: Any) -> Target | str:
    if args.beacon:
        if cfg is None:
            return "--beacon needs -c/--config (beacons are named there); or give --uuid"
        for b in cfg.ble.beacons:
            if b.name == args.beacon:
                if b.uuid is None or b.major is None or b.minor is None:
                    return f"--beacon: {b.name!r} has no iBeacon identity to calibrate with"
                return Target(b.uuid.replace("-", "").lower(), b.major, b.minor, b.name)
        names = ", ".join(b.name for b in cfg.ble.beacons) or "none configured"
        return f"--beacon: no beacon named {args.beacon!r} in the config ({names})"
    if args.uuid is None or args.major is None or args.minor is None:
        return "name the reference beacon: --beacon NAME, or --uuid, --major and --minor"
    u = args.uuid.replace("-", "").lower()
    if len(u) != 32 or any(c not in "0123456789abcdef" for c in u):
        return f"--uuid: {args.uuid!r} is not a 128-bit UUID"
    if not (0 <= args.major <= 65535 and 0 <= args.minor <= 65535):
        return "--major/--minor: must be 0..65535"
    return Target(u, args.major, args.minor, f"ibeacon {args.major}/{args.minor}")


def _source(spec: str, baud: int) -> Any:
    from edge_agent.sensing.ble.sources import ReplaySource, SerialSource

    kind, _, rest = spec.partition(":")
    if kind == "replay" and rest:
        path = Path(rest)
        if not path.is_file():
            raise ValueError(f"--source: no trace file at {path}")
        return ReplaySource(path)
    if kind == "serial" and rest:
        return SerialSource(rest, baud)
    if kind == "bleak":
        from edge_agent.sensing.ble.sources import BleakSource

        return BleakSource(adapter=rest or None)
    raise ValueError(f"--source: {spec!r} is not replay:PATH, serial:URL or bleak[:ADAPTER]")


async def _collect(source: Any, col: Collector, timeout: float) -> None:
    task = asyncio.create_task(source.run(col))
    waiter = asyncio.create_task(col.done.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, waiter):
            t.cancel()
        results = await asyncio.gather(task, waiter, return_exceptions=True)
    exc = results[0]
    if isinstance(exc, Exception) and not isinstance(exc, asyncio.CancelledError):
        raise exc


def cmd_calibrate(args: argparse.Namespace) -> int:
    from edge_agent.sensing.ble import calibrate as cal
    from edge_agent.sensing.ble.sources import SourceError

    cfg = None
    if args.config:
        from edge_agent.config import load_or_report

        cfg = load_or_report(args.config)
        if cfg is None:
            return 2
    target = _target(args, cfg)
    if isinstance(target, str):
        return _fail(target, 2)
    if args.out:
        out = Path(args.out)
    elif cfg is not None:
        out = cfg.ble.calibration_file or cfg.paths_resolved.state_dir / DEFAULT_FILE
    else:
        return _fail("--out is required without -c/--config", 2)
    if not 0.1 <= args.at_m <= 30:
        return _fail("--at-m: must be 0.1..30 metres", 2)
    try:
        existing = cal.load(out)
        source = _source(args.source, args.baud)
    except (cal.CalibrationError, ValueError) as exc:
        return _fail(str(exc), 2)
    col = Collector(target, args.receiver, args.samples)
    try:
        asyncio.run(_collect(source, col, args.timeout))
    except SourceError as exc:
        return _fail(str(exc))
    if len(col.rssi) < min(args.samples, 10):
        hint = (
            f" ({col.other_receivers} heard by other receivers: check --receiver)"
            if col.other_receivers
            else ""
        )
        return _fail(
            f"only {len(col.rssi)} adverts from {target.name} within {args.timeout:g}s "
            f"(need {min(args.samples, 10)}){hint}"
        )
    level, spread = cal.summarise(col.rssi)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    prev = existing.get(args.receiver)
    if args.at_m == 1.0:
        n = prev.path_loss_n if prev else args.n
        entry = cal.Calibration(
            round(level, 1), n, len(col.rssi), round(spread, 1), target.name, now
        )
    else:
        # A second point: the 1 m level must exist, the exponent comes from the two.
        if prev is None or not prev.samples:
            return _fail(f"calibrate {args.receiver!r} at 1 m first, then at {args.at_m:g} m")
        if args.at_m > 1.0:
            try:
                n = cal.fit_exponent(prev.rssi_1m, level, args.at_m)
            except cal.CalibrationError as exc:
                return _fail(str(exc))
        else:
            return _fail("--at-m: the second point must be further than 1 m", 2)
        entry = replace(prev, path_loss_n=n, at=now)
    existing[args.receiver] = entry
    try:
        cal.save(out, existing)
    except OSError as exc:
        return _fail(f"cannot write {out}: {exc.strerror or exc}")
    print(
        json.dumps(
            {
                "receiver": args.receiver,
                "beacon": target.name,
                "at_m": args.at_m,
                "samples": len(col.rssi),
                "median_rssi": round(level, 1),
                "spread_db": round(spread, 1),
                "rssi_1m": entry.rssi_1m,
                "path_loss_n": entry.path_loss_n,
                "file": str(out),
            }
        )
    )
    return 0


def _add_calibrate(ble_sub: Any) -> None:
    p = ble_sub.add_parser(
        "calibrate", help="record a reference beacon at 1 m and write the calibration file"
    )
    p.add_argument("--config", "-c", help="agent config (beacon names, default output file)")
    p.add_argument("--source", required=True, help="replay:PATH, serial:URL or bleak[:ADAPTER]")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--receiver", default="local", help="receiver id: local or a scanner node")
    p.add_argument("--beacon", help="a beacon name from [[ble.beacons]]")
    p.add_argument("--uuid")
    p.add_argument("--major", type=int)
    p.add_argument("--minor", type=int)
    p.add_argument("--at-m", type=float, default=1.0, help="beacon distance (1 m; >1 fits n)")
    p.add_argument("--samples", type=int, default=60)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for samples")
    p.add_argument("--n", type=float, default=2.0, help="path-loss exponent until measured")
    p.add_argument("--out", help="calibration file (default: the config's, or state dir)")
    p.set_defaults(func=cmd_calibrate)


def register(sub: Any) -> None:
    """Add ``ble calibrate`` under the existing ``ble`` command (or create ``ble``)."""
    ble = sub.choices.get("ble")
    if ble is None:
        ble = sub.add_parser("ble", help="BLE tools")
    ble_sub = next(
        (a for a in ble._actions if isinstance(a, argparse._SubParsersAction)),  # noqa: SLF001
        None,
    )
    if ble_sub is None:
        ble_sub = ble.add_subparsers(dest="ble_command", required=True)
    _add_calibrate(ble_sub)
