"""Damaging SQLite files on purpose, knowing what was hit: the file format's pages read by hand
(https://www.sqlite.org/fileformat2.html), so a test can say which rows a damaged page held."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

TABLE_LEAF = 0x0D


def page_size(data: bytes) -> int:
    v = int.from_bytes(data[16:18], "big")
    return 65536 if v == 1 else v


def varint(data: bytes | bytearray, at: int) -> tuple[int, int]:
    """(value, offset after it)."""
    v = 0
    for k in range(9):
        c = data[at + k]
        if k == 8:
            return (v << 8) | c, at + 9
        v = (v << 7) | (c & 0x7F)
        if c < 0x80:
            return v, at + k + 1
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Cell:
    rowid: int
    at: int  # file offset of the cell
    record: int  # file offset of its record (header size varint first)


@dataclass(frozen=True)
class Leaf:
    page: int  # 1-based page number
    offset: int  # file offset of the page
    cells: tuple[Cell, ...]

    @property
    def rowids(self) -> set[int]:
        return {c.rowid for c in self.cells}


def leaf(data: bytes | bytearray, page: int) -> Leaf | None:
    """Page ``page`` as a table b-tree leaf, or None if it is something else."""
    size = page_size(bytes(data[:100]))
    base = (page - 1) * size
    head = base + (100 if page == 1 else 0)
    if head >= len(data) or data[head] != TABLE_LEAF:
        return None
    cells = []
    for i in range(int.from_bytes(data[head + 3 : head + 5], "big")):
        ptr = int.from_bytes(data[head + 8 + 2 * i : head + 10 + 2 * i], "big")
        _, j = varint(data, base + ptr)
        rowid, record = varint(data, j)
        cells.append(Cell(rowid, base + ptr, record))
    return Leaf(page, base, tuple(cells))


def table_leaves(path: Path, table: str) -> list[Leaf]:
    """The leaf pages of ``table`` in a sound, checkpointed file, in rowid order."""
    data = path.read_bytes()
    conn = sqlite3.connect(path)
    try:
        root = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (table,))
        root_page = int(root.fetchone()[0])
    finally:
        conn.close()
    size = page_size(data)
    out: list[Leaf] = []

    def walk(page: int) -> None:
        base = (page - 1) * size
        head = base + (100 if page == 1 else 0)
        kind = data[head]
        if kind == TABLE_LEAF:
            lf = leaf(data, page)
            assert lf is not None
            out.append(lf)
            return
        assert kind == 0x05, f"page {page}: not a table b-tree page"
        n = int.from_bytes(data[head + 3 : head + 5], "big")
        for i in range(n):
            ptr = int.from_bytes(data[head + 12 + 2 * i : head + 14 + 2 * i], "big")
            walk(int.from_bytes(data[base + ptr : base + ptr + 4], "big"))
        walk(int.from_bytes(data[head + 8 : head + 12], "big"))  # the right-most child

    walk(root_page)
    return out


def overwrite(path: Path, at: int, n: int, seed: int = 0) -> bytes:
    """Put ``n`` random bytes at ``at``; returns the file as it now is."""
    data = bytearray(path.read_bytes())
    data[at : at + n] = random.Random(seed).randbytes(n)
    path.write_bytes(bytes(data))
    return bytes(data)
