"""Reading a message from the wire: bounded before it is parsed.

Every JSON message any process here reads from MQTT (bus events, screen state and commands,
receipts, scanner adverts, confirmations, downlink envelopes, event batches) goes through
``loads``: too large, too deeply nested, not UTF-8 or not JSON is a ``PayloadError`` (a
ValueError) with one line saying which, never a RecursionError out of the parser.
"""

from __future__ import annotations

import json
import re
from typing import Any

# No message here nests deeper than a handful of levels; 64 leaves room and stays far below
# the interpreter's recursion limit.
MAX_DEPTH = 64
DEFAULT_MAX_BYTES = 1_048_576
SCAN_BYTES = 262_144

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")


class PayloadError(ValueError):
    """A message that cannot be read; the text says why in one line."""


def depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text (strings skipped)."""
    # Fast path: fewer brackets than the limit cannot nest deeper than it.
    opened = raw.count(b"[") + raw.count(b"{")
    if opened <= MAX_DEPTH:
        return opened
    d = deepest = 0
    for m in _BRACKETS.finditer(_STRING.sub(b'""', raw)):
        if m.group() in (b"[", b"{"):
            d += 1
            deepest = max(deepest, d)
        else:
            d -= 1
    return deepest


def loads(
    payload: bytes | bytearray | str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int | None = MAX_DEPTH,
    what: str = "message",
    parse_constant: Any = None,
) -> Any:
    """The JSON value of ``payload``, or PayloadError naming what is wrong with it.

    ``max_depth=None`` skips the depth scan (it costs several parses on a big message): for the
    CDP's event batches, where the parser's own recursion guard and the per-event validation
    that follows are the limit."""
    # A str with lone surrogates still becomes bytes, and then fails below as not UTF-8.
    raw = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else bytes(payload)
    if len(raw) > max_bytes:
        raise PayloadError(f"{what} of {len(raw)} bytes is over the {max_bytes}-byte limit")
    # Big messages (event batches at the CDP) skip the scan, which costs several parses; the
    # parser's own recursion guard still turns deep nesting into a PayloadError below.
    if max_depth is not None and len(raw) <= SCAN_BYTES and depth(raw) > max_depth:
        raise PayloadError(f"{what} is nested too deeply (over {max_depth} levels)")
    try:
        return json.loads(raw, parse_constant=parse_constant)
    except UnicodeDecodeError:
        raise PayloadError(f"{what} is not JSON: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{what} is not JSON: {exc.msg} at {exc.pos}") from None
    except ValueError as exc:  # parse_constant refused NaN or Infinity
        raise PayloadError(f"{what} is not JSON: {exc}") from None
    except RecursionError:  # belt and braces: the depth check should have caught it
        raise PayloadError(f"{what} is nested too deeply") from None
