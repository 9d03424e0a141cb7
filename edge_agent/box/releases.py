"""Releases side by side on the box, switched by one symlink (issue 20, OTA).

Layout under the release root (``[release] root``, ``/opt/edge-agent`` on a box)::

    releases/<name>/           one complete release each (the bundle's files, a venv for a wheel set)
    releases/.staging-<name>-<pid>/   a release being unpacked and checked; never run from
    current -> releases/<name> what the units run (``current/bin/edge-agent``, ``current/bin/signage-ui``)
    release-probation.json     the release just switched to, until it proves itself
    release-result.json        how the last release push ended, until the agent has acked it

Why a power cut at any point leaves a box that starts:

1. a bundle is unpacked into a staging directory, every file checked against the signed manifest
   and fsynced, and only then renamed to ``releases/<name>``: a directory under a release name is
   complete (a staging leftover is removed at the next install);
2. the probation marker is written (atomically) before ``current`` changes, and ``current`` is
   replaced by renaming a new symlink over it: it names the old release or the new one, never
   nothing and never half of one;
3. ``pre_start`` (run before every start of the agent: systemd's ``ExecStartPre``, or
   ``edge-agent release supervise``) reconciles what a cut left: a marker for a release that
   ``current`` does not name means the switch never happened (the old release runs on and the
   push is acked as failed); a release that keeps failing to start, or that was not confirmed in
   time, is rolled back to the previous one.

The running agent confirms its release (``confirm``) once it is READY, has reached central, and
has stayed up for the probation time; the result is acked to central (``release.installed``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.files import atomic_write, fsync_path, sha256_of
from contracts.release import (
    MANIFEST,
    SIGNATURE,
    ReleaseError,
    ReleaseManifest,
    parse_manifest,
    release_name_ok,
    verify_signature,
)
from edge_agent.downlink.probation import Probation

log = logging.getLogger(__name__)

MAX_STARTS = 3  # starts on probation before a release that keeps failing is rolled back
KEEP = 3  # releases kept on disk (current, previous and one more), the rest removed
CHUNK = 1 << 20


def this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def this_arch() -> str:
    import platform

    return platform.machine()


@dataclass(frozen=True)
class Result:
    version: int  # the downlink version of the push (0: installed by hand)
    release: str
    accepted: bool
    reason: str

    def ack(self) -> dict[str, Any]:
        return {
            "kind": "release.installed",
            "version": self.version,
            "release": self.release,
            "accepted": self.accepted,
            "reason": self.reason[:300],
        }


class ReleaseStore:
    def __init__(
        self,
        root: Path,
        public_key: Ed25519PublicKey,
        *,
        arch: str | None = None,
        python: str | None = None,
        max_starts: int = MAX_STARTS,
        timeout_s: float = 900.0,
    ) -> None:
        self.root = Path(root)
        self.public_key = public_key
        self.arch = arch or this_arch()
        self.python = python or this_python()
        self.max_starts = max_starts
        self.timeout_s = timeout_s  # unconfirmed this long: rolled back at the next start
        self.releases = self.root / "releases"
        self.current = self.root / "current"
        self.probation = Probation(self.root / "release-probation.json")
        self.result_path = self.root / "release-result.json"

    # ---- what runs -----------------------------------------------------------------------
    def running(self) -> str | None:
        """The release ``current`` names, None when there is none (or it points elsewhere)."""
        try:
            target = os.readlink(self.current)
        except OSError:
            return None
        parts = Path(target).parts
        if len(parts) == 2 and parts[0] == "releases" and release_name_ok(parts[1]):
            return parts[1]
        return None

    def installed(self) -> list[str]:
        if not self.releases.is_dir():
            return []
        return sorted(p.name for p in self.releases.iterdir() if release_name_ok(p.name))

    # ---- install -------------------------------------------------------------------------
    def install(self, bundle: Path, *, expect: str | None = None) -> ReleaseManifest:
        """Check ``bundle`` and unpack it as ``releases/<name>``; ReleaseError (one line) when
        it is refused, and then nothing outside a staging directory has changed."""
        self.releases.mkdir(parents=True, exist_ok=True)
        self._clear_staging()
        staging = self.releases / f".staging-{uuid.uuid4().hex[:8]}-{os.getpid()}"
        try:
            manifest = self._unpack(bundle, staging, expect)
            if manifest.has_wheels():
                self._build_venv(manifest, staging)
            final = self.releases / manifest.release
            if final.exists():
                # The same release again (a retry after a cut, a re-push): the complete copy
                # stays, unless it is the one running (never touched) or it was damaged.
                if manifest.release == self.running() or self.complete(manifest.release):
                    shutil.rmtree(staging)
                    return manifest
                shutil.rmtree(final)
            os.rename(staging, final)
            fsync_path(self.releases)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        log.info("release %s installed in %s", manifest.release, final)
        return manifest

    def _clear_staging(self) -> None:
        for p in self.releases.glob(".staging-*"):
            shutil.rmtree(p, ignore_errors=True)

    def _unpack(self, bundle: Path, staging: Path, expect: str | None) -> ReleaseManifest:
        with _open_tar(bundle) as tar:
            raw, sig = self._member(tar, MANIFEST), self._member(tar, SIGNATURE)
            # The signature first: nothing of an unsigned manifest is even parsed.
            verify_signature(self.public_key, raw, sig)
            manifest = parse_manifest(raw)
            self._check_target(manifest, expect)
            wanted = {f.path: f for f in manifest.files}
            seen: set[str] = set()
            staging.mkdir(mode=0o755)
            for member in tar:
                if member.name in (MANIFEST, SIGNATURE):
                    continue
                entry = wanted.get(member.name)
                if entry is None or not member.isfile():
                    raise ReleaseError(
                        f"{member.name[:80]!r} is in the bundle, not in release.json"
                    )
                if member.name in seen:
                    raise ReleaseError(f"{member.name[:80]!r} twice in the bundle")
                seen.add(member.name)
                self._extract(
                    tar, member, staging / entry.path, entry.sha256, entry.size, entry.mode
                )
            missing = sorted(set(wanted) - seen)
            if missing:
                raise ReleaseError(
                    f"missing file {missing[0]!r} ({len(missing)} of {len(wanted)} listed)"
                )
        for d in sorted({p.parent for p in staging.rglob("*")}, key=lambda p: -len(p.parts)):
            fsync_path(d)
        (staging / MANIFEST).write_bytes(raw)
        (staging / SIGNATURE).write_bytes(sig)
        fsync_path(staging / MANIFEST)
        fsync_path(staging)
        return manifest

    @staticmethod
    def _member(tar: tarfile.TarFile, name: str) -> bytes:
        try:
            member = tar.getmember(name)
        except KeyError:
            raise ReleaseError(f"no {name} in the bundle") from None
        fh = tar.extractfile(member) if member.isfile() else None
        if fh is None or member.size > 64 * 1024 * 1024:
            raise ReleaseError(f"{name} is not a file")
        return fh.read()

    def _check_target(self, manifest: ReleaseManifest, expect: str | None) -> None:
        if expect is not None and manifest.release != expect:
            raise ReleaseError(
                f"the bundle is release {manifest.release!r}, the push said {expect!r}"
            )
        check_target(manifest.release, manifest.arch, manifest.python, self.arch, self.python)
        missing = manifest.missing_entry_points()
        if missing:
            raise ReleaseError(f"no entry point {missing[0]} and no wheels to build one from")

    @staticmethod
    def _extract(
        tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, sha: str, size: int, mode: int
    ) -> None:
        src = tar.extractfile(member)
        if src is None:
            raise ReleaseError(f"{member.name[:80]!r} cannot be read")
        dest.parent.mkdir(parents=True, exist_ok=True)
        import hashlib

        h = hashlib.sha256()
        got = 0
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(CHUNK):
                got += len(chunk)
                if got > size:
                    break
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if got != size or h.hexdigest() != sha:
            raise ReleaseError(f"{member.name[:80]!r} does not match release.json (size or sha256)")

    def _build_venv(self, manifest: ReleaseManifest, staging: Path) -> None:
        """A wheel set becomes a venv, offline, inside the staging directory. The entry points
        are small scripts that run the venv's python by a path relative to themselves: a venv's
        own console scripts name its absolute path, which the rename out of staging changes."""
        venv = staging / "venv"
        wheels = staging / "wheels"
        project = sorted(p.name for p in wheels.glob("edge_agent-*.whl"))
        if not project:
            raise ReleaseError("the wheel set has no edge_agent wheel")
        run = [sys.executable, "-m", "venv", str(venv)]
        pip = [
            str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
            "--find-links", str(wheels), str(wheels / project[-1]),
        ]  # fmt: skip
        for argv in (run, pip):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["failed"]
                raise ReleaseError(f"building the venv failed: {last[0][:200]}")
        bin_dir = staging / "bin"
        bin_dir.mkdir(exist_ok=True)
        for name, module in (("edge-agent", "edge_agent.cli"), ("signage-ui", "signage_ui.cli")):
            script = bin_dir / name
            script.write_text(
                "#!/bin/sh\n# The release's entry point (edge_agent/box/releases.py).\n"
                f'exec "$(dirname "$0")/../venv/bin/python" -m {module} "$@"\n'
            )
            script.chmod(0o755)
            fsync_path(script)
        fsync_path(bin_dir)

    def complete(self, name: str) -> bool:
        """Every file of an installed release is there with its manifest's sha256 (and the
        manifest is still the ops key's)."""
        d = self.releases / name
        try:
            raw = (d / MANIFEST).read_bytes()
            verify_signature(self.public_key, raw, (d / SIGNATURE).read_bytes())
            manifest = parse_manifest(raw)
        except (OSError, ReleaseError):
            return False
        for f in manifest.files:
            p = d / f.path
            try:
                if p.stat().st_size != f.size or sha256_of(p) != f.sha256:
                    return False
            except OSError:
                return False
        return manifest.release == name

    # ---- switch, confirm, roll back --------------------------------------------------------
    def switch(self, name: str, version: int = 0) -> str | None:
        """Put ``name`` on probation and make it current; returns the previous release."""
        if not (self.releases / name).is_dir():
            raise ReleaseError(f"release {name!r} is not installed")
        previous = self.running()
        if previous == name:
            raise ReleaseError(f"release {name!r} is already running")
        # The marker before the switch: whoever starts next knows what to prove or undo.
        self.probation.start(name.encode(), release=name, previous=previous, version=version)
        self._point_current(name)
        log.warning("release: current -> %s (was %s), on probation", name, previous)
        return previous

    def _point_current(self, name: str) -> None:
        tmp = self.root / f".current-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(f"releases/{name}", tmp)
        os.replace(tmp, self.current)  # rename(2): atomic, current is never missing
        fsync_path(self.root)

    def on_probation(self, running: str | None) -> dict[str, Any] | None:
        """The marker when ``running`` is the release on probation, else None."""
        try:
            doc = self.probation.read()
        except ValueError:
            return None
        if doc is None or running is None or doc.get("release") != running:
            return None
        return doc

    def confirm(self, running: str, why: str) -> Result | None:
        doc = self.on_probation(running)
        if doc is None:
            return None
        result = Result(int(doc.get("version") or 0), running, True, why)
        self.write_result(result)
        self.probation.clear()
        self.gc()
        return result

    def rollback(self, why: str) -> str:
        """Back to the previous release (``current`` renamed back), the result kept for the
        agent to ack; a one-line note for the log."""
        try:
            doc = self.probation.read()
        except ValueError:
            doc = None
        if doc is None:
            self.probation.clear()
            return f"release rollback ({why}): nothing on probation; current stays"
        name, previous = str(doc.get("release")), doc.get("previous")
        reason = f"release {name} rolled back to {previous}: {why}"
        self.write_result(Result(int(doc.get("version") or 0), name, False, reason))
        if isinstance(previous, str) and (self.releases / previous).is_dir():
            self._point_current(previous)
        else:
            reason = f"release {name} failed ({why}) and there is no previous release to go back to"
        self.probation.clear()
        return reason

    def note_exit(self, status: int | str) -> None:
        """The exit status of a start on probation (systemd's ExecStopPost, the supervisor):
        the rollback's reason names it."""
        self.probation.update(last_exit=str(status))

    def pre_start(self) -> str | None:
        """Before every start of the agent: settle what a power cut or a crash left; returns a
        one-line note when something was undone."""
        self._clear_staging_quietly()
        try:
            doc = self.probation.read()
        except ValueError:
            # An unreadable marker: the release it named cannot be judged; current is complete
            # (invariant 2), so it stays, and the push is reported as failed.
            self.probation.clear()
            return "release probation marker unreadable: cleared; current stays"
        if doc is None:
            return None
        name, running = doc.get("release"), self.running()
        if running != name:
            # The cut came between the marker and the switch (or after a rollback's switch).
            self.probation.clear()
            if running is not None and running == doc.get("previous"):
                why = f"the install of {name} was interrupted before the switch; {running} kept"
                self.write_result(Result(int(doc.get("version") or 0), str(name), False, why))
                return why
            return None
        starts = self.probation.count_start() or 0
        if starts > self.max_starts:
            last = doc.get("last_exit")
            exit_note = f", last exit status {last}" if last not in (None, "") else ""
            return self.rollback(
                f"did not pass probation in {self.max_starts} starts (crash loop{exit_note})"
            )
        age = time.time() - float(doc.get("since") or 0)
        if age > self.timeout_s:
            return self.rollback(f"not confirmed within {self.timeout_s:g} s")
        return None

    def _clear_staging_quietly(self) -> None:
        if self.releases.is_dir():
            self._clear_staging()

    # ---- results -------------------------------------------------------------------------
    def write_result(self, result: Result) -> None:
        import json

        # A rollback after a cut must not overwrite the first word on the same push.
        old = self.read_result()
        same = old is not None and (old.version, old.release) == (result.version, result.release)
        if same and old is not None and not old.accepted:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.result_path, json.dumps(result.ack()).encode())

    def read_result(self) -> Result | None:
        import json

        try:
            doc = json.loads(self.result_path.read_text())
            return Result(
                int(doc["version"]), str(doc["release"]), bool(doc["accepted"]), str(doc["reason"])
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            self.result_path.unlink(missing_ok=True)
            return None

    def clear_result(self) -> None:
        self.result_path.unlink(missing_ok=True)

    def gc(self, keep: int = KEEP) -> list[str]:
        """Remove old releases: never the current one, nor the previous one (the way back)."""
        running = self.running()
        try:
            doc = self.probation.read()
        except ValueError:
            doc = None
        protect = {running, (doc or {}).get("previous"), (doc or {}).get("release")}
        names = self.installed()
        by_age = sorted(names, key=lambda n: (self.releases / n).stat().st_mtime)
        removed = []
        for name in by_age[: max(0, len(names) - keep)]:
            if name not in protect:
                shutil.rmtree(self.releases / name, ignore_errors=True)
                removed.append(name)
        return removed


def _open_tar(bundle: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(bundle, "r:")
    except (OSError, tarfile.TarError) as exc:
        raise ReleaseError(f"not a release bundle: {exc}") from None


def check_target(release: str, arch: str, python: str, my_arch: str, my_python: str) -> None:
    if arch != my_arch:
        raise ReleaseError(f"release {release} is built for {arch}, this box is {my_arch}")
    if python != my_python:
        raise ReleaseError(
            f"release {release} is built for Python {python}, this box has {my_python}"
        )
