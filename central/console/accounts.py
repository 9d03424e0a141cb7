"""The console's own state in one SQLite file: accounts with roles, sessions, the audit log.

Passwords are hashed with scrypt (stdlib, memory-hard: N=2**15, r=8, p=1, about 32 MB and
50 ms per guess), a 16-byte random salt per user, compared in constant time. Sessions are
random ids kept here (so logout and a deleted account end them at once); the browser holds the
id signed with the console's secret (``security.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROLES = ("viewer", "operator", "admin")
# scrypt cost: OWASP's minimum for scrypt is N=2**17 with r=8 (128 MB); 2**15 keeps a login on a
# small ops VM under ~0.1 s while still costing an attacker 32 MB per guess.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MIN_PASSWORD = 10
SESSION_TTL_S = 12 * 3600
ANONYMOUS_TTL_S = 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name       TEXT PRIMARY KEY,
    role       TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    salt       BLOB NOT NULL,
    hash       BLOB NOT NULL,
    params     TEXT NOT NULL,          -- 'scrypt:N:r:p', so the cost can rise later
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    sid        TEXT PRIMARY KEY,
    user       TEXT,                   -- NULL before login (the login form's CSRF token)
    created_at REAL NOT NULL,
    seen_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    n       INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    user    TEXT,
    client  TEXT,
    action  TEXT NOT NULL,
    target  TEXT,
    detail  TEXT,
    ok      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pushes (
    kind    TEXT PRIMARY KEY,
    version INTEGER NOT NULL           -- the last version this console signed, per kind
);
"""


class AccountError(ValueError):
    """A name, role or password that cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def _hash(
    password: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32
    )


# A hash to compare against when the user does not exist, so an unknown name costs the same
# time as a wrong password (no user enumeration by timing).
_DUMMY_SALT = secrets.token_bytes(16)


class Accounts:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        path.chmod(0o600)  # password hashes: the ops host's eyes only
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._dummy: bytes | None = None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- accounts ----------------------------------------------------------------------
    def set_user(self, name: str, role: str, password: str) -> User:
        """Create the account, or reset its role and password."""
        if not name or len(name) > 64 or not all(c.isalnum() or c in "._-@" for c in name):
            raise AccountError("name: 1 to 64 letters, digits or . _ - @")
        if role not in ROLES:
            raise AccountError(f"role: one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"password: at least {MIN_PASSWORD} characters")
        salt = secrets.token_bytes(16)
        digest = _hash(password, salt)
        with self._lock:
            self._db.execute(
                "INSERT INTO users VALUES (?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET"
                " role = excluded.role, salt = excluded.salt, hash = excluded.hash,"
                " params = excluded.params",
                (name, role, salt, digest, f"scrypt:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}", time.time()),
            )
            # A reset password ends every session the account had.
            self._db.execute("DELETE FROM sessions WHERE user = ?", (name,))
        return User(name, role)

    def users(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, role, created_at FROM users ORDER BY name"
            ).fetchall()
        return [{"name": n, "role": r, "created_at": t} for n, r, t in rows]

    def check_password(self, name: str, password: str) -> User | None:
        with self._lock:
            row = self._db.execute(
                "SELECT role, salt, hash, params FROM users WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            if self._dummy is None:
                self._dummy = _hash("x" * MIN_PASSWORD, _DUMMY_SALT)
            hmac.compare_digest(_hash(password, _DUMMY_SALT), self._dummy)
            return None
        role, salt, stored, params = row
        _, n, r, p = params.split(":")
        if hmac.compare_digest(_hash(password, salt, int(n), int(r), int(p)), stored):
            return User(name, role)
        return None

    # ---- sessions ----------------------------------------------------------------------
    def new_session(self, user: str | None) -> str:
        sid = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE seen_at < ?", (now - SESSION_TTL_S,))
            self._db.execute("INSERT INTO sessions VALUES (?,?,?,?)", (sid, user, now, now))
        return sid

    def session(self, sid: str) -> tuple[bool, User | None]:
        """(known and fresh, its user if logged in and the account still exists)."""
        now = time.time()
        with self._lock:
            row = self._db.execute(
                "SELECT s.user, u.role, s.seen_at FROM sessions s"
                " LEFT JOIN users u ON u.name = s.user WHERE s.sid = ?",
                (sid,),
            ).fetchone()
            if row is None or now - row[2] > SESSION_TTL_S:
                return False, None
            self._db.execute("UPDATE sessions SET seen_at = ? WHERE sid = ?", (now, sid))
        user, role, _ = row
        return True, User(user, role) if user and role else None

    def end_session(self, sid: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE sid = ?", (sid,))

    # ---- audit -------------------------------------------------------------------------
    def audit(
        self,
        user: str | None,
        action: str,
        *,
        target: str = "",
        detail: str = "",
        ok: bool = True,
        client: str = "",
    ) -> int:
        """Record one action; returns its entry's number."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO audit (at, user, client, action, target, detail, ok)"
                " VALUES (?,?,?,?,?,?,?)",
                (time.time(), user, client, action, target, detail[:1000], int(ok)),
            )
        return int(cur.lastrowid or 0)

    def audit_entry(self, n: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT at, user, client, action, target, detail, ok FROM audit WHERE n = ?",
                (n,),
            ).fetchone()
        keys = ("at", "user", "client", "action", "target", "detail", "ok")
        return None if row is None else dict(zip(keys, row, strict=True))

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT at, user, client, action, target, detail, ok FROM audit"
                " ORDER BY n DESC LIMIT ?",
                (limit,),
            ).fetchall()
        keys = ("at", "user", "client", "action", "target", "detail", "ok")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # ---- push versions -----------------------------------------------------------------
    def last_version(self, kind: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT version FROM pushes WHERE kind = ?", (kind,)).fetchone()
        return int(row[0]) if row else 0

    def used_version(self, kind: str, version: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO pushes VALUES (?, ?) ON CONFLICT(kind) DO UPDATE SET"
                " version = max(version, excluded.version)",
                (kind, version),
            )
