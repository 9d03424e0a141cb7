"""The SQLite files the box writes (the outbox, the profile slice): private, checked at open, and
set aside when broken instead of crash-looping the agent under systemd.

- ``private_file``: the file is created 0600 before SQLite opens it (SQLite gives its -wal and
  -shm the main file's mode), and a loosened file (or -wal, -shm) is tightened again.
- ``damaged(exc)``: the errors that mean the file itself is broken: SQLITE_CORRUPT ("database
  disk image is malformed"), SQLITE_NOTADB ("file is not a database"), a text column that is not
  the UTF-8 we wrote, or our own ``Damaged``. A busy, full or failing disk is not "damaged":
  moving the file aside would not cure it.
- ``check(conn)``: ``PRAGMA quick_check`` (every page and b-tree, not the index contents).
- ``set_aside``: the broken file and its -wal/-shm renamed ``<name>.corrupt-<UTC time>`` for
  forensics, next to it; the newest ``KEEP_ASIDE`` sets are kept, older ones removed (a failing
  card must not fill the disk with copies).
- ``readable_rows``: every row of a rowid table that SQLite can still read, skipping what raises
  (a damaged page, a cut file): the sqlite3 shell's ``.recover`` is not available from Python.
- ``graft_first_page``: a damaged first page (the 100-byte header and the schema) replaced, in a
  scratch copy, by the first page of a new file made with the same schema, so that the rest of
  the file can be read again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sqlite3
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from contracts.files import fsync_path

log = logging.getLogger(__name__)
T = TypeVar("T")

SIDECARS = ("-wal", "-shm", "-journal")
KEEP_ASIDE = 3  # forensic sets kept per file, the newest
_CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_CORRUPT_TEXT = ("disk image is malformed", "file is not a database", "could not decode to utf-8")
_PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)
# Gap between two readable rowids probed one by one before doubling (a damaged leaf holds a few
# dozen rows; a damaged interior page up to a few thousand leaves' worth).
_LINEAR_PROBES = 4096
_MAX_ROWID = 2**63 - 1


class Damaged(sqlite3.DatabaseError):
    """Our own finding that a file is broken (a failed quick_check, an empty file, a row that
    is not what was written)."""


def damaged(exc: BaseException) -> bool:
    """True when ``exc`` says the database file is broken (not busy, full or unreachable)."""
    if isinstance(exc, Damaged):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in _CORRUPT_CODES:
        return True
    text = str(exc).lower()
    return any(t in text for t in _CORRUPT_TEXT)


def reason(exc: BaseException) -> str:
    """One short line for logs and health: never the damaged text itself (it may hold ids)."""
    text = " ".join(str(exc).split())
    text = text.split(" with text ", 1)[0]  # "Could not decode to UTF-8 column 'body' with text"
    return text[:160] or type(exc).__name__


def sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def private_file(path: Path, what: str) -> bool:
    """Create ``path`` empty with mode 0600 (True), or tighten it and its -wal/-shm if anyone
    else may read them (False)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        return True
    except FileExistsError:
        pass
    for p in (path, sidecar(path, "-wal"), sidecar(path, "-shm")):
        try:
            mode = stat.S_IMODE(p.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            log.warning("%s: %s was readable by others; set to 0600", what, p)
            os.chmod(p, 0o600)
    return False


def open_private(
    path: Path, what: str, *, synchronous: str = "FULL", timeout: float = 5.0
) -> sqlite3.Connection:
    """A state file of the box: 0600, WAL, deleted rows overwritten, checked at open (closed
    again and the error raised when the check fails, for the caller to set it aside)."""
    private_file(path, what)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA secure_delete=ON")
        check(db)
    except BaseException:
        db.close()
        raise
    return db


def empty(path: Path) -> bool:
    """An existing file with nothing in it, not even in its WAL (a WAL-mode file stays 0 bytes
    until its first checkpoint)."""
    wal = sidecar(path, "-wal")
    return path.stat().st_size == 0 and (not wal.exists() or wal.stat().st_size == 0)


def check(conn: sqlite3.Connection) -> None:
    """Raise ``Damaged`` unless ``PRAGMA quick_check`` says ok (SQLite's own errors propagate)."""
    rows = conn.execute("PRAGMA quick_check(3)").fetchall()
    if [tuple(r) for r in rows] != [("ok",)]:
        found = "; ".join(" ".join(str(r[0]).split()) for r in rows)
        raise Damaged(f"quick_check: {found}"[:200])


def remove_set(path: Path) -> None:
    """Remove a database file and its sidecars, whichever exist."""
    for p in (path, *(sidecar(path, s) for s in SIDECARS)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


@dataclass(frozen=True)
class Aside:
    path: Path  # where the main file went
    files: tuple[str, ...]  # every file moved (names)
    removed: int  # older forensic sets removed to keep KEEP_ASIDE


def set_aside(path: Path, now: datetime | None = None) -> Aside:
    """Rename the broken ``path`` and its sidecars to ``<name>.corrupt-<UTC time>``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    base = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while any(sidecar(base, s).exists() for s in ("", *SIDECARS)):
        base = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    moved = []
    for s in ("", *SIDECARS):
        src = sidecar(path, s)
        if src.exists():
            dst = sidecar(base, s)
            os.replace(src, dst)
            moved.append(dst.name)
    fsync_path(path.parent)
    return Aside(base, tuple(moved), _prune(path))


def aside_sets(path: Path) -> list[Path]:
    """The forensic copies of ``path`` kept next to it (their main files), oldest first."""
    pattern = re.compile(re.escape(path.name) + r"\.corrupt-\d{8}T\d{6}Z(-\d+)?$")
    return sorted(p for p in path.parent.iterdir() if pattern.match(p.name))


def _prune(path: Path) -> int:
    old = aside_sets(path)[:-KEEP_ASIDE]
    for p in old:
        remove_set(p)
    return len(old)


def open_readonly(path: Path) -> sqlite3.Connection:
    """A connection that cannot write ``path`` (nor checkpoint its WAL into it); text comes
    back as bytes, so a damaged text column is the caller's to judge, not an exception."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    conn.text_factory = bytes
    return conn


# ---- reading what can still be read ------------------------------------------------------
@dataclass
class ScanStats:
    errors: int = 0  # reads that raised
    rejected: int = 0  # rows read whose content is not what was written
    unreadable: int = 0  # rows that could be reached but whose content raised


def readable_rows(
    conn: sqlite3.Connection,
    table: str,
    columns: str,
    accept: Callable[[tuple], T | None],
    stats: ScanStats,
) -> Iterator[T]:
    """``accept((rowid, *columns))`` of every row of ``table`` SQLite can still read (rows it
    refuses are counted, not returned; a row may come twice: dedup when writing).

    A walk in rowid order up to the first read that raises, one in reverse order down to the
    last, and in between (several damaged pages) walks resumed past each damage: the next rowid
    that can be reached is found by probing rowid by rowid, then in doubling steps, bisecting
    back. Only accepted rows move the bounds, so a damaged cell whose rowid is garbage cannot
    make the scan skip good rows."""
    cols = f"SELECT rowid, {columns} FROM {table} NOT INDEXED"
    lo = -_MAX_ROWID - 1  # every accepted row <= lo has been returned (the forward walk)
    try:
        for row in conn.execute(f"{cols} ORDER BY rowid"):
            out = _judge(row, accept, stats)
            if out is not None:
                lo = max(lo, row[0])
                yield out
        return  # the whole table read
    except sqlite3.DatabaseError:
        stats.errors += 1
    hi = _MAX_ROWID  # every accepted row >= hi has been returned (the backward walk)
    try:
        for row in conn.execute(f"{cols} ORDER BY rowid DESC"):
            out = _judge(row, accept, stats)
            if out is not None:
                if row[0] <= lo:
                    break  # met the forward walk
                hi = min(hi, row[0])
                yield out
        return  # read down to the forward walk without an error: nothing in between
    except sqlite3.DatabaseError:
        stats.errors += 1
    p = lo + 1
    while p < hi:
        key = _next_key(conn, table, p, hi, stats)
        if key is None:
            return
        p = key + 1
        # The row at key alone first: a cursor reads one row ahead (Python's sqlite3 steps to
        # the next row before it hands one over), so a walk fails with the row before the
        # damage, and that row must not go with it.
        try:
            row = conn.execute(f"{cols} WHERE rowid = ?", (key,)).fetchone()
        except sqlite3.DatabaseError:
            stats.errors += 1
            stats.unreadable += 1
            continue
        if row is not None:
            out = _judge(row, accept, stats)
            if out is not None:
                yield out
        try:
            walk = conn.execute(f"{cols} WHERE rowid > ? AND rowid < ? ORDER BY rowid", (key, hi))
            for row in walk:
                out = _judge(row, accept, stats)
                if out is not None:
                    p = max(p, row[0] + 1)
                    yield out
            return  # walked up to the backward walk
        except sqlite3.DatabaseError:
            stats.errors += 1


def _judge(row: tuple, accept: Callable[[tuple], T | None], stats: ScanStats) -> T | None:
    out = accept(row)
    if out is None:
        stats.rejected += 1
    return out


def _next_key(
    conn: sqlite3.Connection, table: str, start: int, hi: int, stats: ScanStats
) -> int | None:
    """The first rowid in [start, hi) that can be reached, skipping what raises; None: none."""
    probe = f"SELECT rowid FROM {table} NOT INDEXED WHERE rowid >= ? ORDER BY rowid LIMIT 1"

    def first(p: int) -> tuple[bool, int | None]:
        try:
            r = conn.execute(probe, (p,)).fetchone()
        except sqlite3.DatabaseError:
            stats.errors += 1
            return False, None
        return True, None if r is None or int(r[0]) >= hi else int(r[0])

    ok, key = first(start)
    if ok:
        return key
    bad, step, n = start, 1, 0
    while True:
        p = min(bad + step, hi)
        if p >= hi:
            return None
        ok, key = first(p)
        if ok:
            break
        bad = p
        n += 1
        if n >= _LINEAR_PROBES:
            step *= 2
    # Doubling may have stepped over readable rows: bisect back to the first point that reads.
    good = p
    while good - bad > 1:
        mid = (bad + good) // 2
        ok_mid, key_mid = first(mid)
        if ok_mid:
            good, key = mid, key_mid
        else:
            bad = mid
    return key


# ---- a damaged first page ----------------------------------------------------------------
def page_size_candidates(path: Path) -> list[int]:
    """The page size the WAL's header names, then the database header's (when either is one),
    then the usual ones."""
    named: list[int] = []
    for f, at, width in ((sidecar(path, "-wal"), 8, 4), (path, 16, 2)):
        head = b""
        with contextlib.suppress(OSError), open(f, "rb") as fh:
            head = fh.read(at + width)
        if len(head) < at + width:
            continue
        v = int.from_bytes(head[at : at + width], "big")
        v = 65536 if width == 2 and v == 1 else v
        if v in _PAGE_SIZES and v not in named:
            named.append(v)
    return named + [s for s in _PAGE_SIZES if s not in named]


def graft_first_page(
    src: Path,
    scratch: Path,
    create: Callable[[sqlite3.Connection], None],
    sound: Callable[[sqlite3.Connection], bool],
) -> sqlite3.Connection | None:
    """Copy ``src`` (and its WAL) to ``scratch`` and replace the copy's first page with that of
    a new file ``create`` makes, trying each likely page size until ``sound`` accepts the
    result; returns a read connection to the scratch copy, or None when no page size fits.
    Only works for files made by the same ``create`` (same tables, same root pages)."""
    size = src.stat().st_size
    if size < 2 * min(_PAGE_SIZES):
        return None
    remove_set(scratch)
    try:
        shutil.copyfile(src, scratch)
        if sidecar(src, "-wal").exists():
            shutil.copyfile(sidecar(src, "-wal"), sidecar(scratch, "-wal"))
        with open(scratch, "rb") as fh:
            head = fh.read(max(_PAGE_SIZES))
    except OSError:  # e.g. no room for a copy
        remove_set(scratch)
        return None
    template = sidecar(scratch, ".template")
    for page in page_size_candidates(src):
        if size < 2 * page:
            continue
        remove_set(template)
        try:
            conn = sqlite3.connect(template, isolation_level=None)
            try:
                conn.execute(f"PRAGMA page_size = {page}")
                create(conn)
            finally:
                conn.close()
            first = bytearray(template.read_bytes()[:page])
            remove_set(template)
            first[28:32] = (size // page).to_bytes(4, "big")  # pages in the file as it is
            with open(scratch, "r+b") as fh:
                fh.write(head)  # the previous attempt's page undone
                fh.seek(0)
                fh.write(first)
            remove_set(sidecar(scratch, "-shm"))
            conn = open_readonly(scratch)
        except (OSError, sqlite3.Error):
            remove_set(template)
            continue
        try:
            if sound(conn):
                return conn
        except sqlite3.Error:
            pass
        conn.close()
    remove_set(scratch)
    return None
