"""Short-lived anonymous tracks: who is the same person from one frame to the next.

A greedy centroid tracker over the analyser's boxes (faces and moving bodies): each detection
joins the nearest live track whose centre lies within ``max_dist`` box sizes, otherwise starts
a new one. A track is *confirmed* (counted as a new person) after ``min_hits`` frames, so a
single false hit never becomes a person, and it *ends* when nothing matched it for
``max_gap_s`` seconds, so a face missed for a few frames is not a new person.

Track ids are a per-process counter: they say "same person as a moment ago" and nothing else.
They are never stored or sent; only the summary (dwell and attention seconds) leaves the camera.
Pure: no clock, no I/O; time comes in with every update.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Box = tuple[int, int, int, int]  # x, y, w, h


@dataclass(frozen=True)
class Detection:
    box: Box
    facing: bool  # a frontal face: this person is watching the screen


@dataclass(frozen=True)
class TrackSummary:
    """One person's visit in front of the screen, reported when it ends."""

    start: float
    end: float
    dwell_s: float
    attention_s: float


@dataclass(frozen=True)
class TrackUpdate:
    new: int  # tracks confirmed in this update (people who came into view)
    active: int  # confirmed tracks alive now
    ended: tuple[TrackSummary, ...] = ()
    # Their ids ("the same person as a moment ago"; counters in memory, never stored or sent):
    # the fused presence binds a shopper's identity to one of them.
    ids: tuple[int, ...] = ()
    # Each one's box in this frame and whether it is a face (else a moving body), for ranging.
    boxes: tuple[tuple[Box, bool], ...] = ()


@dataclass
class _Track:
    id: int
    box: Box
    first: float
    last: float
    facing: bool
    hits: int = 1
    attention_s: float = 0.0
    confirmed: bool = False
    velocity: tuple[float, float] = field(default=(0.0, 0.0))


def _centre(b: Box) -> tuple[float, float]:
    return b[0] + b[2] / 2, b[1] + b[3] / 2


def _size(b: Box) -> float:
    return float(max(b[2], b[3], 1))


class Tracker:
    def __init__(
        self,
        *,
        max_gap_s: float = 1.0,
        min_hits: int = 2,
        max_dist: float = 1.0,
        bounds: tuple[int, int] | None = None,
    ) -> None:
        if max_gap_s <= 0 or min_hits < 1 or max_dist <= 0:
            raise ValueError("max_gap_s and max_dist must be > 0, min_hits >= 1")
        self.max_gap_s = max_gap_s
        self.min_hits = min_hits
        self.max_dist = max_dist
        # Frame width and height: a track whose person walked out of the frame ends at once,
        # so somebody else stepping in at the same edge a moment later is a new person.
        self.bounds = bounds
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._last_t: float | None = None

    @property
    def active(self) -> int:
        return sum(t.confirmed for t in self._tracks)

    def update(self, detections: list[Detection], t: float) -> TrackUpdate:
        if self._last_t is not None and t < self._last_t:
            t = self._last_t  # a clock step backwards must not make negative dwell
        self._last_t = t
        pairs = []
        for ti, tr in enumerate(self._tracks):
            # Predict where a walking person is now, so a passer-by is not lost between frames.
            cx, cy = _centre(tr.box)
            dt = t - tr.last
            # At most one box size ahead: a prediction is a hint, not a teleport.
            reach = _size(tr.box)
            px = cx + max(-reach, min(reach, tr.velocity[0] * dt))
            py = cy + max(-reach, min(reach, tr.velocity[1] * dt))
            for di, d in enumerate(detections):
                dx, dy = _centre(d.box)
                dist = ((dx - px) ** 2 + (dy - py) ** 2) ** 0.5 / max(_size(tr.box), _size(d.box))
                if dist < self.max_dist:
                    pairs.append((dist, ti, di))
        used_t: set[int] = set()
        used_d: set[int] = set()
        new = 0
        for _, ti, di in sorted(pairs):
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            tr, d = self._tracks[ti], detections[di]
            dt = t - tr.last
            if dt > 0:
                (ox, oy), (nx, ny) = _centre(tr.box), _centre(d.box)
                # Two frames closer than 10 ms say nothing useful about speed.
                if dt >= 0.01:
                    tr.velocity = ((nx - ox) / dt, (ny - oy) / dt)
                # Attention accrues only between two frames that both saw a frontal face.
                if tr.facing and d.facing:
                    tr.attention_s += dt
            tr.box, tr.last, tr.facing = d.box, t, d.facing
            tr.hits += 1
            if not tr.confirmed and tr.hits >= self.min_hits:
                tr.confirmed = True
                new += 1
        for di, d in enumerate(detections):
            if di in used_d:
                continue
            tr = _Track(self._next_id, d.box, t, t, d.facing)
            self._next_id += 1
            if self.min_hits <= 1:
                tr.confirmed = True
                new += 1
            self._tracks.append(tr)
        ended = self._expire(t)
        live = [tr for tr in self._tracks if tr.confirmed]
        return TrackUpdate(
            new=new,
            active=len(live),
            ended=ended,
            ids=tuple(tr.id for tr in live),
            boxes=tuple((tr.box, tr.facing) for tr in live),
        )

    def _gone(self, tr: _Track, t: float) -> bool:
        if t - tr.last > self.max_gap_s:
            return True
        if self.bounds is None or t <= tr.last:
            return False
        cx, cy = _centre(tr.box)
        px, py = cx + tr.velocity[0] * (t - tr.last), cy + tr.velocity[1] * (t - tr.last)
        return not (0 <= px <= self.bounds[0] and 0 <= py <= self.bounds[1])

    def _expire(self, t: float) -> tuple[TrackSummary, ...]:
        ended = [tr for tr in self._tracks if self._gone(tr, t)]
        self._tracks = [tr for tr in self._tracks if not self._gone(tr, t)]
        return tuple(_summary(tr) for tr in ended if tr.confirmed)

    def finish(self) -> tuple[TrackSummary, ...]:
        """End every track now (camera stopped or lost): each visit is reported once."""
        ended = tuple(_summary(tr) for tr in self._tracks if tr.confirmed)
        self._tracks = []
        return ended


def _summary(tr: _Track) -> TrackSummary:
    return TrackSummary(
        start=tr.first,
        end=tr.last,
        dwell_s=round(tr.last - tr.first, 2),
        attention_s=round(min(tr.attention_s, tr.last - tr.first), 2),
    )
