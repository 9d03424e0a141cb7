"""`edge-agent profiles stats|show|verify` as installers run it: a real process, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo.scenario import profile_slice
from edge_agent.slice.store import ProfileSlice

pytestmark = pytest.mark.timeout(60)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "profiles", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    s = ProfileSlice(tmp_path / "profiles.db", store_id="store-1")
    s.apply(
        {
            "store_id": "store-1",
            "version": 4,
            "profiles": profile_slice(),
            "stock": [{"sku": "SKU-1", "available": False, "aisle": "A1"}],
        }
    )
    s.close()
    return tmp_path / "profiles.db"


def test_stats(db: Path) -> None:
    r = cli("stats", "--db", str(db))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    n = len(profile_slice())
    assert out["profiles"] == n and out["version"] == 4 and out["store_id"] == "store-1"
    assert out["consent"]["personalisation"] == sum(
        bool(p.get("consent_personalisation")) for p in profile_slice()
    )
    assert out["stock"] == {"skus": 1, "out_of_stock": 1}
    assert out["bytes_per_profile"] > 0


def test_show_prints_the_profile_but_never_its_keys(db: Path) -> None:
    r = cli("show", "cdp-p-1003", "--db", str(db))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["first_name"] == "Carol" and out["open_orders"][0]["pickup_point"] == "counter 2"
    assert out["identity_keys"] == 1
    for p in profile_slice():
        if p.get("identity_key"):
            assert p["identity_key"] not in r.stdout + r.stderr
    missing = cli("show", "cdp-p-9999", "--db", str(db))
    assert missing.returncode == 1 and "not in this store's slice" in missing.stderr


def test_verify_ok_then_finds_a_loosened_file_and_a_foreign_key(db: Path, tmp_path: Path) -> None:
    r = cli("verify", "--db", str(db))
    assert r.returncode == 0 and r.stdout.startswith("OK "), r.stdout + r.stderr
    os.chmod(db, 0o644)
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    os.chmod(other, 0o600)
    r = cli("verify", "--db", str(db), "--key", str(other))
    assert r.returncode == 1
    assert "keys do not open" in r.stdout


def test_missing_files_are_one_line_errors_and_nothing_is_created(tmp_path: Path) -> None:
    r = cli("stats", "--db", str(tmp_path / "nope.db"))
    assert r.returncode == 1 and "no profile slice here" in r.stderr
    assert not (tmp_path / "nope.db").exists() and not (tmp_path / "nope.key").exists()
    ProfileSlice(tmp_path / "p.db").close()
    (tmp_path / "p.key").unlink()
    r = cli("verify", "--db", str(tmp_path / "p.db"))
    assert r.returncode == 1 and "no device key file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert cli("stats").returncode == 2
