"""The planogram on the box: ``planogram.db`` in the state directory, pushed by central as its
own downlink kind ``planogram`` (a body as in ``products.py``), or loaded from an ERP export.

Its own file, not a table in the profile slice: the slice is sealed personal data on a consent
clock, the planogram is the store's public catalogue that changes on the ERP's clock; neither
should wait for, or be purged with, the other. Stock stays in the slice (it already comes with
it) and is joined at search time.

Swapped whole: one transaction replaces every row and the version, so a reader (another
connection) sees the old planogram or the new one, never a mix; a kill -9 mid-apply leaves
the old one. An older version is refused, the same version and content again is a no-op.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge_agent.wayfinding.products import (
    Location,
    Planogram,
    PlanogramError,
    Product,
    parse_body,
    parse_export,
)
from sync.sqlite_guard import check, private_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
  sku TEXT PRIMARY KEY, names TEXT NOT NULL, brand TEXT NOT NULL, category TEXT NOT NULL,
  level_id TEXT, unit_id TEXT, section_id TEXT, shelf TEXT, x REAL, y REAL, quantity INTEGER
);
"""


class PlanogramOrderError(PlanogramError):
    """An older planogram, or the same version with other content."""


@dataclass(frozen=True)
class ApplyResult:
    version: int
    products: int
    duplicate: bool = False


def load_file(path: Path, version: int | None = None) -> Planogram:
    """An ERP export by its suffix: ``.csv`` or ``.json``."""
    fmt: Literal["csv", "json"] = "csv" if path.suffix.lower() == ".csv" else "json"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanogramError(f"{path}: cannot read: {exc}") from None
    try:
        return parse_export(text, fmt, version)
    except PlanogramError as exc:
        raise PlanogramError(f"{path.name}: {exc}") from None


class PlanogramStore:
    def __init__(self, path: Path, store_id: str | None = None) -> None:
        self.path = path
        self.store_id = store_id
        path.parent.mkdir(parents=True, exist_ok=True)
        private_file(path, "planogram")  # not secret, but nobody else's to write
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        check(self._db)
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @property
    def version(self) -> int | None:
        v = self._meta("version")
        return None if v is None else int(v)

    def apply(self, body: Any) -> ApplyResult:
        """A downlink body of kind ``planogram``; raises ``PlanogramError`` naming the field."""
        if isinstance(body, dict):
            store = body.get("store_id")
            if self.store_id is not None and store is not None and store != self.store_id:
                raise PlanogramError(
                    f"store_id: planogram for store {str(store)[:64]!r}, "
                    f"this box is in {self.store_id!r}"
                )
        return self.replace(parse_body(body))

    def replace(self, planogram: Planogram) -> ApplyResult:
        with self._lock:
            cur = self.version
            n = len(planogram.products)
            if cur is not None and planogram.version <= cur:
                if planogram.version == cur and self._meta("digest") == planogram.digest:
                    return ApplyResult(planogram.version, n, duplicate=True)
                raise PlanogramOrderError(
                    f"version: planogram {planogram.version} is not newer than {cur}"
                )
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM products")
                db.executemany(
                    "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [_row(p) for p in planogram.products],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [("version", str(planogram.version)), ("digest", planogram.digest)],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return ApplyResult(planogram.version, n)

    def product(self, sku: str) -> tuple[int | None, Product | None]:
        """The planogram's version and the row for ``sku`` (None if it has none), read in one
        snapshot: a screen routes to one product without holding the whole table in memory."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                version = self._meta("version")
                row = db.execute("SELECT * FROM products WHERE sku=?", (sku,)).fetchone()
            finally:
                db.execute("COMMIT")
        if version is None:
            return None, None
        return int(version), None if row is None else _product(row)

    def load(self) -> Planogram | None:
        """The current planogram (rows were validated when they came in), or None if none yet."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")  # one snapshot: the version and the rows that go with it
            try:
                version = self._meta("version")
                digest = self._meta("digest") or ""
                rows = db.execute("SELECT * FROM products ORDER BY sku").fetchall()
            finally:
                db.execute("COMMIT")
        if version is None:
            return None
        return Planogram(int(version), tuple(_product(r) for r in rows), digest)


def _row(p: Product) -> tuple[Any, ...]:
    loc = p.location
    return (
        p.sku,
        json.dumps(dict(p.names), ensure_ascii=False),
        p.brand,
        p.category,
        loc.level_id if loc else None,
        loc.unit_id if loc else None,
        loc.section_id if loc else None,
        loc.shelf if loc else None,
        loc.x if loc else None,
        loc.y if loc else None,
        p.quantity,
    )


def _product(r: tuple[Any, ...]) -> Product:
    sku, names, brand, category, level, unit, section, shelf, x, y, quantity = r
    loc = None if unit is None else Location(level, unit, section, shelf, float(x), float(y))
    return Product(sku, json.loads(names), brand, category, loc, quantity)
