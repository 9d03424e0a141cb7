"""The fused presence stage: one ``ScreenFusion`` for each screen that has a camera or an mmWave
radar, fed on every agent tick with the camera's tracks (audience stage), the radar's word
(mmWave on the bus) and BLE's view of the screen's zone (presence stage). The director asks it
who, if anyone, the one person at such a screen is; screens with neither stay BLE-only.

Issue 18: the camera and radar answer "someone is here" within a second, BLE answers "who" with
the guards measured in BENCHMARKS.md ("Fused presence"): exactly one person in view, one shopper
explaining them with confidence, held; anonymous after turnover, with two people, or while the
zone's receiver is silent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from edge_agent.config import AgentConfig
from edge_agent.sensing.audience_stage import AudienceStage
from edge_agent.sensing.fusion import FusionParams, ScreenFusion, ScreenPresence
from edge_agent.sensing.presence_stage import PresenceStage


class FusionStage:
    def __init__(
        self,
        cfg: AgentConfig,
        *,
        presence: PresenceStage,
        audience: AudienceStage,
        radar: Callable[[str], bool | None],
        invalidate: Callable[[], None],
    ) -> None:
        self.enabled = cfg.fusion.enabled
        base = cfg.fusion.params()
        # A screen its config calls a spot for one may go personal on BLE alone when its camera
        # stalls (the radar still saying someone is there), as it may without any camera.
        self._params: dict[str, FusionParams] = {
            s.id: replace(base, personal_without_camera=s.personal_without_crowd_sensor)
            for s in cfg.screens
        }
        self._zone = {s.id: s.zone for s in cfg.screens}
        self.presence = presence
        self.audience = audience
        self.radar = radar
        self.invalidate = invalidate
        self._engines: dict[str, ScreenFusion] = {}
        self._views: dict[str, ScreenPresence] = {}

    def tick(self, now: float) -> None:
        if not self.enabled:
            return
        audience = self.audience
        cam_screen = audience.screen if audience.configured else None
        for sid, zone in self._zone.items():
            radar = self.radar(zone)
            has_cam, has_radar = sid == cam_screen, radar is not None
            eng = self._engines.get(sid)
            if not has_cam and not has_radar:
                if eng is not None:
                    del self._engines[sid]
                    self._views.pop(sid, None)
                    self.invalidate()
                continue
            if eng is None or (eng.has_camera, eng.has_mmwave) != (has_cam, has_radar):
                # A radar that first speaks now: a new engine (anonymous until it builds up).
                eng = self._engines[sid] = ScreenFusion(
                    has_camera=has_cam, has_mmwave=has_radar, params=self._params[sid]
                )
            if has_cam and audience.frame_t is not None:
                eng.camera(
                    audience.frame_t, audience.tracks, feet=audience.feet, edges=audience.edges
                )
            if has_radar:
                eng.mmwave(now, bool(radar))
            eng.ble(
                now,
                self.presence.ble_view(zone, now),
                self.presence.devices_in(zone, now),
            )
            view = eng.tick(now)
            old = self._views.get(sid)
            self._views[sid] = view
            if old is None or (old.present, old.people, old.identity) != (
                view.present,
                view.people,
                view.identity,
            ):
                self.invalidate()  # someone came or went, or who they are is now known

    def view(self, screen_id: str) -> ScreenPresence | None:
        """The fused answer for a screen, or None: the screen is BLE-only (or fusion is off)."""
        return self._views.get(screen_id) if screen_id in self._engines else None

    def health(self) -> dict[str, str]:
        """One line per fused screen: personal, or why anonymous, and what it is running on."""
        out: dict[str, str] = {}
        for sid, v in self._views.items():
            if sid not in self._engines:
                continue
            eng = self._engines[sid]
            state = "personal" if v.personal else (v.reason or "nobody")
            if v.ble_only:
                state += ",ble-only"
            elif not v.camera_ok and eng.has_camera:
                state += ",camera-stalled"
            elif eng.has_camera and not eng.placed:
                # The motion association is off: no [camera] hfov_deg, so no positions.
                state += ",no-positions"
            if v.zone_unknown:
                state += ",zone-unknown"
            out[f"fusion_{sid}"] = state
        return out
