"""Read a survey CSV: ``location,date,<beacon>,...`` (the layout of the UCI "BLE RSSI Dataset for
Indoor localization and Navigation", M. Mohammadi, A. Al-Fuqaha, CC BY 4.0, DOI 10.24432/C54G80).

``date`` is ``month-day-year hour:minute``; its day is the split key. Errors name the line.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from edge_agent.positioning.grid import CellError, cell_xy
from edge_agent.positioning.scan import NOT_HEARD, RSSI_MIN
from edge_agent.positioning.survey import Survey


class DatasetError(ValueError):
    """A survey file that cannot be read; one line, naming the file and line."""


def day_of(date: str) -> str:
    """``"4-19-2016 10:58"`` -> ``"2016-04-19"`` (month-day-year, as the survey writes it)."""
    part = date.strip().split()[0] if date.strip() else ""
    bits = part.split("-")
    if len(bits) != 3 or not all(b.isdigit() for b in bits):
        raise ValueError(f"date {date!r}: expected month-day-year, e.g. 4-19-2016 10:58")
    month, day, year = (int(b) for b in bits)
    if not (1 <= month <= 12 and 1 <= day <= 31):
        raise ValueError(f"date {date!r}: expected month-day-year, e.g. 4-19-2016 10:58")
    return f"{year:04d}-{month:02d}-{day:02d}"


def seconds_of(date: str) -> float:
    """``"4-19-2016 10:58:07"`` -> seconds into the day (0 without a time)."""
    bits = date.strip().split()
    if len(bits) < 2:
        return 0.0
    parts = bits[1].split(":")
    try:
        nums = [float(x) for x in parts] + [0.0] * (3 - len(parts))
    except ValueError:
        raise ValueError(f"date {date!r}: expected hour:minute[:second] after the day") from None
    return nums[0] * 3600 + nums[1] * 60 + nums[2]


def read_survey(path: str | Path, level: int = 0) -> Survey:
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{p}: cannot read: {exc}") from None
    if not rows:
        raise DatasetError(f"{p}: empty file")
    header = [h.strip() for h in rows[0]]
    if header[:2] != ["location", "date"] or len(header) < 3:
        raise DatasetError(f"{p}: line 1: expected header location,date,<beacon ids>")
    beacons = tuple(header[2:])
    if len(set(beacons)) != len(beacons):
        raise DatasetError(f"{p}: line 1: a beacon id appears twice")
    labels: list[str] = []
    days: list[str] = []
    times: list[float] = []
    values: list[list[float]] = []
    for n, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DatasetError(f"{p}: line {n}: {len(row)} fields, expected {len(header)}")
        try:
            cell_xy(row[0])
            day = day_of(row[1])
            at = seconds_of(row[1])
        except (CellError, ValueError) as exc:
            raise DatasetError(f"{p}: line {n}: {exc}") from None
        vec: list[float] = []
        for b, text in zip(beacons, row[2:], strict=True):
            try:
                v = float(text)
            except ValueError:
                raise DatasetError(f"{p}: line {n}: {b}: {text!r} is not a number") from None
            if not math.isfinite(v) or not (v == NOT_HEARD or RSSI_MIN <= v < 0):
                raise DatasetError(f"{p}: line {n}: {b}: RSSI {text!r} out of range")
            vec.append(v)
        labels.append(row[0].strip().upper())
        days.append(day)
        times.append(at)
        values.append(vec)
    if not labels:
        raise DatasetError(f"{p}: no scans")
    order = chronological(days, times)
    return Survey(
        beacons=beacons,
        labels=tuple(labels[i] for i in order),
        days=tuple(days[i] for i in order),
        rssi=np.array(values, dtype=float)[order].reshape(len(order), len(beacons)),
        level=level,
        times=tuple(times[i] for i in order),
    )


def chronological(days: list[str], times: list[float]) -> list[int]:
    """Row order by day and time. Scans within the same minute keep the order the file runs in
    that day: the UCI file lists each day newest first, so such a day is read backwards."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, d in enumerate(days):
        first.setdefault(d, i)
        last[d] = i
    backwards = {d: times[first[d]] > times[last[d]] for d in first}
    return sorted(
        range(len(days)),
        key=lambda i: (days[i], times[i], -i if backwards[days[i]] else i),
    )
