"""Receipts from the point of sale, on a serial line or the in-store bus, as validated objects.

Line protocol (the same bytes on a UART and as an MQTT payload on ``instore/<store>/pos``):
one JSON object per line, UTF-8, LF-terminated, at most 4 KiB::

    {"receipt": "R-2026-000123", "ts": "2026-11-23T10:15:02+01:00", "till": "till-1",
     "loyalty": "cdp-p-1003", "currency": "EUR", "total": 129.9,
     "items": [{"sku": "SKU-RIDGE-GTX-42", "qty": 1, "amount": 129.9}]}

- ``receipt``: unique per store; a till that resends a receipt (after a reconnect) is expected,
  and the box counts each receipt once.
- ``ts``: ISO 8601 with a UTC offset (a time without one is refused: the box cannot guess).
- ``loyalty``: the CDP profile id from a scanned loyalty card or app, or absent.
- ``total`` and ``amount``: decimal currency units, not negative; ``qty`` at least 1.
Unknown fields are refused, so a till upgrade that changes the format is noticed, not ignored.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from contracts.payload import PayloadError, loads

MAX_LINE = 4096


class ReceiptError(ValueError):
    """A receipt line that cannot be used; the message names the field."""


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: str = Field(min_length=1, max_length=64)
    qty: int = Field(1, ge=1, le=10_000)
    amount: float = Field(ge=0, allow_inf_nan=False)


class Receipt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    receipt: str = Field(min_length=1, max_length=64)
    ts: AwareDatetime
    till: str = Field(min_length=1, max_length=64)
    loyalty: str | None = Field(None, min_length=1, max_length=64)
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    total: float = Field(ge=0, allow_inf_nan=False)
    items: list[Item] = Field(min_length=1, max_length=500)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def parse_receipt(raw: bytes | str) -> Receipt:
    if len(raw) > MAX_LINE:
        raise ReceiptError(f"receipt line is {len(raw)} bytes, over the {MAX_LINE} limit")
    try:
        obj = loads(raw, parse_constant=_refuse_constant, what="receipt line")
    except PayloadError as exc:
        raise ReceiptError(str(exc)[:120]) from None
    if not isinstance(obj, dict):
        raise ReceiptError("receipt line must be a JSON object")
    try:
        return Receipt.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "receipt"
        given = obj.get("receipt")
        rid = given if isinstance(given, str) else "?"
        raise ReceiptError(f"receipt {rid[:64]}: {where}: {err['msg']}") from None


class ReceiptDeduper:
    """Passes each receipt id once; remembers the last ``capacity`` ids (a day of a busy store)."""

    def __init__(self, on_receipt: Callable[[Receipt], None], capacity: int = 50_000) -> None:
        self.on_receipt = on_receipt
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.accepted = 0
        self.duplicates = 0
        self.refused = 0
        self.last_error = ""
        # Fed from the serial thread and the bus thread at once.
        self._lock = threading.Lock()

    def remember(self, receipt_ids: list[str]) -> None:
        """Receipts already counted before a restart (journey/memory.py): a till that resends
        one after the box restarted is still a duplicate."""
        with self._lock:
            for key in receipt_ids[-self.capacity :]:
                self._seen[key] = None

    def feed(self, raw: bytes | str) -> Receipt | None:
        try:
            receipt = parse_receipt(raw)
        except ReceiptError as exc:
            with self._lock:
                self.refused += 1
                self.last_error = str(exc)
            return None
        key = receipt.receipt
        with self._lock:
            if key in self._seen:
                self.duplicates += 1
                return None
            self._seen[key] = None
            if len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            self.accepted += 1
        self.on_receipt(receipt)
        return receipt
