"""The profile slice: a read-only, versioned replica of the CDP's profiles for this store.

Stored in SQLite (WAL) with sqlite-utils. Identity keys (for rotating shopper tokens) live in a
table of their own, the file is mode 0600, and keys are never logged or returned by ``show``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 1


class ProfileRow(BaseModel):
    """One profile as central pushes it; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    profile_id: str = Field(min_length=1, max_length=64)
    first_name: str = ""
    language: str = "en"
    consent_personalisation: bool = False
    consent_analytics: bool = False
    consent_staff_alerts: bool = False
    segments: list[str] = Field(default_factory=list)
    loyalty_tier: str = "none"
    churn_risk: float = Field(0.0, ge=0, le=1)
    open_order: dict[str, str] | None = None
    # 16-byte Eddystone-EID identity key of the shopper's store app, hex.
    identity_key: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")


class SliceError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Profile:
    profile_id: str
    first_name: str
    language: str
    consent_personalisation: bool
    consent_analytics: bool
    consent_staff_alerts: bool
    segments: tuple[str, ...]
    loyalty_tier: str
    churn_risk: float
    open_order: dict[str, str] | None = field(default=None, hash=False, compare=False)


def _to_profile(row: dict[str, Any]) -> Profile:
    return Profile(
        profile_id=row["profile_id"],
        first_name=row["first_name"],
        language=row["language"],
        consent_personalisation=bool(row["consent_personalisation"]),
        consent_analytics=bool(row["consent_analytics"]),
        consent_staff_alerts=bool(row["consent_staff_alerts"]),
        segments=tuple(json.loads(row["segments"])),
        loyalty_tier=row["loyalty_tier"],
        churn_risk=row["churn_risk"],
        open_order=json.loads(row["open_order"]) if row["open_order"] else None,
    )


class ProfileSlice:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        if new:
            # Create with 0600 before SQLite writes anything: the file will hold identity keys.
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        conn = sqlite3.connect(self.path, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self._migrate()
        self._cache: dict[str, Profile] | None = None
        # Snapshots arrive on the downlink thread while the agent loop reads.
        self._lock = threading.RLock()

    def _migrate(self) -> None:
        if "schema_version" not in self.db.table_names():
            self.db["schema_version"].insert({"version": SCHEMA_VERSION})
        self.db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
        self.db["profiles"].create(
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
            if_not_exists=True,
        )
        self.db["identity_keys"].create(
            {"profile_id": str, "key_hex": str},
            pk="profile_id",
            foreign_keys=[("profile_id", "profiles", "profile_id")],
            if_not_exists=True,
        )

    @property
    def version(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        return int(row[0]) if row else 0

    def load_snapshot(self, rows: list[dict[str, Any]], version: int) -> int:
        """Replace the whole slice atomically; refuses the lot if any row is malformed."""
        parsed: list[ProfileRow] = []
        for i, raw in enumerate(rows):
            try:
                parsed.append(ProfileRow.model_validate(raw))
            except ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join(str(p) for p in err["loc"])
                pid = raw.get("profile_id", "?") if isinstance(raw, dict) else "?"
                raise SliceError(f"profiles[{i}] ({pid}): {loc}: {err['msg']}") from None
        with self._lock:
            return self._replace(parsed, version)

    def _replace(self, parsed: list[ProfileRow], version: int) -> int:
        if version <= self.version:
            raise SliceError(f"slice version {version} is not newer than {self.version}")
        with self.db.conn:
            self.db.execute("DELETE FROM identity_keys")
            self.db.execute("DELETE FROM profiles")
            self.db["profiles"].insert_all(
                (
                    {
                        "profile_id": p.profile_id,
                        "first_name": p.first_name,
                        "language": p.language,
                        "consent_personalisation": int(p.consent_personalisation),
                        "consent_analytics": int(p.consent_analytics),
                        "consent_staff_alerts": int(p.consent_staff_alerts),
                        "segments": json.dumps(p.segments),
                        "loyalty_tier": p.loyalty_tier,
                        "churn_risk": p.churn_risk,
                        "open_order": json.dumps(p.open_order) if p.open_order else None,
                    }
                    for p in parsed
                ),
            )
            self.db["identity_keys"].insert_all(
                {"profile_id": p.profile_id, "key_hex": p.identity_key}
                for p in parsed
                if p.identity_key
            )
            self.db["meta"].upsert({"key": "version", "value": str(version)}, pk="key")
        self._cache = None
        return len(parsed)

    def _load_cache(self) -> dict[str, Profile]:
        cache = self._cache
        if cache is None:
            with self._lock:
                cache = {r["profile_id"]: _to_profile(r) for r in self.db["profiles"].rows}
                self._cache = cache
        return cache

    def get(self, profile_id: str) -> Profile | None:
        return self._load_cache().get(profile_id)

    def identity_keys(self) -> dict[str, bytes]:
        return {r["profile_id"]: bytes.fromhex(r["key_hex"]) for r in self.db["identity_keys"].rows}

    def count(self) -> int:
        return self.db["profiles"].count

    def close(self) -> None:
        self.db.conn.close()
