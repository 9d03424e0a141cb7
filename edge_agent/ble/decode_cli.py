"""`edge-agent ble decode`: one advert as JSON on stdin, its frames as JSON on stdout.

Installers use it to check beacons. It never prints the device address (raw addresses stay on
the box) and never crashes on garbage: the worst answer is ``{"format": null, "error": ...}``.
"""

from __future__ import annotations

import json
from typing import TextIO

from edge_agent.ble.advert import Advert, AdvertError
from edge_agent.ble.decode import decode_advert, distance_m

MAX_INPUT = 64 * 1024


def decode_text(text: str) -> tuple[dict, int]:
    """The JSON answer for one input and the exit code (0 when a frame decoded, else 1)."""
    if len(text) > MAX_INPUT:
        return {
            "format": None,
            "error": f"input is over {MAX_INPUT} bytes",
            "frames": [],
            "errors": [],
        }, 1
    if not text.strip():
        return {
            "format": None,
            "error": "no input: pipe one JSON advert to stdin",
            "frames": [],
            "errors": [],
        }, 1
    try:
        advert = Advert.from_json(text)
    except AdvertError as exc:
        return {"format": None, "error": str(exc), "frames": [], "errors": []}, 1
    result = decode_advert(advert)
    frames = [f.to_json_obj() for f in result.frames]
    for f in frames:
        power = f["fields"].get("measured_power")
        if power is not None:
            # Installers place beacons by it; the agent's presence logic uses smoothed RSSI.
            f["fields"]["distance_m"] = distance_m(power, advert.rssi)
    if not frames:
        reason = result.errors[0] if result.errors else "no known beacon frame"
        return {"format": None, "error": reason, "frames": [], "errors": result.errors}, 1
    return {"frames": frames, "errors": result.errors, "rssi": advert.rssi}, 0


def run_decode(stdin: TextIO, stdout: TextIO) -> int:
    try:
        text = stdin.read(MAX_INPUT + 1)
    except (UnicodeDecodeError, OSError) as exc:
        text = ""
        answer, code = (
            {
                "format": None,
                "error": f"unreadable input: {type(exc).__name__}",
                "frames": [],
                "errors": [],
            },
            1,
        )
    else:
        answer, code = decode_text(text)
    stdout.write(json.dumps(answer) + "\n")
    return code
