"""Schema migrations from every earlier version, and resumability after kill -9 mid-apply."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlite_utils

from demo.scenario import demo_identity_key, profile_slice
from edge_agent.slice.crypto import DeviceKey
from edge_agent.slice.schema import SCHEMA_VERSION, SchemaError, migrate, schema_version
from edge_agent.slice.store import ProfileSlice

STORE = "store-42"


def write_v1(path: Path, rows: list[dict], version: int) -> None:
    """A file exactly as the foundation issue's code wrote it (its DDL and rows, verbatim)."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    db = sqlite_utils.Database(sqlite3.connect(path))
    db.execute("PRAGMA journal_mode=WAL")
    db["schema_version"].insert({"version": 1})
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["profiles"].create(
        {
            "profile_id": str,
            "first_name": str,
            "language": str,
            "consent_personalisation": int,
            "consent_analytics": int,
            "consent_staff_alerts": int,
            "segments": str,
            "loyalty_tier": str,
            "churn_risk": float,
            "open_order": str,
        },
        pk="profile_id",
    )
    db["identity_keys"].create(
        {"profile_id": str, "key_hex": str},
        pk="profile_id",
        foreign_keys=[("profile_id", "profiles", "profile_id")],
    )
    with db.conn:
        db["profiles"].insert_all(
            {
                "profile_id": r["profile_id"],
                "first_name": r.get("first_name", ""),
                "language": r.get("language", "en"),
                "consent_personalisation": int(r.get("consent_personalisation", False)),
                "consent_analytics": int(r.get("consent_analytics", False)),
                "consent_staff_alerts": int(r.get("consent_staff_alerts", False)),
                "segments": json.dumps(r.get("segments", [])),
                "loyalty_tier": r.get("loyalty_tier", "none"),
                "churn_risk": r.get("churn_risk", 0.0),
                "open_order": json.dumps(r["open_order"]) if r.get("open_order") else None,
            }
            for r in rows
        )
        db["identity_keys"].insert_all(
            {"profile_id": r["profile_id"], "key_hex": r["identity_key"]}
            for r in rows
            if r.get("identity_key")
        )
        db["meta"].upsert({"key": "version", "value": str(version)}, pk="key")
    db.conn.close()


def raw_bytes(path: Path) -> bytes:
    wal = Path(f"{path}-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_a_version_1_file_migrates_with_every_profile_and_key(tmp_path: Path) -> None:
    path = tmp_path / "profiles.db"
    rows = profile_slice()
    assert any(r.get("identity_key") for r in rows)
    write_v1(path, rows, version=7)
    plain = [r["identity_key"].encode() for r in rows if r.get("identity_key")]
    assert all(k in raw_bytes(path) for k in plain)

    s = ProfileSlice(path, store_id=STORE)
    assert s.migrated_from == 1 and schema_version(s.db) == SCHEMA_VERSION
    assert s.version == 7 and s.count() == len(rows)
    carol = s.get("cdp-p-1003")
    assert carol is not None and carol.version == 7
    assert [dict(o) for o in carol.open_orders] == [
        {"id": "CC-4711", "status": "ready", "pickup_point": "counter 2"}
    ]
    keys = s.identity_keys()
    for r in rows:
        if r.get("identity_key"):
            assert keys[r["profile_id"]] == (demo_identity_key(r["profile_id"]),)
    assert s.verify() == []
    # The plaintext keys are gone from the file and its WAL, not just from the table.
    raw = raw_bytes(path)
    assert not any(k in raw for k in plain)
    # A migrated slice takes the next delta as usual.
    s.apply(
        {
            "type": "delta",
            "store_id": STORE,
            "base_version": 7,
            "version": 8,
            "ops": [{"op": "consent", "profile_id": "cdp-p-1001", "opt_out": True}],
        }
    )
    assert s.get("cdp-p-1001") is None and s.verify() == []
    s.close()


def test_a_new_file_runs_every_step_from_zero(tmp_path: Path) -> None:
    db = sqlite_utils.Database(sqlite3.connect(tmp_path / "new.db", isolation_level=None))
    key = DeviceKey.load_or_create(tmp_path / "k.key")
    assert schema_version(db) == 0
    assert migrate(db, key, target=1) == 0 and schema_version(db) == 1
    assert set(db["profiles"].columns_dict) >= {"open_order"}
    assert migrate(db, key) == 1 and schema_version(db) == SCHEMA_VERSION
    assert "open_order" not in db["profiles"].columns_dict
    assert {"affinities", "open_orders", "expires_at", "version"} <= set(
        db["profiles"].columns_dict
    )
    assert db["identity_keys"].pks == ["profile_id", "slot"]
    assert "profiles_expires_at" in {i.name for i in db["profiles"].indexes}
    assert migrate(db, key) == SCHEMA_VERSION  # idempotent: nothing left to do
    assert db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1


def test_an_empty_file_is_a_version_0_file(tmp_path: Path) -> None:
    path = tmp_path / "profiles.db"
    path.touch(mode=0o600)
    s = ProfileSlice(path)
    assert s.migrated_from == 0 and s.count() == 0 and s.version == 0
    s.close()


def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "profiles.db"
    ProfileSlice(path).close()
    db = sqlite_utils.Database(sqlite3.connect(path))
    with db.conn:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.conn.close()
    before = path.read_bytes()
    with pytest.raises(SchemaError, match=f"schema v{SCHEMA_VERSION + 1} is newer"):
        ProfileSlice(path)
    assert path.read_bytes() == before


# ---- kill -9 mid-apply -------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, sys
    from edge_agent.slice.store import ProfileSlice
    path, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s = ProfileSlice(path, store_id="store-42")
    def progress(done):
        print(f"progress {done}", flush=True)
    if kind == "snapshot":
        rows = [{"profile_id": f"new-{i}", "identity_key": f"{i:032x}"} for i in range(n)]
        body = {"type": "snapshot", "store_id": "store-42", "version": 2, "profiles": rows}
    else:
        ops = [{"op": "upsert", "profile": {"profile_id": f"new-{i}"}} for i in range(n)]
        ops.append({"op": "consent", "profile_id": "old-1", "opt_out": True})
        body = {"type": "delta", "store_id": "store-42", "base_version": 1, "version": 2,
                "ops": ops}
    s.apply(body, on_progress=progress)
    print("done", flush=True)
    """
)


def _seed(path: Path) -> None:
    s = ProfileSlice(path, store_id=STORE)
    rows = [{"profile_id": f"old-{i}", "identity_key": f"{i + 1:032x}"} for i in range(100)]
    s.apply({"type": "snapshot", "store_id": STORE, "version": 1, "profiles": rows})
    s.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("kind", "n"), [("snapshot", 60_000), ("delta", 20_000)])
def test_kill_9_mid_apply_leaves_the_old_slice_and_the_apply_resumes(
    tmp_path: Path, kind: str, n: int
) -> None:
    path = tmp_path / "profiles.db"
    _seed(path)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), kind, str(n)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        # Rows are in the open transaction (several thousand written): kill now.
        assert line.startswith("progress"), line
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert child.returncode == -signal.SIGKILL

    s = ProfileSlice(path, store_id=STORE)
    assert s.version == 1 and s.count() == 100
    assert s.get("new-0") is None and s.get("old-1") is not None
    assert len(s.identity_keys()) == 100
    assert s.verify() == []
    s.close()
    # The redelivered message applies in full on the next start.
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), kind, str(n)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip().endswith("done"), done.stderr[-500:]
    s = ProfileSlice(path, store_id=STORE)
    assert s.version == 2 and s.get("new-0") is not None and s.verify() == []
    assert s.count() == (n if kind == "snapshot" else 100 + n - 1)
    s.close()
