"""What central sends for the profile slice, and the read-only ``Profile`` the agent decides on.

Pure data and validation, no I/O. Wire bodies (``kind: "profiles"`` on the downlink):

snapshot: ``{"type": "snapshot", "store_id": S, "version": N, "expires_at": T?,
"profiles": [row...], "stock": [stock row...]?}`` replaces the whole slice;

delta: ``{"type": "delta", "store_id": S, "base_version": N, "version": M, "expires_at": T?,
"ops": [op...]}`` with ops ``{"op": "upsert", "profile": row}``,
``{"op": "delete", "profile_id": P}``, ``{"op": "consent", "profile_id": P,
"personalisation"?: bool, "analytics"?: bool, "staff_alerts"?: bool, "opt_out"?: bool}``,
``{"op": "stock", "sku": ..., "available": bool, "quantity"?: int, "aisle"?: str, "price"?: float,
"was_price"?: float, "currency"?: "EUR"}`` and
``{"op": "stock_delete", "sku": ...}``.

Validation is strict (a string where a number belongs is an error, not a guess) and every
error names the row and the field, never the value: a bad identity key must not end up in a log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

PROFILE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
KEY_HEX = r"^[0-9a-f]{32}$"
MAX_KEYS = 4  # app reinstalls and a second device; more is a data problem upstream

Short = Annotated[str, StringConstraints(max_length=64)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class SliceError(ValueError):
    """Refused input or order; the message is one line naming what was wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class OpenOrder(_Strict):
    id: Label
    status: Label
    pickup_point: Short = ""


class ProfileRow(_Strict):
    """One profile as central pushes it; unknown fields and wrong types are refused."""

    profile_id: str = Field(pattern=PROFILE_ID)
    first_name: Short = ""
    language: str = Field("en", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
    consent_personalisation: bool = False
    consent_analytics: bool = False
    consent_staff_alerts: bool = False
    segments: list[Label] = Field(default_factory=list, max_length=100)
    affinities: dict[Label, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict, max_length=200
    )
    loyalty_tier: Short = "none"
    churn_risk: float = Field(0.0, ge=0, le=1)
    open_orders: list[OpenOrder] = Field(default_factory=list, max_length=20)
    # The shape of version 1 of the slice: one order, one key. Still accepted, merged below;
    # kept as a plain dict, which is what version 1 callers read from it.
    open_order: dict[str, str] | None = Field(None, strict=False)
    # 16-byte Eddystone-EID identity keys of the shopper's store app installs, hex.
    identity_keys: list[Annotated[str, StringConstraints(pattern=KEY_HEX)]] = Field(
        default_factory=list, max_length=MAX_KEYS
    )
    identity_key: str | None = Field(None, pattern=KEY_HEX)
    # After this the box must forget the profile (the retention purge does it).
    expires_at: datetime | None = Field(None, strict=False)

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("needs a time zone (RFC 3339)")
        return v

    @field_validator("open_order", mode="before")
    @classmethod
    def _one_order(cls, v: Any) -> Any:
        if v is None:
            return None
        try:
            return OpenOrder.model_validate(v).model_dump()
        except ValidationError as exc:
            raise ValueError(_first_error(exc)) from None

    def orders(self) -> list[OpenOrder]:
        one = OpenOrder.model_validate(self.open_order) if self.open_order else None
        extra = [one] if one is not None and one not in self.open_orders else []
        return [*self.open_orders, *extra]

    def keys(self) -> list[str]:
        out = list(dict.fromkeys(self.identity_keys))
        if self.identity_key and self.identity_key not in out:
            out.append(self.identity_key)
        return out[:MAX_KEYS]


@dataclass(frozen=True)
class StockPrice:
    """A SKU's price as the slice's stock table says today (what a card shows)."""

    price: float
    was_price: float | None = None
    currency: str = "EUR"


class StockRow(_Strict):
    sku: Label
    available: bool
    quantity: int | None = Field(None, ge=0)
    aisle: Short = ""
    # Today's shelf price and the one it replaces (a markdown), in the store's currency.
    price: float | None = Field(None, ge=0, le=1_000_000)
    was_price: float | None = Field(None, ge=0, le=1_000_000)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")

    def values(self, version: int) -> tuple[object, ...]:
        """The row in STOCK_COLS order."""
        return (
            self.sku,
            int(self.available),
            self.quantity,
            self.aisle,
            version,
            self.price,
            self.was_price,
            self.currency,
        )


class UpsertOp(_Strict):
    op: Literal["upsert"]
    profile: ProfileRow


class DeleteOp(_Strict):
    op: Literal["delete"]
    profile_id: str = Field(pattern=PROFILE_ID)


class ConsentOp(_Strict):
    op: Literal["consent"]
    profile_id: str = Field(pattern=PROFILE_ID)
    personalisation: bool | None = None
    analytics: bool | None = None
    staff_alerts: bool | None = None
    opt_out: bool = False


class StockOp(StockRow):
    op: Literal["stock"]


class StockDeleteOp(_Strict):
    op: Literal["stock_delete"]
    sku: Label


Op = Annotated[UpsertOp | DeleteOp | ConsentOp | StockOp | StockDeleteOp, Field(discriminator="op")]
_OP = TypeAdapter(Op)
_ROW = TypeAdapter(ProfileRow)
_STOCK = TypeAdapter(StockRow)


def _first_error(exc: ValidationError, tag: str | None = None) -> str:
    err = exc.errors(include_input=False, include_url=False)[0]
    loc = list(err["loc"])
    if tag is not None and loc and loc[0] == tag:
        loc = loc[1:]  # the union's tag ("upsert") is already in the message
    return f"{'.'.join(str(p) for p in loc) or '(row)'}: {err['msg']}"


def _id_of(raw: Any, key: str = "profile_id") -> str:
    # The id helps find the row; only a plausible id is echoed (never a long or odd value).
    v = raw.get(key) if isinstance(raw, dict) else None
    if isinstance(v, str) and len(v) <= 64 and v.isprintable():
        return v
    return "?"


def parse_rows(
    rows: list[Any], where: str = "profiles", start: int = 0, seen: set[str] | None = None
) -> list[ProfileRow]:
    """Validate ``rows`` (numbered from ``start`` in messages); ``seen`` spans several calls."""
    out: list[ProfileRow] = []
    seen = set() if seen is None else seen
    for i, raw in enumerate(rows, start):
        try:
            row = _ROW.validate_python(raw)
        except ValidationError as exc:
            raise SliceError(f"{where}[{i}] ({_id_of(raw)}): {_first_error(exc)}") from None
        if row.profile_id in seen:
            raise SliceError(f"{where}[{i}] ({row.profile_id}): profile_id: duplicate in the slice")
        seen.add(row.profile_id)
        out.append(row)
    return out


def parse_stock(rows: Any) -> list[StockRow]:
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise SliceError("stock: expected a list")
    out = []
    for i, raw in enumerate(rows):
        try:
            out.append(_STOCK.validate_python(raw))
        except ValidationError as exc:
            raise SliceError(f"stock[{i}] ({_id_of(raw, 'sku')}): {_first_error(exc)}") from None
    return out


def parse_ops(ops: Any) -> list[UpsertOp | DeleteOp | ConsentOp | StockOp | StockDeleteOp]:
    if not isinstance(ops, list):
        raise SliceError("ops: expected a list")
    out = []
    for i, raw in enumerate(ops):
        try:
            out.append(_OP.validate_python(raw))
        except ValidationError as exc:
            what = raw.get("op") if isinstance(raw, dict) else None
            what = what if isinstance(what, str) and len(what) <= 16 else "?"
            pid = _id_of(raw.get("profile"), "profile_id") if isinstance(raw, dict) else "?"
            if pid == "?":
                pid = _id_of(raw)
            raise SliceError(f"ops[{i}] ({what} {pid}): {_first_error(exc, what)}") from None
    return out


@dataclass(frozen=True, slots=True)
class Profile:
    """The read-only view decisions use. Mappings are read-only proxies: one cached instance is
    shared by every decision, so nobody may change it in place."""

    profile_id: str
    first_name: str
    language: str
    consent_personalisation: bool
    consent_analytics: bool
    consent_staff_alerts: bool
    segments: tuple[str, ...]
    loyalty_tier: str
    churn_risk: float
    # The first open order, as version 1 of the slice had it (older callers read it).
    open_order: Mapping[str, str] | None = field(default=None, hash=False, compare=False)
    open_orders: tuple[Mapping[str, str], ...] = field(default=(), hash=False, compare=False)
    # Category -> score in 0..1.
    affinities: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({}), hash=False, compare=False
    )
    expires_at: float | None = None  # epoch seconds
    version: int = 0  # the slice version that last wrote this profile


def frozen_orders(orders: list[dict[str, str]]) -> tuple[Mapping[str, str], ...]:
    return tuple(MappingProxyType(dict(o)) for o in orders)
