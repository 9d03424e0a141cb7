"""The audience stage: the camera worker's counts, fail-safe, for the screen it watches.

Capture and analysis run in the camera worker process (``CameraProcess``, issue 20: OpenCV
never loads in the agent) or, with ``[camera] run_in = "thread"`` or a frame source handed in,
in the camera's own thread (``CameraWorker``); both hand the same observations to the same
queue and answer the same ``health()``. This stage only drains
its observations on the loop, smooths the counts (median of the last five frames), emits the
anonymous audience events and tells staff when the camera goes silent. A camera that is lost,
stalled or silent counts as seeing nobody, which rules out personal content until it sees again.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from contracts.events import AudienceSample, AudienceTrack
from edge_agent.app.alerts import StaffAlerts
from edge_agent.config import CameraConfig
from edge_agent.journey.kpis import JourneyKpis
from sync.journal import EventJournal

if TYPE_CHECKING:
    from edge_agent.sensing.camera.sources import FrameSource

log = logging.getLogger("edge_agent")
# Seconds without a camera frame (agent clock) before staff are told the camera is lost.
CAMERA_LOST_AFTER_S = 10.0


class CameraHealth(Protocol):
    @property
    def state(self) -> str: ...

    @property
    def fps(self) -> float: ...

    @property
    def reconnects(self) -> int: ...

    @property
    def frame_age_s(self) -> float | None: ...


class Camera(Protocol):
    """What the agent needs of a running camera worker (``CameraWorker``)."""

    def health(self) -> CameraHealth: ...

    def stop(self, timeout: float = 5.0) -> bool: ...


@dataclass
class AudienceCounts:
    frames: int = 0
    audience_samples: int = 0
    audience_tracks: int = 0


class AudienceStage:
    def __init__(
        self,
        cam: CameraConfig | None,
        *,
        now: Callable[[], float],
        speed: float,
        kpis: JourneyKpis,
        journal: EventJournal,
        alerts: StaffAlerts,
        invalidate: Callable[[], None],
        frame_source: FrameSource | None = None,
        camera_opener: Callable[[], FrameSource] | None = None,
        worker_setup: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cam
        self._now = now
        self.speed = speed
        self.kpis = kpis
        self.journal = journal
        self.alerts = alerts
        self.invalidate = invalidate
        self.frame_source = frame_source
        # Reopens a lost camera (or one that was not there at start), with backoff.
        self.camera_opener = camera_opener
        # Set: the camera runs in a worker process started with this setup (camera/process.py).
        self.worker_setup = worker_setup
        self.camera: Camera | None = None  # the CameraProcess or CameraWorker while running
        self.counts = AudienceCounts()
        # The smoothed counts the screen decides on; None = the screen is unobserved.
        self.people: int | None = None
        self.watchers: int | None = None
        self._people_window: deque[int] = deque(maxlen=5)
        # The last analysed frame (agent clock) and the tracker's ids of the people in it, for
        # the fused presence (which judges a stalled camera by the frame's age itself).
        self.frame_t: float | None = None
        self.tracks: tuple[int, ...] = ()
        # Where each stands and whether at the view's side (None: no field of view configured).
        self.feet: tuple[tuple[float, float], ...] | None = None
        self.edges: tuple[bool, ...] = ()
        self._last_audience = (0, 0)
        self._frames_seen = 0
        self._seen_at: float | None = None
        self._alerted = False
        self.started_at: float | None = None

    @property
    def configured(self) -> bool:
        """A camera is configured and something can deliver its frames."""
        has_source = self.frame_source is not None or self.camera_opener is not None
        return (has_source or self.worker_setup is not None) and self.cfg is not None

    @property
    def screen(self) -> str | None:
        """The screen this camera watches, when it is enabled."""
        return self.cfg.screen if self.cfg is not None and self.cfg.enabled else None

    def people_in_view(self) -> tuple[int, int]:
        """Fail safe for decisions: a configured camera that is dead or silent sees nobody."""
        return (self.people if self.people is not None else 0, self.watchers or 0)

    async def run(self, stopping: asyncio.Event) -> None:
        from contracts.backoff import Backoff

        cam = self.cfg
        assert cam is not None
        speed = self.speed
        observations: queue.SimpleQueue[Any] = queue.SimpleQueue()
        camera: Camera
        if self.worker_setup is not None and self.frame_source is None:
            from edge_agent.sensing.camera.process import CameraProcess

            # The worker restarts with the camera's own reconnect backoff.
            camera = self.camera = CameraProcess(
                self.worker_setup,
                observations.put,
                backoff=Backoff(0.5, 2.0, cam.reconnect_max_s),
            ).start()
        else:
            from edge_agent.sensing.camera.capture import CameraWorker, make_pipelines
            from edge_agent.sensing.camera.sources import CameraError

            try:
                pipelines = make_pipelines(cam)
            except CameraError as exc:  # e.g. a face model file that is not a model
                log.error("camera disabled: %s", exc)
                return
            # Capture and analysis run in the camera's own thread; this loop only takes the
            # counts, so a slow or stuck camera never stalls the agent.
            camera = self.camera = CameraWorker(
                pipelines,
                observations.put,
                source=self.frame_source,
                opener=self.camera_opener,
                interval_s=max(0.02, 1.0 / (cam.fps * speed)),
                now=self._now,
                backoff=Backoff(0.5, 2.0, cam.reconnect_max_s),
            ).start()
        watchers_window: deque[int] = deque(maxlen=5)
        new_tracks = 0
        next_sample = self._now() + cam.sample_interval_s
        try:
            while not stopping.is_set():
                new_tracks += self._drain(observations, watchers_window)
                now = self._now()
                if now >= next_sample and self.people is not None:
                    next_sample = now + cam.sample_interval_s
                    self.counts.audience_samples += 1
                    watchers = self.watchers or 0
                    self._audience_kpis(self.people, watchers)
                    self.journal.emit(
                        AudienceSample(
                            screen_id=cam.screen,
                            people=self.people,
                            watchers=watchers,
                            new_tracks=new_tracks,
                        )
                    )
                    new_tracks = 0
                await asyncio.sleep(min(0.05, 0.5 / (cam.fps * speed)))
        finally:
            camera.stop(timeout=2.0)
            self._drain(observations, watchers_window)

    def _drain(self, observations: queue.SimpleQueue[Any], watchers: deque[int]) -> int:
        """Counts and finished visits from the camera thread; returns the new tracks seen."""
        cam = self.cfg
        assert cam is not None and self.camera is not None
        new = 0
        while True:
            try:
                o = observations.get_nowait()
            except queue.Empty:
                break
            for tr in o.ended:
                self.counts.audience_tracks += 1
                self.kpis.track_ended(tr.dwell_s, tr.attention_s)
                self.journal.emit(
                    AudienceTrack(
                        screen_id=o.screen_id, dwell_s=tr.dwell_s, attention_s=tr.attention_s
                    ),
                    ts=tr.end,
                )
            if not o.seen or o.screen_id != cam.screen:
                continue
            new += o.new_tracks
            self.counts.frames += 1
            self.frame_t, self.tracks = o.t, o.tracks
            self.feet, self.edges = o.feet, o.edges
            self._people_window.append(o.people)
            watchers.append(o.watchers)
            people = sorted(self._people_window)[len(self._people_window) // 2]
            looking = sorted(watchers)[len(watchers) // 2]
            if looking != self.watchers:
                self.watchers = looking
                self.invalidate()
            if people != self.people:
                self.people = people
                self.invalidate()
        h = self.camera.health()
        # A read stuck for a while (frozen driver, stalled stream) is as blind as a lost camera.
        stuck = h.frame_age_s is not None and h.frame_age_s > max(2.0, 5.0 / cam.fps)
        if (h.state != "ok" or stuck) and self.people is not None:
            # Fail safe: a lost camera sees nobody until it delivers again. A recording that
            # played to its end (a replay, the demo), or our own stop at shutdown, is no fault.
            if h.state in ("ended", "stopped"):
                log.info("camera: %s; the screen counts as unobserved", h.state)
            else:
                log.warning("camera: no frame; treating the screen as unobserved")
            self.people = None
            self.watchers = None
            self.tracks, self.feet, self.edges = (), None, ()
            self._people_window.clear()
            watchers.clear()
            self.invalidate()
        return new

    def _audience_kpis(self, people: int, watchers: int) -> None:
        """Opportunities to see: people who came into view since the last sample (and looked)."""
        prev_people, prev_watchers = self._last_audience
        self.kpis.audience(max(0, people - prev_people), max(0, watchers - prev_watchers))
        self._last_audience = (people, watchers)

    def check(self, now: float) -> None:
        """A configured camera that stops delivering frames is a staff alert (once per outage)."""
        cam = self.cfg
        if cam is None or not cam.enabled:
            return
        if self.counts.frames != self._frames_seen:
            self._frames_seen, self._seen_at = self.counts.frames, now
            self._alerted = False
            return
        silent_for = now - (self._seen_at or self.started_at or now)
        if not self._alerted and silent_for > CAMERA_LOST_AFTER_S:
            self._alerted = True
            self.alerts.raise_alert(
                "camera_lost",
                f"Camera at {cam.screen} sends no images: personal content is off there",
                screen_id=cam.screen,
            )

    def health(self) -> dict[str, str]:
        """Camera state for the heartbeat: ok, starting, stalled, reconnecting, ended, off..."""
        if self.camera is None:
            return {"camera": "silent" if self.configured else "off"}
        h = self.camera.health()
        # Not the error text: it names the source, and a stream URL may carry credentials.
        out = {
            "camera": h.state,
            "camera_fps": f"{h.fps:g}",
            "camera_reconnects": str(h.reconnects),
        }
        summary = getattr(self.camera, "summary", None)
        if summary is not None:  # the worker process: running, or why it died and when it is back
            out["camera_worker"] = summary()
        return out
