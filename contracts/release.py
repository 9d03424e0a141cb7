"""A software release for the box (issue 20, OTA): what ops builds and signs, what the box checks.

A release bundle is an uncompressed tar with, at its top level:

- ``release.json``: the manifest (canonical JSON): the release name, the target architecture
  (``platform.machine()`` of the box, e.g. ``x86_64``, ``aarch64``) and Python (``3.11``), the
  entry points the units run (``bin/edge-agent``, ``bin/signage-ui``) and every other file of the
  bundle with its size, sha256 and mode;
- ``release.sig``: base64 of the Ed25519 signature of the ops key over exactly those bytes;
- the files the manifest lists, nothing else.

The downlink message that carries a release is signed too (``contracts/signing.py``, kind
``release``) and pins the bundle by sha256; the manifest's own signature lets a bundle that came
another way (a USB stick, ``edge-agent release install``) be checked the same way, and a bundle
from another signer is refused even when its push is genuine.

A production bundle (``make release``) holds wheels: the project's and every dependency's
(``wheels/*.whl``); the box builds a venv from them, offline, before the release counts as
installed (``edge_agent/box/releases.py``). A bundle without wheels is used as is: its entry
points are files of the bundle (the tests' tiny releases are such bundles).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts.files import sha256_of
from contracts.signing import canonical_json, load_private_key
from contracts.validation import first_error

MANIFEST = "release.json"
SIGNATURE = "release.sig"
# A release name is a directory name on the box: no separators, no dot files, no "..".
NAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
ENTRY_POINTS = ("bin/edge-agent", "bin/signage-ui")
MAX_FILES = 20_000


class ReleaseError(Exception):
    """A release that must not be installed; the message is one line for logs and acks."""


class ReleaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1, max_length=255)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    mode: int = Field(0o644, ge=0, le=0o777)

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        # Checked here, not at extraction: a path that could leave the release directory is a
        # refused manifest, whatever the tar holds.
        parts = v.split("/")
        if v.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError("must be a relative path without '.', '..' or empty parts")
        if v in (MANIFEST, SIGNATURE):
            raise ValueError(f"{v} is the bundle's own")
        return v


class ReleaseManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    release: str = Field(pattern=NAME)
    arch: str = Field(min_length=1, max_length=32)
    python: str = Field(pattern=r"^3\.\d{1,2}$")
    files: tuple[ReleaseFile, ...] = Field(max_length=MAX_FILES)
    built_at: str = ""

    @field_validator("files")
    @classmethod
    def _unique(cls, v: tuple[ReleaseFile, ...]) -> tuple[ReleaseFile, ...]:
        paths = [f.path for f in v]
        if len(set(paths)) != len(paths):
            raise ValueError("lists the same path twice")
        return v

    def has_wheels(self) -> bool:
        return any(f.path.startswith("wheels/") and f.path.endswith(".whl") for f in self.files)

    def missing_entry_points(self) -> list[str]:
        """Entry points a bundle without wheels must carry itself (a wheel set gets them from
        the venv it builds)."""
        if self.has_wheels():
            return []
        listed = {f.path for f in self.files}
        return [e for e in ENTRY_POINTS[:1] if e not in listed]


def parse_manifest(raw: bytes) -> ReleaseManifest:
    try:
        return ReleaseManifest.model_validate_json(raw)
    except ValidationError as exc:
        raise ReleaseError(f"release.json {first_error(exc, 'manifest')}") from None


def verify_signature(public_key: Ed25519PublicKey, manifest: bytes, sig_b64: bytes) -> None:
    """ReleaseError unless ``sig_b64`` is the ops key's signature over ``manifest``."""
    try:
        sig = base64.b64decode(sig_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ReleaseError("release.sig: not base64") from None
    try:
        public_key.verify(sig, manifest)
    except InvalidSignature:
        raise ReleaseError(
            "release.sig: bad signature (not signed by this box's ops key)"
        ) from None


def _file_mode(path: Path) -> int:
    return 0o755 if path.stat().st_mode & 0o111 else 0o644


def build_bundle(
    src: Path,
    out: Path,
    *,
    release: str,
    arch: str,
    python: str,
    private_pem: bytes,
    built_at: str = "",
) -> ReleaseManifest:
    """Pack every file under ``src`` into a signed bundle at ``out`` (same input, same bytes:
    sorted members, fixed times and owners)."""
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink())
    entries = [
        ReleaseFile(
            path=p.relative_to(src).as_posix(),
            size=p.stat().st_size,
            sha256=sha256_of(p),
            mode=_file_mode(p),
        )
        for p in files
    ]
    try:
        manifest = ReleaseManifest(
            release=release, arch=arch, python=python, files=tuple(entries), built_at=built_at
        )
    except ValidationError as exc:
        raise ReleaseError(f"release {first_error(exc, 'manifest')}") from None
    raw = manifest_bytes(manifest)
    sig = base64.b64encode(load_private_key(private_pem).sign(raw))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, MANIFEST, raw, 0o644)
        _add_bytes(tar, SIGNATURE, sig + b"\n", 0o644)
        for entry, path in zip(entries, files, strict=True):
            _add_bytes(tar, entry.path, path.read_bytes(), entry.mode)
    return manifest


def manifest_bytes(manifest: ReleaseManifest) -> bytes:
    return canonical_json(manifest.model_dump(mode="json"))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def read_manifest(bundle: Path) -> ReleaseManifest:
    """The manifest of a bundle, unchecked (ops tools read the name and target from it)."""
    try:
        with tarfile.open(bundle, "r:") as tar:
            member = tar.getmember(MANIFEST)
            fh = tar.extractfile(member)
            if fh is None:
                raise ReleaseError("release.json is not a file")
            return parse_manifest(fh.read())
    except (OSError, KeyError, tarfile.TarError) as exc:
        raise ReleaseError(f"{bundle}: not a release bundle: {exc}") from None


def push_body(bundle: Path, *, url: str | None = None) -> dict[str, Any]:
    """The ``release`` downlink body for ``bundle``: its name and target (so a box of another
    architecture refuses at once), and the bundle by sha256 and size, at ``url`` or inline."""
    manifest = read_manifest(bundle)
    ref: dict[str, Any] = {"sha256": sha256_of(bundle), "size": bundle.stat().st_size}
    if url is not None:
        ref["url"] = url
    else:
        ref["data_b64"] = base64.b64encode(bundle.read_bytes()).decode()
    return {
        "release": manifest.release,
        "arch": manifest.arch,
        "python": manifest.python,
        "bundle": ref,
    }


def release_name_ok(name: str) -> bool:
    return re.match(NAME, name) is not None


def describe(manifest: ReleaseManifest) -> str:
    return json.dumps(
        {
            "release": manifest.release,
            "arch": manifest.arch,
            "python": manifest.python,
            "files": len(manifest.files),
            "wheels": manifest.has_wheels(),
        }
    )
