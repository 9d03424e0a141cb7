"""`edge-agent cert status|request|install`: the box's TLS client certificate by hand.

The way back for a box whose certificate expired (it can no longer reach central, so neither
its own renewal request nor a signed ``install_certificate`` command gets through): make the
request on the box, carry the request (not a key) to ops, carry the certificate back. The same
key handling as the automatic path (``edge_agent/downlink/credentials.py``): the new key never
leaves the box, and the installed pair runs on probation with the old one kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("cert", help="the box's TLS client certificate: status, request, install")
    cs = p.add_subparsers(dest="cert_command", required=True)
    st = cs.add_parser("status", help="days left, renewal due, a request pending (JSON)")
    st.add_argument("--config", "-c", required=True)
    st.set_defaults(func=_cmd_cert)
    rq = cs.add_parser("request", help="make the next key (0600) and print its request (PEM)")
    rq.add_argument("--config", "-c", required=True)
    rq.add_argument("--out", help="write the request here instead of stdout")
    rq.set_defaults(func=_cmd_cert)
    ins = cs.add_parser("install", help="check and install ops' certificate for the pending key")
    ins.add_argument("--config", "-c", required=True)
    ins.add_argument("certificate", help="the PEM from `edge-ops pki sign-csr`")
    ins.set_defaults(func=_cmd_cert)


def _cmd_cert(args: argparse.Namespace) -> int:
    from edge_agent.config import load_or_report
    from edge_agent.downlink import credentials

    cfg = load_or_report(args.config, sys.stderr)
    if cfg is None:
        return 2
    central, store = cfg.central, cfg.store
    try:
        if args.cert_command == "status":
            life = credentials.life(central)
            if life is None:
                print(json.dumps({"client_certificate": None}))
                return 0
            now = dt.datetime.now(dt.UTC)
            print(json.dumps({
                "days_left": round(life.days_left(now), 2),
                "not_after": life.not_after.isoformat(),
                "renewal_due": life.renewal_due(now),
                "expired": life.expired(now),
                "request_pending": credentials.pending_request(central) is not None,
            }))  # fmt: skip
            return 1 if life.expired(now) else 0
        if args.cert_command == "request":
            pem = credentials.request(central, store.store_id, store.device_id)
            if args.out:
                Path(args.out).write_bytes(pem)
            else:
                sys.stdout.write(pem.decode())
            return 0
        pem_text = Path(args.certificate).read_text()
        credentials.check(central, store.store_id, store.device_id, pem_text)
        credentials.install(central, pem_text)
    except (OSError, ValueError) as exc:
        print(f"edge-agent cert {args.cert_command}: {exc}", file=sys.stderr)
        return 1
    # The running agent keeps its TLS context: only a new process uses (and confirms) the pair.
    print("installed on probation; next: systemctl restart edge-agent")
    return 0
