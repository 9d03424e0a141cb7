"""What the box does with each kind of message central pushes, once the downlink has checked its
signature, version and expiry: campaigns, profile slices, content, config, commands, the store map,
the planogram and software releases; and the probation of a pushed config, certificate or
release until it has proved itself.

A handler that raises refuses the message: the downlink acks it with the reason, nothing changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contracts import topics
from contracts.events import DownlinkApplied
from contracts.screen_protocol import ScreenCommand, Theme
from contracts.validation import first_error
from edge_agent.app.bus import Publisher
from edge_agent.config import AgentConfig
from edge_agent.downlink import credentials
from edge_agent.downlink.content_manifest import ContentInstaller, parse_manifest
from edge_agent.downlink.release_apply import ReleaseApplier
from edge_agent.downlink.wayfinding_apply import WayfindingApplier
from edge_agent.identity.resolver import TokenResolver
from edge_agent.journey.campaigns import lint
from edge_agent.journey.content_store import ContentStore, atomic_write
from edge_agent.journey.director import ScreenDirector
from edge_agent.slice.store import ProfileSlice
from sync.journal import EventJournal
from sync.ports import DownlinkPort, UplinkPort

log = logging.getLogger("edge_agent")


@dataclass
class HandlerCounts:
    applied: int = 0
    refused: int = 0


class DownlinkHandlers:
    def __init__(
        self,
        cfg: AgentConfig,
        *,
        now: Callable[[], float],
        profiles: ProfileSlice,
        resolver: TokenResolver,
        content: ContentStore,
        director: ScreenDirector,
        journal: EventJournal,
        bus: Publisher,
        request_restart: Callable[[str, int], None],
        content_dir: Path,
        wayfinding: WayfindingApplier | None = None,
    ) -> None:
        self.cfg = cfg
        self._now = now
        self.profiles = profiles
        self.resolver = resolver
        self.content = content
        self.director = director
        self.journal = journal
        self.bus = bus
        self.request_restart = request_restart
        self.uplink: UplinkPort | None = None  # set once sync starts
        self._downlink: DownlinkPort | None = None
        # Later acks (a resumed install, a warning) that came before the downlink existed.
        self._early_acks: list[dict[str, Any]] = []
        self._acks_lock = threading.Lock()
        self.campaign_warnings: list[str] = []
        self.counts = HandlerCounts()
        # Set by `edge-agent run`: pushed configs replace this file (downlink/config_apply.py).
        self.config_path: Path | None = None
        self.config_sha256: str | None = None  # of the file this process loaded
        self.cert_sha256 = credentials.running_sha256(cfg.central)  # the same for the cert
        self._csr_sent: bytes | None = None  # the renewal request central has (retained)
        self._csr_cleared = False
        screen_ids = [s.id for s in cfg.screens]
        self.content_installer = ContentInstaller(
            content_dir,
            self.on_content_installed,
            ways=lambda playlist: director.wayfinder.fill(playlist, screen_ids),
            in_use=lambda: content.bundle.assets() | self._theme_assets(),
        )
        self.wayfinding = wayfinding
        if wayfinding is not None:
            wayfinding.on_warning = self.on_later_result
            wayfinding.on_applied = self.content_installer.redraw_ways
        # The box may have started on another map than the loop was drawn on: draw it again.
        self.content_installer.redraw_ways()
        # A content push a restart interrupted goes on (its manifest was kept on disk).
        self.content_installer.resume()
        # Set by the agent once it runs: READY sent (a new release must reach it to be kept).
        self.ready: Callable[[], bool] = lambda: False
        self.release = self._release_applier(cfg)

    @property
    def downlink(self) -> DownlinkPort | None:
        return self._downlink

    @downlink.setter
    def downlink(self, downlink: DownlinkPort | None) -> None:
        with self._acks_lock:
            self._downlink = downlink
            early, self._early_acks = self._early_acks, []
        if downlink is not None:
            for doc in early:
                downlink.publish_ack(doc, defer=True)

    def _later_ack(self, doc: dict[str, Any]) -> None:
        """An ack for ops after the push's own ack; kept until the downlink exists, since a
        content install resumed at start can finish before sync starts."""
        with self._acks_lock:
            downlink = self._downlink
            if downlink is None:
                self._early_acks = [*self._early_acks[-63:], doc]
                return
        downlink.publish_ack(doc, defer=True)

    def _release_applier(self, cfg: AgentConfig) -> ReleaseApplier | None:
        """Releases only where the box is laid out for them (``[release] root``)."""
        if cfg.release.root is None:
            return None
        from contracts.signing import load_public_key
        from edge_agent.box.releases import ReleaseStore
        from edge_agent.downlink.commands import RESTART_EXIT_STATUS

        store = ReleaseStore(
            cfg.release.root,
            load_public_key(cfg.downlink.ops_public_key),
            max_starts=cfg.release.max_starts,
            timeout_s=cfg.release.timeout_s,
        )
        return ReleaseApplier(
            store,
            probation_s=cfg.release.probation_s,
            request_restart=lambda why: self.request_restart(why, RESTART_EXIT_STATUS),
            report=self.on_release_result,
        )

    def appliers(self) -> dict[str, Callable[[dict[str, Any]], None]]:
        return {
            "campaigns": self.apply_campaigns,
            "profiles": self.apply_profiles,
            "command": self.apply_command,
            "config": self.apply_config,
            "content": self.apply_content,
            "theme": self.apply_theme,
            "release": self.apply_release,
            **(
                {"map": self.wayfinding.apply_map, "planogram": self.wayfinding.apply_planogram}
                if self.wayfinding is not None
                else {}
            ),
        }

    def on_result(self, result: Any) -> None:
        """Every downlink message's outcome, applied or refused, as an event for the CDP."""
        accepted = bool(getattr(result, "accepted", False))
        if accepted:
            self.counts.applied += 1
        else:
            self.counts.refused += 1
        self.journal.emit(
            DownlinkApplied(
                kind=str(getattr(result, "kind", "") or "unknown"),
                version=int(getattr(result, "version", 0) or 0),
                accepted=accepted,
                reason=str(getattr(result, "reason", "")),
            )
        )

    # ---- profiles ------------------------------------------------------------------------
    def apply_profiles(self, body: dict[str, Any]) -> None:
        """A slice snapshot or delta (shapes in edge_agent/slice/model.py); all or nothing.
        A refusal (older, gap, bad row, other store) raises and the ack carries the reason."""
        res = self.profiles.apply(body)
        if res.duplicate:
            log.info("profiles: %s v%d already applied", res.kind, res.version)
            return
        if res.kind == "snapshot_part":
            # Staged; the current slice keeps serving until the last part swaps it in.
            log.info("profiles: snapshot v%d: %d/%d parts", res.version, res.staged, res.parts)
            return
        if res.keys_changed is None:
            self.resolver.set_keys(self.profiles.identity_keys())
        elif res.keys_changed:
            keys = self.profiles.identity_keys(res.keys_changed)
            self.resolver.update_keys(keys, removed=res.keys_changed - keys.keys())
        if res.forgotten:
            # Consent withdrawn or deleted: get() already returns None; the screen must not
            # keep a personal message up for its minimum hold either.
            self.director.forget(res.forgotten, cut_hold=True)
        log.info("profiles: applied %s v%d (%d rows)", res.kind, res.version, res.rows)
        self.director.invalidate()

    def purge_profiles(self) -> None:
        """The retention job (APScheduler thread): expired profiles and old journal entries."""
        days = self.cfg.profiles.journal_retention_days
        try:
            res = self.profiles.purge_expired(log_retention_s=days * 86400)
        except Exception:
            log.exception("profiles: retention purge failed")
            return
        if res.forgotten:
            self.resolver.update_keys({}, removed=res.forgotten)
            self.director.forget(res.forgotten)
        log.info("profiles: retention purged %d expired profiles", res.expired)

    # ---- campaigns and content -----------------------------------------------------------
    def apply_campaigns(self, body: dict[str, Any]) -> None:
        bundle = self.content.replace(body)
        log.info(
            "campaigns: applied bundle v%s with %d campaigns", bundle.version, len(bundle.campaigns)
        )
        # Campaigns this store can never run load anyway (others in the bundle may), but ops
        # hear about each in the log and the warnings count of the heartbeat.
        self.campaign_warnings = lint(
            bundle,
            zones=[z.id for z in self.cfg.zones],
            screens=[s.id for s in self.cfg.screens],
            max_people_for_personal=max(s.max_people_for_personal for s in self.cfg.screens),
            stock=self.director.stock() or None,
            now=datetime.fromtimestamp(self._now(), UTC),
            # A photo not here yet may come with the next content push: said, not refused.
            assets=self.content_installer.store.cached(),
        )
        for line in self.campaign_warnings:
            log.warning("campaigns v%s: %s", bundle.version, line)
        self.director.invalidate()

    def _theme_assets(self) -> set[str]:
        """The theme's logo and fonts: a new loop's cleanup keeps them."""
        try:
            raw = (self.content_installer.content_dir / "theme.json").read_bytes()
            theme = Theme.model_validate_json(raw)
        except (OSError, ValidationError):
            return set()
        return {sha for _field, sha in _theme_files(theme)}

    def apply_theme(self, body: dict[str, Any]) -> None:
        """The store's brand for every screen: checked whole (the logo and the fonts must
        already be in the screens' cache), then ``theme.json`` swapped for the players."""
        try:
            theme = Theme.model_validate(body)
        except ValidationError as exc:
            raise ValueError(f"theme {first_error(exc, 'theme')}") from None
        cached = self.content_installer.store.cached()
        for field, sha in _theme_files(theme):
            if sha not in cached:
                raise ValueError(
                    f"theme: {field} {sha[:12]}... is not in the screens' content cache "
                    "(push it with a content manifest first)"
                )
        content_dir = self.content_installer.content_dir
        content_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(content_dir / "theme.json", theme.model_dump_json().encode())
        log.info("theme: v%d in use", theme.version)

    def apply_content(self, body: dict[str, Any]) -> None:
        # Checked now (a bad manifest is refused in the ack); assets download in the background
        # and the loop swaps only when all of them are verified.
        manifest = parse_manifest(body)
        total = sum(a.size for a in manifest.assets)
        budget = self.cfg.downlink.content_cache_mb * 1024 * 1024
        if total > budget:
            raise ValueError(
                f"content: assets total {total / 2**20:.0f} MB, over this box's cache budget of "
                f"{budget // 2**20} MB ([downlink] content_cache_mb)"
            )
        self.content_installer.install(manifest)

    def on_content_installed(self, version: int, ok: bool, reason: str) -> None:
        self.journal.emit(
            DownlinkApplied(kind="content.installed", version=version, accepted=ok, reason=reason)
        )
        doc = {"kind": "content.installed", "version": version, "accepted": ok}
        self._later_ack({**doc, "reason": reason})

    # ---- releases ----------------------------------------------------------------------------
    def apply_release(self, body: dict[str, Any]) -> None:
        if self.release is None:
            raise ValueError("this box takes no releases ([release] root is not set)")
        # The later ack (release.installed) names the push's version, as ops waits for it.
        msg = getattr(self.downlink, "applying", None)
        self.release.apply(body, int(getattr(msg, "version", 0) or 0))

    def on_release_result(self, result: Any) -> bool:
        """A release's outcome (installed and confirmed, refused, rolled back) for ops and the
        CDP; False when central cannot be told yet (kept on disk and told later)."""
        ack = result.ack()
        if self.downlink is None or not self.downlink.publish_ack(ack):
            return False
        self.journal.emit(
            DownlinkApplied(
                kind=ack["kind"], version=ack["version"], accepted=ack["accepted"],
                reason=ack["reason"],
            )
        )  # fmt: skip
        return True

    def on_later_result(self, kind: str, version: int, reason: str) -> None:
        """A warning about something applied (a planogram entry off the map): as its own ack
        (``<kind>.warnings``) for ops, and as an event for the CDP."""
        kind = f"{kind}.warnings"
        self.journal.emit(DownlinkApplied(kind=kind, version=version, accepted=True, reason=reason))
        self._later_ack(
            {"kind": kind, "version": version, "accepted": True, "reason": reason[:300]}
        )

    # ---- commands and config -------------------------------------------------------------
    def apply_command(self, body: dict[str, Any]) -> None:
        from edge_agent.downlink.commands import (
            RESTART_EXIT_STATUS,
            emergency_command,
            parse_command,
            target_screens,
        )

        screens = [s.id for s in self.cfg.screens]
        store = self.cfg.store.store_id
        cmd = parse_command(body, screens)  # ValueError: refused, acked with the reason
        log.info("command %s%s", cmd.command, f" ({cmd.reason})" if cmd.reason else "")
        if cmd.command == "screenshot":
            ask = ScreenCommand(kind="screenshot").to_bytes()
            for screen in target_screens(cmd, screens):
                if not self.bus.publish(topics.screen_cmd(store, screen), ask, qos=1):
                    raise RuntimeError("the in-store bus is not connected")
        elif cmd.command in ("emergency", "clear_emergency"):
            # Retained on the store's emergency topic: every screen obeys, also one that starts
            # later, until cleared.
            body_out = emergency_command(cmd).to_bytes()
            if not self.bus.publish(topics.emergency(store), body_out, qos=1, retain=True):
                raise RuntimeError("the in-store bus is not connected")
        elif cmd.command == "resync":
            if self.uplink is not None:
                self.uplink.resync()
            if self.downlink is not None:
                # Central answers with fresh snapshots for whatever it finds behind.
                self.downlink.publish_ack({"kind": "resync", "versions": self.downlink.state.all()})
        elif cmd.command == "rotate_credentials":
            csr = credentials.request(self.cfg.central, store, self.cfg.store.device_id)
            if self.uplink is None or not self.uplink.publish_status("csr", csr, retain=True):
                raise RuntimeError("not connected to central: the request could not be sent")
        elif cmd.command == "install_certificate":
            assert cmd.certificate_pem is not None
            device = self.cfg.store.device_id
            credentials.check(self.cfg.central, store, device, cmd.certificate_pem)
            credentials.install(self.cfg.central, cmd.certificate_pem)
            # Answered: clear the retained request so `sign-csr --all-pending` does not sign it
            # again (best effort: a stale one is refused by the box, its key is gone).
            if self.uplink is not None:
                self.uplink.publish_status("csr", b"", retain=True)
            self.request_restart("new client certificate", RESTART_EXIT_STATUS)
        else:
            self.request_restart("restart command", RESTART_EXIT_STATUS)

    def apply_config(self, body: dict[str, Any]) -> None:
        from edge_agent.downlink import config_apply
        from edge_agent.downlink.commands import RESTART_EXIT_STATUS

        if self.config_path is None:
            raise RuntimeError("this agent was not started from a config file")
        config_apply.stage(body, self.config_path, self.cfg)
        log.warning("config: new config installed; restarting on it (on probation)")
        self.request_restart("pushed config", RESTART_EXIT_STATUS)

    def check_certificate(self) -> tuple[float | None, dict[str, str]]:
        """Days left of the client certificate and its health, for the heartbeat; past two
        thirds of its life, the renewal request (the ``rotate_credentials`` one, made here
        without a command) is made once and published, retained, whenever central is reached.

        The wall clock, not the agent's clock: that is the one TLS checks the certificate
        against (the agent's may be a replay's)."""
        central = self.cfg.central
        try:
            life = credentials.life(central)
        except ValueError as exc:
            return None, {"cert": f"unreadable: {exc}"}
        if life is None:
            return None, {}
        now = datetime.now(UTC)
        days = round(life.days_left(now), 2)
        if life.expired(now):
            return days, {"cert": "expired"}
        if not life.renewal_due(now):
            # Once per process: a request left retained from before (a box brought back by
            # hand, `edge-agent cert install`) would have ops sign a key the box no longer has.
            # Not while a `rotate_credentials` request waits for its certificate.
            if not self._csr_cleared and self.uplink is not None:
                if credentials.pending_request(central) is None:
                    self._csr_cleared = self.uplink.publish_status("csr", b"")
                else:
                    self._csr_cleared = True
            return days, {"cert": "ok"}
        if credentials.on_probation(central, self.cert_sha256) is not None:
            return days, {"cert": "on probation"}  # the new one is not confirmed yet
        csr = credentials.pending_request(central)
        if csr is None:
            csr = credentials.request(central, self.cfg.store.store_id, self.cfg.store.device_id)
            log.warning("credentials: %.1f days left; asked central for a new certificate", days)
        # Once per process and request: retained, so central keeps it while the box is away.
        sent = csr == self._csr_sent
        if not sent and self.uplink is not None and self.uplink.publish_status("csr", csr):
            self._csr_sent = csr
        return days, {"cert": "renewal requested" if self._csr_sent == csr else "renewal due"}

    def check_probation(self) -> None:
        """A pushed config or certificate is confirmed once central is reached with it, else
        rolled back."""
        from edge_agent.downlink import config_apply
        from edge_agent.downlink.commands import RESTART_EXIT_STATUS

        connected = self.uplink is not None and self.uplink.connected
        if self.release is not None:
            self.release.check(ready=self.ready(), connected=connected)
        central = self.cfg.central
        limit = self.cfg.downlink.config_probation_s
        cred_age = credentials.on_probation(central, self.cert_sha256)
        if cred_age is not None and connected:
            credentials.confirm(central)
            log.info("credentials: central accepted the new certificate; confirmed")
        elif cred_age is not None and cred_age > limit:
            log.error("%s", credentials.rollback(central, "central refused it"))
            self.request_restart("credential rollback", RESTART_EXIT_STATUS)
        age = config_apply.on_probation(self.config_path, self.config_sha256)
        if age is None or self.config_path is None:
            return
        if connected:
            config_apply.confirm(self.config_path)
            log.info("config: the pushed config reached central; confirmed")
        elif age > limit:
            log.error("%s", config_apply.rollback(self.config_path, "central unreachable with it"))
            self.request_restart("config rollback", RESTART_EXIT_STATUS)


def _theme_files(theme: Theme) -> list[tuple[str, str]]:
    """The content-cache files a theme draws with, by field name."""
    named = (
        ("logo_sha256", theme.logo_sha256),
        ("font_sha256", theme.font_sha256),
        ("font_bold_sha256", theme.font_bold_sha256),
    )
    return [(field, sha) for field, sha in named if sha]
