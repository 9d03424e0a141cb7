"""Reports on the slice for installers and staff (`edge-agent profiles stats|show|verify`): read
through the slice's own read connection, never its keys (only how many a profile has)."""

from __future__ import annotations

import stat
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.slice.crypto import SealError
from edge_agent.slice.rows import COLS, to_profile
from edge_agent.slice.schema import SCHEMA_VERSION, schema_version

if TYPE_CHECKING:
    from edge_agent.slice.store import ProfileSlice


def stats(s: ProfileSlice) -> dict[str, Any]:
    """Counts, consent, stock and size of the slice (JSON for `edge-agent profiles stats`)."""
    with s._read_lock:
        q = s._reader.execute
        n, pers, ana, staff, expiring = q(
            "SELECT count(*), sum(consent_personalisation), sum(consent_analytics), "
            "sum(consent_staff_alerts), count(expires_at) FROM profiles"
        ).fetchone()
        with_keys = q("SELECT count(DISTINCT profile_id) FROM identity_keys").fetchone()[0]
        stock_n, stock_out = q(
            "SELECT count(*), count(*) - coalesce(sum(available), 0) FROM stock"
        ).fetchone()
        meta = dict(q("SELECT key, value FROM meta").fetchall())
    size = sum(p.stat().st_size for p in (s.path, Path(f"{s.path}-wal")) if p.exists())
    applied = meta.get("applied_at")
    return {
        "path": str(s.path),
        "store_id": meta.get("store_id"),
        "schema": SCHEMA_VERSION,
        "version": int(meta.get("version") or 0),
        "applied_at": (
            datetime.fromtimestamp(float(applied)).astimezone().isoformat(timespec="seconds")
            if applied
            else None
        ),
        "profiles": n,
        "consent": {
            "personalisation": pers or 0,
            "analytics": ana or 0,
            "staff_alerts": staff or 0,
        },
        "with_identity_keys": with_keys,
        "with_expiry": expiring,
        "stock": {"skus": stock_n, "out_of_stock": stock_out},
        "expired_purged": int(meta.get("expired_purged") or 0),
        "snapshot_needed": meta.get("snapshot_needed"),
        "snapshot_staged": s.staged_text(),
        "file_bytes": size,
        "bytes_per_profile": round(size / n) if n else None,
    }


def show(s: ProfileSlice, profile_id: str) -> dict[str, Any] | None:
    """A profile for staff: every field except its identity keys (only their number)."""
    with s._read_lock:
        row = s._reader.execute(
            f"SELECT {COLS} FROM profiles WHERE profile_id=?", (profile_id,)
        ).fetchone()
        n_keys = s._reader.execute(
            "SELECT count(*) FROM identity_keys WHERE profile_id=?", (profile_id,)
        ).fetchone()[0]
    if row is None:
        return None
    p = to_profile(row)
    return {
        "profile_id": p.profile_id,
        "first_name": p.first_name,
        "language": p.language,
        "consent": {
            "personalisation": p.consent_personalisation,
            "analytics": p.consent_analytics,
            "staff_alerts": p.consent_staff_alerts,
        },
        "segments": list(p.segments),
        "affinities": dict(p.affinities),
        "loyalty_tier": p.loyalty_tier,
        "churn_risk": p.churn_risk,
        "open_orders": [dict(o) for o in p.open_orders],
        "identity_keys": n_keys,
        "expires_at": (
            datetime.fromtimestamp(p.expires_at).astimezone().isoformat(timespec="seconds")
            if p.expires_at is not None
            else None
        ),
        "slice_version": p.version,
    }


def verify(s: ProfileSlice) -> list[str]:
    """Problems an installer should know about; an empty list means the slice is sound."""
    problems: list[str] = []
    for f in (s.path, s.key_path):
        mode = stat.S_IMODE(f.stat().st_mode)
        if mode & 0o077:
            problems.append(f"{f}: mode {mode:o}, expected 600")
    with s._read_lock:
        q = s._reader.execute
        check = q("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            problems.append(f"{s.path}: SQLite check: {check}")
        if schema_version(s._reader) != SCHEMA_VERSION:
            problems.append(f"{s.path}: schema is not v{SCHEMA_VERSION}")
        orphans = q(
            "SELECT count(*) FROM identity_keys WHERE profile_id NOT IN "
            "(SELECT profile_id FROM profiles)"
        ).fetchone()[0]
        if orphans:
            problems.append(f"identity_keys: {orphans} keys without a profile")
        bad_json = q(
            "SELECT count(*) FROM profiles WHERE NOT json_valid(segments) "
            "OR (open_orders IS NOT NULL AND NOT json_valid(open_orders)) "
            "OR (affinities IS NOT NULL AND NOT json_valid(affinities))"
        ).fetchone()[0]
        if bad_json:
            problems.append(f"profiles: {bad_json} rows with unreadable JSON")
        row = q("SELECT value FROM meta WHERE key='version'").fetchone()
        version = int(row[0]) if row else 0
        newer = q("SELECT count(*) FROM profiles WHERE version > ?", (version,)).fetchone()[0]
        if newer:
            problems.append(f"profiles: {newer} rows newer than slice v{version}")
        if version and not q("SELECT 1 FROM slice_log WHERE version=?", (version,)).fetchone():
            problems.append(f"slice_log: no entry for slice v{version}")
        sealed = q("SELECT profile_id, slot, sealed FROM identity_keys").fetchall()
    bad = 0
    for pid, slot, blob in sealed:
        try:
            s._key.open(pid, slot, blob)
        except SealError:
            bad += 1
    if bad:
        problems.append(f"identity_keys: {bad} keys do not open with {s.key_path}")
    need = s.snapshot_needed
    if need:
        problems.append(f"snapshot needed: {need}")
    return problems
