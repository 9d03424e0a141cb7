"""Fused presence per screen: the camera and mmWave say *someone* is there, BLE says *who*.

Issue 18. BLE alone cannot say quickly that someone stepped in front of a screen (the zone's
receiver first hears a shopper p90 1.3 s after the crossing, and slow shadowing must be waited
out; BENCHMARKS.md, "BLE presence"). A camera sees a person in a frame or two and an mmWave
sensor reports in a few hundred ms, but neither knows who it is. One ``ScreenFusion`` per
screen puts them together:

- **someone there** (anonymous, fast): a confirmed camera track in the screen's region and the
  mmWave sensor on (where a screen has both and both are healthy; one of them alone counts
  after ``confirm_s``, so a poster's face or a radar's false trigger is not a visit); gone
  after ``leave_hold_s`` with neither. ``people`` is the camera's count
  (mmWave cannot count: with only a radar, ``people`` is None).
- **who** (personal, slower): only while the camera sees exactly one person (and the radar,
  where there is one and it is healthy, agrees someone is there), the zone's receiver is
  healthy, and one resolved shopper explains that person with confidence >= ``identity_p`` for
  ``identity_hold_s``. Confidence: given exactly one person in the region, the chance it is
  shopper *i* is ``odds_i / (sum of every candidate's odds + stranger_odds)``, ``odds_i`` being
  the BLE filter's P(i in this zone) as odds and ``stranger_odds`` the prior odds that the
  person carries no resolvable app (most shoppers do not). The identity is bound to the
  camera's track: a new track (someone else stepped in as the first stepped out) starts over.
  Two guards against the errors measured on the bench's trace: a shopper whom BLE places here
  while camera and radar see nobody for ``contradict_s`` is not here (until BLE lets go of
  them), and the screen stays anonymous for ``turnover_hold_s`` after the camera saw two people
  or lost a track (someone left: the one who left may be the shopper whose posterior still
  says "in", and the next person in front of the screen would be greeted with their name).
  ``rebind_tracks`` (off) would give a track that was personal before and never lost its
  shopper back at once after the others leave; on the bench it greets the wrong person (a
  wrong first binding, or two tracks swapping ids as people cross), so it stays off. And
  ``nearby_blocks``: while the camera sees someone just outside the region, anonymous (BLE
  cannot tell a shopper at 1 m from one at 4 m within seconds).
  **Motion association** (where the camera gives each track's foot position): a track first
  seen near the region's edge (``arrive_from_m``) walked in, one first seen nearer was
  already standing there (found again after turning away; one found within ``chain_m`` of
  exactly one lost lately is taken for that person and keeps their way in). BLE's side is
  when it became sure of each shopper. A shopper is the person in view only if the two agree:
  sure from ``assoc_pre_s`` before the track walked in to ``late_claim_s`` after
  ("approaching together"); a shopper whose rise matches a track that has since walked out
  left with it (``assoc_left_s``: "leaving together", while their posterior still falls); one
  who rose well after a person found standing appeared is someone else. Agreement also ends
  the turnover hold after ``assoc_hold_s``: the leaver's posterior rose long before, so the
  newcomer cannot be greeted with their name (not while a track lost inside lately may still
  be standing there unseen; a leaver is seen walking out). And agreement may name sooner
  (``identity_assoc_p``): the one track in view walked in, BLE's P(in) for the best shopper
  rose past ``assoc_rise_p`` within the same window around that walk-in, and every other
  candidate is below ``assoc_others_p``. Without feet the guard is ``late_claim_s`` on
  track ages, as before.
  A second person, an ambiguous
  identity (two shoppers both likely) or confidence below ``identity_keep_p`` fall back to
  anonymous at once; content reacts to the person anonymously meanwhile.
- **silence is not absence** (Bermuda #764): ``ReceiverWatch`` learns each receiver's usual
  gap between receptions; one silent for longer than ``silence_gaps`` of them (and at least
  ``silence_min_s``) makes its zone "unknown". ``BleZoneView`` then never reports a shopper last
  placed in that zone as being in another (the neighbouring receiver hearing them faintly is
  not evidence that they moved), nor anyone newly placed in a zone next to it meanwhile (they
  may be standing in the silent one); they are "unknown" until the receiver is heard again,
  and never an identity anywhere meanwhile.
- **a camera that stops delivering** (no frame for ``camera_stall_s``) falls back: the radar
  alone if the screen has one, else BLE-only (``ble_only``, for health); either way the screen
  is anonymous unless ``personal_without_camera`` says it is a spot for one.

Pure: no clock, no I/O; time comes in with every call. Keys are the caller's (the agent's
internal presence keys or profile ids, never raw addresses).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

UNKNOWN = "?"  # BleZoneView.zone_of: the shopper's zone is silent


@dataclass(frozen=True, slots=True)
class FusionParams:
    identity_p: float = 0.8  # confidence to go personal
    identity_keep_p: float = 0.5  # personal stays while confidence is above this
    identity_hold_s: float = 0.5  # the same shopper above identity_p this long first
    stranger_odds: float = 1.0  # prior odds a person at the screen has no resolvable app
    leave_hold_s: float = 0.5  # neither camera nor radar for this long: nobody there
    confirm_s: float = 0.7  # with both healthy, one alone says someone came after this long
    camera_stall_s: float = 1.5  # no camera frame this long: the camera is not delivering
    contradict_s: float = 2.0  # BLE says "here", the sensors see nobody this long: not here
    # ...until someone has been at the screen this long with BLE sure of them all along: the
    # shopper who browsed the zone out of view and then stepped up (a passer-by's P(in) falls
    # within seconds). inf: only BLE letting go clears it.
    contradict_release_s: float = 8.0
    # BLE became sure of a shopper this long after the person in view appeared: that person is
    # someone else who was already there (the shopper is still approaching, or walking past),
    # unless both stay contradict_release_s. inf: off.
    late_claim_s: float = 4.0
    turnover_hold_s: float = 6.0  # anonymous this long after two people or a track lost
    # ... where the camera gives feet: the association below refuses a leaver whose way in it
    # saw, so the hold need only cover the rest (bench tuning: 4 s kept wrong greetings at 0
    # of 239 in the busy store on seeds 12-14, where 3 s let 9 through).
    turnover_hold_feet_s: float = 4.0
    # Motion association (where the camera gives each track's foot position from the screen):
    # a track first seen this far from the screen or farther walked in (one first seen nearer
    # was already standing there, found again after turning away or being hidden) ...
    arrive_from_m: float = 2.2
    # ... and a shopper BLE became sure of from this long before it walked in (BLE may be sure
    # of someone approaching a little before they cross) to late_claim_s after is the one who
    # walked in: "approaching together". Sure of earlier: someone who was here before (the
    # leaver, still fading); later: someone else (walking past, or still approaching).
    assoc_pre_s: float = 2.0
    # A track found standing (not walked in): a shopper BLE became sure of more than this after
    # it appeared came while that person stood there, so is not them. inf: off.
    assoc_inside_s: float = 4.0
    # The turnover hold when the one track walked in and the best shopper's rise agrees with
    # it (a leaver was sure long before, so cannot be mistaken for them) and everyone lost
    # lately walked out (one lost inside may be standing there, turned away). >= the hold: off.
    assoc_hold_s: float = 1.0
    # A shopper whose rise agrees with a track that walked in and then walked out (lost at
    # arrive_from_m or farther) left with it: not the one still in view, for this long after
    # (a leaver's posterior takes seconds to fall). 0: off.
    assoc_left_s: float = 15.0
    # A track found inside within this of exactly one track lost inside is that person again
    # (turned away and back): it keeps their way in. 0: off. Kept apart from the turnover hold
    # (until 2026-12-03 a lost track was forgotten with the hold, so 4 s in effect): seed 11's
    # last wrong greeting was a stranger turned away for 8.6 s, found again as "new" while a
    # shopper approached. 10 s: 0 of 67 there, no other seed's wrong greetings changed.
    chain_s: float = 10.0
    chain_m: float = 1.0  # ... and within this of where it was lost
    # One healthy sensor alone waits confirm_s (a poster's face, a radar's false trigger), but
    # a track the camera saw walk in and come this much nearer is a person: present at once.
    # The radar reaches 2.25 m of a 3 m zone, so every walk-in was a camera-alone wait.
    # Seeds 12-14: enter p90 1.09-1.12 -> 0.84-0.88 s busy, 0.96-1.02 -> 0.81-0.84 s quiet,
    # flaps and everything else unchanged (0.3: quiet flaps up to 0.3 more). 0: off.
    approach_m: float = 0.4
    # Named sooner when the camera and BLE tell the same story (feet known): the one track in
    # view walked in, and the best shopper's P(in) first reached assoc_rise_p (since it was
    # last below assoc_others_p) from assoc_pre_s before that walk-in to late_claim_s after,
    # every other candidate below assoc_others_p: named at this confidence (held
    # identity_hold_s) rather than identity_p. Every other guard stays. >= identity_p: off
    # (as until 2026-12-03). Bench, seeds 12-14: 0.5-0.65 kept the wrong greetings as they
    # were once a fading posterior was refused; arrivals named ~0.2-0.6 s sooner (p50).
    identity_assoc_p: float = 0.55
    assoc_rise_p: float = 0.5
    assoc_others_p: float = 0.2
    # ... and that agreement (at assoc_rise_p) also answers the late-claim guard: BLE slower
    # than late_claim_s to be sure of a shopper who walked in alone as it rose is not late.
    # Off: it relaxes a guard (the experiment kept every other guard); see BENCHMARKS.md.
    assoc_rise_late: bool = False
    personal_without_camera: bool = False  # a spot for one: BLE alone may go personal
    nearby_blocks: bool = True  # anonymous while the camera sees someone just outside the region
    rebind_tracks: bool = False  # a never-lost track's shopper again at once after a crowd

    def __post_init__(self) -> None:
        if not 0 < self.identity_keep_p <= self.identity_p < 1:
            raise ValueError("fusion: need 0 < identity_keep_p <= identity_p < 1")
        if not self.identity_keep_p <= self.identity_assoc_p <= 1:
            raise ValueError("fusion: need identity_keep_p <= identity_assoc_p <= 1")
        if not 0 < self.assoc_others_p < self.assoc_rise_p <= 1:
            raise ValueError("fusion: need 0 < assoc_others_p < assoc_rise_p <= 1")
        holds = (
            self.identity_hold_s,
            self.leave_hold_s,
            self.confirm_s,
            self.contradict_s,
            self.turnover_hold_s,
            self.turnover_hold_feet_s,
            self.contradict_release_s,
            self.late_claim_s,
            self.arrive_from_m,
            self.assoc_pre_s,
            self.assoc_inside_s,
            self.assoc_hold_s,
            self.assoc_left_s,
            self.chain_s,
            self.chain_m,
            self.approach_m,
        )
        if min(holds) < 0 or self.stranger_odds < 0:
            raise ValueError("fusion: hold times and stranger_odds must be >= 0")
        if self.camera_stall_s <= 0:
            raise ValueError("fusion: camera_stall_s must be > 0")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A BLE device the zone's filter places in or near this screen's zone."""

    key: str
    p_in: float  # the filter's P(in this zone)
    resolved: bool = True  # a consented shopper resolved from the slice; False: a stranger
    known: bool = True  # False: its last zone's receiver is silent (never an identity)


@dataclass(slots=True)
class _Motion:
    """What the camera saw of one track's way in: the association's half from the camera."""

    first_t: float  # first seen in the region
    walked_in: bool  # first seen near the region's edge (arrive_from_m or farther)
    last: tuple[float, float]  # its foot position in the last frame it was in
    # The camera said the track was at the edge of its view in that frame (at the side, or
    # as far as its detector reaches): coming or going, however near the screen.
    last_edge: bool = False
    first_r: float = 0.0  # its distance from the screen when first seen

    def approached(self) -> float:
        """Metres it came nearer the screen since it was first seen."""
        return self.first_r - math.hypot(*self.last)

    def at_edge(self, arrive_from_m: float) -> bool:
        return self.last_edge or math.hypot(*self.last) >= arrive_from_m


@dataclass(frozen=True, slots=True)
class ScreenPresence:
    present: bool
    people: int | None  # the camera's count; None when nothing can count
    identity: str | None  # the shopper at the screen (personal), else None
    confidence: float  # the best candidate's confidence, personal or not
    best: str | None  # that candidate
    ble_only: bool  # neither camera nor radar delivering: BLE alone (say it in health)
    camera_ok: bool
    zone_unknown: bool  # the zone's receiver is silent
    reason: str  # why anonymous ("" when personal or nobody there)

    @property
    def personal(self) -> bool:
        return self.identity is not None


def identity_confidence(candidates: Iterable[Candidate], stranger_odds: float) -> dict[str, float]:
    """Given exactly one person in the region, P(it is each candidate)."""
    odds: dict[str, float] = {}
    total = stranger_odds
    for c in candidates:
        p = min(0.999, max(0.0, c.p_in))
        o = p / (1.0 - p)
        odds[c.key] = odds.get(c.key, 0.0) + o
        total += o
    if total <= 0:
        return dict.fromkeys(odds, 0.0)
    return {k: o / total for k, o in odds.items()}


class ScreenFusion:
    """One screen: feed ``camera``, ``mmwave`` and ``ble`` as they come; read ``tick``."""

    def __init__(
        self,
        *,
        has_camera: bool,
        has_mmwave: bool,
        params: FusionParams | None = None,
    ) -> None:
        self.p = params or FusionParams()
        self.has_camera = has_camera
        self.has_mmwave = has_mmwave
        self._frame_t: float | None = None
        self._tracks: tuple[int, ...] = ()
        self._nearby = 0
        self._last_tracks: tuple[int, ...] = ()
        self._radar_on = False
        self._radar_ok = has_mmwave
        self._cands: list[Candidate] = []
        self._devices_in_zone = 0
        self._zone_known = True
        self._seen_t: float | None = None  # last time camera or radar saw someone
        self._identity: tuple[str, int] | None = None  # (shopper, camera track)
        self._lead: tuple[str, int, float] | None = None  # (shopper, track, since) confident
        self._claim: dict[str, float] = {}  # BLE says "here" while the sensors see nobody: since
        self._contradicted: set[str] = set()
        self._release: dict[str, float] = {}  # contradicted, someone seen, BLE sure: since
        self._track_since: dict[int, float] = {}  # camera track -> when it first appeared
        self._sure_since: dict[str, float] = {}  # shopper -> since BLE's P(in) >= identity_p
        self._rise_seen: dict[str, bool] = {}  # shopper -> someone in view when BLE got sure
        # shopper -> since P(in) >= assoc_rise_p (forgotten below assoc_others_p)
        self._rise_at: dict[str, float] = {}
        self._turnover_t = -1e18  # last time the camera saw two people or lost a track
        self._bound: dict[int, str] = {}  # camera track -> the shopper it was personal for
        self._gone: dict[int, float] = {}  # tracks lost lately -> when
        # Tracks (with feet) lost inside the region lately -> when, for chain_s (longer than the
        # hold): a person turned away that long and found again is still that person.
        self._lost: dict[int, float] = {}
        self._one_since: float | None = None  # only one of two healthy sensors sees someone
        self._feet: tuple[tuple[float, float], ...] | None = None  # the last frame's, per track
        self._edges: tuple[bool, ...] = ()  # ... and whether each is at the edge of the view
        self._motion: dict[int, _Motion] = {}  # camera track -> how it came (feet known)
        # tracks that walked out -> (when they walked in, None: found inside; when they left)
        self._left: dict[int, tuple[float | None, float]] = {}

    # ---- inputs --------------------------------------------------------------------------
    def camera(
        self,
        ts: float,
        tracks: Sequence[int],
        nearby: int = 0,
        feet: Sequence[tuple[float, float]] | None = None,
        edges: Sequence[bool] | None = None,
    ) -> None:
        """One analysed frame: the confirmed people tracks in this screen's region (the
        tracker's anonymous ids: "the same person as a moment ago"), how many people it
        sees in view outside the region (just beyond the zone's edge), and, where the camera
        can say, each track's foot position (x, y) in metres from the screen, same order as
        ``tracks`` (None: unknown, and the motion association is off for this frame), and
        whether each is at the edge of the camera's view (a real camera's view is a cone: one
        who steps in sideways is near the screen when first seen, yet walked in)."""
        self._frame_t = ts
        self._tracks = tuple(tracks)
        self._nearby = nearby
        ok = feet is not None and len(feet) == len(self._tracks)
        self._feet = tuple(feet) if ok and feet is not None else None
        n = len(self._tracks)
        self._edges = tuple(edges) if ok and edges is not None and len(edges) == n else (False,) * n

    @property
    def placed(self) -> bool:
        """The camera's last frame said where its people stand: the motion association runs."""
        return self._feet is not None

    def mmwave(self, ts: float, on: bool, healthy: bool = True) -> None:
        self._radar_on = on and healthy
        self._radar_ok = healthy

    def ble(
        self,
        ts: float,
        candidates: list[Candidate] | None,
        devices_in_zone: int = 0,
    ) -> None:
        """The BLE view of this zone; ``candidates`` None: its receiver is silent (unknown).
        ``devices_in_zone``: every BLE device the filter decided is in the zone, app or not."""
        self._zone_known = candidates is not None
        self._cands = candidates or []
        self._devices_in_zone = devices_in_zone

    # ---- output --------------------------------------------------------------------------
    def camera_ok(self, now: float) -> bool:
        return (
            self.has_camera
            and self._frame_t is not None
            and now - self._frame_t <= self.p.camera_stall_s
        )

    def tick(self, now: float) -> ScreenPresence:
        p = self.p
        cam_ok = self.camera_ok(now)
        radar_ok = self.has_mmwave and self._radar_ok
        ble_only = not cam_ok and not radar_ok
        tracks = self._tracks if cam_ok else ()
        radar = radar_ok and self._radar_on
        if ble_only:
            present = self._devices_in_zone > 0 or any(c.p_in >= 0.5 for c in self._cands)
            people: int | None = self._devices_in_zone if present else 0
            self._seen_t = None
        else:
            was = self._seen_t is not None and now - self._seen_t <= p.leave_hold_s
            both = cam_ok and radar_ok
            if both and not was and bool(tracks) != radar:
                # One of two healthy sensors alone: a false camera hit (a poster's face) or
                # a radar's false trigger, unless it lasts.
                if self._one_since is None:
                    self._one_since = now
                if now - self._one_since >= p.confirm_s or (tracks and self._approaching(tracks)):
                    self._seen_t = now
            elif tracks or radar:
                self._seen_t = now
            if not tracks and not radar or (tracks and radar):
                self._one_since = None
            present = self._seen_t is not None and now - self._seen_t <= p.leave_hold_s
            people = len(tracks) if cam_ok else None
        conf = identity_confidence(self._cands, p.stranger_odds)
        self._check_claims(now, cam_ok, tracks, radar_ok, radar)
        eligible = {
            c.key for c in self._cands if c.resolved and c.known and c.key not in self._contradicted
        }
        best, best_c = None, 0.0
        for k, v in conf.items():
            if k in eligible and v > best_c:
                best, best_c = k, v
        reason = self._why_not(present, cam_ok, len(tracks), radar_ok, radar, best)
        track = tracks[0] if len(tracks) == 1 else -1
        if cam_ok:
            self._turnover(now, tracks)
        held = now - self._turnover_t
        if (
            not reason
            and held < self._hold()
            and not (
                held >= p.assoc_hold_s
                and best is not None
                and self._assoc(best, track, now) == "agree"
                and not self._unseen(track)
            )
        ):
            # Someone left, two were here or the camera lost its person: who stays or who
            # came, BLE cannot yet say (a leaver's posterior falls over seconds). Unless the
            # one in view walked in and BLE became sure of the best shopper as they did: the
            # leaver's posterior rose long before, so it is not them being named.
            reason = "turnover-hold"
        ident = self._identity
        again = self._bound.get(track)
        if (
            p.rebind_tracks
            and reason == "turnover-hold"
            and again is not None
            and again in eligible
            and conf.get(again, 0.0) >= p.identity_keep_p
        ):
            # The camera never lost this person, who was this shopper before someone else
            # came and went: the track says who stays, no need to wait for BLE.
            reason = ""
            ident = self._identity = (again, track)
        if reason:
            self._identity = None
            self._lead = None
        elif (
            ident is not None
            and ident[1] == track
            and ident[0] in eligible
            and conf.get(ident[0], 0.0) >= p.identity_keep_p
            and not self._at_edge(track)
        ):
            pass  # stays: the same person, still explained by the same shopper
        elif self._at_edge(track):
            # At the region's edge: leaving (someone else may stand here a moment from now,
            # while BLE still says the leaver is in), or not yet in: the greeting ends now,
            # not as they go, and waits until they are in.
            self._identity = None
            self._lead = None
            reason = "at-edge"
        else:
            self._identity = None
            need = p.identity_p
            if (
                best is not None
                and p.identity_assoc_p <= best_c < p.identity_p
                and self._together(best, track, now)
            ):
                need = p.identity_assoc_p  # walked in as BLE rose for them, nobody else likely
            if best is not None and best_c >= need and self._late(best, track, now):
                self._lead = None
                reason = "late-claim"
            elif best is not None and best_c >= need:
                if self._lead is None or self._lead[:2] != (best, track):
                    self._lead = (best, track, now)
                if now - self._lead[2] >= p.identity_hold_s:
                    self._identity = (best, track)
                    self._bound[track] = best
            else:
                self._lead = None
                reason = "ambiguous" if best is not None else "stranger"
        if self._identity is None and not reason:
            reason = "identity-pending"
        return ScreenPresence(
            present=present,
            people=people,
            identity=self._identity[0] if self._identity else None,
            confidence=round(best_c, 4),
            best=best,
            ble_only=ble_only,
            camera_ok=cam_ok,
            zone_unknown=not self._zone_known,
            reason="" if self._identity is not None or not present else reason,
        )

    def _together(self, key: str, track: int, now: float, rising: bool = True) -> bool:
        """``identity_assoc_p`` applies: the one track in view walked in, BLE's P(in) for
        ``key`` rose past ``assoc_rise_p`` as it did (the association's window), nobody else
        is likely (every other candidate below ``assoc_others_p``) and nobody lost inside
        lately may be standing here unseen. Only while BLE is still rising for them: one it
        has been sure of since (P(in) >= ``identity_p``) and is less sure of now is fading
        (on the bench: a leaver whose track id the one who stayed took over)."""
        p = self.p
        rise = self._rise_at.get(key)
        if rise is None or (rising and key in self._sure_since) or track not in self._motion:
            return False
        if any(c.key != key and c.p_in >= p.assoc_others_p for c in self._cands):
            return False
        return self._assoc(key, track, now, rise) == "agree" and not self._unseen(track)

    def _assoc(self, key: str, track: int, now: float, rise: float | None = None) -> str:
        """Do the camera track's way in and BLE's rise for ``key`` tell the same story?
        "agree": the track walked in and BLE became sure of the shopper as it did (from
        ``assoc_pre_s`` before to ``late_claim_s`` after); "disagree": BLE was sure long
        before the person walked in (someone who was here before: a leaver whose posterior
        is still falling), or became sure after (someone walking past or still approaching),
        or became sure well after a person found standing appeared; until both stayed
        ``contradict_release_s``. "": the camera gave no feet, or it cannot say. ``rise``:
        when BLE rose for them (default: when it became sure, P(in) >= ``identity_p``)."""
        m = self._motion.get(track)
        if rise is None:
            rise = self._sure_since.get(key)
        if m is None or rise is None:
            return ""
        p = self.p

        def fits(first_t: float) -> bool:
            return first_t - p.assoc_pre_s <= rise <= first_t + p.late_claim_s

        # BLE rose as someone walked in who has walked out since: the leaver, unless it rose
        # as the one in view walked in too (then which one it is, the turnover hold decides).
        left = any(ft is not None and fits(ft) for t, (ft, _) in self._left.items() if t != track)
        if m.walked_in and fits(m.first_t):
            # ... and if someone whose way in the camera missed walked out lately, it may have
            # been them: no early release either.
            unsure = any(
                ft is None and now - at <= self._hold()
                for t, (ft, at) in self._left.items()
                if t != track
            )
            return "" if left or unsure else "agree"
        if left:
            return "disagree"
        if m.walked_in and rise < m.first_t and self._rise_seen.get(key, False):
            # Sure of them while someone else stood here, before this one walked in: that one
            # was the shopper (leaving, or standing unseen); for as long as BLE stays sure.
            return "disagree"
        if m.walked_in:
            both = max(rise, m.first_t)
        elif rise <= m.first_t + p.assoc_inside_s:
            return ""  # sure of them before: they, or a leaver; the turnover hold decides
        else:
            both = rise
        return "" if now - both >= p.contradict_release_s else "disagree"

    def _approaching(self, tracks: tuple[int, ...]) -> bool:
        """A track the camera saw walk in and come ``approach_m`` nearer: a person, not a
        poster's face or a false hit, so the radar need not agree first (0: off)."""
        p = self.p
        return p.approach_m > 0 and any(
            (m := self._motion.get(t)) is not None
            and m.walked_in
            and m.approached() >= p.approach_m
            for t in tracks
        )

    def _unseen(self, track: int) -> bool:
        """A track lost inside lately and not found again: someone may still stand here,
        turned away or hidden (a leaver walks out; the camera sees that)."""
        return any(t != track and t not in self._left and t in self._motion for t in self._gone)

    def _hold(self) -> float:
        """The turnover hold: shorter where the camera gives feet (the association's there)."""
        p = self.p
        return p.turnover_hold_feet_s if self._feet is not None else p.turnover_hold_s

    def _at_edge(self, track: int) -> bool:
        """The track is at the region's edge (``arrive_from_m`` or farther): coming or going."""
        m = self._motion.get(track)
        return m is not None and m.at_edge(self.p.arrive_from_m)

    def _late(self, key: str, track: int, now: float) -> bool:
        """BLE became sure of ``key`` well after the person in view (``track``) appeared, and
        not long enough ago for both to have stayed: on the bench's trace every wrong greeting
        left after the other guards was this (a shopper approaching or walking past while
        someone who had been at the screen for a while stood there, seen as one person).
        Where the camera gives feet, the motion association decides (``_assoc``)."""
        if track in self._motion:
            if self._assoc(key, track, now) != "disagree":
                return False
            p = self.p
            # Sure too late, but it rose past assoc_rise_p as this one walked in, alone.
            return not (
                p.assoc_rise_late
                and p.identity_assoc_p < p.identity_p
                and self._together(key, track, now, rising=False)
            )
        since_t = self._track_since.get(track)
        since_k = self._sure_since.get(key)
        if since_t is None or since_k is None:
            return False
        p = self.p
        return since_k - since_t > p.late_claim_s and now - since_k < p.contradict_release_s

    def _came(self, now: float, foot: tuple[float, float], edge: bool) -> _Motion:
        """How a new track came: walked in from the edge, or found standing inside. One found
        inside within ``chain_m`` of exactly one track lost inside lately (a still person turns
        away for seconds and is found again under a new id) is taken for that person: it keeps
        their way in, so the association outlives the tracker's ids. Two: it cannot say."""
        p = self.p
        if edge or math.hypot(*foot) >= p.arrive_from_m:
            return _Motion(now, True, foot, edge, math.hypot(*foot))
        lost = [
            t
            for t, at in self._lost.items()
            if now - at <= p.chain_s and math.dist(self._motion[t].last, foot) <= p.chain_m
        ]
        if len(lost) == 1:
            m = self._motion.pop(lost[0])  # one successor only
            del self._lost[lost[0]]
            return _Motion(m.first_t, m.walked_in, foot, edge, m.first_r)
        return _Motion(now, False, foot, first_r=math.hypot(*foot))

    def _turnover(self, now: float, tracks: tuple[int, ...]) -> None:
        """Two people at once, or a new track after one was lost (someone left and someone
        came, or the camera lost its person and found them again: it cannot tell which): the
        hold runs from then. A track flickering at the region's edge (same id) is neither."""
        hold = self._hold()
        gone = self._gone
        for t in self._last_tracks:
            if t not in tracks:
                gone[t] = now
                m = self._motion.get(t)
                if m is None:
                    continue
                if m.at_edge(self.p.arrive_from_m):
                    # Walked out. Where it came from, if the camera saw it walk in.
                    self._left[t] = (m.first_t if m.walked_in else None, now)
                else:
                    self._lost[t] = now  # lost inside: may be found again (chain_s)
        if len(tracks) > 1:
            self._turnover_t = now
        feet = self._feet
        for n, t in enumerate(tracks):
            self._track_since.setdefault(t, now)
            if feet is not None:
                m = self._motion.get(t)
                if m is None:
                    self._motion[t] = self._came(now, feet[n], self._edges[n])
                else:
                    m.last, m.last_edge = feet[n], self._edges[n]
            self._left.pop(t, None)  # back in the region: it did not leave
            self._lost.pop(t, None)
            if t in gone:
                del gone[t]  # back: the same person
            elif t not in self._last_tracks and gone:
                self._turnover_t = max(self._turnover_t, max(gone.values()))
        for t, at in list(gone.items()):
            if now - at > hold:
                del gone[t]
        self._last_tracks = tracks
        if len(self._track_since) > len(tracks) + len(gone):
            self._track_since = {
                t: v for t, v in self._track_since.items() if t in tracks or t in gone
            }
        if self._bound:
            self._bound = {t: k for t, k in self._bound.items() if t in tracks or t in gone}
        if self._left:
            self._left = {t: v for t, v in self._left.items() if now - v[1] <= self.p.assoc_left_s}
        if self._lost:
            self._lost = {t: at for t, at in self._lost.items() if now - at <= self.p.chain_s}
        if len(self._motion) > len(tracks) + len(gone) + len(self._lost):
            keep = set(tracks) | gone.keys() | self._lost.keys()
            self._motion = {t: m for t, m in self._motion.items() if t in keep}

    def _check_claims(
        self, now: float, cam_ok: bool, tracks: tuple[int, ...], radar_ok: bool, radar: bool
    ) -> None:
        """A shopper BLE places here with confidence while healthy sensors see nobody for
        ``contradict_s`` is not here, whatever the radio says, until BLE lets go of them
        (P(in) below ``identity_keep_p``): they cannot become the next person's identity."""
        p = self.p
        nobody = (cam_ok or radar_ok) and not tracks and not radar
        if self._zone_known:
            # One BLE no longer places here at all has been let go (a zone engine that says
            # present or not drops them at once): a claim from a visit before is not this one's.
            here = {c.key for c in self._cands}
            for k in [k for k in self._claim if k not in here]:
                del self._claim[k]
            self._contradicted &= here
            for k in [k for k in self._release if k not in here]:
                del self._release[k]
            for k in [k for k in self._sure_since if k not in here]:
                del self._sure_since[k]
                self._rise_seen.pop(k, None)
            for k in [k for k in self._rise_at if k not in here]:
                del self._rise_at[k]
        release = self._release
        sure = self._sure_since
        for c in self._cands:
            if c.p_in >= p.assoc_rise_p:
                self._rise_at.setdefault(c.key, now)
            elif c.p_in < p.assoc_others_p:
                self._rise_at.pop(c.key, None)
            if c.p_in >= p.identity_p:
                if c.key not in sure:
                    sure[c.key] = now
                    # Someone in view as BLE became sure: they may well be the shopper.
                    self._rise_seen[c.key] = bool(tracks)
            elif c.p_in < p.identity_keep_p:
                if sure.pop(c.key, None) is not None:
                    # Was sure and let go: that rise is over (one from here is a new one).
                    self._rise_at.pop(c.key, None)
                self._rise_seen.pop(c.key, None)
            if c.p_in < p.identity_keep_p:
                self._claim.pop(c.key, None)
                self._contradicted.discard(c.key)
                release.pop(c.key, None)
            elif c.p_in >= p.identity_p and nobody:
                since = self._claim.setdefault(c.key, now)
                if now - since >= p.contradict_s:
                    self._contradicted.add(c.key)
                release.pop(c.key, None)
            else:
                self._claim.pop(c.key, None)
                if c.key in self._contradicted:
                    if nobody or c.p_in < p.identity_p:
                        release.pop(c.key, None)
                    elif now - release.setdefault(c.key, now) >= p.contradict_release_s:
                        self._contradicted.discard(c.key)
                        del release[c.key]

    def _why_not(
        self,
        present: bool,
        cam_ok: bool,
        cam_n: int,
        radar_ok: bool,
        radar: bool,
        best: str | None,
    ) -> str:
        """The guard: a reason the screen must stay anonymous now, or "" if none."""
        if not present:
            return "nobody"
        if not self._zone_known:
            return "zone-unknown"
        if best is None:
            return "stranger"
        if cam_ok:
            if cam_n >= 2:
                return "two-people"
            if cam_n != 1:
                return "camera-sees-nobody"
            if radar_ok and not radar:
                return "radar-sees-nobody"
            if self.p.nearby_blocks and self._nearby:
                # Someone just beyond the edge: BLE cannot tell 1 m from 4 m quickly, so the
                # shopper it places here may be that one, not the one in front.
                return "someone-nearby"
            return ""
        if not self.p.personal_without_camera:
            return "no-camera"
        if radar_ok and not radar:
            return "radar-sees-nobody"
        if self._devices_in_zone > 1:
            return "two-devices"
        return ""


# ---- BLE side: receivers that fall silent -------------------------------------------------
class ReceiverWatch:
    """Each receiver's usual gap between receptions (of anyone), learned; silent past it."""

    def __init__(self, silence_gaps: float = 8.0, silence_min_s: float = 3.0) -> None:
        self.silence_gaps = silence_gaps
        self.silence_min_s = silence_min_s
        self._last: dict[str, float] = {}
        self._gap: dict[str, float] = {}

    def heard(self, receiver: str, ts: float) -> None:
        last = self._last.get(receiver)
        if last is not None and ts > last:
            g = ts - last
            old = self._gap.get(receiver)
            # A slow EMA, and a long gap counts at most 4x the learned one: an outage must not
            # teach the receiver that outages are normal.
            self._gap[receiver] = g if old is None else old + 0.05 * (min(g, 4 * old) - old)
        if last is None or ts > last:
            self._last[receiver] = ts

    def learned_gap_s(self, receiver: str) -> float | None:
        return self._gap.get(receiver)

    def silent(self, receiver: str, now: float) -> bool:
        last = self._last.get(receiver)
        if last is None:
            return False  # never heard: nothing learned yet (a new box); the caller decides
        gap = self._gap.get(receiver, 0.0)
        return now - last > max(self.silence_min_s, self.silence_gaps * gap)


class BleZoneView:
    """BLE zone states for the fusion engines, with silent receivers' zones "unknown".

    ``update`` takes, per shopper, the zone filter's decided zone and its P(in each zone);
    ``candidates(zone)`` is what ``ScreenFusion.ble`` wants (None: the zone is unknown)."""

    def __init__(
        self,
        receivers: Mapping[str, str],
        watch: ReceiverWatch,
        neighbours: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.receivers = dict(receivers)  # receiver id -> zone
        self.watch = watch
        # zone -> zones next to it (a shopper in one may be placed in the other when its
        # receiver is silent); None: every zone is next to every other
        self.neighbours = None if neighbours is None else {z: set(n) for z, n in neighbours.items()}
        self._last_zone: dict[str, str] = {}  # shopper -> last zone decided while known
        self._zone: dict[str, str | None] = {}
        self._p: Mapping[str, Mapping[str, float]] = {}
        self._unknown: set[str] = set()
        self._resolved: set[str] = set()

    def unknown_zones(self, now: float) -> set[str]:
        """Zones all of whose receivers are silent."""
        by_zone: dict[str, list[bool]] = {}
        for rid, z in self.receivers.items():
            by_zone.setdefault(z, []).append(self.watch.silent(rid, now))
        return {z for z, s in by_zone.items() if all(s)}

    def update(
        self,
        now: float,
        decided: Mapping[str, str | None],
        posteriors: Mapping[str, Mapping[str, float]],
        resolved: Iterable[str] | None = None,
    ) -> None:
        self._unknown = unk = self.unknown_zones(now)
        self._resolved = set(decided if resolved is None else resolved)
        self._p = posteriors
        self._zone = {}
        for key in {*decided, *posteriors}:
            z = decided.get(key)
            last = self._last_zone.get(key)
            if last in unk:
                # Its zone went silent: not "moved to the neighbour", unknown until heard again.
                self._zone[key] = UNKNOWN
                continue
            if z is not None and z != last and unk and self._next_to(z, unk):
                # Placed in a zone next to a silent one while it is silent: they may well be
                # standing in the silent one, heard faintly by this zone's receiver.
                self._zone[key] = UNKNOWN
                continue
            if z is not None and z not in unk:
                self._last_zone[key] = z
            self._zone[key] = z
        for key in list(self._last_zone):
            if key not in self._zone:
                del self._last_zone[key]

    def _next_to(self, zone: str, silent: set[str]) -> bool:
        if self.neighbours is None:
            return True
        return any(zone in self.neighbours.get(s, ()) for s in silent)

    def zone_of(self, key: str) -> str | None:
        """The shopper's zone, None for none, ``UNKNOWN`` while its last zone is silent."""
        return self._zone.get(key)

    def candidates(self, zone: str, min_p: float = 0.02) -> list[Candidate] | None:
        if zone in self._unknown:
            return None
        out = []
        for key, z in self._zone.items():
            pz = self._p.get(key, {}).get(zone, 0.0)
            if z == zone:
                pz = max(pz, 0.5)  # decided in: at least as likely as not
            if pz < min_p:
                continue
            known = z != UNKNOWN
            out.append(Candidate(key, pz, resolved=key in self._resolved, known=known))
        return out

    def devices_in(self, zone: str) -> int:
        return sum(1 for z in self._zone.values() if z == zone)
