"""An ERP's planogram CSV as the rows of a ``planogram`` body, shared by the box (which validates
every row: ``edge_agent/wayfinding/products.py``) and ``edge-ops push planogram FILE.csv``.

One row per SKU with the columns ``sku, brand, category, name_<lang>..., level_id, unit_id,
section_id, shelf, x, y, quantity``; empty cells are absent values, and a row with no location
cells has no location. Only the CSV's own shape is checked here (columns, numbers, a location
given whole); the rows' content is the body's validator's, which names the line.

Pure: text in, dicts out.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$"
LANG = r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$"
LOCATION_COLUMNS = ("level_id", "unit_id", "section_id", "shelf", "x", "y")
COLUMNS = frozenset({"sku", "brand", "category", "quantity", *LOCATION_COLUMNS})


class PlanogramCsvError(ValueError):
    """The CSV cannot be read as a planogram; one line naming the line and the column."""


def sku_of(raw: Any) -> str:
    """A row's SKU for a message: only a plausible one is echoed, nothing else of the row."""
    v = raw.get("sku") if isinstance(raw, dict) else None
    return v if isinstance(v, str) and re.match(SKU_PATTERN, v) else "?"


def _number(cell: str, column: str, where: str) -> float | int:
    try:
        return int(cell) if column == "quantity" else float(cell)
    except ValueError:
        kind = "a whole number" if column == "quantity" else "a number"
        raise PlanogramCsvError(f"{where}: {column}: expected {kind}") from None


def read_rows(text: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The body rows of a CSV export and the file line each starts on."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))  # Excel writes a BOM
    header = reader.fieldnames or []
    if "sku" not in header:
        raise PlanogramCsvError("line 1: sku: missing column")
    extra = [c for c in header if c not in COLUMNS and not c.startswith("name_")]
    if extra:
        raise PlanogramCsvError(f"line 1: {extra[0]}: unknown column")
    bad_lang = [c for c in header if c.startswith("name_") and not re.match(LANG, c[5:])]
    if bad_lang:
        raise PlanogramCsvError(f"line 1: {bad_lang[0]}: expected name_<language code>")
    rows: list[dict[str, Any]] = []
    for rec in reader:
        where = f"line {reader.line_num} ({sku_of(rec)})"
        if None in rec:
            raise PlanogramCsvError(f"{where}: (row): more cells than columns")
        cells = {k: (v or "").strip() for k, v in rec.items()}
        row: dict[str, Any] = {"sku": cells["sku"]}
        row["names"] = {k[5:]: v for k, v in cells.items() if k.startswith("name_") and v}
        for k in ("brand", "category"):
            if cells.get(k):
                row[k] = cells[k]
        if cells.get("quantity"):
            row["quantity"] = _number(cells["quantity"], "quantity", where)
        if any(cells.get(k) for k in LOCATION_COLUMNS):
            for k in ("level_id", "unit_id", "x", "y"):
                if not cells.get(k):
                    raise PlanogramCsvError(f"{where}: {k}: missing (the row has a location)")
            loc: dict[str, Any] = {
                "level_id": cells["level_id"],
                "unit_id": cells["unit_id"],
                "point": [_number(cells["x"], "x", where), _number(cells["y"], "y", where)],
            }
            for k in ("section_id", "shelf"):
                if cells.get(k):
                    loc[k] = cells[k]
            row["location"] = loc
        rows.append(row)
    return rows, _line_numbers(text)


def _line_numbers(text: str) -> list[int]:
    """The file line each data row starts on (quoted cells may span lines)."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    out, prev = [], 0
    for i, _ in enumerate(reader):
        if i:
            out.append(prev + 1)
        prev = reader.line_num
    return out


def csv_column(field_path: str) -> str:
    """The CSV column behind a body field path, so a message names what the ERP wrote."""
    if field_path.startswith("names."):
        return "name_" + field_path.split(".")[1]
    if field_path.startswith("location.point"):
        return "x" if field_path.endswith(".0") else "y" if field_path.endswith(".1") else "x, y"
    return field_path.removeprefix("location.")


def body_from_csv(text: str, version: int, store_id: str | None = None) -> dict[str, Any]:
    """A ``planogram`` downlink body from an ERP's CSV export."""
    rows, _ = read_rows(text)
    body: dict[str, Any] = {"type": "planogram", "version": version, "products": rows}
    if store_id is not None:
        body["store_id"] = store_id
    return body
