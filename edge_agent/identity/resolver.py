"""Rotating shopper token -> profile, in O(1) per advert, and never blocking the lookup.

The store app advertises an Eddystone-EID that changes every 2**K seconds. For every identity
key in the slice we precompute the EIDs of the previous, current and next period (a *window*:
three dicts, the current period's first since most adverts hit it), so one dict lookup resolves
an advert. Computing them costs ~6 us per EID: seconds at 100k keys. So:

- ``background=True`` (the agent): a snapshot's new keys are built into a new window by a worker
  thread and swapped in with one assignment; until then the previous window keeps answering, so
  a lookup never waits and never sees a half-built table. The worker also precomputes the next
  period's window (two of its three dicts are shared), so a period roll is a swap too. A roll it
  did not see coming (a clock jump) keeps the old window, which still covers the new period as
  its "next", until the worker has built the new one.
- ``background=False`` (tools, benches): the same windows, built in the calling thread when
  ``resolve`` needs one.
- A delta changes a few profiles in place (new EIDs added before old ones go, so a shopper whose
  keys change is never unresolvable), and a lookup answers only for profiles that still have
  keys: a withdrawn or deleted profile stops resolving at once, even from an older window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from edge_agent.sensing.ble.eid import period_index

Keys = bytes | Sequence[bytes]
_ECB = modes.ECB()


def _as_tuple(keys: Keys) -> tuple[bytes, ...]:
    return (keys,) if isinstance(keys, bytes | bytearray) else tuple(keys)


def _aes(key: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), _ECB).encryptor()
    return enc.update(data) + enc.finalize()


def eids_for(key: bytes, periods: Sequence[int], k: int) -> list[bytes]:
    """``compute_eid(key, p << k, k)`` for each period: the same bytes, with one temporary key
    per 2**16 s and one AES pass over all the periods' blocks (two cipher set-ups, not six)."""
    if len(key) != 16:
        raise ValueError("identity key must be 16 bytes")
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(periods):
        groups.setdefault(((p << k) & 0xFFFFFFFF) >> 16, []).append(i)
    out = [b""] * len(periods)
    prefix = b"\x00" * 11 + bytes([k])
    for hi, idx in groups.items():
        temporary = _aes(key, b"\x00" * 11 + b"\xff\x00\x00" + hi.to_bytes(2, "big"))
        blocks = b"".join(prefix + ((periods[i] << k) & 0xFFFFFFFF).to_bytes(4, "big") for i in idx)
        enc = _aes(temporary, blocks)
        for j, i in enumerate(idx):
            out[i] = enc[16 * j : 16 * j + 8]
    return out


@dataclass(frozen=True)
class _Window:
    period: int
    gen: int  # the set_keys generation it was built from
    by_period: Mapping[int, dict[bytes, str]]
    tables: tuple[dict[bytes, str], ...]  # current, next, previous period


class TokenResolver:
    def __init__(
        self,
        rotation_exponent: int,
        *,
        background: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.rotation_exponent = rotation_exponent
        self.background = background
        # Where the worker learns the period after a snapshot before any advert asks.
        self.clock = clock
        self.keys: dict[str, tuple[bytes, ...]] = {}
        self._gen = 0
        self._window: _Window | None = None
        self._next: _Window | None = None  # the next period's window, precomputed
        self._retired: _Window | None = None  # rolled out; the worker frees it
        # Writers (set_keys, update_keys, the worker publishing) take the lock; resolve only
        # ever tries it, so an advert never waits.
        self._lock = threading.Lock()
        self._want: int | None = None  # a period the worker should build a window for
        self._worker: threading.Thread | None = None
        self._dirty: set[str] = set()  # profiles a delta changed while the worker was building
        self._idle = threading.Event()
        self._idle.set()
        self.builds = 0
        self.last_build_s = 0.0

    # ---- keys ----------------------------------------------------------------------------
    def set_keys(self, keys: Mapping[str, Keys]) -> None:
        """Replace every key (a snapshot). In the background the old window serves (for the
        profiles still in ``keys``) until the new one is built."""
        new = {pid: ks for pid, k in keys.items() if (ks := _as_tuple(k))}
        with self._lock:
            self.keys = new
            self._gen += 1
            self._next = None
            if not self.background:
                self._window = None
                return
            period = self._period_now()
            if period is not None:
                self._request(period)

    def update_keys(self, changed: Mapping[str, Keys], removed: Iterable[str] = ()) -> None:
        """A delta: new keys for some profiles, none for others; only those entries change."""
        with self._lock:
            gone = set(removed) | set(changed)
            new = {pid: ks for pid, k in changed.items() if (ks := _as_tuple(k))}
            old = {pid: self.keys.get(pid, ()) for pid in gone}
            tables = self._live_tables()
            # New EIDs first, old ones last: a lookup sees the old keys or the new, never none.
            for pid, ks in new.items():
                self._put(tables, pid, ks)
            for pid in gone:
                if pid in new:
                    self.keys[pid] = new[pid]
                else:
                    self.keys.pop(pid, None)  # stops resolving here, before its EIDs go
            for pid, ks in old.items():
                self._drop(tables, pid, [key for key in ks if key not in new.get(pid, ())])
            if self._worker is not None:
                self._dirty |= gone

    def _slots(
        self, tables: list[tuple[int, dict[bytes, str]]], keys: Iterable[bytes]
    ) -> Iterator[tuple[dict[bytes, str], bytes]]:
        """Each key's EID in each period's table: (table, eid)."""
        periods = [p for p, _ in tables]
        for key in keys:
            eids = eids_for(key, periods, self.rotation_exponent)
            for (_, t), e in zip(tables, eids, strict=True):
                yield t, e

    def _put(
        self, tables: list[tuple[int, dict[bytes, str]]], pid: str, keys: Iterable[bytes]
    ) -> None:
        for t, e in self._slots(tables, keys):
            t[e] = pid

    def _drop(
        self, tables: list[tuple[int, dict[bytes, str]]], pid: str, keys: Iterable[bytes]
    ) -> None:
        for t, e in self._slots(tables, keys):
            if t.get(e) == pid:
                del t[e]

    def _live_tables(self) -> list[tuple[int, dict[bytes, str]]]:
        """The period dicts of the current and next windows (shared ones once)."""
        out: dict[int, tuple[int, dict[bytes, str]]] = {}
        for w in (self._window, self._next):
            if w is not None and w.gen == self._gen:
                for p, t in w.by_period.items():
                    out.setdefault(id(t), (p, t))
        return list(out.values())

    # ---- lookups -------------------------------------------------------------------------
    def resolve(self, eid: bytes, now: float) -> str | None:
        period = period_index(int(now), self.rotation_exponent)
        w = self._window
        if w is None or w.period != period:
            w = self._roll(period)
            if w is None:
                return None
        for table in w.tables:
            pid = table.get(eid)
            if pid is not None:
                # A profile deleted or withdrawn since the window was built does not resolve.
                return pid if pid in self.keys else None
        return None

    def _roll(self, period: int) -> _Window | None:
        if not self.background:
            with self._lock:
                w = self._window
                if w is None or w.period != period:
                    reuse = dict(w.by_period) if w is not None and w.gen == self._gen else {}
                    w = self._window = self._build(period, self.keys, self._gen, reuse)
                return w
        if not self._lock.acquire(blocking=False):
            return self._window  # a writer is busy for a moment: answer from what we have
        try:
            nxt = self._next
            if nxt is not None and nxt.period == period and nxt.gen == self._gen:
                # The worker frees the old window: dropping 100k+ entries here would cost the
                # lookup milliseconds.
                self._retired = self._window
                self._window, self._next = nxt, None
                self._request(period + 1, precompute_only=True)
            else:
                self._request(period)
            return self._window
        finally:
            self._lock.release()

    # ---- building ------------------------------------------------------------------------
    def _period_now(self) -> int | None:
        if self.clock is not None:
            return period_index(int(self.clock()), self.rotation_exponent)
        return self._window.period if self._window is not None else None

    def _request(self, period: int, precompute_only: bool = False) -> None:
        """Under the lock: have the worker build the window for ``period`` (and its next)."""
        if precompute_only:
            # The window for period - 1's successor is live; only its successor is wanted.
            period -= 1
        if self._want == period and self._worker is not None:
            return
        self._want = period
        if self._worker is None:
            self._idle.clear()
            self._worker = threading.Thread(target=self._run, name="token-table", daemon=True)
            self._worker.start()

    def _run(self) -> None:
        # Hand the GIL straight back: the thread that started us (an advert's lookup, at a
        # period roll) is waiting in Thread.start() and must not wait for a switch interval.
        time.sleep(0)
        while True:
            with self._lock:
                period = self._want
                if period is None:
                    self._worker = None
                    self._dirty.clear()
                    self._idle.set()
                    return
                self._want = None
                retired, self._retired = self._retired, None
                gen = self._gen
                keys = dict(self.keys)  # deltas mutate self.keys; the build reads a copy
                self._dirty = set()
                reuse: dict[int, dict[bytes, str]] = {}
                for w in (self._next, self._window):
                    if w is not None and w.gen == gen:
                        reuse.update(w.by_period)
            del retired  # freed here, off the loop
            cur = self._window
            if cur is None or cur.gen != gen or cur.period != period:
                t0 = time.perf_counter()
                win = self._build(period, keys, gen, reuse)
                if not self._publish(win, keys, current=True):
                    continue
                self.last_build_s = time.perf_counter() - t0
                reuse = dict(win.by_period)
            nxt = self._build(period + 1, keys, gen, reuse)
            self._publish(nxt, keys, current=False)

    def _publish(self, w: _Window, snapshot: dict[str, tuple[bytes, ...]], current: bool) -> bool:
        with self._lock:
            if w.gen != self._gen:
                return False  # new keys arrived meanwhile; the worker goes round again
            self._fix_up(w, snapshot)
            if current:
                self._window = w
            else:
                self._next = w
            self.builds += 1
            return True

    def _fix_up(self, w: _Window, snapshot: Mapping[str, tuple[bytes, ...]]) -> None:
        """Deltas that landed during a build: make the new window agree with ``self.keys``."""
        tables = list(w.by_period.items())
        for pid in self._dirty:
            now = self.keys.get(pid, ())
            self._put(tables, pid, now)
            self._drop(tables, pid, [key for key in snapshot.get(pid, ()) if key not in now])

    def _build(
        self,
        period: int,
        keys: Mapping[str, tuple[bytes, ...]],
        gen: int,
        reuse: Mapping[int, dict[bytes, str]],
    ) -> _Window:
        wanted = [p for p in (period, period + 1, period - 1) if p >= 0]
        by_period = {p: reuse[p] for p in wanted if p in reuse}
        missing = [p for p in wanted if p not in by_period]
        if missing:
            new: list[dict[bytes, str]] = [{} for _ in missing]
            k = self.rotation_exponent
            pause = self.background
            for i, (pid, ks) in enumerate(keys.items()):
                for key in ks:
                    for t, e in zip(new, eids_for(key, missing, k), strict=True):
                        t[e] = pid
                if pause and i % 128 == 127:
                    # ~1 ms of work: let the agent's loop have the GIL now rather than after
                    # the 5 ms switch interval, so its adverts and ticks are not held up.
                    time.sleep(0)
            by_period.update(zip(missing, new, strict=True))
        return _Window(period, gen, by_period, tuple(by_period[p] for p in wanted))

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Until the worker has nothing left to build (tests, benches, start-up)."""
        return self._idle.wait(timeout)
