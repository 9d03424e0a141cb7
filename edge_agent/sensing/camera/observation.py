"""What leaves a camera: one screen's counts and seconds per frame, and the camera's health.

``ScreenObservation`` is all a pipeline hands on (never a pixel), so it may cross threads and,
since issue 20, a process boundary: the camera worker process (``camera/worker.py``) sends each
one to the agent (``camera/process.py``) as a length-prefixed JSON message on a socketpair.

This module is the channel's whole vocabulary and must stay light: no numpy, no OpenCV, so the
agent can decode what the worker says without importing either. Decoding is strict (types,
bounds, sizes): a message that does not fit is a broken worker, and the agent restarts it.
"""

from __future__ import annotations

import json
import math
import socket
import struct
from dataclasses import dataclass
from typing import Any

from edge_agent.sensing.camera.tracker import TrackSummary

# One message: counts, a few track ids and summaries. Far below this; a bigger length prefix
# means the stream is corrupt (or someone tries to push an image through), not a big message.
MAX_MESSAGE_BYTES = 64 * 1024
MAX_TRACKS = 256
_LEN = struct.Struct(">I")


class ChannelError(ValueError):
    """The other end sent something that is not a message of this channel."""


@dataclass(frozen=True)
class ScreenObservation:
    screen_id: str
    t: float
    people: int
    watchers: int
    new_tracks: int  # people who came into view with this frame
    ended: tuple[TrackSummary, ...] = ()
    seen: bool = True  # False: no frame behind it (the camera stopped; visits ended)
    tracks: tuple[int, ...] = ()  # the tracker's ids of the people in view (fused presence)
    # Where each of them stands, (x, z) metres from the screen, and whether they are at the
    # side of the view (``camera/ranging.py``); None: the camera's field of view is not set.
    feet: tuple[tuple[float, float], ...] | None = None
    edges: tuple[bool, ...] = ()


@dataclass(frozen=True)
class WorkerHealth:
    """The camera thread's health as the worker process last reported it."""

    # starting | ok | stalled | reconnecting | ended | stopped
    state: str
    frames: int
    reconnects: int
    fps: float
    frame_age_s: float | None


# ---- encoding (worker side) --------------------------------------------------------------
def observation_message(o: ScreenObservation) -> dict[str, Any]:
    return {
        "type": "obs",
        "screen_id": o.screen_id,
        "t": o.t,
        "people": o.people,
        "watchers": o.watchers,
        "new_tracks": o.new_tracks,
        "ended": [[s.start, s.end, s.dwell_s, s.attention_s] for s in o.ended],
        "seen": o.seen,
        "tracks": list(o.tracks),
        "feet": None if o.feet is None else [list(f) for f in o.feet],
        "edges": list(o.edges),
    }


def health_message(h: Any) -> dict[str, Any]:
    """From a ``CameraHealth``; its error text stays in the worker (it may name the source)."""
    return {
        "type": "health",
        "state": h.state,
        "frames": h.frames,
        "reconnects": h.reconnects,
        "fps": h.fps,
        "frame_age_s": h.frame_age_s,
    }


def encode(msg: dict[str, Any]) -> bytes:
    body = json.dumps(msg, separators=(",", ":"), allow_nan=False).encode()
    if len(body) > MAX_MESSAGE_BYTES:
        raise ChannelError(f"message of {len(body)} bytes is over {MAX_MESSAGE_BYTES}")
    return _LEN.pack(len(body)) + body


def send(sock: socket.socket, msg: dict[str, Any]) -> None:
    sock.sendall(encode(msg))


# ---- decoding (agent side) ---------------------------------------------------------------
def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            if buf:
                raise ChannelError("stream ended inside a message")
            return None
        buf += chunk
    return bytes(buf)


def receive(sock: socket.socket) -> dict[str, Any] | None:
    """The next message, or None when the other end closed the channel between messages."""
    head = _recv_exact(sock, _LEN.size)
    if head is None:
        return None
    (n,) = _LEN.unpack(head)
    if n > MAX_MESSAGE_BYTES:
        raise ChannelError(f"message length {n} is over {MAX_MESSAGE_BYTES}")
    body = _recv_exact(sock, n)
    if body is None:
        raise ChannelError("stream ended inside a message")
    try:
        msg = json.loads(body)
    except ValueError as exc:
        raise ChannelError(f"not JSON: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ChannelError("a message is an object with a type")
    return msg


def _num(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ChannelError(f"{what} is not a finite number")
    return float(v)


def _count(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**53:
        raise ChannelError(f"{what} is not a count")
    return v


def decode_observation(msg: dict[str, Any]) -> ScreenObservation:
    sid = msg.get("screen_id")
    if not isinstance(sid, str) or not 0 < len(sid) <= 200:
        raise ChannelError("screen_id")
    ended, tracks = msg.get("ended"), msg.get("tracks")
    if not isinstance(ended, list) or not isinstance(tracks, list):
        raise ChannelError("ended and tracks are lists")
    if len(ended) > MAX_TRACKS or len(tracks) > MAX_TRACKS:
        raise ChannelError("too many tracks")
    summaries = []
    for s in ended:
        if not isinstance(s, list) or len(s) != 4:
            raise ChannelError("a track summary is [start, end, dwell_s, attention_s]")
        summaries.append(TrackSummary(*(_num(v, "track summary") for v in s)))
    if not isinstance(msg.get("seen"), bool):
        raise ChannelError("seen")
    feet, edges = _feet(msg.get("feet"), msg.get("edges", []), len(tracks))
    return ScreenObservation(
        sid,
        _num(msg.get("t"), "t"),
        _count(msg.get("people"), "people"),
        _count(msg.get("watchers"), "watchers"),
        _count(msg.get("new_tracks"), "new_tracks"),
        tuple(summaries),
        msg["seen"],
        tuple(_count(i, "track id") for i in tracks),
        feet,
        edges,
    )


def _feet(
    feet: Any, edges: Any, n: int
) -> tuple[tuple[tuple[float, float], ...] | None, tuple[bool, ...]]:
    """One (x, z) in metres and one edge flag per track, or none at all."""
    if feet is None:
        if edges:
            raise ChannelError("edges without feet")
        return None, ()
    if not isinstance(feet, list) or not isinstance(edges, list):
        raise ChannelError("feet and edges are lists")
    if len(feet) != n or len(edges) != n:
        raise ChannelError("one foot and one edge flag per track")
    out = []
    for f in feet:
        if not isinstance(f, list) or len(f) != 2:
            raise ChannelError("a foot is [x, z]")
        x, z = _num(f[0], "foot x"), _num(f[1], "foot z")
        if abs(x) > 100 or not 0 <= z <= 100:
            raise ChannelError("a foot is within 100 m of the screen")
        out.append((x, z))
    if not all(isinstance(e, bool) for e in edges):
        raise ChannelError("an edge flag is true or false")
    return tuple(out), tuple(edges)


STATES = {"starting", "ok", "stalled", "reconnecting", "ended", "stopped"}


def decode_health(msg: dict[str, Any]) -> WorkerHealth:
    state = msg.get("state")
    if state not in STATES:
        raise ChannelError("state")
    age = msg.get("frame_age_s")
    return WorkerHealth(
        str(state),
        _count(msg.get("frames"), "frames"),
        _count(msg.get("reconnects"), "reconnects"),
        _num(msg.get("fps"), "fps"),
        None if age is None else _num(age, "frame_age_s"),
    )
