"""Survey grid cells: a label such as ``O02`` is a column letter and a row number.

Cell coordinates are (column index, row number), A = 0; distances between cells are Euclidean in
cells. Labels with two letters (``AB07``) continue after Z, as spreadsheets do.
"""

from __future__ import annotations

import math
import re

_LABEL = re.compile(r"^([A-Z]{1,2})(\d{1,3})$")


class CellError(ValueError):
    """A grid label that is not column letters + row number."""


def cell_xy(label: str) -> tuple[float, float]:
    """``"O02"`` -> ``(14.0, 2.0)``."""
    m = _LABEL.match(label.strip().upper()) if isinstance(label, str) else None
    if m is None:
        raise CellError(f"grid cell {label!r}: expected column letters and a row number, e.g. O02")
    col = 0
    for ch in m.group(1):
        col = col * 26 + (ord(ch) - ord("A") + 1)
    return float(col - 1), float(int(m.group(2)))


def cell_label(x: float, y: float, width: int = 2) -> str:
    """The label of the cell nearest to point (x, y): the inverse of `cell_xy` on the grid."""
    col = max(0, round(x))
    row = max(0, round(y))
    letters = ""
    n = col + 1
    while n > 0:
        n, rem = divmod(n - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return f"{letters}{row:0{width}d}"


def cell_distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])
