"""``edge-ops``: the central ops side in one small CLI.

  edge-ops keygen --out DIR
  edge-ops push KIND FILE.json --store S [--device D] --version N --key ops_private.pem
                (KIND map also takes an IMDF folder or .zip: pushed as map version N;
                 KIND planogram an ERP's CSV export: pushed as planogram version N)
                [--expires-in 3600] [--max-bytes B] [--host H] [--port P] [--wait-ack [SECONDS]]
  every command that talks to a broker: [--ca CA.pem --cert ops.crt --tls-key ops.key]
                (TLS to the fleet broker with the ops role's certificate; exit 1 if unreachable)
                (a signed message over the boxes' limit is refused before it is sent)
  edge-ops push-slice FILE.json --store S [--device D] --key ops_private.pem --start-version N
                [--part-rows R] [--max-bytes B] [--only 3,7] [--wait-ack [SECONDS]]
                (a profile snapshot too big for one message, as signed parts)
  edge-ops cdp-sink --db PATH|postgresql://DSN [--host H] [--port P] [--group G] [--stdout]
                [--client-id ID] [--session-expiry S]
                (a DSN: the PostgreSQL store any number of sinks share; a path: SQLite)
  edge-ops cdp-sink --db PATH|DSN --nats nats://H:P[,...] [--stream S] [--durable C]
                (from a JetStream stream, one durable pull consumer shared by every sink)
  edge-ops outbox --db PATH          (depth and age of a device's outbox, for support)
  edge-ops cdp-gaps --db PATH|DSN    (per device: sequences stored and missing at the CDP)
  edge-ops uplift --db PATH|DSN [--day D | --since T --until T] [--tz Z] [--store S] [--json]
                (per campaign: exposed against holdout shoppers, uplift with its 95% CI)
  edge-ops emergency --store S (--title T [--body B] | --clear) --key ops_private.pem
                [--version N] [--wait-ack [SECONDS]]   (the same signed path as push)
  edge-ops console [--config ops.toml] [--host H] [--port P] [--demo]   (the ops console)
                   [--tls-cert console.crt --tls-key console.key]     (HTTPS served by itself)
  edge-ops console add-user NAME --role viewer|operator|admin [--config ops.toml]
  edge-ops release build DIR --release NAME --key ops_private.pem --out FILE.tar
                [--arch A] [--python 3.11]   (a signed release bundle; `make release` builds one)
  edge-ops rollout BUNDLE --fleet FLEET --key ops_private.pem --version N [--url URL]
                [--canary 0.1] [--max-failures 0] [--wait 900]
                (canaries first, then the rest; stops on failures; exit 1 unless all installed)
  edge-ops status [--store S] [--wait 2] [--host H] [--port P]   (fleet status, retained)
  edge-ops logs --store S [--device D] [--since T] [--follow] [--limit N] [--db PATH|DSN]
                (the boxes' relayed WARN+ log records at the CDP, one line each; T is an ISO
                 time or an age such as 15m, 2h, 1d; --db defaults to $EDGE_OPS_CDP_DB)
  edge-ops pki init --dir DIR [--days N] [--force]
  edge-ops pki issue --dir DIR device --store S --device D | role --name cdp|ops | server
                [--host H ...] [--days N]
  edge-ops pki sign-csr --dir DIR (FILE.csr [--out FILE] | --all-pending [--key ops_private.pem]
                [--out DIR] [--store S])   (renewals: every box's retained request, bad ones named)
  edge-ops pki revoke --dir DIR --store S --device D   (every certificate of the box, in crl.pem)
  edge-ops pki crl --dir DIR [--days 365]   (re-sign the CRL before the broker finds it expired)
  edge-ops acl FLEET [--out FILE] [--cdp NAME] [--ops NAME] [--group G]

Exit codes: 0 ok, 1 failure (timeout, refused), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contracts import topics
from contracts.mqtt import BrokerConfig
from contracts.signing import DEFAULT_MAX_BYTES, KINDS, expires_in, generate_keypair
from contracts.uplift import Uplift


def _broker(args: argparse.Namespace) -> BrokerConfig:
    """The broker ops talk to; over TLS with ``--ca`` (and the ops role's certificate, which the
    fleet broker requires: ``edge-ops pki issue role --name ops``)."""
    ca = getattr(args, "ca", None)
    return BrokerConfig(
        host=args.host,
        port=args.port,
        tls=ca is not None,
        ca_file=Path(ca) if ca else None,
        cert_file=Path(args.cert) if getattr(args, "cert", None) else None,
        key_file=Path(args.key_file) if getattr(args, "key_file", None) else None,
        protocol=getattr(args, "protocol", "5"),
    )


def _tls_usage(args: argparse.Namespace) -> str | None:
    """A half-given TLS setup, said before anything connects."""
    ca, cert, key = (getattr(args, a, None) for a in ("ca", "cert", "key_file"))
    if bool(cert) != bool(key):
        return "give both --cert and --tls-key, or neither"
    if (cert or key) and not ca:
        return "--cert and --tls-key need --ca (the fleet CA that signed the broker's certificate)"
    for path in (ca, cert, key):
        if path and not Path(path).is_file():
            return f"{path}: no such file"
    return None


def cmd_keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key_path = out / "ops_private.pem"
    if key_path.exists() and not args.force:
        print(f"{key_path} exists; use --force to replace it", file=sys.stderr)
        return 1
    passphrase = None
    if args.encrypt:
        # A terminal asks twice; a pipe gives one line (scripts, tests).
        if sys.stdin.isatty():
            import getpass

            passphrase = getpass.getpass("passphrase for the new key: ")
            if getpass.getpass("again: ") != passphrase:
                print("the two passphrases differ", file=sys.stderr)
                return 2
        else:
            passphrase = sys.stdin.readline().rstrip("\n")
        if len(passphrase) < 12:
            print("a passphrase of at least 12 characters, please", file=sys.stderr)
            return 2
    pem, public_b64 = generate_keypair(passphrase.encode() if passphrase else None)
    # Create with 0600 from the start: never a moment where the key is world-readable.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(key_path, 0o600)
    (out / "ops_public.b64").write_text(public_b64 + "\n")
    print(public_b64)
    return 0


def _map_body(args: argparse.Namespace) -> dict[str, Any] | None:
    """``push map DIR|FILE.zip``: an IMDF delivery as the ``map`` body, its version the push's."""
    import zipfile

    from contracts.map_bundle import MapBundleError, bundle, read_delivery

    try:
        return bundle(read_delivery(args.file), args.version, args.store)
    except (OSError, zipfile.BadZipFile, MapBundleError) as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return None


def cmd_push(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if args.kind == "map" and (path.is_dir() or path.suffix.lower() == ".zip"):
        got = _map_body(args)
        if got is None:
            return 2
        body: Any = got
    elif args.kind == "planogram" and path.suffix.lower() == ".csv":
        from contracts.planogram_csv import PlanogramCsvError, body_from_csv

        try:
            body = body_from_csv(path.read_text(encoding="utf-8"), args.version, args.store)
        except (OSError, UnicodeDecodeError, PlanogramCsvError) as exc:
            print(f"{args.file}: {exc}", file=sys.stderr)
            return 2
    else:
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"{args.file}: {exc}", file=sys.stderr)
            return 2
    if not isinstance(body, dict):
        print(f"{args.file}: the body must be a JSON object", file=sys.stderr)
        return 2
    from central.push import PushError, publish, sign

    try:
        message = sign(
            Path(args.key), args.kind, body, args.store, args.device, args.version,
            expires_in_s=args.expires_in, max_bytes=args.max_bytes, what=args.file,
        )  # fmt: skip
    except PushError as exc:
        print(str(exc), file=sys.stderr)
        return 2 if exc.usage else 1

    def progress(step: dict[str, Any]) -> None:
        print(json.dumps(step), flush=True)  # accepted, installing

    try:
        result = publish(
            _broker(args), message, args.kind, args.store, args.device, args.version,
            body=body, timeout_s=args.timeout, wait_ack_s=args.wait_ack, on_progress=progress,
        )  # fmt: skip
    except PushError as exc:
        if "no ack" in str(exc):
            # The publish went out: say so before the missing ack, as before.
            print(
                json.dumps({"published": _topic(args), "kind": args.kind, "version": args.version})
            )
        print(str(exc), file=sys.stderr)
        return 1
    print(json.dumps({"published": result.topic, "kind": args.kind, "version": args.version}))
    if result.ack is not None:
        print(json.dumps(result.ack))
        return 0 if result.accepted else 1
    return 0


def _topic(args: argparse.Namespace) -> str:
    return (
        topics.device_cmd(args.store, args.device, args.kind)
        if args.device
        else topics.store_cmd(args.store, args.kind)
    )


def cmd_emergency(args: argparse.Namespace) -> int:
    """``edge-ops emergency --store S (--title T [--body B] | --clear) --key K``: the override on
    every screen of a store, through the same signed path as ``push`` (and the console)."""
    from central.push import PushError, clear_emergency_body, emergency_body, push, time_version

    try:
        if args.clear:
            body = clear_emergency_body(reason=args.reason)
        else:
            body = emergency_body(args.title or "", args.body, reason=args.reason)
        version = args.version or time_version()
        result = push(
            _broker(args), Path(args.key), "command", body, args.store, None, version,
            expires_in_s=args.expires_in, timeout_s=args.timeout, wait_ack_s=args.wait_ack,
        )  # fmt: skip
    except PushError as exc:
        print(f"edge-ops emergency: {exc}", file=sys.stderr)
        return 2 if exc.usage else 1
    print(json.dumps({"published": result.topic, "kind": "command", "version": version}))
    if result.ack is not None:
        print(json.dumps(result.ack))
        return 0 if result.accepted else 1
    return 0


def cmd_push_slice(args: argparse.Namespace) -> int:
    from central.slice_push import PushError, publish_parts, signed_parts

    try:
        body = json.loads(Path(args.file).read_text())
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object (a profiles snapshot)")
        only = [int(x) for x in args.only.split(",")] if args.only else None
        parts, messages = signed_parts(
            body,
            Path(args.key).read_bytes(),
            args.store,
            args.device,
            args.start_version,
            expires_in(args.expires_in),
            max_bytes=args.max_bytes or DEFAULT_MAX_BYTES,
            part_rows=args.part_rows,
            only=only,
        )
    except (OSError, ValueError) as exc:
        print(f"edge-ops push-slice: {args.file}: {exc}", file=sys.stderr)
        return 2
    try:
        report = publish_parts(
            _broker(args),
            args.store,
            args.device,
            parts[0]["snapshot_id"],
            len(parts),
            messages,
            timeout_s=args.timeout,
            wait_ack_s=args.wait_ack,
        )
    except PushError as exc:
        print(f"edge-ops push-slice: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.summary()))
    if args.wait_ack is not None:
        if len(report.acks) < len(messages):
            print(f"no ack for {len(messages) - len(report.acks)} parts", file=sys.stderr)
            return 1
        return 1 if report.refused else 0
    return 0


def cmd_cdp_sink(args: argparse.Namespace) -> int:
    from central.cdp_sink import CdpSink

    on_stored = None
    if args.stdout:
        # Events as JSON lines on stdout, each once (the database still dedups); the
        # sink's own reports go to stderr so the stream stays clean.
        def on_stored(bodies: list[str]) -> None:
            sys.stdout.write("".join(b + "\n" for b in bodies))
            sys.stdout.flush()

    report = sys.stderr if args.stdout else sys.stdout
    sink: Any
    try:
        if args.nats:
            # JetStream instead of an MQTT subscription (nats-server: no $share in its MQTT).
            from central.cdp_jetstream import JetStreamConfig, JetStreamSink, parse_servers

            js_cfg = JetStreamConfig(
                servers=parse_servers(args.nats), stream=args.stream, durable=args.durable, subject=args.subject,
                replicas=args.replicas, ack_wait_s=args.ack_wait,
                ca_file=Path(args.ca) if args.ca else None,
                cert_file=Path(args.cert) if args.cert else None,
                key_file=Path(args.key_file) if args.key_file else None,
            )  # fmt: skip
            sink = JetStreamSink(js_cfg, args.db, on_stored=on_stored)
        else:
            sink = CdpSink(
                _broker(args), args.db, group=args.group or None, on_stored=on_stored,
                client_id=args.client_id, session_expiry_s=args.session_expiry,
            )  # fmt: skip
    except Exception as exc:  # the store cannot be opened: a wrong DSN, a server that is down
        print(f"edge-ops cdp-sink: cannot open the CDP store: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    if args.connect_timeout is None:
        # JetStream may be electing leaders after a node loss: a sink waits that out
        # (central.cdp_jetstream.SETUP_S) rather than exit.
        args.connect_timeout = 65.0 if args.nats else 10.0
    if not sink.start(wait_s=args.connect_timeout):
        # A sink that cannot reach its broker stores nothing: say so and fail, rather than
        # sit there looking healthy (systemd restarts it).
        if args.nats:
            why = getattr(sink, "failure", None) or (
                f"not reached or not pulling within {args.connect_timeout:g} s"
            )
            print(f"edge-ops cdp-sink: JetStream at {args.nats}: {why}", file=sys.stderr)
        else:
            print(
                f"edge-ops cdp-sink: could not reach {args.host}:{args.port} in "
                f"{args.connect_timeout:g} s (TLS: {'on' if args.ca else 'off'})",
                file=sys.stderr,
            )
        sink.stop()
        return 1
    print(f"cdp-sink: {sink.topic} -> {sink.target}", file=report, flush=True)
    rc = 0
    next_report = time.monotonic() + args.report_s
    try:
        while not done.wait(min(1.0, args.report_s)):
            # A JetStream sink whose loop died stores nothing more: exit 1 so systemd restarts
            # it, rather than go on looking healthy.
            failure = getattr(sink, "failure", None)
            if failure:
                print(f"edge-ops cdp-sink: stopped: {failure}", file=sys.stderr, flush=True)
                rc = 1
                break
            if time.monotonic() >= next_report:
                next_report += args.report_s
                print(json.dumps(sink.stats()), file=report, flush=True)
    finally:
        stats = sink.stats()
        sink.stop()
        print(json.dumps(stats), file=report, flush=True)
    return rc


def _open_store(db: str, what: str) -> Any:
    """The CDP store to read, or None after saying why (a missing file, a server down)."""
    from central.cdp_store import is_dsn, open_store

    if not is_dsn(db) and not Path(db).exists():
        print(f"{db}: no such file", file=sys.stderr)
        return None
    try:
        return open_store(db)
    except Exception as exc:  # psycopg's OperationalError and kin: no need to import them here
        print(f"edge-ops {what}: cannot open the CDP store: {exc}", file=sys.stderr)
        return None


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: an ISO time (UTC unless it has an offset) or an age: 30s, 15m, 2h, 1d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip()
    if t[-1:] in units and t[:-1].replace(".", "", 1).isdigit():
        return (now or datetime.now(UTC)) - timedelta(seconds=float(t[:-1]) * units[t[-1]])
    try:
        when = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(
            f"--since {text!r}: expected an ISO time or an age (30s, 15m, 2h, 1d)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def log_line(row: Any) -> str:
    """One relayed record on one line: time, box, level, logger, message, and how many."""
    d = row.data
    text = str(d.get("message", "")).replace("\n", " ")
    tail = ""
    if int(d.get("count") or 1) > 1:
        tail = f" (x{d['count']}, last {d.get('last', '?')})"
    level = str(d.get("level", "?")).upper()
    return f"{row.time} {row.store_id}/{row.device_id} {level} {d.get('logger', '?')}: {text}{tail}"


def cmd_logs(args: argparse.Namespace) -> int:
    db = args.db or os.environ.get("EDGE_OPS_CDP_DB")
    if not db:
        print("edge-ops logs: --db PATH|DSN (or $EDGE_OPS_CDP_DB) is needed", file=sys.stderr)
        return 2
    try:
        since = parse_since(args.since).isoformat() if args.since else None
    except ValueError as exc:
        print(f"edge-ops logs: {exc}", file=sys.stderr)
        return 2
    store = _open_store(db, "logs")
    if store is None:
        return 1
    stop = threading.Event()
    if args.follow:
        # SIGTERM ends a follow like Ctrl-C does: the last poll's lines are out, exit 0.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: stop.set())
    try:
        rows = store.logs(args.store, args.device, since, None, args.limit)
        for row in rows:
            print(log_line(row), flush=True)
        # Follow by arrival (received_at, id), not by the record's time: a box back from an
        # outage delivers old records late, and they must still show.
        cursor = (rows[-1].received_at, rows[-1].id) if rows else (0.0, "")
        while args.follow and not stop.wait(args.interval):
            while True:  # drain what arrived since the last poll, a page at a time
                rows = store.logs(args.store, args.device, since, cursor, 1000)
                for row in rows:
                    print(log_line(row), flush=True)
                if rows:
                    cursor = (rows[-1].received_at, rows[-1].id)
                if len(rows) < 1000 or stop.is_set():
                    break
    except BrokenPipeError:  # `edge-ops logs ... | head`
        return 0
    finally:
        store.close()
    return 0


def cmd_cdp_gaps(args: argparse.Namespace) -> int:
    store = _open_store(args.db, "cdp-gaps")
    if store is None:
        return 1
    try:
        # With PostgreSQL, one query over the table every sink writes into: the whole truth.
        for row in store.gaps():
            print(json.dumps(row))
    finally:
        store.close()
    return 0


def cmd_uplift(args: argparse.Namespace) -> int:
    from central.cdp_sink import CdpSink

    try:
        since, until = _uplift_range(args)
    except ValueError as exc:
        print(f"edge-ops uplift: {exc}", file=sys.stderr)
        return 2
    store = _open_store(args.db, "uplift")
    if store is None:
        return 1
    sink = CdpSink(BrokerConfig(), store)  # not started: only reads the store
    try:
        by_campaign = sink.uplift(since, until, store=args.store)
    finally:
        sink.stop()
    if args.json:
        for campaign, u in by_campaign.items():
            print(json.dumps({"campaign": campaign, **u.as_dict(), "summary": u.describe()}))
        return 0
    print(uplift_table(by_campaign))
    return 0


def _uplift_range(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    """``--day`` or ``--since``/``--until`` as instants; dates and naive times in ``--tz``."""
    try:
        tz = ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"--tz {args.tz!r}: not a time zone (e.g. UTC, Europe/Paris)") from None

    def instant(text: str, flag: str) -> datetime:
        try:
            t = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{flag} {text!r}: expected YYYY-MM-DD or an ISO time") from None
        return t if t.tzinfo is not None else t.replace(tzinfo=tz)

    if args.day is not None:
        if args.since is not None or args.until is not None:
            raise ValueError("--day or --since/--until, not both")
        try:
            day = date.fromisoformat(args.day)
        except ValueError:
            raise ValueError(f"--day {args.day!r}: expected YYYY-MM-DD") from None
        # Local midnight to the next one, not + 24 h: a day with a clock change is 23 or 25 h.
        start = datetime.combine(day, clock_time(), tz)
        return start, datetime.combine(day + timedelta(days=1), clock_time(), tz)
    since = instant(args.since, "--since") if args.since is not None else None
    until = instant(args.until, "--until") if args.until is not None else None
    if since is not None and until is not None and until <= since:
        raise ValueError("--until must be after --since")
    return since, until


def uplift_table(by_campaign: dict[str, Uplift]) -> str:
    """Exposed against holdout per campaign, one row each, for people."""
    if not by_campaign:
        return "no exposed or held-out shoppers in this range"

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v * 100:.1f}%"

    head = ("campaign", "exposed", "conv", "rate", "holdout", "conv", "rate", "uplift (95% CI)")
    rows = [
        (
            campaign,
            str(u.exposed_shoppers),
            str(u.exposed_conversions),
            pct(u.exposed_rate),
            str(u.holdout_shoppers),
            str(u.holdout_conversions),
            pct(u.holdout_rate),
            u.describe(),
        )
        for campaign, u in by_campaign.items()
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head) - 1)]

    def line(r: tuple[str, ...]) -> str:
        nums = [c.rjust(w) for c, w in zip(r[1:-1], widths[1:], strict=True)]
        return "  ".join([r[0].ljust(widths[0]), *nums, r[-1]])

    return "\n".join(line(r) for r in (head, *rows))


def cmd_release_build(args: argparse.Namespace) -> int:
    import platform
    from datetime import UTC

    from contracts.release import ReleaseError, build_bundle, describe

    src = Path(args.dir)
    if not src.is_dir():
        print(f"edge-ops release build: {src}: not a directory", file=sys.stderr)
        return 2
    try:
        pem = Path(args.key).read_bytes()
        manifest = build_bundle(
            src,
            Path(args.out),
            release=args.release,
            arch=args.arch or platform.machine(),
            python=args.python or f"{sys.version_info.major}.{sys.version_info.minor}",
            private_pem=pem,
            built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
    except (OSError, ValueError, ReleaseError) as exc:
        print(f"edge-ops release build: {exc}", file=sys.stderr)
        return 2
    print(describe(manifest))
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    from central.acl import FleetError
    from central.rollout import RolloutError, read_fleet, rollout
    from contracts.release import ReleaseError, push_body

    if not 0 < args.canary <= 1:
        print("edge-ops rollout: --canary is a share of the fleet, 0 < share <= 1", file=sys.stderr)
        return 2
    try:
        fleet = read_fleet(Path(args.fleet))
        body = push_body(Path(args.bundle), url=args.url)
        pem = Path(args.key).read_bytes()
    except (OSError, FleetError, ReleaseError) as exc:
        print(f"edge-ops rollout: {exc}", file=sys.stderr)
        return 2
    if not fleet:
        print(f"edge-ops rollout: {args.fleet}: no boxes", file=sys.stderr)
        return 2

    def say(doc: dict[str, Any]) -> None:
        print(json.dumps(doc), flush=True)

    try:
        report = rollout(
            _broker(args), pem, body, fleet, args.version,
            canary_share=args.canary, max_failures=args.max_failures, wait_s=args.wait,
            expires_in_s=args.expires_in, max_bytes=args.max_bytes or DEFAULT_MAX_BYTES,
            timeout_s=args.timeout, on_event=say,
        )  # fmt: skip
    except (RolloutError, ValueError) as exc:
        print(f"edge-ops rollout: {exc}", file=sys.stderr)
        return 1
    say({"summary": report.summary()})
    if report.stopped:
        print(f"edge-ops rollout: stopped: {report.stopped}", file=sys.stderr)
    return 0 if report.ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    from central.fleet_status import collect, summary

    try:
        rows = collect(_broker(args), store=args.store, wait_s=args.wait)
    except ConnectionError as exc:
        print(f"edge-ops status: {exc}", file=sys.stderr)
        return 1
    for row in rows:
        print(json.dumps(row))
    print(json.dumps({"summary": summary(rows)}))
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    from central.console.cli import add_user, serve

    if args.console_cmd == "add-user":
        return add_user(args.user_config or args.config, args.name, args.role)
    return serve(
        args.config, host=args.host, port=args.port, demo=args.demo,
        tls_cert=args.tls_cert, tls_key=args.tls_key,
    )  # fmt: skip


def cmd_pki(args: argparse.Namespace) -> int:
    from central.pki import PkiError, init_ca, issue

    try:
        if args.pki_cmd == "init":
            made = init_ca(Path(args.dir), days=args.days, force=args.force)
        else:
            made = issue(
                Path(args.dir),
                args.kind,
                store_id=args.store,
                device_id=args.device,
                name=args.name,
                hosts=args.host or None,
                days=args.days,
            )
    except PkiError as exc:
        print(f"edge-ops pki: {exc}", file=sys.stderr)
        # An existing CA is a refusal (1), not a usage error (2).
        return 1 if "already has a CA" in str(exc) else 2
    print(json.dumps({"identity": made.identity, "cert": str(made.cert), "key": str(made.key)}))
    return 0


def cmd_sign_csr(args: argparse.Namespace) -> int:
    """The ops half of credential rotation: the box keeps its key, ops signs its request and
    sends the certificate back with the `install_certificate` command."""
    from central.pki import PkiError, sign_csr

    if args.all_pending:
        return _sign_all_pending(args)
    if not args.csr:
        print("edge-ops pki sign-csr: give a request file or --all-pending", file=sys.stderr)
        return 2
    try:
        pem = sign_csr(Path(args.dir), Path(args.csr).read_bytes(), days=args.days)
    except OSError as exc:
        print(f"edge-ops pki sign-csr: {exc}", file=sys.stderr)
        return 2
    except PkiError as exc:
        print(f"edge-ops pki sign-csr: {exc}", file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_bytes(pem)
    else:
        sys.stdout.write(pem.decode())
    return 0


def _sign_all_pending(args: argparse.Namespace) -> int:
    """Every box's retained renewal request: signed when it verifies, else named and skipped;
    with ``--key`` each certificate goes back as a signed ``install_certificate`` command, with
    ``--out DIR`` it is also written to ``DIR/<store>/<device>.pem``. Exit 1 if any was refused
    or could not be sent (the rest are done all the same)."""
    from central.push import PushError, push, time_version
    from central.renewals import collect_pending, install_body, sign_all

    try:
        pending = collect_pending(_broker(args), store=args.store, wait_s=args.wait)
    except ConnectionError as exc:
        print(f"edge-ops pki sign-csr: {exc}", file=sys.stderr)
        return 1
    outcome = sign_all(Path(args.dir), pending, days=args.days)
    for who, why in outcome.refused:
        print(json.dumps({"refused": who, "reason": why}))
    failed = len(outcome.refused)
    version = 0
    for s in outcome.signed:
        who = f"{s.store}/{s.device}"
        line: dict[str, Any] = {"signed": who}
        if args.out:
            path = Path(args.out) / s.store / f"{s.device}.pem"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(s.certificate_pem)
            line["cert"] = str(path)
        if args.key:
            version = time_version(version)
            try:
                push(
                    _broker(args), Path(args.key), "command", install_body(s), s.store, s.device,
                    version, expires_in_s=args.expires_in, timeout_s=args.timeout,
                )  # fmt: skip
                line["sent"] = version
            except PushError as exc:
                line["error"] = str(exc)
                failed += 1
        print(json.dumps(line))
    print(json.dumps({"pending": len(pending), "signed": len(outcome.signed), "failed": failed}))
    from central.pki import crl_days_left

    crl_days = crl_days_left(Path(args.dir))
    if crl_days is not None and crl_days < 30:
        # Past its next update the broker refuses every box: this weekly run is where ops looks.
        print(f"edge-ops pki: crl.pem ends in {crl_days:.0f} days: run `edge-ops pki crl`",
              file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from central.pki import PkiError, crl_days_left, revoke, write_crl

    try:
        if args.pki_cmd == "crl":
            path = write_crl(Path(args.dir), days=args.days)
            # Never past the CA's end, so not always --days.
            left = crl_days_left(Path(args.dir))
            print(json.dumps({"crl": str(path), "days_left": round(left or 0.0, 1)}))
            return 0
        added = revoke(Path(args.dir), args.store, args.device, crl_days=args.days)
    except PkiError as exc:
        print(f"edge-ops pki {args.pki_cmd}: {exc}", file=sys.stderr)
        return 1
    crl = Path(args.dir) / "crl.pem"
    print(json.dumps({"revoked": f"{args.store}/{args.device}", "serials": added, "crl": str(crl)}))
    return 0


def cmd_acl(args: argparse.Namespace) -> int:
    from central.acl import FleetError, parse_fleet, render_acl

    try:
        fleet = parse_fleet(Path(args.fleet).read_text(), source=args.fleet)
        text = render_acl(
            fleet, cdp_identity=args.cdp, ops_identity=args.ops, share_group=args.group
        )
    except (OSError, UnicodeDecodeError, FleetError) as exc:
        print(f"edge-ops acl: {exc}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(text)
        print(json.dumps({"acl": args.out, "devices": len(fleet)}))
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-ops", description="Central ops tools for the edge fleet")
    sub = p.add_subparsers(dest="cmd", required=True)

    def broker_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--host", default="127.0.0.1")
        sp.add_argument("--port", type=int, default=1883)
        sp.add_argument("--ca", help="TLS: the fleet CA (PEM); turns TLS on")
        sp.add_argument("--cert", help="TLS: the ops role's certificate (PEM)")
        sp.add_argument("--tls-key", dest="key_file", help="TLS: its private key (PEM)")
        sp.add_argument("--protocol", choices=["5", "3.1.1"], default="5")

    k = sub.add_parser("keygen", help="new Ed25519 ops key pair")
    k.add_argument("--out", required=True, help="directory for ops_private.pem (mode 0600)")
    k.add_argument("--force", action="store_true")
    k.add_argument(
        "--encrypt", action="store_true",
        help="encrypt the private key under a passphrase (asked twice; one line from a pipe)",
    )  # fmt: skip
    k.set_defaults(func=cmd_keygen)

    pu = sub.add_parser("push", help="sign a JSON body and publish it to a store or device")
    pu.add_argument("kind", choices=sorted(KINDS))
    pu.add_argument(
        "file", help="the JSON body; for map also an IMDF folder or .zip, for planogram a .csv"
    )
    pu.add_argument("--store", required=True)
    pu.add_argument("--device")
    pu.add_argument("--version", type=int, required=True)
    pu.add_argument("--key", required=True, help="ops_private.pem")
    pu.add_argument("--expires-in", type=float, default=3600.0, help="seconds")
    pu.add_argument("--timeout", type=float, default=10.0)
    pu.add_argument(
        "--max-bytes", type=int, default=None, help="the boxes' downlink.max_message_bytes"
    )
    pu.add_argument(
        "--wait-ack", type=float, nargs="?", const=30.0, default=None, metavar="SECONDS"
    )
    broker_args(pu)
    pu.set_defaults(func=cmd_push)

    ps = sub.add_parser("push-slice", help="push a big profile snapshot as signed parts")
    ps.add_argument("file", help="a profiles snapshot body (JSON)")
    ps.add_argument("--store", required=True)
    ps.add_argument("--device")
    ps.add_argument("--key", required=True, help="ops_private.pem")
    ps.add_argument("--start-version", type=int, required=True, help="downlink version of part 0")
    ps.add_argument("--part-rows", type=int, help="at most this many rows per part")
    ps.add_argument("--max-bytes", type=int, help="signed message cap (the devices' setting)")
    ps.add_argument("--only", help="resend only these parts (comma-separated, from 0)")
    ps.add_argument("--expires-in", type=float, default=3600.0, help="seconds")
    ps.add_argument("--timeout", type=float, default=10.0)
    ps.add_argument(
        "--wait-ack", type=float, nargs="?", const=120.0, default=None, metavar="SECONDS"
    )
    broker_args(ps)
    ps.set_defaults(func=cmd_push_slice)

    em = sub.add_parser(
        "emergency", help="put an emergency on every screen of a store, or clear it (signed)"
    )
    em.add_argument("--store", required=True)
    what = em.add_mutually_exclusive_group(required=True)
    what.add_argument("--title", help="the emergency's title (at most 120 characters)")
    what.add_argument("--clear", action="store_true", help="end the emergency")
    em.add_argument("--body", default="", help="the message under the title")
    em.add_argument("--reason", default="", help="for the boxes' logs: who and why")
    em.add_argument("--key", required=True, help="ops_private.pem")
    em.add_argument("--version", type=int, help="command version (default: seconds since epoch)")
    em.add_argument("--expires-in", type=float, default=3600.0, help="seconds")
    em.add_argument("--timeout", type=float, default=10.0)
    em.add_argument(
        "--wait-ack", type=float, nargs="?", const=30.0, default=None, metavar="SECONDS"
    )
    broker_args(em)
    em.set_defaults(func=cmd_emergency)

    co = sub.add_parser("console", help="the ops console in the browser (or add-user)")
    co.add_argument("--config", help="ops.toml ([console], [cdp], [broker], [signing])")
    co.add_argument("--host", help="listen address (default from the config, 127.0.0.1)")
    co.add_argument("--port", type=int, help="listen port (default from the config, 8470)")
    co.add_argument(
        "--demo", action="store_true", help="a seeded demo fleet and admin in a temp dir"
    )
    co.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM; or [console])")
    co.add_argument("--tls-key", help="... and this private key (PEM)")
    co_sub = co.add_subparsers(dest="console_cmd")
    au = co_sub.add_parser("add-user", help="create or reset an account (password on stdin)")
    au.add_argument("name")
    au.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    au.add_argument("--config", dest="user_config", help="ops.toml")
    co.set_defaults(func=cmd_console)

    s = sub.add_parser("cdp-sink", help="run a CDP sink in the foreground until SIGINT/SIGTERM")
    s.add_argument(
        "--db", required=True, help="SQLite file, or postgresql://USER@HOST/DB shared by sinks"
    )
    s.add_argument("--group", default="cdp", help="shared subscription group ('' = none)")
    s.add_argument(
        "--client-id",
        help="MQTT client id (default: per database for SQLite, per process for PostgreSQL)",
    )
    s.add_argument(
        "--session-expiry",
        type=int,
        help="seconds the broker keeps the session (default: 7 days for SQLite or a"
        " --client-id, 0 for PostgreSQL: a stopped worker leaves the share group at once)",
    )
    s.add_argument("--report-s", type=float, default=10.0)
    s.add_argument("--stdout", action="store_true", help="also print each new event as a JSON line")
    s.add_argument(
        "--connect-timeout",
        type=float,
        help="seconds to reach the broker (10; with --nats 65: JetStream may be electing leaders)",
    )
    s.add_argument(
        "--nats",
        help="nats://HOST:PORT[,...]: consume from JetStream (one durable consumer shared by"
        " every sink) instead of an MQTT subscription; --host/--port/--group are then unused",
    )
    s.add_argument("--stream", default="CDP_EVENTS", help="JetStream stream (with --nats)")
    s.add_argument("--durable", default="cdp", help="shared durable consumer (with --nats)")
    s.add_argument(
        "--subject", default="stores.*.devices.*.events", help="the stream's subjects (with --nats)"
    )
    s.add_argument("--replicas", type=int, default=3, help="stream replicas if it is created")
    s.add_argument(
        "--ack-wait", type=float, default=30.0,
        help="seconds before a batch a sink took and did not ack goes to another sink",
    )  # fmt: skip
    broker_args(s)
    s.set_defaults(func=cmd_cdp_sink)

    g = sub.add_parser("cdp-gaps", help="per device: sequences stored and missing at the CDP")
    g.add_argument("--db", required=True, help="SQLite file or postgresql:// DSN")
    g.set_defaults(func=cmd_cdp_gaps)

    up = sub.add_parser(
        "uplift", help="per campaign: exposed against holdout shoppers at the CDP, with a 95% CI"
    )
    up.add_argument("--db", required=True, help="the CDP store: SQLite file or postgresql:// DSN")
    up.add_argument("--day", help="one day, YYYY-MM-DD (in --tz)")
    up.add_argument("--since", help="from this date or ISO time (in --tz unless it has an offset)")
    up.add_argument("--until", help="up to (not including) this date or ISO time")
    up.add_argument("--tz", default="UTC", help="time zone of dates and naive times (default UTC)")
    up.add_argument("--store", help="one store (default: all)")
    up.add_argument("--json", action="store_true", help="one JSON object per campaign")
    up.set_defaults(func=cmd_uplift)

    rel = sub.add_parser("release", help="release bundles for over-the-air updates")
    rel_sub = rel.add_subparsers(dest="release_cmd", required=True)
    rb = rel_sub.add_parser("build", help="pack and sign a directory as a release bundle")
    rb.add_argument("dir", help="the files of the release (wheels/*.whl, or bin/edge-agent ...)")
    rb.add_argument("--release", required=True, help="the release name (e.g. 0.2.0)")
    rb.add_argument("--key", required=True, help="ops_private.pem")
    rb.add_argument("--out", required=True, help="the bundle (.tar)")
    rb.add_argument("--arch", help="target architecture (default: this machine's)")
    rb.add_argument("--python", help="target Python, e.g. 3.11 (default: this one)")
    rb.set_defaults(func=cmd_release_build)

    ro = sub.add_parser("rollout", help="a release to a fleet: canaries first, then the rest")
    ro.add_argument("bundle", help="the release bundle (edge-ops release build)")
    ro.add_argument("--fleet", required=True, help="one 'STORE DEVICE' per line; canaries first")
    ro.add_argument("--key", required=True, help="ops_private.pem")
    ro.add_argument("--version", type=int, required=True, help="downlink version of the push")
    ro.add_argument("--url", help="where boxes download the bundle (default: inline, small only)")
    ro.add_argument("--canary", type=float, default=0.1, help="share of the fleet first (0-1]")
    ro.add_argument("--max-failures", type=int, default=0, help="per wave, before stopping")
    ro.add_argument("--wait", type=float, default=900.0, help="seconds for a wave's final acks")
    ro.add_argument("--expires-in", type=float, default=3600.0, help="seconds")
    ro.add_argument("--timeout", type=float, default=10.0)
    ro.add_argument("--max-bytes", type=int, help="the boxes' downlink.max_message_bytes")
    broker_args(ro)
    ro.set_defaults(func=cmd_rollout)

    lg = sub.add_parser("logs", help="the boxes' relayed WARN+ log records, from the CDP store")
    lg.add_argument("--store", required=True, help="the store")
    lg.add_argument("--device", help="one box (default: all of the store's)")
    lg.add_argument("--since", help="records from this ISO time or age (30s, 15m, 2h, 1d)")
    lg.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    lg.add_argument("--limit", type=int, default=500, help="at most this many (the latest)")
    lg.add_argument("--interval", type=float, default=1.0, help="--follow polls this often, s")
    lg.add_argument("--db", help="the CDP store: SQLite file or postgresql:// DSN")
    lg.set_defaults(func=cmd_logs)

    st = sub.add_parser("status", help="fleet status from the boxes' retained state and health")
    st.add_argument("--store", default="+", help="one store (default: all)")
    st.add_argument("--wait", type=float, default=2.0, help="seconds to collect")
    broker_args(st)
    st.set_defaults(func=cmd_status)

    pk = sub.add_parser("pki", help="private CA and per-device TLS certificates")
    pk_sub = pk.add_subparsers(dest="pki_cmd", required=True)
    pi = pk_sub.add_parser("init", help="create the CA (ca.pem, ca.key 0600) in --dir")
    pi.add_argument("--dir", required=True)
    pi.add_argument("--days", type=int, default=3650)
    pi.add_argument("--force", action="store_true", help="replace an existing CA")
    pi.set_defaults(func=cmd_pki)
    pis = pk_sub.add_parser("issue", help="issue or re-issue (rotate) a certificate")
    pis.add_argument("--dir", required=True)
    pis.add_argument("kind", choices=["device", "role", "server"])
    pis.add_argument("--store")
    pis.add_argument("--device")
    pis.add_argument("--name", help="role name (cdp, ops) or the server's CN")
    pis.add_argument("--host", action="append", help="server SAN (repeat); default localhost")
    pis.add_argument("--days", type=int, default=90)
    pis.set_defaults(func=cmd_pki)
    psc = pk_sub.add_parser("sign-csr", help="sign a box's request (credential rotation)")
    psc.add_argument("--dir", required=True)
    psc.add_argument("csr", nargs="?", help="the PEM a box published on .../csr")
    psc.add_argument(
        "--all-pending", action="store_true",
        help="every request retained on the broker (stores/+/devices/+/csr); bad ones skipped",
    )  # fmt: skip
    psc.add_argument(
        "--out", help="write the certificate here (--all-pending: a directory) instead of stdout"
    )
    psc.add_argument("--days", type=int, default=90)
    psc.add_argument("--store", default="+", help="--all-pending: one store (default: all)")
    psc.add_argument("--wait", type=float, default=2.0, help="--all-pending: seconds to collect")
    psc.add_argument(
        "--key", help="--all-pending: ops_private.pem; send each certificate to its box"
    )
    psc.add_argument("--expires-in", type=float, default=3600.0, help="seconds")
    psc.add_argument("--timeout", type=float, default=10.0)
    broker_args(psc)
    psc.set_defaults(func=cmd_sign_csr)
    prv = pk_sub.add_parser("revoke", help="revoke every certificate of a box; re-sign the CRL")
    prv.add_argument("--dir", required=True)
    prv.add_argument("--store", required=True)
    prv.add_argument("--device", required=True)
    prv.add_argument("--days", type=int, default=365, help="the CRL's validity")
    prv.set_defaults(func=cmd_revoke)
    pcr = pk_sub.add_parser("crl", help="re-sign crl.pem (before its next update)")
    pcr.add_argument("--dir", required=True)
    pcr.add_argument("--days", type=int, default=365)
    pcr.set_defaults(func=cmd_revoke)

    a = sub.add_parser(
        "acl", help="render the broker's ACL (mosquitto dynamic security JSON) from a fleet list"
    )
    a.add_argument("fleet", help="one 'STORE DEVICE' per line")
    a.add_argument("--out", help="write here instead of stdout")
    a.add_argument("--cdp", default="cdp", help="the CDP sink's certificate CN")
    a.add_argument("--ops", default="ops", help="central ops' certificate CN")
    a.add_argument("--group", default="cdp", help="the CDP's shared subscription group")
    a.set_defaults(func=cmd_acl)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    if hasattr(args, "ca"):
        problem = _tls_usage(args)
        if problem is not None:
            print(f"edge-ops: {problem}", file=sys.stderr)
            return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
