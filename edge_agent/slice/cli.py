"""`edge-agent profiles stats|show ID|verify`: the profile slice for staff and installers.

Reads the slice the agent uses (``-c agent.toml``, or ``--db``/``--key``). Never creates a
database or a device key, and ``show`` prints how many identity keys a profile has, never a key.
Exit codes: 0 ok, 1 not found or problems found, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub) -> None:
    p = sub.add_parser("profiles", help="the profile slice: stats, show a profile, verify")
    p_sub = p.add_subparsers(dest="profiles_command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", "-c", help="the store's agent.toml (finds db and key)")
        sp.add_argument("--db", help="profiles.db (instead of -c)")
        sp.add_argument("--key", help="device key file (default: beside --db, profiles.key)")

    st = p_sub.add_parser("stats", help="counts, version, consent, stock, size (JSON)")
    common(st)
    st.set_defaults(func=_cmd_stats)
    sh = p_sub.add_parser("show", help="one profile without its identity keys (JSON)")
    sh.add_argument("profile_id")
    common(sh)
    sh.set_defaults(func=_cmd_show)
    ve = p_sub.add_parser("verify", help="integrity, file modes, keys open, versions")
    common(ve)
    ve.set_defaults(func=_cmd_verify)


def _open(args: argparse.Namespace) -> Any:
    """The slice, or an int exit code after a one-line error on stderr."""
    from edge_agent.slice.crypto import KeyFileError
    from edge_agent.slice.schema import SchemaError
    from edge_agent.slice.store import ProfileSlice

    db = Path(args.db) if args.db else None
    key = Path(args.key) if args.key else None
    store = None
    if args.config:
        from edge_agent.config import load_or_report

        cfg = load_or_report(args.config)
        if cfg is None:
            return 2
        db = db or cfg.paths_resolved.profiles_db
        key = key or cfg.profiles.key_file
        store = cfg.store.store_id
    if db is None:
        print("edge-agent profiles: give -c agent.toml or --db PATH", file=sys.stderr)
        return 2
    try:
        return ProfileSlice(db, key_path=key, store_id=store, cache_size=0, create=False)
    except (FileNotFoundError, KeyFileError, SchemaError) as exc:
        print(f"edge-agent profiles: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a damaged file: say so in one line instead of a traceback
        print(f"edge-agent profiles: {db}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _cmd_stats(args: argparse.Namespace) -> int:
    s = _open(args)
    if isinstance(s, int):
        return s
    try:
        print(json.dumps(s.stats(), indent=2))
    finally:
        s.close()
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    s = _open(args)
    if isinstance(s, int):
        return s
    try:
        p = s.show(args.profile_id)
    finally:
        s.close()
    if p is None:
        print(f"{args.profile_id}: not in this store's slice", file=sys.stderr)
        return 1
    print(json.dumps(p, indent=2, ensure_ascii=False))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    s = _open(args)
    if isinstance(s, int):
        return s
    try:
        problems = s.verify()
        n, version = s.count(), s.version
    finally:
        s.close()
    for line in problems:
        print(f"FAIL {line}")
    if problems:
        return 1
    print(f"OK {s.path}: slice v{version}, {n} profiles, every identity key opens")
    return 0
