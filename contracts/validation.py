"""Shared validation pieces: the id rule every store, device and screen name follows on the wire,
and validation errors as one line (the box's config, the player, the kiosk and central all speak
them the same way)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError

# Store, device, screen and zone ids: they appear in MQTT topics and certificate names.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class StrictModel(BaseModel):
    """Settings read from a file people write: an unknown key (a typo) is an error, never a
    silently missing setting in the field."""

    model_config = ConfigDict(extra="forbid")


def key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


def first_error(exc: ValidationError, default: str) -> str:
    """The first problem of a validation error as one line ``where: what`` (the key path dotted,
    ``default`` when the whole value is at fault), for messages that name one thing."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or default
    return f"{where}: {str(first['msg']).removeprefix('Value error, ')}"
