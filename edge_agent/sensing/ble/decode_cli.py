"""`edge-agent ble decode`: one advert as JSON on stdin, its frames as JSON on stdout.

Installers use it to check beacons. It never prints the device address (raw addresses stay on
the box) and never crashes on garbage: the worst answer is ``{"format": null, "error": ...}``
with exit code 1.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from edge_agent.sensing.ble.advert import Advert, AdvertError
from edge_agent.sensing.ble.decode import decode_advert, distance_m

# One advert is a few hundred bytes of JSON; anything far larger is not one.
MAX_INPUT = 64 * 1024


def _nothing(reason: str, errors: list[str] | None = None) -> tuple[dict[str, Any], int]:
    return {"format": None, "error": reason, "frames": [], "errors": errors or []}, 1


def _parse(text: str) -> Advert:
    try:
        return Advert.from_json(text)
    except AdvertError:
        raise
    except RecursionError:
        # json.loads recurses once per nesting level: "[[[[..." within the size limit.
        raise AdvertError("not JSON: nested too deeply") from None
    except (ValueError, OverflowError, TypeError) as exc:
        # Values JSON allows but an advert cannot hold, e.g. "rssi": 1e400 or NaN.
        raise AdvertError(f"advert: unusable value ({type(exc).__name__})") from None


def decode_text(text: str) -> tuple[dict[str, Any], int]:
    """The JSON answer for one input and the exit code (0 when a frame decoded, else 1)."""
    if len(text) > MAX_INPUT:
        return _nothing(f"input is over {MAX_INPUT} bytes")
    if not text.strip():
        return _nothing("no input: pipe one JSON advert to stdin")
    try:
        advert = _parse(text)
    except AdvertError as exc:
        return _nothing(str(exc).splitlines()[0] if str(exc) else "advert: unreadable")
    result = decode_advert(advert)
    if not result.frames:
        reason = result.errors[0] if result.errors else "no known beacon frame"
        return _nothing(reason, result.errors)
    frames = [f.to_json_obj() for f in result.frames]
    for f in frames:
        power = f["fields"].get("measured_power")
        if power is not None:
            # Installers place beacons by it; the agent's presence logic uses smoothed RSSI.
            f["fields"]["distance_m"] = distance_m(power, advert.rssi)
    return {"frames": frames, "errors": result.errors, "rssi": advert.rssi}, 0


def run_decode(stdin: TextIO, stdout: TextIO) -> int:
    try:
        text = stdin.read(MAX_INPUT + 1)
    except (UnicodeDecodeError, OSError) as exc:
        # Binary junk on a UTF-8 stdin fails here, before any JSON parsing.
        answer, code = _nothing(f"unreadable input: {type(exc).__name__}")
    else:
        try:
            answer, code = decode_text(text)
        except Exception as exc:  # a bug must still leave the installer one line of JSON
            answer, code = _nothing(f"internal error: {type(exc).__name__}")
    # ensure_ascii: lone surrogates from junk input cannot break a UTF-8 stdout.
    stdout.write(json.dumps(answer, ensure_ascii=True) + "\n")
    return code
